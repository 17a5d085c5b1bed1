import { afterEach, describe, expect, it } from 'vitest';
import { memoryDeviceSecrets } from '../../custody/device-secrets';
import {
  freeUdpPort,
  runSnmpTool,
  startEntityAgent,
  startMisbehavingUdpPeer,
  startSnmpd,
  type RunningSnmpPeer,
  type SnmpAdminUser,
  type SnmpdOptions,
} from '../../scripts/simulators/snmp-agent';
import { canonicalHash } from '../../foundation/canonical-json';
import { driftedSettings } from '../../configuration/drift';
import {
  AuthenticationFailedError,
  ConfigurationRejectedError,
  ConflictError,
  DeviceUnavailableError,
  NotImplementedError,
  SelfTestFailedError,
  ValidationError,
} from '../../foundation/errors';
import { deviceCapabilities, type DeviceConfiguration, type DeviceSession } from '../device-adapter';
import { SnmpDeviceAdapter, snmpSecretPurposes } from './index';
import { testDeviceNetworks } from '../../test/support/device-networks';
import type { SnmpDeviceSettings } from './settings';
import { sha256Aes128Keys } from './usm-keys';

const admin: SnmpAdminUser = { userName: 'provadmin', authPassphrase: 'factory-auth-Secret1', privPassphrase: 'factory-priv-Secret1' };
const factoryCredentials = {
  username: admin.userName,
  password: JSON.stringify({ auth: admin.authPassphrase, priv: admin.privPassphrase }),
};

const settings: SnmpDeviceSettings = {
  usmUser: 'prov-enc-lobby',
  system: { name: 'enc-lobby-01', location: 'HQ lobby, rack 2', contact: 'security-ops@example.net' },
  communityAccess: 'disabled',
  removeFactoryAdmin: true,
};
const configuration = (overrides: Partial<SnmpDeviceSettings> = {}): DeviceConfiguration => ({
  templateId: 'snmp-encoder',
  version: 4,
  settings: { ...settings, ...overrides },
});

/** Short waits: every peer is on loopback, and the bad ones would otherwise hold tests for seconds. */
const adapter = new SnmpDeviceAdapter({ networks: testDeviceNetworks });
const quickAdapter = new SnmpDeviceAdapter({ networks: testDeviceNetworks, requestTimeoutMs: 400, retries: 0, communityProbeTimeoutMs: 400 });

const peers: RunningSnmpPeer[] = [];
afterEach(async () => {
  await Promise.all(peers.splice(0).map((peer) => peer.close()));
});

async function encoder(options: Partial<SnmpdOptions> = {}) {
  const snmpd = await startSnmpd({
    sysDescr: 'AXIS Q7424-R Mk II Video Encoder',
    sysObjectID: '1.3.6.1.4.1.368.1.1',
    admin,
    readOnlyCommunities: ['public'],
    ...options,
  });
  peers.push(snmpd);
  return snmpd;
}

const usmArgs = (address: string, user: string, auth: string[], priv: string[]) => [
  '-v3', '-l', 'authPriv', '-u', user, '-a', 'SHA-256', ...auth, '-x', 'AES', ...priv, '-t', '1', '-r', '0', '-Oqv', address,
];

describe('SNMP adapter against Debian snmpd', () => {
  it('takes a factory-fresh encoder through identify, authenticate, configuration, self-test and activation', async () => {
    const snmpd = await encoder();
    const secrets = memoryDeviceSecrets();
    const session: DeviceSession = { address: snmpd.address, credentials: factoryCredentials, secrets };

    const identity = await adapter.identify(session);
    expect(identity.manufacturer).toBe('Axis Communications');
    expect(identity.deviceType).toBe('camera');
    expect(identity.model).toBe('1.3.6.1.4.1.368.1.1');
    expect(identity.serialNumber).toMatch(/^engine-80001f88[0-9a-f]+$/);
    expect(identity.capabilities).not.toContain(deviceCapabilities.certificateEnrolment);
    await expect(adapter.createCertificateSigningRequest()).rejects.toBeInstanceOf(NotImplementedError);

    await adapter.authenticate(session);

    const receipt = await adapter.pushConfiguration(session, configuration());
    expect(receipt.version).toBe(4);
    expect(receipt.hash).toMatch(/^[0-9a-f]{64}$/);

    // Debian's own client, given only the localized keys (derived by our code), reads as the new user...
    const auth = secrets.store.get(snmpSecretPurposes.authPassphrase)!;
    const priv = secrets.store.get(snmpSecretPurposes.privPassphrase)!;
    const authPassphrase = Buffer.from(auth).toString('base64url');
    const privPassphrase = Buffer.from(priv).toString('base64url');
    const engineHex = identity.serialNumber.slice('engine-'.length);
    const keys = sha256Aes128Keys(authPassphrase, privPassphrase, Buffer.from(engineHex, 'hex'));
    const byKeys = runSnmpTool('snmpget', [
      ...usmArgs(snmpd.address, settings.usmUser, ['-3k', `0x${keys.authKey.toString('hex')}`], ['-3K', `0x${keys.privKey.toString('hex')}`]),
      '1.3.6.1.2.1.1.5.0',
    ]);
    expect(byKeys.stdout.trim(), byKeys.stderr).toBe('"enc-lobby-01"');
    // ...and with the passphrases the secrets stand for.
    const byPassphrase = runSnmpTool('snmpget', [
      ...usmArgs(snmpd.address, settings.usmUser, ['-A', authPassphrase], ['-X', privPassphrase]),
      '1.3.6.1.2.1.1.6.0',
      '1.3.6.1.2.1.1.4.0',
    ]);
    expect(byPassphrase.stdout.trim().split('\n'), byPassphrase.stderr).toEqual(['"HQ lobby, rack 2"', '"security-ops@example.net"']);

    // Community reads are no longer answered.
    const v2c = runSnmpTool('snmpget', ['-v2c', '-c', 'public', '-t', '1', '-r', '0', snmpd.address, '1.3.6.1.2.1.1.1.0']);
    expect(v2c.stdout).toBe('');
    expect(v2c.stderr).toContain('Timeout');

    const report = await quickAdapter.selfTest(session);
    expect(report.passed).toBe(true);
    expect(report.checks.map((check) => check.name)).toEqual([
      'usm-device-user',
      'community-groups-denied',
      'community-v1-refused',
      'community-v2c-refused',
    ]);

    await adapter.activate(session);
    const asFactoryAdmin = runSnmpTool('snmpget', [
      ...usmArgs(snmpd.address, admin.userName, ['-A', admin.authPassphrase], ['-X', admin.privPassphrase]),
      '1.3.6.1.2.1.1.1.0',
    ]);
    expect(asFactoryAdmin.status).not.toBe(0);
    expect(asFactoryAdmin.stderr).toMatch(/Unknown user name/i);

    // Retried steps after activation succeed with the per-device user alone.
    await adapter.activate(session);
    await adapter.authenticate(session);
    const again = await adapter.pushConfiguration(session, configuration());
    expect(again.hash).toBe(receipt.hash);
    expect((await adapter.identify(session)).serialNumber).toBe(identity.serialNumber);
    expect(JSON.stringify(receipt)).not.toContain(authPassphrase);
  });

  it('reads back the system group and community policy as the per-device user, and sees a change made with the factory admin', async () => {
    const snmpd = await encoder();
    const session: DeviceSession = { address: snmpd.address, credentials: factoryCredentials, secrets: memoryDeviceSecrets() };
    await expect(adapter.readConfiguration(session)).rejects.toBeInstanceOf(ConflictError);
    const desired = { ...settings, removeFactoryAdmin: false };
    await adapter.pushConfiguration(session, configuration(desired));

    const running = await adapter.readConfiguration(session);
    const { removeFactoryAdmin: _, ...reported } = desired;
    expect(running).toEqual({ settings: reported, unreported: ['removeFactoryAdmin'], hash: canonicalHash(reported), readAt: expect.any(String) });
    expect(driftedSettings(desired, running.settings, { unreported: running.unreported })).toEqual([]);

    const set = runSnmpTool('snmpset', [
      ...usmArgs(snmpd.address, admin.userName, ['-A', admin.authPassphrase], ['-X', admin.privPassphrase]),
      '1.3.6.1.2.1.1.6.0',
      's',
      'moved to the annex',
    ]);
    expect(set.status, set.stderr).toBe(0);
    const drifted = await adapter.readConfiguration(session);
    expect(drifted.settings).toMatchObject({ system: { location: 'moved to the annex' } });
    expect(driftedSettings(desired, drifted.settings, { unreported: drifted.unreported })).toEqual(['system.location']);
  });

  it('reads community access as the pushed policy sees it', async () => {
    const snmpd = await encoder();
    const session: DeviceSession = { address: snmpd.address, credentials: factoryCredentials, secrets: memoryDeviceSecrets() };
    await adapter.pushConfiguration(session, configuration({ communityAccess: 'unchanged', removeFactoryAdmin: false }));
    // `public` still answers, which is what `unchanged` asks for.
    expect((await adapter.readConfiguration(session)).settings).toMatchObject({ communityAccess: 'unchanged' });
    await adapter.pushConfiguration(session, configuration({ communityAccess: 'disabled', removeFactoryAdmin: false }));
    expect((await adapter.readConfiguration(session)).settings).toMatchObject({ communityAccess: 'disabled' });
  });

  it('keeps the keys it generated when a configuration push is retried before activation', async () => {
    const snmpd = await encoder();
    const secrets = memoryDeviceSecrets();
    const session: DeviceSession = { address: snmpd.address, credentials: factoryCredentials, secrets };

    const first = await adapter.pushConfiguration(session, configuration({ removeFactoryAdmin: false }));
    const keysAfterFirst = Buffer.from(secrets.store.get(snmpSecretPurposes.authPassphrase)!).toString('hex');
    const second = await adapter.pushConfiguration(session, configuration({ removeFactoryAdmin: false }));
    expect(second.hash).toBe(first.hash);
    expect(Buffer.from(secrets.store.get(snmpSecretPurposes.authPassphrase)!).toString('hex')).toBe(keysAfterFirst);
    await adapter.activate(session);
    // The factory admin was kept, as configured.
    await adapter.authenticate({ address: snmpd.address, credentials: factoryCredentials });
  });

  it('replaces a same-named user left behind with other keys by an interrupted attempt', async () => {
    const snmpd = await encoder({ extraConfig: [`rwuser ${settings.usmUser} priv`] });
    const adminArgs = ['-v3', '-l', 'authPriv', '-u', admin.userName, '-a', 'SHA-256', '-A', admin.authPassphrase, '-x', 'AES', '-X', admin.privPassphrase];
    const leftover = runSnmpTool('snmpusm', [...adminArgs, snmpd.address, 'create', settings.usmUser, admin.userName]);
    expect(leftover.status, leftover.stderr).toBe(0);

    const secrets = memoryDeviceSecrets();
    const session: DeviceSession = { address: snmpd.address, credentials: factoryCredentials, secrets };
    await adapter.pushConfiguration(session, configuration());
    expect((await quickAdapter.selfTest(session)).passed).toBe(true);
  });

  it('leaves community access alone when the settings keep it, and the self-test does not probe it', async () => {
    const snmpd = await encoder();
    const session: DeviceSession = { address: snmpd.address, credentials: factoryCredentials, secrets: memoryDeviceSecrets() };
    await adapter.pushConfiguration(session, configuration({ communityAccess: 'unchanged' }));
    const v2c = runSnmpTool('snmpget', ['-v2c', '-c', 'public', '-t', '1', '-r', '0', '-Oqv', snmpd.address, '1.3.6.1.2.1.1.5.0']);
    expect(v2c.stdout.trim()).toBe('"enc-lobby-01"');
    const report = await quickAdapter.selfTest(session);
    expect(report.checks.map((check) => check.name)).toEqual(['usm-device-user']);
  });

  it('fails the self-test, naming the check, when a community still answers', async () => {
    const snmpd = await encoder();
    const secrets = memoryDeviceSecrets();
    const session: DeviceSession = { address: snmpd.address, credentials: factoryCredentials, secrets };
    await adapter.pushConfiguration(session, configuration());
    // Someone re-opens v2c access for the public community behind our back.
    const reopen = runSnmpTool('snmpset', [
      ...usmArgs(snmpd.address, admin.userName, ['-A', admin.authPassphrase], ['-X', admin.privPassphrase]),
      // vacmGroupName for (SNMPv2c, "comm1"), the security name snmpd gives the first rocommunity line.
      '1.3.6.1.6.3.16.1.2.1.3.2.5.99.111.109.109.49',
      's',
      'grpcomm1',
    ]);
    expect(reopen.status, reopen.stderr).toBe(0);
    const failure = await quickAdapter.selfTest(session).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(SelfTestFailedError);
    expect((failure as SelfTestFailedError).fields.map((field) => field.field)).toEqual(['community-groups-denied', 'community-v2c-refused']);
  });

  it('reports wrong factory passphrases and unknown users as AuthenticationFailedError', async () => {
    const snmpd = await encoder();
    const wrongPassphrase = quickAdapter.authenticate({ address: snmpd.address, credentials: { username: admin.userName, password: 'not-the-factory-pass' } });
    await expect(wrongPassphrase).rejects.toBeInstanceOf(AuthenticationFailedError);
    await expect(wrongPassphrase).rejects.toThrow(/Wrong Digest/);
    const unknownUser = quickAdapter.authenticate({ address: snmpd.address, credentials: { username: 'nobody', password: admin.authPassphrase } });
    await expect(unknownUser).rejects.toThrow(/Unknown User Name/);
    await expect(unknownUser).rejects.toBeInstanceOf(AuthenticationFailedError);
    const wrongPrivacy = quickAdapter.authenticate({
      address: snmpd.address,
      credentials: { username: admin.userName, password: JSON.stringify({ auth: admin.authPassphrase, priv: 'wrong-priv-pass' }) },
    });
    await expect(wrongPrivacy).rejects.toBeInstanceOf(AuthenticationFailedError);
  });

  it('refuses factory credentials that look like JSON but are not, without quoting them', async () => {
    const failure = await adapter
      .authenticate({ address: '127.0.0.1:161', credentials: { username: admin.userName, password: '{"auth": "s3cret-value"' } })
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ValidationError);
    expect(JSON.stringify(failure) + String((failure as Error).message) + String((failure as Error).cause)).not.toContain('s3cret-value');
  });

  it('refuses settings naming the factory admin as the per-device user, before touching the device', async () => {
    const snmpd = await encoder();
    const session: DeviceSession = { address: snmpd.address, credentials: factoryCredentials, secrets: memoryDeviceSecrets() };
    await expect(adapter.pushConfiguration(session, configuration({ usmUser: admin.userName }))).rejects.toBeInstanceOf(ValidationError);
  });

  it('reports a device whose configuration sets sysName as refusing the configuration', async () => {
    // snmpd makes system values from its configuration file read-only, as some firmware does.
    const snmpd = await encoder({ extraConfig: ['sysName fixed-by-firmware'] });
    const session: DeviceSession = { address: snmpd.address, credentials: factoryCredentials, secrets: memoryDeviceSecrets() };
    await expect(adapter.pushConfiguration(session, configuration())).rejects.toBeInstanceOf(ConfigurationRejectedError);
  });
});

describe('SNMP liveness probe', () => {
  it('reads sysUpTime as the per-device user once provisioned, and fails while the agent is stopped', async () => {
    const snmpd = await encoder();
    const secrets = memoryDeviceSecrets();
    const session: DeviceSession = { address: snmpd.address, credentials: factoryCredentials, secrets };
    await expect(adapter.probe(session)).rejects.toBeInstanceOf(ConflictError);
    await adapter.pushConfiguration(session, configuration());
    await adapter.activate(session);

    // The factory admin is gone; only the per-device user can have answered.
    const report = await adapter.probe({ address: snmpd.address, secrets });
    expect(report).toEqual({ uptimeSeconds: expect.any(Number) });
    expect(report.uptimeSeconds).toBeLessThan(600);

    process.kill(snmpd.pid, 'SIGSTOP');
    try {
      await expect(quickAdapter.probe(session)).rejects.toBeInstanceOf(DeviceUnavailableError);
    } finally {
      process.kill(snmpd.pid, 'SIGCONT');
    }
  });
});

describe('SNMP adapter fingerprinting with ENTITY-MIB (net-snmp agent)', () => {
  async function switchAgent() {
    const agent = await startEntityAgent({
      sysDescr: 'Managed PoE switch',
      sysObjectID: '1.3.6.1.4.1.9.1.2694',
      sysName: 'sw-lobby',
      admin,
      entity: { serialNumber: 'FOC2231X0AB', model: 'C9200L-24P-4G', firmwareVersion: '17.9.4', manufacturer: 'Cisco Systems, Inc.' },
      macAddress: '00-1B-54-AA-BB-CC',
    });
    peers.push(agent);
    return agent;
  }

  it('reads serial, model, firmware and manufacturer from the chassis entity and the MAC from ifPhysAddress', async () => {
    const agent = await switchAgent();
    const identity = await adapter.identify({ address: agent.address, credentials: factoryCredentials });
    expect(identity).toMatchObject({
      serialNumber: 'FOC2231X0AB',
      model: 'C9200L-24P-4G',
      firmwareVersion: '17.9.4',
      manufacturer: 'Cisco Systems, Inc.',
      macAddress: '00:1b:54:aa:bb:cc',
      deviceType: 'other',
    });
    expect(identity.capabilities).toContain('snmp:entity-mib');
  });

  it('reports the serial number the device now claims, so the workflow can see a different device', async () => {
    const agent = await switchAgent();
    const session = { address: agent.address, credentials: factoryCredentials };
    expect((await adapter.identify(session)).serialNumber).toBe('FOC2231X0AB');
    agent.reportSerialNumber('FOC9999Z9ZZ');
    expect((await adapter.identify(session)).serialNumber).toBe('FOC9999Z9ZZ');
  });
});

describe('SNMP adapter against peers that misbehave', () => {
  const session = (address: string): DeviceSession => ({ address, credentials: factoryCredentials, secrets: memoryDeviceSecrets() });

  it('reports nothing listening as DeviceUnavailableError', async () => {
    const port = await freeUdpPort();
    await expect(quickAdapter.identify(session(`127.0.0.1:${port}`))).rejects.toBeInstanceOf(DeviceUnavailableError);
  });

  it('reports a peer that never answers as DeviceUnavailableError', async () => {
    const peer = await startMisbehavingUdpPeer('silent');
    peers.push(peer);
    const failure = quickAdapter.authenticate(session(peer.address));
    await expect(failure).rejects.toBeInstanceOf(DeviceUnavailableError);
    await expect(failure).rejects.toThrow(/did not answer/);
  });

  it.each(['garbage', 'truncated'] as const)('reports a %s answer as a malformed message, retryable', async (behaviour) => {
    const peer = await startMisbehavingUdpPeer(behaviour);
    peers.push(peer);
    const started = Date.now();
    const failure = new SnmpDeviceAdapter({ networks: testDeviceNetworks, requestTimeoutMs: 5_000, retries: 0 }).identify(session(peer.address));
    await expect(failure).rejects.toBeInstanceOf(DeviceUnavailableError);
    await expect(failure).rejects.toThrow(/not a valid SNMP message/);
    // Refused as soon as it arrives, not after the timeout.
    expect(Date.now() - started).toBeLessThan(4_000);
  });

  it('refuses addresses that are not host[:port] with a ValidationError naming the address', () => {
    for (const address of ['', 'cam lobby', '10.0.0.1:0', '10.0.0.1:70000', 'fe80::1:161']) {
      expect(() => adapter.validateAddress(address)).toThrow(ValidationError);
    }
    expect(adapter.networkHost('Encoder-7.Site.Example:1161')).toBe('encoder-7.site.example');
    expect(adapter.networkHost('[fe80::1]')).toBe('fe80::1');
  });
});

describe('SNMP per-device user: key rotation and removal against Debian snmpd', () => {
  const passphrase = (secret: Uint8Array | undefined) => Buffer.from(secret!).toString('base64url');
  const heldKeys = (secrets: ReturnType<typeof memoryDeviceSecrets>) => ({
    auth: passphrase(secrets.store.get(snmpSecretPurposes.authPassphrase)),
    priv: passphrase(secrets.store.get(snmpSecretPurposes.privPassphrase)),
  });
  const readSysName = (address: string, keys: { auth: string; priv: string }) =>
    runSnmpTool('snmpget', [...usmArgs(address, settings.usmUser, ['-A', keys.auth], ['-X', keys.priv]), '1.3.6.1.2.1.1.5.0']);

  async function provisioned() {
    const snmpd = await encoder();
    const secrets = memoryDeviceSecrets();
    const session: DeviceSession = { address: snmpd.address, credentials: factoryCredentials, secrets };
    await adapter.pushConfiguration(session, configuration());
    await adapter.activate(session);
    return { snmpd, secrets, session };
  }

  it('rotates both keys by KeyChange: snmpget with the new keys reads, the old keys are refused', async () => {
    const { snmpd, secrets, session } = await provisioned();
    const old = heldKeys(secrets);

    expect(await adapter.rotateCredentials(session)).toEqual({ rotated: ['SNMPv3 auth and priv keys'] });

    const fresh = heldKeys(secrets);
    expect(fresh.auth).not.toBe(old.auth);
    expect(fresh.priv).not.toBe(old.priv);
    const withNew = readSysName(snmpd.address, fresh);
    expect(withNew.stdout.trim(), withNew.stderr).toBe('"enc-lobby-01"');
    const withOld = readSysName(snmpd.address, old);
    expect(withOld.status).not.toBe(0);
    expect(withOld.stderr).toMatch(/Authentication failure|Decryption error|incorrect password/i);
    expect([...secrets.store.keys()].filter((purpose) => purpose.endsWith(':pending'))).toEqual([]);
    // Everything after works with the new keys alone (the factory admin is gone since activation).
    expect((await quickAdapter.selfTest(session)).passed).toBe(true);
  });

  it('promotes keys the agent already took when the rotation stopped before the vault was updated', async () => {
    const { snmpd, secrets, session } = await provisioned();
    const old = new Map(secrets.store);
    await adapter.rotateCredentials(session);
    // The state a crash between the KeyChange and the promotion leaves: old keys held, new ones pending.
    for (const purpose of [snmpSecretPurposes.authPassphrase, snmpSecretPurposes.privPassphrase]) {
      secrets.store.set(`${purpose}:pending`, secrets.store.get(purpose)!);
      secrets.store.set(purpose, old.get(purpose)!);
    }
    const pending = passphrase(secrets.store.get(`${snmpSecretPurposes.authPassphrase}:pending`));
    await adapter.authenticate(session);

    await adapter.rotateCredentials(session);
    expect(heldKeys(secrets).auth).toBe(pending);
    expect(secrets.store.has(`${snmpSecretPurposes.authPassphrase}:pending`)).toBe(false);
    expect(readSysName(snmpd.address, heldKeys(secrets)).stdout.trim()).toBe('"enc-lobby-01"');
  });

  it('refuses to rotate a device whose per-device user was never provisioned', async () => {
    const snmpd = await encoder();
    const session: DeviceSession = { address: snmpd.address, credentials: factoryCredentials, secrets: memoryDeviceSecrets() };
    await expect(adapter.rotateCredentials(session)).rejects.toBeInstanceOf(ConflictError);
  });

  it('destroys the per-device user row (usmUserStatus destroy) and its VACM mapping; a second removal finds nothing', async () => {
    const { snmpd, secrets, session } = await provisioned();
    const keys = heldKeys(secrets);

    expect(await adapter.removeManagementAccess(session, {})).toEqual({ removed: [`SNMPv3 user ${settings.usmUser}`] });
    const after = readSysName(snmpd.address, keys);
    expect(after.status).not.toBe(0);
    expect(after.stderr).toMatch(/Unknown user name/i);
    expect(await adapter.removeManagementAccess(session, {})).toEqual({ removed: [] });
  });
});
