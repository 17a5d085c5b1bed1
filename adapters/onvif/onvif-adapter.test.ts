import { execFile } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import onvif from 'node-onvif-ts';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  AuthenticationFailedError,
  ConfigurationRejectedError,
  ConflictError,
  DeviceUnavailableError,
  IdentityMismatchError,
  NotImplementedError,
  ValidationError,
} from '../../foundation/errors';
import { memoryDeviceSecrets } from '../../custody/device-secrets';
import { fingerprintOf } from '../../x509/pem';
import { canonicalHash } from '../../foundation/canonical-json';
import { driftedSettings } from '../../configuration/drift';
import { OpensslTestCa } from '../../scripts/simulators/openssl-test-ca';
import { startOnvifDevice, type OnvifDeviceOptions, type RunningOnvifDevice } from '../../scripts/simulators/onvif-device';
import type { DeviceConfiguration, DeviceSession } from '../device-adapter';
import { probeOnvifDevices } from './discovery';
import { OnvifDeviceAdapter, onvifSecretPurposes } from './index';
import { testDeviceNetworks } from '../../test/support/device-networks';
import { el, soapEnvelope, usernameTokenHeader } from './soap';

/** Runs openssl with stdin closed (s_client then leaves after the handshake). */
function openssl(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile('openssl', args, { timeout: 10_000 }, (error, stdout) => (error ? reject(error) : resolve(stdout)));
    child.stdin?.end();
  });
}

/** Where devices serve HTTPS once enrolled; each device has its own loopback address, so one port serves all. */
const httpsPort = 10443;
const adapter = new OnvifDeviceAdapter({ networks: testDeviceNetworks, httpsPort, requestTimeoutMs: 3000, keyStatusPollMs: 20 });

const factory = { username: 'admin', password: `Fact<ory>&"'Pass` };

const configuration: DeviceConfiguration = {
  templateId: 'onvif-camera',
  version: 2,
  settings: {
    hostname: 'cam-lobby-01',
    ntp: { servers: ['127.0.0.1', 'ntp.example.net'] },
    timezone: 'CET-1CEST,M3.5.0,M10.5.0/3',
    management: { httpEnabled: false },
  },
};

let ca: OpensslTestCa;
const devices: RunningOnvifDevice[] = [];
// A block of 127/8 per test process keeps parallel test files off each other's addresses.
const addressBlock = `127.${90 + (process.pid % 100)}.${(process.pid >> 8) % 250}`;
let hostCounter = 0;

beforeAll(() => {
  ca = new OpensslTestCa('Onvif');
});
afterAll(() => {
  ca?.dispose();
  if (rootDir) rmSync(rootDir, { recursive: true, force: true });
});
afterEach(async () => {
  await Promise.all(devices.splice(0).map((device) => device.close()));
});

async function startDevice(options: Partial<OnvifDeviceOptions> = {}) {
  hostCounter += 1;
  const device = await startOnvifDevice({
    host: `${addressBlock}.${hostCounter}`,
    serialNumber: `ONV-${String(hostCounter).padStart(4, '0')}`,
    macAddress: `02:00:5E:10:00:${hostCounter.toString(16).padStart(2, '0')}`,
    credentials: factory,
    keyGenerationPolls: 2,
    ...options,
  });
  devices.push(device);
  return device;
}

function sessionFor(device: RunningOnvifDevice, extra: Partial<DeviceSession> = {}) {
  const secrets = memoryDeviceSecrets();
  return { address: device.address, credentials: factory, ...extra, secrets } satisfies DeviceSession;
}

/** identify → authenticate → CSR → signed by the openssl CA → install; returns the pinned session. */
async function enrol(device: RunningOnvifDevice, session: DeviceSession) {
  const identity = await adapter.identify({ address: device.address });
  await adapter.authenticate(session);
  const csrPem = await adapter.createCertificateSigningRequest(session, {
    commonName: identity.serialNumber,
    keyAlgorithm: 'P-256',
    subjectAltNames: { dns: ['cam-lobby-01.site.example'], ip: [device.host], uri: [] },
  });
  const certificatePem = ca.signDeviceCsr(csrPem);
  await adapter.installCertificate(session, { certificatePem, chainPem: [ca.intermediatePem], trustAnchorsPem: [ca.rootPem] });
  const fingerprint = fingerprintOf(new X509Certificate(certificatePem).raw);
  return { identity, csrPem, certificatePem, pinned: { ...session, pinnedCertificateFingerprint: fingerprint } };
}

async function failureOf(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the call to fail');
}

describe('ONVIF provisioning against the simulated device', () => {
  it('runs identify, authenticate, CSR, install, configuration, self-test and activation, then serves TLS with the issued certificate', async () => {
    const device = await startDevice({ serialNumber: 'ONV-FULL-1', macAddress: '02-00-5E-10-FF-01' });
    const session = sessionFor(device);
    const { identity, csrPem, certificatePem, pinned } = await enrol(device, session);

    expect(identity).toMatchObject({
      serialNumber: 'ONV-FULL-1',
      macAddress: '02:00:5e:10:ff:01',
      manufacturer: 'Simulated Optics',
      model: 'SO-CAM-4K',
      deviceType: 'camera',
    });
    expect(identity.capabilities).toContain('certificate-enrolment');

    // The factory login was replaced by a per-device user whose password only the secrets hold.
    const password = Buffer.from(session.secrets.store.get(onvifSecretPurposes.managementPassword)!).toString('base64url');
    expect(device.passwordMatches('provisioning', password)).toBe(true);
    expect(device.state().users.map((u) => u.username)).toContain('provisioning');

    // The CSR is real PKCS#10, signed by the device's own key, with the names we asked for.
    const csrText = ca.verifyCsr(csrPem);
    expect(csrText).toContain('DNS:cam-lobby-01.site.example');
    expect(csrText).toContain(`IP Address:${device.host}`);

    const receipt = await adapter.pushConfiguration(pinned, configuration);
    expect(receipt.version).toBe(2);
    expect(receipt.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(device.state()).toMatchObject({
      hostname: 'cam-lobby-01',
      ntpServers: ['127.0.0.1', 'ntp.example.net'],
      timezone: 'CET-1CEST,M3.5.0,M10.5.0/3',
      protocols: { http: { enabled: false }, https: { enabled: true, port: httpsPort } },
    });

    const report = await adapter.selfTest(pinned);
    expect(report.passed).toBe(true);
    expect(report.checks.map((c) => c.name)).toEqual(
      expect.arrayContaining(['tls-certificate', 'serial-number', 'hostname', 'ntp-servers', 'http-enabled']),
    );

    await adapter.activate(pinned);
    await adapter.activate(pinned);
    expect(device.state().scopes.filter((s) => s === 'onvif://www.onvif.org/provisioning/active')).toHaveLength(1);

    // An ordinary TLS client that trusts only the test root verifies the device's chain and name.
    const peer = await new Promise<X509Certificate>((resolve, reject) => {
      const socket = tls.connect({ host: device.host, port: httpsPort, ca: ca.rootPem, checkServerIdentity: tls.checkServerIdentity }, () => {
        const certificate = socket.getPeerX509Certificate()!;
        socket.end();
        resolve(certificate);
      });
      socket.once('error', reject);
    });
    expect(peer.fingerprint256).toBe(new X509Certificate(certificatePem).fingerprint256);
    const stdout = await openssl(['s_client', '-connect', `${device.host}:${httpsPort}`, '-CAfile', rootFile(), '-verify_ip', device.host, '-verify_return_error']);
    expect(stdout).toContain('Verify return code: 0 (ok)');

    // HTTP is really off, and identify over the pinned channel still works without credentials.
    await expect(adapter.identify({ address: device.address })).rejects.toBeInstanceOf(DeviceUnavailableError);
    const again = await adapter.identify({ address: device.address, pinnedCertificateFingerprint: pinned.pinnedCertificateFingerprint });
    expect(again.presentedCertificateFingerprint).toBe(pinned.pinnedCertificateFingerprint);
  });

  it("gives another device's certificate nothing: an enrolled camera authenticates the service by its own user, not by client certificates", async () => {
    const device = await startDevice();
    const { pinned } = await enrol(device, sessionFor(device));
    // What a stolen camera holds: its certificate and key, from the site intermediate under the same root.
    const stolen: DeviceSession = { address: device.address, pinnedCertificateFingerprint: pinned.pinnedCertificateFingerprint, clientIdentity: ca.issueDeviceIdentity('cam-other') };
    expect(await failureOf(adapter.selfTest(stolen))).toBeInstanceOf(AuthenticationFailedError);
    expect(await failureOf(adapter.activate(stolen))).toBeInstanceOf(AuthenticationFailedError);
    expect(device.state().users.map((user) => user.username)).not.toContain('cam-other');
  });

  it('repeats every step safely, as a retry after a lost answer would', async () => {
    const device = await startDevice();
    const session = sessionFor(device);
    await adapter.authenticate(session);
    await adapter.authenticate(session);
    const { certificatePem, pinned } = await enrol(device, session);
    await adapter.installCertificate(session, { certificatePem, chainPem: [ca.intermediatePem], trustAnchorsPem: [] });
    await adapter.installCertificate(pinned, { certificatePem, chainPem: [ca.intermediatePem], trustAnchorsPem: [] });
    const first = await adapter.pushConfiguration(pinned, configuration);
    const second = await adapter.pushConfiguration(pinned, configuration);
    expect(second.hash).toBe(first.hash);
    expect(device.state().certificates).toHaveLength(2);
    expect(device.state().assignedServerCertificationPaths).toHaveLength(1);
    expect(device.state().users.filter((u) => u.username === 'provisioning')).toHaveLength(1);
  });

  it('resets the management user to the stored password when the device lost it, using the factory login', async () => {
    const device = await startDevice();
    const session = sessionFor(device);
    await adapter.authenticate(session);
    // A later attempt whose stored password no longer works on the device (e.g. restored from backup).
    session.secrets.store.set(onvifSecretPurposes.managementPassword, new Uint8Array(randomBytes(18)));
    await adapter.authenticate(session);
    const password = Buffer.from(session.secrets.store.get(onvifSecretPurposes.managementPassword)!).toString('base64url');
    expect(device.passwordMatches('provisioning', password)).toBe(true);
  });

  it('gets in with the stored password when the answer to CreateUsers was lost', async () => {
    const device = await startDevice({ faults: { truncated: ['CreateUsers'] } });
    const session = sessionFor(device);
    await expect(adapter.authenticate(session)).rejects.toBeInstanceOf(DeviceUnavailableError);
    device.faults.truncated = [];
    const refusedBefore = device.state().refusedLogins;
    await adapter.authenticate(session);
    // The retry spoke as the management user straight away: no login was refused.
    expect(device.state().refusedLogins).toBe(refusedBefore);
    expect(device.state().users.filter((u) => u.username === 'provisioning')).toHaveLength(1);
  });

  it('fails the self-test when a setting drifted from what was pushed', async () => {
    const device = await startDevice();
    const session = sessionFor(device);
    const { pinned } = await enrol(device, session);
    await adapter.pushConfiguration(pinned, { ...configuration, settings: { ...configuration.settings, management: { httpEnabled: true } } });
    const changed = await post(device, soapEnvelope(el('tds:SetHostname', el('tds:Name', 'renamed-by-hand')), [usernameTokenHeader(factory, new Date())]));
    expect(changed.status).toBe(200);
    const report = await adapter.selfTest(pinned);
    expect(report.passed).toBe(false);
    expect(report.checks.find((c) => c.name === 'hostname')).toMatchObject({ passed: false, detail: expect.stringContaining('renamed-by-hand') });
  });

  it('reads back the running configuration in the settings shape and sees a change made by hand', async () => {
    const device = await startDevice();
    const session = sessionFor(device);
    const { pinned } = await enrol(device, session);
    // HTTP stays on, so the change by hand below can come in the way a local tool would send it.
    const desired = { ...configuration.settings, management: { httpEnabled: true } };
    await adapter.pushConfiguration(pinned, { ...configuration, settings: desired });

    const running = await adapter.readConfiguration(pinned);
    expect(running).toEqual({ settings: desired, inherent: ['timezone'], hash: canonicalHash(desired), readAt: expect.any(String) });
    expect(driftedSettings(desired, running.settings)).toEqual([]);

    const changed = await post(device, soapEnvelope(el('tds:SetHostname', el('tds:Name', 'renamed-by-hand')), [usernameTokenHeader(factory, new Date())]));
    expect(changed.status).toBe(200);
    const drifted = await adapter.readConfiguration(pinned);
    expect(drifted.settings).toMatchObject({ hostname: 'renamed-by-hand' });
    expect(drifted.hash).not.toBe(running.hash);
    expect(driftedSettings(desired, drifted.settings)).toEqual(['hostname']);
  });

  it('reports a setting the device refuses as a non-retryable ConfigurationRejectedError', async () => {
    const device = await startDevice({ faults: { refuse: { SetNTP: 'InvalidDnsName' } } });
    const session = sessionFor(device);
    const { pinned } = await enrol(device, session);
    const error = await failureOf(adapter.pushConfiguration(pinned, configuration));
    expect(error).toBeInstanceOf(ConfigurationRejectedError);
    expect(error.message).toContain('InvalidDnsName');
    expect((error as ConfigurationRejectedError).retryable).toBe(false);
  });

  it('takes a RSA-2048 and a P-384 key through CSR creation with matching signature algorithms', async () => {
    const device = await startDevice();
    const session = sessionFor(device);
    for (const keyAlgorithm of ['RSA-2048', 'P-384'] as const) {
      const csrPem = await adapter.createCertificateSigningRequest(session, {
        commonName: 'cam',
        keyAlgorithm,
        subjectAltNames: { dns: [], ip: [], uri: [] },
      });
      const text = ca.verifyCsr(csrPem);
      expect(text).toContain(keyAlgorithm === 'RSA-2048' ? 'sha256WithRSAEncryption' : 'ecdsa-with-SHA384');
    }
  });
});

describe('authentication variants', () => {
  it('falls back to HTTP digest when the device answers 401 with a Digest challenge', async () => {
    for (const digestAlgorithm of ['MD5', 'SHA-256'] as const) {
      const device = await startDevice({ authentication: 'http-digest', digestAlgorithm });
      await adapter.authenticate(sessionFor(device));
      expect(device.state().users.map((u) => u.username)).toContain('provisioning');
    }
  });

  it('corrects UsernameToken Created for a device clock two hours ahead', async () => {
    const device = await startDevice({ authentication: 'ws-security', clockOffsetMs: 2 * 3600_000 });
    await adapter.authenticate(sessionFor(device));
    expect(device.state().refusedLogins).toBe(0);
  });

  it('refuses wrong credentials with AuthenticationFailedError, over WS-Security and over digest', async () => {
    for (const authentication of ['ws-security', 'both'] as const) {
      const device = await startDevice({ authentication });
      const error = await failureOf(adapter.authenticate(sessionFor(device, { credentials: { username: 'admin', password: 'wrong' } })));
      expect(error).toBeInstanceOf(AuthenticationFailedError);
      expect(error.message).not.toContain('wrong');
    }
  });

  it('sends a password full of XML metacharacters intact', async () => {
    const device = await startDevice({ credentials: { username: `op<&>"'`, password: `<&"'>` } });
    await adapter.authenticate(sessionFor(device, { credentials: { username: `op<&>"'`, password: `<&"'>` } }));
    expect(device.state().users.map((u) => u.username)).toEqual([`op<&>"'`, 'provisioning']);
  });

  it('needs credentials to identify a device that applies the ONVIF access classes strictly', async () => {
    const device = await startDevice({ anonymousIdentity: false });
    await expect(adapter.identify({ address: device.address })).rejects.toBeInstanceOf(AuthenticationFailedError);
    await expect(adapter.identify({ address: device.address, credentials: factory })).resolves.toMatchObject({ manufacturer: 'Simulated Optics' });
  });

  it('has the simulator refuse a replayed UsernameToken and one created outside its time window', async () => {
    const device = await startDevice({ authentication: 'ws-security' });
    const token = usernameTokenHeader(factory, new Date());
    const envelope = soapEnvelope(el('tds:GetUsers'), [token]);
    expect((await post(device, envelope)).status).toBe(200);
    const replay = await post(device, envelope);
    expect(replay.status).toBe(400);
    expect(replay.body).toContain('ter:NotAuthorized');
    const stale = await post(device, soapEnvelope(el('tds:GetUsers'), [usernameTokenHeader(factory, new Date(Date.now() - 3600_000))]));
    expect(stale.status).toBe(400);
  });
});

describe('bad peers', () => {
  it('reports an unanswered call as a retryable DeviceUnavailableError after the timeout', async () => {
    const device = await startDevice({ faults: { hang: ['GetDeviceInformation'] } });
    const quick = new OnvifDeviceAdapter({ networks: testDeviceNetworks, httpsPort, requestTimeoutMs: 300 });
    const started = Date.now();
    const error = await failureOf(quick.identify({ address: device.address }));
    expect(error).toBeInstanceOf(DeviceUnavailableError);
    expect((error as DeviceUnavailableError).retryable).toBe(true);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('reports a device that does not answer at all as unavailable', async () => {
    const device = await startDevice();
    const address = device.address;
    await device.close();
    await expect(adapter.identify({ address })).rejects.toBeInstanceOf(DeviceUnavailableError);
  });

  it('refuses malformed XML as a non-retryable ValidationError', async () => {
    const device = await startDevice({ faults: { malformed: ['GetDeviceInformation'] } });
    const error = await failureOf(adapter.identify({ address: device.address }));
    expect(error).toBeInstanceOf(ValidationError);
    expect(error.message).toContain('malformed');
  });

  it('treats a response cut off mid-body as retryable', async () => {
    const device = await startDevice({ faults: { truncated: ['GetScopes'] } });
    const error = await failureOf(adapter.identify({ address: device.address }));
    expect(error).toBeInstanceOf(DeviceUnavailableError);
    device.faults.truncated = [];
    await expect(adapter.identify({ address: device.address })).resolves.toBeDefined();
  });

  it('passes on the serial a device reports and fails the self-test when it differs from the certificate', async () => {
    const device = await startDevice();
    const session = sessionFor(device);
    const { pinned, identity } = await enrol(device, session);
    device.faults.reportedSerialNumber = 'SOMEONE-ELSE';
    expect((await adapter.identify({ address: device.address, pinnedCertificateFingerprint: pinned.pinnedCertificateFingerprint })).serialNumber).toBe(
      'SOMEONE-ELSE',
    );
    const report = await adapter.selfTest(pinned);
    expect(report.passed).toBe(false);
    expect(report.checks.find((c) => c.name === 'serial-number')).toMatchObject({
      passed: false,
      detail: `device reports SOMEONE-ELSE, certificate names ${identity.serialNumber}`,
    });
  });

  it('aborts before sending credentials when the device presents a certificate other than the pinned one', async () => {
    const device = await startDevice();
    const { pinned } = await enrol(device, sessionFor(device));
    const error = await failureOf(adapter.selfTest({ ...pinned, pinnedCertificateFingerprint: 'ab'.repeat(32) }));
    expect(error).toBeInstanceOf(IdentityMismatchError);
  });

  it('probes an enrolled camera with GetSystemDateAndTime over the pinned HTTPS, reports a foreign certificate, and fails on silence', async () => {
    const device = await startDevice();
    const { pinned } = await enrol(device, sessionFor(device));
    expect(await adapter.probe(pinned)).toEqual({ presentedCertificateFingerprint: pinned.pinnedCertificateFingerprint });
    // Another certificate than the one pinned: reported, not refused, so the sweep can alert on it.
    const presented = await adapter.probe({ ...pinned, pinnedCertificateFingerprint: 'ab'.repeat(32) });
    expect(presented).toEqual({ presentedCertificateFingerprint: pinned.pinnedCertificateFingerprint });
    await expect(adapter.probe({ ...pinned, pinnedCertificateFingerprint: undefined })).rejects.toBeInstanceOf(ConflictError);
    device.faults.hang = ['GetSystemDateAndTime'];
    await expect(adapter.probe(pinned)).rejects.toBeInstanceOf(DeviceUnavailableError);
  });

  it('reports the device failing to turn HTTPS on without a certificate as ConfigurationRejectedError', async () => {
    const device = await startDevice();
    const envelope = soapEnvelope(
      el('tds:SetNetworkProtocols', el('tds:NetworkProtocols', el('tt:Name', 'HTTPS'), el('tt:Enabled', 'true'), el('tt:Port', String(httpsPort)))),
      [usernameTokenHeader(factory, new Date())],
    );
    const answer = await post(device, envelope);
    expect(answer.status).toBe(500);
    expect(answer.body).toContain('ter:EnablingTlsFailed');
    // The adapter refuses to turn HTTP off while the device holds no certificate of ours.
    await expect(adapter.pushConfiguration(sessionFor(device), configuration)).rejects.toBeInstanceOf(ConfigurationRejectedError);
  });

  it('declines certificate enrolment on a device without the Advanced Security service', async () => {
    const device = await startDevice({ advancedSecurity: false });
    const identity = await adapter.identify({ address: device.address });
    expect(identity.capabilities).not.toContain('certificate-enrolment');
    const error = await failureOf(
      adapter.createCertificateSigningRequest(sessionFor(device), { commonName: 'x', keyAlgorithm: 'P-256', subjectAltNames: { dns: [], ip: [], uri: [] } }),
    );
    expect(error).toBeInstanceOf(NotImplementedError);
    expect(error.message).toContain('Advanced Security');
  });
});

describe('discovery and other clients', () => {
  it('answers a unicast WS-Discovery Probe with a ProbeMatch carrying XAddrs, scopes and types', async () => {
    hostCounter += 1;
    const host = `${addressBlock}.${hostCounter}`;
    const device = await startDevice({ host, discovery: { host, port: 0 } });
    const matches = await probeOnvifDevices({ target: { host, port: device.discoveryPort! }, localAddress: host, waitMs: 300 });
    expect(matches).toHaveLength(1);
    expect(matches[0]).toMatchObject({
      endpointReference: device.endpointReference,
      xaddrs: [`http://${device.address}/onvif/device_service`],
      types: ['dn:NetworkVideoTransmitter', 'tds:Device'],
    });
    expect(matches[0].scopes).toContain('onvif://www.onvif.org/type/Network_Video_Transmitter');
  });

  it('serves GetDeviceInformation to node-onvif-ts, a client written independently of ours', async () => {
    // node-onvif-ts puts the password into XML unescaped, so this device has a plain one.
    const device = await startDevice({ serialNumber: 'ONV-NODE-1', authentication: 'ws-security', credentials: { username: 'admin', password: 'plain-Pass1' } });
    const service = new onvif.OnvifServiceDevice({ xaddr: `http://${device.address}/onvif/device_service`, user: 'admin', pass: 'plain-Pass1' });
    await service.getSystemDateAndTime();
    const result = await service.getDeviceInformation();
    expect(result.data.GetDeviceInformationResponse.SerialNumber).toBe('ONV-NODE-1');
    expect(device.state().refusedLogins).toBe(0);
  });
});

describe('ONVIF management user: rotation and removal against the simulated device', () => {
  const passwordOf = (secret: Uint8Array | undefined) => Buffer.from(secret!).toString('base64url');
  const managementPassword = onvifSecretPurposes.managementPassword;

  it('rotates the management password over the pinned channel: the new one logs in, the old one is refused', async () => {
    const device = await startDevice();
    const session = sessionFor(device);
    const { pinned } = await enrol(device, session);
    const old = session.secrets.store.get(managementPassword)!;

    expect(await adapter.rotateCredentials(pinned)).toEqual({ rotated: ['ONVIF management user password'] });

    const fresh = session.secrets.store.get(managementPassword)!;
    expect(passwordOf(fresh)).not.toBe(passwordOf(old));
    expect(device.passwordMatches('provisioning', passwordOf(fresh))).toBe(true);
    expect([...session.secrets.store.keys()].filter((purpose) => purpose.endsWith(':pending'))).toEqual([]);
    // Only the management user speaks (no factory login): the new password works, the old one is refused.
    const withOnly = (secret: Uint8Array) => ({ ...pinned, credentials: undefined, secrets: memoryDeviceSecrets(new Map([[managementPassword, secret]])) });
    await adapter.authenticate(withOnly(fresh));
    expect(await failureOf(adapter.authenticate(withOnly(old)))).toBeInstanceOf(AuthenticationFailedError);
  });

  it('survives losing the answer to SetUser: the device keeps working on the pending password and the retry promotes it', async () => {
    const device = await startDevice();
    const session = sessionFor(device);
    const { pinned } = await enrol(device, session);
    const old = session.secrets.store.get(managementPassword)!;
    device.faults.truncated = ['SetUser'];

    expect(await failureOf(adapter.rotateCredentials(pinned))).toBeInstanceOf(DeviceUnavailableError);
    // The device took the new password, which waits in the vault beside the old one.
    const pending = session.secrets.store.get(`${managementPassword}:pending`)!;
    expect(device.passwordMatches('provisioning', passwordOf(pending))).toBe(true);
    expect(session.secrets.store.get(managementPassword)).toEqual(old);
    await adapter.authenticate({ ...pinned, credentials: undefined });

    device.faults.truncated = [];
    await adapter.rotateCredentials(pinned);
    expect(session.secrets.store.get(managementPassword)).toEqual(pending);
    expect(session.secrets.store.has(`${managementPassword}:pending`)).toBe(false);
    // A second rotation makes another password, not the one just promoted.
    await adapter.rotateCredentials(pinned);
    expect(passwordOf(session.secrets.store.get(managementPassword))).not.toBe(passwordOf(pending));
    expect(device.passwordMatches('provisioning', passwordOf(session.secrets.store.get(managementPassword)))).toBe(true);
  });

  it('refuses to rotate a device that never got a management user', async () => {
    const device = await startDevice();
    expect(await failureOf(adapter.rotateCredentials(sessionFor(device)))).toBeInstanceOf(ConflictError);
  });

  it('removes the management user with DeleteUsers, and a second removal finds nothing left', async () => {
    const device = await startDevice();
    const session = sessionFor(device);
    const { pinned } = await enrol(device, session);

    expect(await adapter.removeManagementAccess(pinned, {})).toEqual({ removed: ['ONVIF user provisioning'] });
    expect(device.state().users.map((user) => user.username)).toEqual(['admin']);
    expect(await adapter.removeManagementAccess(pinned, {})).toEqual({ removed: [] });
    expect(await adapter.removeManagementAccess({ ...pinned, credentials: undefined }, {})).toEqual({ removed: [] });
  });
});

async function post(device: RunningOnvifDevice, body: string): Promise<{ status: number; body: string }> {
  const [host, port] = [device.host, device.httpPort];
  return new Promise((resolve, reject) => {
    const request = http.request({ host, port, method: 'POST', path: '/onvif/device_service', headers: { 'content-type': 'application/soap+xml' } }, (response) => {
      let text = '';
      response.on('data', (chunk) => (text += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: text }));
    });
    request.once('error', reject);
    request.end(body);
  });
}

let rootDir: string | undefined;
/** The test root as a file, for `openssl s_client -CAfile`. */
function rootFile(): string {
  rootDir ??= mkdtempSync(path.join(os.tmpdir(), 'onvif-root-'));
  const file = path.join(rootDir, 'root.pem');
  writeFileSync(file, ca.rootPem);
  return file;
}
