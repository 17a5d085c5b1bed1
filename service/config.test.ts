import { describe, expect, it } from 'vitest';
import { ConfigurationError } from '../foundation/errors';
import { loadConfig, parseWorkerSites } from './config';

describe('service configuration', () => {
  it('is a production installation on the default namespace unless ENVIRONMENT says otherwise', () => {
    const config = loadConfig({});
    expect(config.installationEnvironment).toBe('production');
    expect(config.temporal.namespace).toBe('default');
    expect(config.ca.environment).toBe('production');
  });

  it('gives every other environment a namespace of its own and stamps it into the CA settings', () => {
    const config = loadConfig({ ENVIRONMENT: 'test' });
    expect(config.installationEnvironment).toBe('test');
    expect(config.temporal.namespace).toBe('provisioning-test');
    expect(config.ca.environment).toBe('test');
    expect(loadConfig({ ENVIRONMENT: 'staging' }).temporal.namespace).toBe('provisioning-staging');
  });

  it('lets an explicit TEMPORAL_NAMESPACE win over the environment\'s default', () => {
    expect(loadConfig({ ENVIRONMENT: 'test', TEMPORAL_NAMESPACE: 'site-lab' }).temporal.namespace).toBe('site-lab');
    expect(loadConfig({ ENVIRONMENT: 'production', TEMPORAL_NAMESPACE: 'provisioning' }).temporal.namespace).toBe('provisioning');
  });

  it('refuses an ENVIRONMENT that cannot be part of a namespace or CA name', () => {
    for (const ENVIRONMENT of ['Production', 'test env', '-test', 'x'.repeat(33)]) {
      expect(() => loadConfig({ ENVIRONMENT })).toThrow(ConfigurationError);
      expect(() => loadConfig({ ENVIRONMENT })).toThrow(/ENVIRONMENT: lower-case letters, digits and hyphens/);
    }
  });

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

  it('is a production installation unless told otherwise: no device networks, no unauthenticated decoding', () => {
    const config = loadConfig({});
    expect(config.environment).toBe('production');
    expect(config.deviceNetworks.description).toBe('none');
    expect(config.payloadEncryption.uiDecodeTenant).toBeUndefined();
  });

  it('lets only a development installation reach loopback or decode for the embedded Web UI without credentials', () => {
    expect(() => loadConfig({ CODEC_UI_DECODE_TENANT: 'default' })).toThrow(/CODEC_UI_DECODE_TENANT.*development/);
    expect(() => loadConfig({ DEVICE_NETWORKS: '10.20.0.0/24, 127.0.0.0/8' })).toThrow(/DEVICE_NETWORKS.*"127.0.0.0\/8".*loopback/);
    expect(() => loadConfig({ DEVICE_NETWORKS: '0.0.0.0/0' })).toThrow(/loopback/);
    expect(() => loadConfig({ DEVICE_NETWORKS: '::/0' })).toThrow(/loopback/);
    expect(() => loadConfig({ SERVICE_ENVIRONMENT: 'development', CODEC_UI_DECODE_TENANT: 'default', TEMPORAL_ADDRESS: 'temporal:7233' })).toThrow(
      /CODEC_UI_DECODE_TENANT/,
    );

    const development = loadConfig({ SERVICE_ENVIRONMENT: 'development', CODEC_UI_DECODE_TENANT: 'default', DEVICE_NETWORKS: '10.20.0.0/24' });
    expect(development.deviceNetworks.description).toBe('10.20.0.0/24, 127.0.0.0/8, ::1/128');
    expect(development.payloadEncryption.uiDecodeTenant).toBe('default');
  });

  it('refuses device networks that are not CIDRs, naming the entry', () => {
    expect(() => loadConfig({ DEVICE_NETWORKS: '10.20.0.0/24,10.20.1.0/33' })).toThrow(/DEVICE_NETWORKS: "10.20.1.0\/33"/);
    expect(() => loadConfig({ DEVICE_NETWORKS: 'cameras.example' })).toThrow(/DEVICE_NETWORKS: "cameras.example" is not/);
    expect(() => loadConfig({ SERVICE_ENVIRONMENT: 'staging' })).toThrow(/SERVICE_ENVIRONMENT/);
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

describe('WORKER_SITES', () => {
  it('names sites as <tenant>/<site>, a bare site being of tenant default, and refuses anything else naming the variable', () => {
    expect(parseWorkerSites('north, acme/south')).toEqual([
      { tenantId: 'default', site: 'north' },
      { tenantId: 'acme', site: 'south' },
    ]);
    expect(parseWorkerSites(undefined)).toEqual([]);
    expect(() => parseWorkerSites('acme/no rth')).toThrow(/WORKER_SITES/);
    expect(() => parseWorkerSites('a/b/c')).toThrow(/WORKER_SITES/);
  });

  it('is required by the site-worker role', () => {
    expect(() => loadConfig({ SERVICE_ROLES: 'site-worker', KEY_ENCRYPTION_KEY: Buffer.alloc(32, 1).toString('base64') })).toThrow(/WORKER_SITES/);
  });
});
