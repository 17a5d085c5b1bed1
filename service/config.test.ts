import { describe, expect, it } from 'vitest';
import { ConfigurationError, loadConfig } from './config';

describe('service configuration', () => {
  it('sweeps with ten-second scans and SNMP engine discovery only unless told otherwise', () => {
    expect(loadConfig({}).discovery).toEqual({ scanTimeoutMs: 10_000, snmpCommunities: [] });
  });

  it('reads the scan window and the SNMP communities a sweep tries, in order', () => {
    const config = loadConfig({ DISCOVERY_SCAN_SECONDS: '25', DISCOVERY_SNMP_COMMUNITIES: 'site-ro, public' });
    expect(config.discovery).toEqual({ scanTimeoutMs: 25_000, snmpCommunities: ['site-ro', 'public'] });
  });

  it('refuses a scan window longer than a minute, naming the variable', () => {
    expect(() => loadConfig({ DISCOVERY_SCAN_SECONDS: '600' })).toThrow(ConfigurationError);
    expect(() => loadConfig({ DISCOVERY_SCAN_SECONDS: '600' })).toThrow(/DISCOVERY_SCAN_SECONDS/);
  });
});
