import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
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

  it('takes the API URL as PKI_PUBLIC_URL on loopback, and refuses to start elsewhere without PKI_PUBLIC_URL', () => {
    expect(loadConfig({}).ca.publicUrl).toBeUndefined();
    expect(loadConfig({ HOST: '::1' }).ca.publicUrl).toBeUndefined();
    expect(loadConfig({ HOST: '127.0.0.2' }).ca.publicUrl).toBeUndefined();
    for (const HOST of ['0.0.0.0', '::', '10.0.0.5', 'provisioning.example']) {
      expect(() => loadConfig({ HOST })).toThrow(ConfigurationError);
      expect(() => loadConfig({ HOST })).toThrow(/PKI_PUBLIC_URL: required when HOST/);
    }
    expect(loadConfig({ HOST: '0.0.0.0', PKI_PUBLIC_URL: 'https://pki.example.com' }).ca.publicUrl).toBe('https://pki.example.com');
  });

  it('makes the compose file name PKI_PUBLIC_URL explicitly, with no default for it', () => {
    const compose = readFileSync(fileURLToPath(new URL('../docker-compose.yml', import.meta.url)), 'utf8');
    expect(compose).toMatch(/PKI_PUBLIC_URL: \$\{PKI_PUBLIC_URL:\?[^}]+\}/);
  });

  it('refuses a scan window longer than a minute, naming the variable', () => {
    expect(() => loadConfig({ DISCOVERY_SCAN_SECONDS: '600' })).toThrow(ConfigurationError);
    expect(() => loadConfig({ DISCOVERY_SCAN_SECONDS: '600' })).toThrow(/DISCOVERY_SCAN_SECONDS/);
  });
});
