import { execFileSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  AuthenticationFailedError,
  ConfigurationRejectedError,
  ConflictError,
  DeviceUnavailableError,
  IdentityMismatchError,
  NotImplementedError,
  SelfTestFailedError,
  ValidationError,
} from '../../foundation/errors';
import { memoryDeviceSecrets } from '../../custody/device-secrets';
import type { CsrRequest, DeviceConfiguration, DeviceSession } from '../device-adapter';
import { OpensslTestCa } from '../../scripts/simulators/openssl-test-ca';
import { startBacnetDevice, type BacnetDeviceOptions, type SimulatedBacnetDevice } from '../../scripts/simulators/bacnet-device';
import { parseBacnetAddress } from './addresses';
import { withBacnetDevice } from './bacnet-call';
import { BacnetDeviceAdapter } from './index';
import { testDeviceNetworks } from '../../test/support/device-networks';
import { bacnetDeviceSettings, bacnetProtocolSettings } from './settings';

const password = 'Commission-42';
const adapter = new BacnetDeviceAdapter({ networks: testDeviceNetworks, apduTimeoutMs: 1500, iAmTimeoutMs: 400, localAddress: '127.0.0.1' });

const plainConfiguration: DeviceConfiguration = {
  templateId: 'bacnet-controller',
  version: 2,
  settings: {
    objectName: 'AHU-3 controller',
    location: 'Building A, plant room 3',
    description: 'air handling unit 3',
    utcOffsetMinutes: 60,
    synchroniseClock: true,
    apduTimeoutMs: 6000,
    apduRetries: 4,
  },
};

const scConfiguration: DeviceConfiguration = {
  templateId: 'bacnet-sc-controller',
  version: 5,
  settings: {
    ...plainConfiguration.settings,
    objectName: 'SC controller 7',
    secureConnect: { primaryHubUri: 'wss://hub-1.site.internal/hub', failoverHubUri: 'wss://hub-2.site.internal:8443/hub' },
  },
};

const csrRequest = (commonName: string): CsrRequest => ({
  commonName,
  keyAlgorithm: 'P-256',
  subjectAltNames: { dns: [`${commonName}.bacnet.site.internal`], ip: ['127.0.0.1'], uri: [] },
});

let ca: OpensslTestCa;
let scratch: string;
const devices: SimulatedBacnetDevice[] = [];

beforeAll(() => {
  ca = new OpensslTestCa('Building');
  scratch = mkdtempSync(path.join(os.tmpdir(), 'bacnet-adapter-test-'));
});

afterAll(() => {
  ca?.dispose();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

afterEach(async () => {
  await Promise.all(devices.splice(0).map((device) => device.close()));
});

let serial = 0;
async function startDevice(options: Partial<BacnetDeviceOptions> = {}): Promise<SimulatedBacnetDevice> {
  serial += 1;
  const device = await startBacnetDevice({ serialNumber: `BC-${String(serial).padStart(5, '0')}`, password, ...options });
  devices.push(device);
  return device;
}

function sessionFor(device: SimulatedBacnetDevice, extra: Partial<DeviceSession> = {}): DeviceSession {
  return { address: device.address, credentials: { username: '', password }, secrets: memoryDeviceSecrets(), ...extra };
}

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

function openssl(...args: string[]): string {
  return execFileSync('openssl', args, { cwd: scratch, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the call to fail');
}

function udpHandles(): number {
  return process.getActiveResourcesInfo().filter((resource) => resource === 'UDPWrap').length;
}

describe('BACnet/SC controller', () => {
  it('is provisioned end to end: CSR from its own key, certificate files installed and activated, hubs set, self-test and activation pass', async () => {
    const device = await startDevice({ scCapable: true, communication: 'disable-initiation' });
    const factoryCertificate = device.state().operationalCertificateFile!;

    const identity = await adapter.identify({ address: device.address });
    expect(identity).toMatchObject({
      serialNumber: device.serialNumber,
      manufacturer: 'Simulated Building Systems',
      model: 'SBS-SC-500',
      firmwareVersion: '4.2.1 (application app-2026.1)',
      deviceType: 'building_controller',
      presentedCertificateFingerprint: sha256(factoryCertificate),
    });
    expect(identity.capabilities).toEqual(expect.arrayContaining(['bacnet-ip', 'bacnet-sc', 'certificate-enrolment']));
    expect(identity).not.toHaveProperty('macAddress');

    await adapter.authenticate(sessionFor(device));
    // The password was proven with DeviceCommunicationControl(enable), which ends commissioning silence.
    expect(device.state().communication).toBe('enabled');

    const csrPem = await adapter.createCertificateSigningRequest(sessionFor(device), csrRequest('bc-sc-7'));
    const csrText = ca.verifyCsr(csrPem);
    expect(csrText).toMatch(/Subject:.*CN\s*=\s*bc-sc-7/);
    expect(csrText).toContain('DNS:bc-sc-7.bacnet.site.internal');
    expect(device.state().csrFile!.equals(Buffer.from(csrPem.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64'))).toBe(true);

    const certificatePem = ca.signDeviceCsr(csrPem);
    const ours = new X509Certificate(certificatePem);
    await adapter.installCertificate(sessionFor(device), {
      certificatePem,
      chainPem: [ca.intermediatePem, ca.rootPem],
      trustAnchorsPem: [ca.servicesIntermediatePem],
    });
    const state = device.state();
    expect(state.reinitializations).toContain(7);
    expect(state.activeCertificate!.equals(ours.raw)).toBe(true);

    // The files as the device holds them, checked with openssl rather than our own code.
    writeFileSync(path.join(scratch, 'operational.der'), state.operationalCertificateFile!);
    writeFileSync(path.join(scratch, 'issuer-1.der'), state.issuerCertificateFiles[0]);
    writeFileSync(path.join(scratch, 'issuer-2.der'), state.issuerCertificateFiles[1]);
    for (const name of ['operational', 'issuer-1', 'issuer-2']) {
      openssl('x509', '-inform', 'DER', '-in', `${name}.der`, '-out', `${name}.pem`);
    }
    expect(openssl('x509', '-in', 'operational.pem', '-noout', '-subject')).toMatch(/CN\s*=\s*bc-sc-7/);
    expect(openssl('x509', '-in', 'issuer-2.pem', '-noout', '-subject')).toMatch(/Building Root CA/);
    expect(openssl('verify', '-CAfile', 'issuer-2.pem', '-untrusted', 'issuer-1.pem', 'operational.pem')).toContain('operational.pem: OK');

    const pinned = { pinnedCertificateFingerprint: ours.fingerprint256 };
    const receipt = await adapter.pushConfiguration(sessionFor(device, pinned), scConfiguration);
    expect(receipt.version).toBe(5);
    expect(receipt.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(device.state()).toMatchObject({
      objectName: 'SC controller 7',
      location: 'Building A, plant room 3',
      utcOffset: -60,
      apduTimeout: 6000,
      apduRetries: 4,
      primaryHubUri: 'wss://hub-1.site.internal/hub',
      failoverHubUri: 'wss://hub-2.site.internal:8443/hub',
      changesPending: false,
    });
    expect(Math.abs(device.state().lastTimeSynchronisation!.getTime() - Date.now())).toBeLessThan(60_000);
    // The same settings read back the same: the receipt is a stable hash of the device's state.
    expect((await adapter.pushConfiguration(sessionFor(device, pinned), scConfiguration)).hash).toBe(receipt.hash);

    const report = await adapter.selfTest(sessionFor(device, pinned));
    expect(report.passed).toBe(true);
    expect(report.checks.map((check) => check.name)).toEqual(
      expect.arrayContaining(['communication-enabled', 'operational-certificate', 'operational-certificate-issuer', 'sc-primary-hub']),
    );

    // Identify holds the operational certificate to the pin, as the TLS adapters do.
    await expect(adapter.identify({ address: device.address, ...pinned })).resolves.toMatchObject({
      presentedCertificateFingerprint: sha256(ours.raw),
    });
    await expect(
      adapter.identify({ address: device.address, pinnedCertificateFingerprint: sha256(factoryCertificate) }),
    ).rejects.toBeInstanceOf(IdentityMismatchError);

    await adapter.activate(sessionFor(device, pinned));
    expect(device.state().communication).toBe('enabled');
  });

  it('does not take a certificate written but never activated for an installed one, and a repeated install finishes it', async () => {
    const device = await startDevice({ scCapable: true });
    const csrPem = await adapter.createCertificateSigningRequest(sessionFor(device), csrRequest('bc-sc-10'));
    const certificatePem = ca.signDeviceCsr(csrPem);
    const ours = new X509Certificate(certificatePem);
    // An install that stopped after writing the file, before ReinitializeDevice.
    await withBacnetDevice(parseBacnetAddress(device.address), { apduTimeoutMs: 1500, iAmTimeoutMs: 400, localAddress: '127.0.0.1' }, (call) =>
      call.replaceFile({ type: 10, instance: 1 }, ours.raw, 'store the operational certificate'),
    );
    const pinned = { address: device.address, pinnedCertificateFingerprint: ours.fingerprint256 };
    await expect(adapter.identify(pinned)).rejects.toThrow(/pending activation/);
    expect(device.state().activeCertificate!.equals(ours.raw)).toBe(false);

    const installation = { certificatePem, chainPem: [ca.intermediatePem, ca.rootPem], trustAnchorsPem: [] };
    await adapter.installCertificate(sessionFor(device), installation);
    await adapter.installCertificate(sessionFor(device), installation);
    await expect(adapter.identify(pinned)).resolves.toMatchObject({ presentedCertificateFingerprint: sha256(ours.raw) });
    expect(device.state().activeCertificate!.equals(ours.raw)).toBe(true);
  });

  it('refuses a certificate issued for another key with ConflictError and keeps the one it had', async () => {
    const device = await startDevice({ scCapable: true });
    const before = device.state().activeCertificate!;
    await adapter.createCertificateSigningRequest(sessionFor(device), csrRequest('bc-sc-8'));
    const foreign = ca.signDeviceCsr(ca.foreignCsr('bc-sc-8'));
    const error = await rejection(
      adapter.installCertificate(sessionFor(device), { certificatePem: foreign, chainPem: [ca.intermediatePem, ca.rootPem], trustAnchorsPem: [] }),
    );
    expect(error).toBeInstanceOf(ConflictError);
    expect(device.state().activeCertificate!.equals(before)).toBe(true);
  });

  it('fails its self-test while no hub is configured and the certificate is still the factory one', async () => {
    const device = await startDevice({ scCapable: true });
    const error = await rejection(adapter.selfTest(sessionFor(device)));
    expect(error).toBeInstanceOf(SelfTestFailedError);
    expect((error as SelfTestFailedError).retryable).toBe(true);
    expect((error as SelfTestFailedError).fields.map((f) => f.field)).toEqual(
      expect.arrayContaining(['operational-certificate-issuer', 'sc-primary-hub']),
    );
  });
});

describe('plain BACnet/IP controller', () => {
  it('is provisioned without certificate steps: identify, authenticate, configure, self-test, activate', async () => {
    const device = await startDevice();
    const identity = await adapter.identify({ address: device.address });
    expect(identity).toMatchObject({ serialNumber: device.serialNumber, model: 'SBS-IP-100', deviceType: 'building_controller' });
    expect(identity.capabilities).toEqual(['bacnet-ip', 'bacnet-protocol-revision-19']);
    expect(identity).not.toHaveProperty('presentedCertificateFingerprint');
    expect(identity).not.toHaveProperty('macAddress');

    await adapter.authenticate(sessionFor(device));
    await expect(adapter.createCertificateSigningRequest(sessionFor(device), csrRequest('bc-plain'))).rejects.toBeInstanceOf(
      NotImplementedError,
    );
    await expect(
      adapter.installCertificate(sessionFor(device), { certificatePem: ca.rootPem, chainPem: [], trustAnchorsPem: [] }),
    ).rejects.toBeInstanceOf(NotImplementedError);

    const receipt = await adapter.pushConfiguration(sessionFor(device), plainConfiguration);
    expect(receipt).toMatchObject({ version: 2, hash: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(device.state()).toMatchObject({
      objectName: 'AHU-3 controller',
      description: 'air handling unit 3',
      utcOffset: -60,
      apduTimeout: 6000,
      apduRetries: 4,
    });
    // Nothing on a network port changed, so nothing needed a ReinitializeDevice.
    expect(device.state().reinitializations).toEqual([]);

    await expect(adapter.selfTest(sessionFor(device))).resolves.toMatchObject({ passed: true });
    await adapter.activate(sessionFor(device));
    expect(device.state().communication).toBe('enabled');
  });

  it('is probed with ReadProperty System_Status once active, and a silent one fails the probe as unavailable', async () => {
    const device = await startDevice();
    await adapter.pushConfiguration(sessionFor(device), plainConfiguration);
    await adapter.activate(sessionFor(device));
    expect(await adapter.probe(sessionFor(device))).toEqual({});
    device.faults.silent = true;
    await expect(adapter.probe(sessionFor(device))).rejects.toBeInstanceOf(DeviceUnavailableError);
  });

  it('refuses BACnet/SC hub settings for a device without a Secure Connect port', async () => {
    const device = await startDevice();
    const error = await rejection(adapter.pushConfiguration(sessionFor(device), scConfiguration));
    expect(error).toBeInstanceOf(ConfigurationRejectedError);
    expect((error as ConfigurationRejectedError).fields[0].field).toBe('settings.secureConnect');
  });

  it('turns a setting the device refuses into ConfigurationRejectedError naming the setting', async () => {
    const device = await startDevice();
    const settings = { ...plainConfiguration.settings, location: 'L'.repeat(100) };
    const error = await rejection(adapter.pushConfiguration(sessionFor(device), { ...plainConfiguration, settings }));
    expect(error).toBeInstanceOf(ConfigurationRejectedError);
    expect((error as ConfigurationRejectedError).fields[0].field).toBe('settings.location');
    expect(error.message).toContain('valueOutOfRange');
  });

  it('refuses settings outside its schema before anything is written', async () => {
    const device = await startDevice();
    const error = await rejection(
      adapter.pushConfiguration(sessionFor(device), { ...plainConfiguration, settings: { objectName: 'x', apduRetries: 99 } }),
    );
    expect(error).toBeInstanceOf(ValidationError);
    expect(device.state().objectName).not.toBe('x');
  });
});

describe('bad peers', () => {
  it('answers a wrong password with AuthenticationFailedError, never retried, without echoing the password', async () => {
    const device = await startDevice({ scCapable: true });
    const wrong = { address: device.address, credentials: { username: '', password: 'not-the-password' } };
    const error = await rejection(adapter.authenticate(wrong));
    expect(error).toBeInstanceOf(AuthenticationFailedError);
    expect((error as AuthenticationFailedError).retryable).toBe(false);
    expect(error.message).toContain('passwordFailure');
    expect(error.message).not.toContain('not-the-password');
    expect(device.state().passwordFailures).toBe(1);

    // Activating a certificate is password-checked the same way.
    const csrPem = await adapter.createCertificateSigningRequest(wrong, csrRequest('bc-sc-9'));
    const install = adapter.installCertificate(wrong, {
      certificatePem: ca.signDeviceCsr(csrPem),
      chainPem: [ca.intermediatePem, ca.rootPem],
      trustAnchorsPem: [],
    });
    await expect(install).rejects.toBeInstanceOf(AuthenticationFailedError);
  });

  it('reports a silent device as a retryable DeviceUnavailableError after the APDU timeout', async () => {
    const device = await startDevice({ faults: { silent: true } });
    const started = Date.now();
    const error = await rejection(adapter.identify({ address: device.address }));
    expect(error).toBeInstanceOf(DeviceUnavailableError);
    expect((error as DeviceUnavailableError).retryable).toBe(true);
    expect(error.message).toContain('did not answer');
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('reports a truncated APDU as a retryable DeviceUnavailableError that names the malformed frame', async () => {
    const device = await startDevice({ faults: { malformedReplies: 'truncated-apdu' } });
    const error = await rejection(adapter.identify({ address: device.address }));
    expect(error).toBeInstanceOf(DeviceUnavailableError);
    expect(error.message).toContain('malformed BACnet frame');
    // The process survived the frame, and the next call to a mended device works.
    device.faults.malformedReplies = undefined;
    await expect(adapter.identify({ address: device.address })).resolves.toMatchObject({ serialNumber: device.serialNumber });
  });

  it('treats a port that answers with something other than BACnet/IP as a wrong address', async () => {
    const device = await startDevice({ faults: { malformedReplies: 'not-bacnet' } });
    const error = await rejection(adapter.identify({ address: device.address }));
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).fields[0].field).toBe('address');
  });

  it('reports the serial number the device holds, so another unit at the address fails the identity check', async () => {
    const device = await startDevice({ faults: { reportedSerialNumber: 'BC-SOMEONE-ELSE' } });
    const identity = await adapter.identify({ address: device.address });
    expect(identity.serialNumber).toBe('BC-SOMEONE-ELSE');
    expect(identity.serialNumber).not.toBe(device.serialNumber);
  });

  it('refuses a device that answers Who-Is as another instance with IdentityMismatchError', async () => {
    const device = await startDevice({ instance: 4711, faults: { answerAsInstance: 815 } });
    const error = await rejection(adapter.identify({ address: device.address }));
    expect(error).toBeInstanceOf(IdentityMismatchError);
    expect(error.message).toContain('815');
  });

  it('closes its UDP socket after every call, whether it succeeded or timed out', async () => {
    const device = await startDevice();
    const silent = await startDevice({ faults: { silent: true } });
    // Sockets of earlier tests may still be closing; a leak would only ever add to the count.
    await new Promise((resolve) => setTimeout(resolve, 50));
    const before = udpHandles();
    await adapter.identify({ address: device.address });
    await rejection(adapter.authenticate(sessionFor(silent)));
    await adapter.selfTest(sessionFor(device));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(udpHandles()).toBeLessThanOrEqual(before);
  });
});

describe('many devices at once', () => {
  it('identifies devices in parallel, each on its own loopback address and port, without crossed answers', async () => {
    const fleet = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => startDevice({ scCapable: i % 2 === 0 })));
    expect(new Set(fleet.map((device) => `${device.host}:${device.port}`)).size).toBe(fleet.length);
    const identities = await Promise.all(fleet.map((device) => adapter.identify({ address: device.address })));
    identities.forEach((identity, i) => {
      expect(identity.serialNumber).toBe(fleet[i].serialNumber);
      expect(identity.capabilities.includes('certificate-enrolment')).toBe(i % 2 === 0);
    });
  });
});

describe('BACnet settings', () => {
  it('require a device certificate only when BACnet/SC hubs are configured', () => {
    expect(bacnetProtocolSettings.requiresDeviceCertificate(plainConfiguration.settings)).toBeUndefined();
    expect(bacnetProtocolSettings.requiresDeviceCertificate(scConfiguration.settings)).toContain('BACnet/SC');
  });

  it('accept the example configurations and refuse a hub that is not wss://', () => {
    expect(bacnetDeviceSettings.safeParse(plainConfiguration.settings).success).toBe(true);
    expect(bacnetDeviceSettings.safeParse(scConfiguration.settings).success).toBe(true);
    const insecure = { ...scConfiguration.settings, secureConnect: { primaryHubUri: 'ws://hub.site.internal/' } };
    expect(bacnetDeviceSettings.safeParse(insecure).success).toBe(false);
  });
});
