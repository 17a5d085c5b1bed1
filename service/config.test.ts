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

  it('makes no scheduled CA backups unless a directory is configured, and then requires a passphrase', () => {
    expect(loadConfig({}).caBackup).toBeUndefined();
    expect(() => loadConfig({ CA_BACKUP_DIRECTORY: '/var/backups/ca' })).toThrow(/CA_BACKUP_PASSPHRASE_FILE or CA_BACKUP_PASSPHRASE/);
    expect(loadConfig({ CA_BACKUP_DIRECTORY: '/var/backups/ca', CA_BACKUP_PASSPHRASE_FILE: '/run/secrets/ca-backup' }).caBackup).toEqual({
      directory: '/var/backups/ca',
      intervalHours: 24,
      keep: 14,
      passphrase: { file: '/run/secrets/ca-backup' },
    });
  });

  it('refuses a scan window longer than a minute, naming the variable', () => {
    expect(() => loadConfig({ DISCOVERY_SCAN_SECONDS: '600' })).toThrow(ConfigurationError);
    expect(() => loadConfig({ DISCOVERY_SCAN_SECONDS: '600' })).toThrow(/DISCOVERY_SCAN_SECONDS/);
  });

  it('trusts no proxy unless told, and reads TRUST_PROXY as Express does: a boolean, a hop count, or addresses', () => {
    expect(loadConfig({}).http.trustProxy).toBe(false);
    expect(loadConfig({ TRUST_PROXY: 'true' }).http.trustProxy).toBe(true);
    expect(loadConfig({ TRUST_PROXY: '2' }).http.trustProxy).toBe(2);
    expect(loadConfig({ TRUST_PROXY: 'loopback, 10.0.0.0/8, fd00::1' }).http.trustProxy).toEqual(['loopback', '10.0.0.0/8', 'fd00::1']);
    expect(() => loadConfig({ TRUST_PROXY: 'the load balancer' })).toThrow(/TRUST_PROXY/);
  });
});
