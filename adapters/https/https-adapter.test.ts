import { createPrivateKey, sign, X509Certificate } from 'node:crypto';
import https from 'node:https';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  AuthenticationFailedError,
  ConfigurationRejectedError,
  ConflictError,
  DeviceUnavailableError,
  IdentityMismatchError,
  SelfTestFailedError,
} from '../../foundation/errors';
import type { ClientTlsIdentity, DeviceConfiguration, DeviceSession } from '../device-adapter';
import { canonicalHash } from '../../foundation/canonical-json';
import { driftedSettings, reportableSettings } from '../../configuration/drift';
import { signConfiguration } from '../../pki/configuration-signing';
import { OpensslTestCa, type SigningIdentity } from '../../scripts/simulators/openssl-test-ca';
import { ReferenceDevice, type ReferenceDeviceOptions } from '../../scripts/simulators/reference-device';
import { deviceApiPaths, HttpsDeviceAdapter } from './index';
import { testDeviceNetworks } from '../../test/support/device-networks';
import { freeLoopbackPort } from '../../test/support/network';

const adapter = new HttpsDeviceAdapter({ networks: testDeviceNetworks });

const credentials = { username: 'admin', password: 'factory-Secret-1' };

const configuration: DeviceConfiguration = {
  templateId: 'camera-default',
  version: 3,
  settings: {
    hostname: 'cam-lobby-01',
    timezone: 'Europe/Berlin',
    site: 'hq',
    ntp: { servers: ['127.0.0.1', 'ntp.example.net'] },
    syslog: { host: '127.0.0.1', port: 6514, protocol: 'tls' },
    tls: { minVersion: 'TLSv1.2' },
    management: { httpEnabled: false, passwordLogin: false },
  },
};

let ca: OpensslTestCa;
let strangerCa: OpensslTestCa;
let clientIdentity: ClientTlsIdentity;
let configurationSigner: SigningIdentity;
const devices: ReferenceDevice[] = [];

beforeAll(() => {
  ca = new OpensslTestCa('Tenant');
  strangerCa = new OpensslTestCa('Stranger');
  clientIdentity = ca.issueClientIdentity('provisioning-service');
  configurationSigner = ca.issueConfigurationSigner();
});

/** Signs as the service does before a push: for this one device, with a configuration signer of the tenant's CA. */
function signedFor(device: ReferenceDevice, unsigned: DeviceConfiguration, options: { serialNumber?: string } = {}) {
  const key = createPrivateKey(configurationSigner.privateKeyPem);
  return signConfiguration(
    unsigned,
    { tenant: 'acme', deviceId: 'cam-lobby-01', serialNumber: options.serialNumber ?? device.serialNumber },
    {
      certificatePem: configurationSigner.certificatePem,
      chainPem: configurationSigner.chainPem,
      sign: async (data) => sign('sha256', data, { key, dsaEncoding: 'der' }),
    },
  );
}

afterAll(() => {
  ca?.dispose();
  strangerCa?.dispose();
});

afterEach(async () => {
  await Promise.all(devices.splice(0).map((device) => device.stop()));
});

let serial = 0;
async function startDevice(options: Partial<ReferenceDeviceOptions> = {}) {
  serial += 1;
  const device = new ReferenceDevice({
    serialNumber: `RD-TEST-${String(serial).padStart(4, '0')}`,
    macAddress: `02-00-5E-00-00-${serial.toString(16).padStart(2, '0').toUpperCase()}`,
    credentials,
    ...options,
  });
  devices.push(device);
  const address = await device.start();
  return { device, address };
}

/** Takes a factory-fresh device through identify, CSR and installation; returns the session to use next. */
async function enrol(address: string) {
  const identity = await adapter.identify({ address });
  const factorySession: DeviceSession = {
    address,
    credentials,
    pinnedCertificateFingerprint: identity.presentedCertificateFingerprint,
  };
  const csrPem = await adapter.createCertificateSigningRequest(factorySession, {
    commonName: identity.serialNumber,
    keyAlgorithm: 'P-256',
    subjectAltNames: { dns: ['cam-lobby-01.hq.example'], ip: ['127.0.0.1'], uri: [] },
  });
  const certificatePem = ca.signDeviceCsr(csrPem);
  const installation = { certificatePem, chainPem: [ca.intermediatePem], trustAnchorsPem: [ca.rootPem] };
  await adapter.installCertificate(factorySession, installation);
  const enrolledSession: DeviceSession = {
    address,
    pinnedCertificateFingerprint: fingerprint(certificatePem),
    clientIdentity,
  };
  return { identity, factorySession, enrolledSession, installation, csrPem };
}

function fingerprint(pem: string): string {
  return new X509Certificate(pem).fingerprint256.replace(/:/g, '').toLowerCase();
}

/** A plain HTTPS GET that only cares whether the device lets it through. */
function rawGet(address: string, identity?: ClientTlsIdentity): Promise<number> {
  const [host, port] = address.split(':');
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host,
        port: Number(port),
        path: deviceApiPaths.status,
        rejectUnauthorized: false,
        agent: false,
        ...(identity ? { key: identity.privateKeyPem, cert: [identity.certificatePem, ...identity.chainPem].join('') } : {}),
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('HTTPS device adapter against the reference device', () => {
  it('provisions a device end to end: identify, authenticate, CSR, install, then configure, self-test and activate over mutual TLS', async () => {
    const { device, address } = await startDevice();

    const identity = await adapter.identify({ address });
    expect(identity).toMatchObject({
      serialNumber: device.serialNumber,
      macAddress: device.macAddress.toLowerCase().replace(/-/g, ':'),
      manufacturer: 'Reference Devices',
      deviceType: 'camera',
      capabilities: expect.arrayContaining(['mtls', 'csr:P-256']),
    });
    expect(identity.firmwareHash).toMatch(/^[0-9a-f]{64}$/);
    expect(identity.presentedCertificateFingerprint).toBe(device.factoryCertificateFingerprint);

    const factorySession = { address, credentials, pinnedCertificateFingerprint: identity.presentedCertificateFingerprint };
    await adapter.authenticate(factorySession);

    const csrPem = await adapter.createCertificateSigningRequest(factorySession, {
      commonName: device.serialNumber,
      keyAlgorithm: 'P-256',
      subjectAltNames: { dns: ['cam-lobby-01.hq.example'], ip: ['127.0.0.1'], uri: ['urn:dev:RD-TEST'] },
    });
    const csrText = ca.verifyCsr(csrPem);
    expect(csrText).toContain(`CN = ${device.serialNumber}`);
    expect(csrText).toContain('DNS:cam-lobby-01.hq.example');
    expect(csrText).toContain('IP Address:127.0.0.1');

    const certificatePem = ca.signDeviceCsr(csrPem);
    await adapter.installCertificate(factorySession, {
      certificatePem,
      chainPem: [ca.intermediatePem],
      trustAnchorsPem: [ca.rootPem],
    });
    expect(device.certificateFingerprint).toBe(fingerprint(certificatePem));
    expect(device.state).toBe('provisioned');

    const session: DeviceSession = { address, pinnedCertificateFingerprint: fingerprint(certificatePem), clientIdentity };
    const receipt = await adapter.pushConfiguration(session, await signedFor(device, configuration));
    expect(receipt.version).toBe(3);
    expect(receipt.hash).toBe(device.configuration?.hash);

    const report = await adapter.selfTest(session);
    expect(report.passed).toBe(true);
    expect(report.checks.map((c) => c.name)).toEqual([
      'certificate',
      'trust-anchors',
      'configuration',
      'ntp',
      'firmware-integrity',
    ]);

    await adapter.activate(session);
    expect(device.state).toBe('active');
    // The same adapter call now also proves mutual TLS works for identity.
    expect((await adapter.identify(session)).presentedCertificateFingerprint).toBe(fingerprint(certificatePem));
  });

  it('carries the configuration signature; the enrolled device refuses an unsigned or misdirected configuration (ConfigurationRejectedError) and keeps running what it ran', async () => {
    const { device, address } = await startDevice();
    const { enrolledSession } = await enrol(address);
    await adapter.pushConfiguration(enrolledSession, await signedFor(device, configuration));
    expect(device.configuration?.signature?.signerSubject).toBe('CN=Tenant Configuration Signing');

    const next = { ...configuration, version: 4, settings: { ...configuration.settings, hostname: 'cam-lobby-02' } };
    const unsigned = await adapter.pushConfiguration(enrolledSession, next).catch((e: unknown) => e);
    expect(unsigned).toBeInstanceOf(ConfigurationRejectedError);
    expect((unsigned as ConfigurationRejectedError).message).toMatch(/422 configuration signature refused: this device only applies signed configurations/);
    expect((unsigned as ConfigurationRejectedError).fields).toEqual([{ field: 'signature', reason: expect.any(String) }]);

    const misdirected = await adapter
      .pushConfiguration(enrolledSession, await signedFor(device, next, { serialNumber: 'RD-OTHER' }))
      .catch((e: unknown) => e);
    expect(misdirected).toBeInstanceOf(ConfigurationRejectedError);
    expect((misdirected as Error).message).toMatch(/signed for the device with serial number RD-OTHER/);

    const signed = await signedFor(device, next);
    const tampered = { ...signed, settings: { ...signed.settings, management: { httpEnabled: true, passwordLogin: true } } };
    await expect(adapter.pushConfiguration(enrolledSession, tampered)).rejects.toThrow(/does not match the configuration as received/);
    expect(device.configuration).toMatchObject({ version: 3, settings: { hostname: 'cam-lobby-01' } });

    await expect(adapter.pushConfiguration(enrolledSession, signed)).resolves.toMatchObject({ version: 4 });
    expect(device.configuration).toMatchObject({ version: 4, settings: { hostname: 'cam-lobby-02' } });
  });

  it('reads back the running configuration without account passwords, hashed as the service hashes the desired one, and sees a change made on the device', async () => {
    const { device, address } = await startDevice();
    const { enrolledSession } = await enrol(address);
    const desired = { ...configuration.settings, users: [{ username: 'installer', password: 'per-Device-Secret-1', role: 'operator' }] };
    await adapter.pushConfiguration(enrolledSession, await signedFor(device, { ...configuration, settings: desired }));

    const running = await adapter.readConfiguration(enrolledSession);
    const reported = { ...configuration.settings, users: [{ username: 'installer', role: 'operator' }] };
    expect(running).toEqual({
      settings: reported,
      unreported: ['users[].password'],
      version: 3,
      hash: canonicalHash(reported),
      readAt: expect.any(String),
    });
    expect(JSON.stringify(running)).not.toContain('per-Device-Secret-1');
    expect(running.hash).toBe(canonicalHash(reportableSettings(desired, running.unreported)));
    expect(driftedSettings(desired, running.settings, { unreported: running.unreported })).toEqual([]);

    device.tamperConfiguration({ ntp: { servers: ['192.0.2.66'] }, management: { passwordLogin: true } });
    const drifted = await adapter.readConfiguration(enrolledSession);
    expect(drifted.hash).not.toBe(running.hash);
    expect(driftedSettings(desired, drifted.settings, { unreported: drifted.unreported })).toEqual([
      'management.passwordLogin',
      'ntp.servers',
    ]);

    // Read-back is as protected as every other call after enrolment.
    await expect(adapter.readConfiguration({ address, pinnedCertificateFingerprint: enrolledSession.pinnedCertificateFingerprint })).rejects.toThrow();
  });

  it('reports a device with nothing applied yet as ConflictError on read-back', async () => {
    const { address } = await startDevice();
    await expect(adapter.readConfiguration({ address, credentials })).rejects.toBeInstanceOf(ConflictError);
  });

  it('refuses a wrong factory password with AuthenticationFailedError', async () => {
    const { address } = await startDevice();
    await expect(adapter.authenticate({ address, credentials: { ...credentials, password: 'wrong' } })).rejects.toBeInstanceOf(
      AuthenticationFailedError,
    );
  });

  it('reports a device locked out after repeated failed logins as DeviceUnavailableError (retryable)', async () => {
    const { address } = await startDevice({ lockoutMs: 60_000 });
    for (let i = 0; i < 5; i++) {
      await expect(adapter.authenticate({ address, credentials: { ...credentials, password: 'nope' } })).rejects.toBeInstanceOf(
        AuthenticationFailedError,
      );
    }
    const locked = await adapter.authenticate({ address, credentials }).catch((e: unknown) => e);
    expect(locked).toBeInstanceOf(DeviceUnavailableError);
    expect((locked as DeviceUnavailableError).retryable).toBe(true);
  });

  it('aborts with IdentityMismatchError on a pin mismatch before any request reaches the device', async () => {
    const { device, address } = await startDevice();
    const wrongPin = 'ab'.repeat(32);
    await expect(adapter.authenticate({ address, credentials, pinnedCertificateFingerprint: wrongPin })).rejects.toBeInstanceOf(
      IdentityMismatchError,
    );
    await expect(adapter.identify({ address, pinnedCertificateFingerprint: wrongPin })).rejects.toBeInstanceOf(IdentityMismatchError);
    expect(device.receivedRequests).toEqual([]);
  });

  it('accepts a pin written with colons and upper case', async () => {
    const { device, address } = await startDevice();
    const pin = new X509Certificate(await factoryCertificate(address)).fingerprint256;
    expect(pin).toContain(':');
    const identity = await adapter.identify({ address, pinnedCertificateFingerprint: pin });
    expect(identity.presentedCertificateFingerprint).toBe(device.factoryCertificateFingerprint);
  });

  it('surfaces a device answering 503 twice as DeviceUnavailableError, and succeeds once it recovers', async () => {
    const { address } = await startDevice({ faults: { failNext: { [deviceApiPaths.identity]: { count: 2, status: 503 } } } });
    for (let i = 0; i < 2; i++) {
      const error = await adapter.identify({ address }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DeviceUnavailableError);
      expect((error as DeviceUnavailableError).retryable).toBe(true);
    }
    await expect(adapter.identify({ address })).resolves.toMatchObject({ capabilities: expect.any(Array) });
  });

  it('reports a device that does not answer in time as DeviceUnavailableError', async () => {
    const { device, address } = await startDevice({ faults: { hang: [deviceApiPaths.identity] } });
    const impatient = new HttpsDeviceAdapter({ networks: testDeviceNetworks, requestTimeoutMs: 300 });
    await expect(impatient.identify({ address })).rejects.toThrow(DeviceUnavailableError);
    device.release();
  });

  it('reports a closed port as DeviceUnavailableError', async () => {
    const port = await freeLoopbackPort();
    await expect(adapter.identify({ address: `127.0.0.1:${port}` })).rejects.toBeInstanceOf(DeviceUnavailableError);
  });

  it('turns a configuration the device rejects into ConfigurationRejectedError carrying its field list', async () => {
    const { address } = await startDevice();
    const session = { address, credentials };
    const invalid = {
      ...configuration,
      settings: { ...configuration.settings, hostname: '-bad-', ntp: { servers: [] }, colour: 'blue' },
    };
    const error = await adapter.pushConfiguration(session, invalid).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigurationRejectedError);
    const fields = (error as ConfigurationRejectedError).fields.map((f) => f.field);
    expect(fields).toEqual(expect.arrayContaining(['settings.hostname', 'settings.ntp.servers', 'settings']));
  });

  it('installs the same certificate a second time as a no-op, as a retried activity would', async () => {
    const { device, address } = await startDevice();
    const { factorySession, enrolledSession, installation } = await enrol(address);
    // The retry is made with what the activity knew before: the factory pin and our client identity.
    await adapter.installCertificate({ ...factorySession, clientIdentity }, installation);
    await adapter.installCertificate(enrolledSession, installation);
    expect(device.certificateFingerprint).toBe(fingerprint(installation.certificatePem));
  });

  it('refuses a certificate that does not match the pending key with ConflictError', async () => {
    const { device, address } = await startDevice();
    const session = { address, credentials };
    await adapter.createCertificateSigningRequest(session, {
      commonName: device.serialNumber,
      keyAlgorithm: 'P-384',
      subjectAltNames: { dns: [], ip: [], uri: [] },
    });
    const foreign = ca.signDeviceCsr(ca.foreignCsr(device.serialNumber));
    const error = await adapter
      .installCertificate(session, { certificatePem: foreign, chainPem: [ca.intermediatePem], trustAnchorsPem: [ca.rootPem] })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConflictError);
    expect((error as ConflictError).retryable).toBe(false);
    expect(device.certificatePem).toBeUndefined();
  });

  it('after installation, refuses clients without a certificate, from another CA or without clientAuth', async () => {
    const { address } = await startDevice();
    const { enrolledSession } = await enrol(address);

    expect(await rawGet(address, clientIdentity)).toBe(200);
    expect(await rawGet(address)).toBe(401);
    await expect(rawGet(address, strangerCa.issueClientIdentity('intruder'))).rejects.toThrow();

    const { clientIdentity: _, ...withoutCertificate } = enrolledSession;
    await expect(adapter.selfTest({ ...withoutCertificate, credentials })).rejects.toBeInstanceOf(AuthenticationFailedError);
    // Node's TLS server drops an untrusted client without an alert, so this can only look like a
    // device hanging up on us: retryable, but named for what it probably is.
    await expect(
      adapter.selfTest({ ...enrolledSession, clientIdentity: strangerCa.issueClientIdentity('intruder') }),
    ).rejects.toThrow(/may not trust our client certificate/);
    await expect(rawGet(address, ca.issueClientIdentity('web-server', { purpose: 'serverAuth' }))).rejects.toThrow();
    await expect(
      adapter.selfTest({ ...enrolledSession, clientIdentity: ca.issueClientIdentity('web-server', { purpose: 'serverAuth' }) }),
    ).rejects.toThrow(/may not trust our client certificate/);
  });

  it('probes an enrolled device over mutual TLS without a password: its uptime and the certificate it presents', async () => {
    const { device, address } = await startDevice();
    const { enrolledSession, installation } = await enrol(address);
    const report = await adapter.probe({ ...enrolledSession, credentials });
    expect(report).toEqual({ uptimeSeconds: expect.any(Number), presentedCertificateFingerprint: fingerprint(installation.certificatePem) });

    // A device presenting another certificate is reported as such, and is sent nothing.
    const foreign = await device.presentForeignCertificate();
    const before = device.receivedRequests.length;
    expect(await adapter.probe(enrolledSession)).toEqual({ presentedCertificateFingerprint: foreign });
    expect(device.receivedRequests.length).toBe(before);
    await device.presentOwnCertificate();

    const { clientIdentity: _, ...withoutCertificate } = enrolledSession;
    await expect(adapter.probe({ ...withoutCertificate, credentials })).rejects.toBeInstanceOf(AuthenticationFailedError);
    await device.stop();
    await expect(adapter.probe(enrolledSession)).rejects.toBeInstanceOf(DeviceUnavailableError);
  });

  it('raises SelfTestFailedError naming the failed checks', async () => {
    const { device, address } = await startDevice();
    device.setFaults({ failSelfTest: true });
    const error = await adapter.selfTest({ address, credentials }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SelfTestFailedError);
    const failed = (error as SelfTestFailedError).fields.map((f) => f.field);
    expect(failed).toEqual(['configuration', 'ntp', 'firmware-integrity']);
  });

  it('provisions a device without certificates over password login alone', async () => {
    const { device, address } = await startDevice();
    const identity = await adapter.identify({ address });
    const session = { address, credentials, pinnedCertificateFingerprint: identity.presentedCertificateFingerprint };
    await adapter.authenticate(session);
    await adapter.pushConfiguration(session, {
      ...configuration,
      settings: { ...configuration.settings, management: { httpEnabled: false, passwordLogin: true } },
    });
    await expect(adapter.selfTest(session)).resolves.toMatchObject({ passed: true });
    await adapter.activate(session);
    expect(device.state).toBe('active');
  });
});

function factoryCertificate(address: string): Promise<string> {
  const [host, port] = address.split(':');
  return new Promise((resolve, reject) => {
    const req = https.request({ host, port: Number(port), path: deviceApiPaths.identity, rejectUnauthorized: false, agent: false });
    req.on('response', (res) => {
      const der = (res.socket as import('node:tls').TLSSocket).getPeerX509Certificate()!.toString();
      res.resume();
      res.on('end', () => resolve(der));
    });
    req.on('error', reject);
    req.end();
  });
}

