import { afterEach, describe, expect, it } from 'vitest';
import { memoryDeviceSecrets } from '../../custody/device-secrets';
import {
  AuthenticationFailedError,
  ConfigurationRejectedError,
  DeviceUnavailableError,
  NotImplementedError,
  PolicyViolationError,
  SelfTestFailedError,
  ValidationError,
} from '../../foundation/errors';
import { startOsdpReader, type OsdpReaderOptions, type RunningOsdpReader } from '../../scripts/simulators/osdp-reader';
import type { DeviceConfiguration, DeviceSession } from '../device-adapter';
import { defaultOsdpReaderSettings, formatReaderAddress, OsdpReaderAdapter, parseReaderAddress, scbkSecretPurpose } from './index';
import { defaultScbk } from './secure-channel';

// Short reply timeout: the silent-reader cases should not take seconds each.
const adapter = new OsdpReaderAdapter({ replyTimeoutMs: 400 });
const readers: RunningOsdpReader[] = [];

afterEach(async () => {
  await Promise.all(readers.splice(0).map((reader) => reader.close()));
});

async function startReader(options: OsdpReaderOptions = {}) {
  const reader = await startOsdpReader({ serialNumber: 0x00c0ffee, ...options });
  readers.push(reader);
  return reader;
}

function configuration(settings: Partial<{ pdAddress: number; baudRate: number }> = {}): DeviceConfiguration {
  return {
    templateId: 'osdp-reader-default',
    version: 2,
    settings: { pdAddress: 0x65, baudRate: 9600, secureChannel: { required: true }, ...settings },
  };
}

const sameAddressAt = (address: string, pdAddress: number) => formatReaderAddress({ ...parseReaderAddress(address), pdAddress });

describe('OSDP reader adapter against the simulated reader', () => {
  it('provisions a factory-fresh reader: identify, SCBK-D, KEYSET of the sealed key, self-test, activate, then its own key', async () => {
    const reader = await startReader();
    const secrets = memoryDeviceSecrets();
    const session: DeviceSession = { address: reader.address, secrets };

    const identity = await adapter.identify(session);
    expect(identity).toEqual({
      serialNumber: '00C0FFEE',
      manufacturer: 'Provisioning reference reader',
      model: 'model 1 version 2',
      firmwareVersion: '3.1.7',
      deviceType: 'card_reader',
      capabilities: ['buzzer-control', 'card-reading', 'led-control', 'osdp-crc16', 'osdp-secure-channel'],
    });
    expect(identity.serialNumber).toBe(reader.serialNumber);
    expect(identity).not.toHaveProperty('macAddress');
    expect(identity.capabilities).not.toContain('certificate-enrolment');

    await adapter.authenticate(session);
    expect(reader.state().secureChannelsEstablished).toEqual(['scbk-d']);

    const receipt = await adapter.pushConfiguration(session, configuration());
    expect(receipt.version).toBe(2);
    expect(receipt.hash).toMatch(/^[0-9a-f]{64}$/);
    const installed = reader.state().scbk!;
    const sealed = secrets.store.get(scbkSecretPurpose)!;
    expect(installed).toBeDefined();
    expect(Buffer.from(installed)).toEqual(Buffer.from(sealed));
    expect(Buffer.from(installed)).not.toEqual(Buffer.from(defaultScbk));
    expect(reader.state().installMode).toBe(false);
    // The key never appears in the receipt.
    expect(JSON.stringify(receipt)).not.toContain(Buffer.from(installed).toString('hex'));

    const report = await adapter.selfTest(session);
    expect(report.passed).toBe(true);
    expect(report.checks.map((c) => [c.name, c.passed])).toEqual([
      ['secure-channel-device-key', true],
      ['secure-poll', true],
      ['secure-identify', true],
      ['install-mode-closed', true],
    ]);

    await adapter.activate(session);

    const before = reader.state().secureChannelsEstablished.length;
    await adapter.authenticate(session);
    expect(reader.state().secureChannelsEstablished.slice(before)).toEqual(['scbk']);
  });

  it('gives the same receipt hash for the same settings and a different one when they change', async () => {
    const reader = await startReader();
    const session = { address: reader.address, secrets: memoryDeviceSecrets() };
    const first = await adapter.pushConfiguration(session, configuration());
    const again = await adapter.pushConfiguration(session, configuration());
    expect(again.hash).toBe(first.hash);
    const moved = await adapter.pushConfiguration(session, configuration({ baudRate: 38400 }));
    expect(moved.hash).not.toBe(first.hash);
  });

  it('repeats pushConfiguration safely when the reader already holds the new key (SCBK-D refused, own key accepted)', async () => {
    const reader = await startReader();
    const secrets = memoryDeviceSecrets();
    const session = { address: reader.address, secrets };
    await adapter.pushConfiguration(session, configuration());
    const keyAfterFirst = Buffer.from(reader.state().scbk!);
    const keysetsBefore = reader.state().commandsReceived.filter((code) => code === 0x75).length;

    await adapter.pushConfiguration(session, configuration());
    expect(Buffer.from(reader.state().scbk!)).toEqual(keyAfterFirst);
    expect(reader.state().commandsReceived.filter((code) => code === 0x75).length).toBe(keysetsBefore);
    expect(reader.state().secureChannelsEstablished.at(-1)).toBe('scbk');
  });

  it('leaves address and speed as they are under the built-in template, which names neither', async () => {
    const reader = await startReader({ pdAddress: 0x31 });
    const session = { address: reader.address, secrets: memoryDeviceSecrets() };
    const receipt = await adapter.pushConfiguration(session, { templateId: 'osdp-reader', version: 1, settings: { ...defaultOsdpReaderSettings } });
    expect(reader.state()).toMatchObject({ pdAddress: 0x31, baudRate: 9600, installMode: false });
    expect(reader.state().commandsReceived).not.toContain(0x6e);
    const explicit = await adapter.pushConfiguration(session, configuration({ pdAddress: 0x31 }));
    expect(explicit.hash).toBe(receipt.hash);
  });

  it('moves the reader to its configured PD address with COMSET and finds it there on a retry', async () => {
    const reader = await startReader();
    const secrets = memoryDeviceSecrets();
    const oldAddress = reader.address;
    await adapter.pushConfiguration({ address: oldAddress, secrets }, configuration({ pdAddress: 0x22 }));
    expect(reader.state().pdAddress).toBe(0x22);
    const newAddress = sameAddressAt(oldAddress, 0x22);
    expect(reader.address).toBe(newAddress);

    await expect(adapter.authenticate({ address: oldAddress, secrets })).rejects.toThrow(DeviceUnavailableError);
    // The workflow retrying after a lost COM reply still holds the old address.
    await adapter.pushConfiguration({ address: oldAddress, secrets }, configuration({ pdAddress: 0x22 }));
    await expect(adapter.selfTest({ address: newAddress, secrets })).resolves.toMatchObject({ passed: true });
  });

  it('turns a refused COMSET into ConfigurationRejectedError, with the new key already installed', async () => {
    const reader = await startReader({ faults: { rejectCommunicationSettings: true } });
    const secrets = memoryDeviceSecrets();
    await expect(adapter.pushConfiguration({ address: reader.address, secrets }, configuration({ baudRate: 115200 }))).rejects.toThrow(
      ConfigurationRejectedError,
    );
    expect(Buffer.from(reader.state().scbk!)).toEqual(Buffer.from(secrets.store.get(scbkSecretPurpose)!));
    expect(reader.state().baudRate).toBe(9600);
  });

  it('identifies a provisioned reader that answers only inside the secure channel, using its own key', async () => {
    const key = new Uint8Array(Buffer.alloc(16, 0x42));
    const reader = await startReader({ scbk: key, secureOnly: true });
    const secrets = memoryDeviceSecrets(new Map([[scbkSecretPurpose, key]]));
    await expect(adapter.identify({ address: reader.address })).rejects.toThrow(AuthenticationFailedError);
    await expect(adapter.identify({ address: reader.address, secrets })).resolves.toMatchObject({ serialNumber: '00C0FFEE' });
    expect(reader.state().secureChannelsEstablished).toEqual(['scbk']);
  });

  it('authenticates with the per-device key when the reader holds it and install mode is closed', async () => {
    const key = new Uint8Array(Buffer.alloc(16, 0x42));
    const reader = await startReader({ scbk: key });
    const secrets = memoryDeviceSecrets(new Map([[scbkSecretPurpose, key]]));
    await adapter.authenticate({ address: reader.address, secrets });
    expect(reader.state().secureChannelsEstablished).toEqual(['scbk']);
  });

  it('fails authentication with AuthenticationFailedError when the reader holds a key we do not know', async () => {
    const reader = await startReader({ scbk: new Uint8Array(Buffer.alloc(16, 0x13)) });
    const secrets = memoryDeviceSecrets(new Map([[scbkSecretPurpose, new Uint8Array(Buffer.alloc(16, 0x42))]]));
    await expect(adapter.authenticate({ address: reader.address, secrets })).rejects.toThrow(AuthenticationFailedError);
    await expect(adapter.authenticate({ address: reader.address, secrets: memoryDeviceSecrets() })).rejects.toThrow(AuthenticationFailedError);
    await expect(adapter.pushConfiguration({ address: reader.address, secrets }, configuration())).rejects.toThrow(AuthenticationFailedError);
    expect(reader.state().secureChannelsEstablished).toEqual([]);
  });

  it('fails authentication with AuthenticationFailedError when the reader proves a wrong cryptogram', async () => {
    const reader = await startReader({ faults: { wrongCryptogram: true } });
    const error = await adapter.authenticate({ address: reader.address, secrets: memoryDeviceSecrets() }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthenticationFailedError);
    expect((error as Error).message).not.toMatch(/303132/);
  });

  it('probes a provisioned reader with a POLL in the secure channel under its own key; silent or re-keyed, the probe fails', async () => {
    const reader = await startReader();
    const secrets = memoryDeviceSecrets();
    const session: DeviceSession = { address: reader.address, secrets };
    await adapter.pushConfiguration(session, configuration());
    await adapter.activate(session);

    const before = reader.state().secureChannelsEstablished.length;
    expect(await adapter.probe(session)).toEqual({});
    expect(reader.state().secureChannelsEstablished.slice(before)).toEqual(['scbk']);

    reader.faults.silent = true;
    await expect(adapter.probe(session)).rejects.toBeInstanceOf(DeviceUnavailableError);
    reader.faults.silent = false;
    await expect(adapter.probe({ address: reader.address, secrets: memoryDeviceSecrets() })).rejects.toBeInstanceOf(AuthenticationFailedError);
  });

  it('reports a reader that does not answer as DeviceUnavailableError (retryable)', async () => {
    const reader = await startReader({ faults: { silent: true } });
    const error = await adapter.identify({ address: reader.address }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DeviceUnavailableError);
    expect((error as DeviceUnavailableError).retryable).toBe(true);
    expect((error as Error).message).toMatch(/did not answer within 400 ms/);
  });

  it('reports a reply with a corrupted CRC as DeviceUnavailableError naming the CRC', async () => {
    const reader = await startReader({ faults: { corruptCrc: true } });
    await expect(adapter.identify({ address: reader.address })).rejects.toThrow(/corrupted reply \(CRC/);
    await expect(adapter.identify({ address: reader.address })).rejects.toThrow(DeviceUnavailableError);
  });

  it('reports a truncated reply as DeviceUnavailableError naming the truncation', async () => {
    const reader = await startReader({ faults: { truncate: true } });
    await expect(adapter.authenticate({ address: reader.address, secrets: memoryDeviceSecrets() })).rejects.toThrow(/truncated reply/);
  });

  it('recovers once a misbehaving reader answers properly again', async () => {
    const reader = await startReader({ faults: { corruptCrc: true } });
    await expect(adapter.identify({ address: reader.address })).rejects.toThrow(DeviceUnavailableError);
    reader.faults.corruptCrc = false;
    await expect(adapter.identify({ address: reader.address })).resolves.toMatchObject({ serialNumber: '00C0FFEE' });
  });

  it('reports exactly the serial number the reader sends, so a swapped reader is noticed', async () => {
    const reader = await startReader({ faults: { reportedSerialNumber: 0x1234abcd } });
    const identity = await adapter.identify({ address: reader.address });
    expect(identity.serialNumber).toBe('1234ABCD');
    expect(identity.serialNumber).not.toBe(reader.serialNumber);
  });

  it('fails the self-test when the reader still accepts SCBK-D after its key was set, and refuses to activate it', async () => {
    const reader = await startReader({ faults: { keepInstallMode: true } });
    const session = { address: reader.address, secrets: memoryDeviceSecrets() };
    await adapter.pushConfiguration(session, configuration());
    const error = await adapter.selfTest(session).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SelfTestFailedError);
    expect((error as SelfTestFailedError).fields.map((f) => f.field)).toEqual(['install-mode-closed']);
    await expect(adapter.activate(session)).rejects.toThrow(PolicyViolationError);
  });

  it('fails the self-test when no per-device key was ever installed', async () => {
    const reader = await startReader();
    const error = await adapter.selfTest({ address: reader.address, secrets: memoryDeviceSecrets() }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SelfTestFailedError);
    expect((error as SelfTestFailedError).fields.map((f) => f.field).sort()).toEqual(['install-mode-closed', 'secure-channel-device-key']);
  });

  it('refuses invalid settings with a ValidationError naming the field, before touching the reader', async () => {
    const reader = await startReader();
    const session = { address: reader.address, secrets: memoryDeviceSecrets() };
    const error = await adapter.pushConfiguration(session, configuration({ pdAddress: 0x7f })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).fields.map((f) => f.field)).toEqual(['settings.pdAddress']);
    await expect(
      adapter.pushConfiguration(session, { ...configuration(), settings: { pdAddress: 1, baudRate: 9600, secureChannel: { required: false } } }),
    ).rejects.toThrow(ValidationError);
    expect(reader.state().commandsReceived).toEqual([]);
  });

  it('reports an unopenable serial port as DeviceUnavailableError', async () => {
    await expect(adapter.identify({ address: '/tmp/no-such-osdp-port/ttyCP@0x65' })).rejects.toThrow(DeviceUnavailableError);
  });

  it('throws NotImplementedError for certificate enrolment: readers hold no X.509 certificate', async () => {
    await expect(
      adapter.createCertificateSigningRequest({ address: '/dev/ttyUSB0@1' }, { commonName: 'x', keyAlgorithm: 'P-256', subjectAltNames: { dns: [], ip: [], uri: [] } }),
    ).rejects.toThrow(NotImplementedError);
    await expect(adapter.installCertificate({ address: '/dev/ttyUSB0@1' }, { certificatePem: '', chainPem: [], trustAnchorsPem: [] })).rejects.toThrow(NotImplementedError);
  });
});

describe('OSDP reader SCBK: rotation and hand-back against the simulated reader', () => {
  async function provisioned() {
    const reader = await startReader();
    const secrets = memoryDeviceSecrets();
    const session: DeviceSession = { address: reader.address, secrets };
    await adapter.pushConfiguration(session, configuration());
    await adapter.activate(session);
    return { reader, secrets, session };
  }
  const withKey = (address: string, key: Uint8Array) => ({ address, secrets: memoryDeviceSecrets(new Map([[scbkSecretPurpose, key]])) });

  it('rotates the SCBK by KEYSET in the secure channel: a channel opens with the new key, the old key is refused', async () => {
    const { reader, secrets, session } = await provisioned();
    const old = secrets.store.get(scbkSecretPurpose)!;

    expect(await adapter.rotateCredentials(session)).toEqual({ rotated: ['OSDP secure channel base key (SCBK)'] });

    const fresh = secrets.store.get(scbkSecretPurpose)!;
    expect(Buffer.from(fresh)).not.toEqual(Buffer.from(old));
    expect(Buffer.from(reader.state().scbk!)).toEqual(Buffer.from(fresh));
    expect(secrets.store.has(`${scbkSecretPurpose}:pending`)).toBe(false);
    await adapter.authenticate(withKey(reader.address, fresh));
    await expect(adapter.authenticate(withKey(reader.address, old))).rejects.toBeInstanceOf(AuthenticationFailedError);
    expect((await adapter.selfTest(session)).passed).toBe(true);
  });

  it('only proves and promotes the new key when the reader already took it before the vault was updated', async () => {
    const { reader, secrets, session } = await provisioned();
    const old = secrets.store.get(scbkSecretPurpose)!;
    await adapter.rotateCredentials(session);
    const fresh = secrets.store.get(scbkSecretPurpose)!;
    // What a crash between the KEYSET and the promotion leaves: the old key held, the new one pending.
    secrets.store.set(`${scbkSecretPurpose}:pending`, fresh);
    secrets.store.set(scbkSecretPurpose, old);
    const keysetsBefore = reader.state().commandsReceived.filter((code) => code === 0x75).length;

    await adapter.rotateCredentials(session);
    expect(Buffer.from(secrets.store.get(scbkSecretPurpose)!)).toEqual(Buffer.from(fresh));
    expect(reader.state().commandsReceived.filter((code) => code === 0x75).length).toBe(keysetsBefore);
  });

  it('hands the reader back to install mode (SCBK-D) only when asked, and a repeat finds it there', async () => {
    const { reader, secrets, session } = await provisioned();
    expect(await adapter.removeManagementAccess(session, {})).toEqual({ removed: [] });
    expect(reader.state().installMode).toBe(false);

    expect(await adapter.removeManagementAccess(session, { resetToInstallKey: true })).toEqual({
      removed: ['OSDP per-device SCBK (reader back in install mode)'],
    });
    expect(reader.state()).toMatchObject({ installMode: true });
    expect(reader.state().scbk).toBeUndefined();
    await expect(adapter.authenticate(withKey(reader.address, secrets.store.get(scbkSecretPurpose)!))).resolves.toBeUndefined();
    expect(reader.state().secureChannelsEstablished.at(-1)).toBe('scbk-d');
    expect(await adapter.removeManagementAccess(session, { resetToInstallKey: true })).toEqual({ removed: [] });
  });
});
