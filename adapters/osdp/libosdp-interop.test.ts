/**
 * The adapter against LibOSDP, the C reference implementation of OSDP, as the reader: proves the
 * codec, secure channel, KEYSET and COMSET interoperate with an implementation other than our own
 * simulator. Runs when OSDP_LIBOSDP_PYTHON names a Python interpreter with `libosdp` installed
 * (e.g. a venv after `pip install libosdp`); skipped otherwise.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { memoryDeviceSecrets } from '../../custody/device-secrets';
import { AuthenticationFailedError } from '../../foundation/errors';
import { startPtyPair, type PtyPair } from '../../scripts/simulators/osdp-reader';
import { OsdpReaderAdapter, scbkSecretPurpose } from './index';

const python = process.env.OSDP_LIBOSDP_PYTHON;
const script = path.resolve(import.meta.dirname, '../../scripts/simulators/libosdp-reader.py');
const adapter = new OsdpReaderAdapter({ replyTimeoutMs: 1_500 });

interface LibosdpReader {
  address: string;
  events: Record<string, unknown>[];
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startLibosdpReader(pdAddress: number, scbk?: Uint8Array): Promise<LibosdpReader> {
  const bus: PtyPair = await startPtyPair();
  cleanups.push(() => bus.close());
  const args = [script, bus.readerPath, String(pdAddress), ...(scbk ? [Buffer.from(scbk).toString('hex')] : [])];
  const child: ChildProcessWithoutNullStreams = spawn(python!, args, { stdio: 'pipe' });
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
        child.once('exit', () => {
          clearTimeout(timer);
          resolve();
        });
        child.kill('SIGTERM');
      }),
  );
  const events: Record<string, unknown>[] = [];
  const ready = new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`libosdp reader exited with ${code}`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const event = JSON.parse(line) as Record<string, unknown>;
      events.push(event);
      if (event.event === 'ready') resolve();
    });
  });
  await ready;
  return { address: `${bus.controlPanelPath}@0x${pdAddress.toString(16).padStart(2, '0')}`, events };
}

describe.skipIf(!python || !existsSync(python))('OSDP reader adapter against LibOSDP', () => {
  it('provisions a LibOSDP reader in install mode: the key it receives is exactly the sealed one, then only that key works', async () => {
    const reader = await startLibosdpReader(0x65);
    const secrets = memoryDeviceSecrets();
    const session = { address: reader.address, secrets };

    await expect(adapter.identify(session)).resolves.toMatchObject({ serialNumber: '12345678', firmwareVersion: '1.2.3', deviceType: 'card_reader' });
    await adapter.authenticate(session);
    await adapter.pushConfiguration(session, { templateId: 'osdp-reader', version: 1, settings: { secureChannel: { required: true } } });
    const keyset = reader.events.find((event) => event.event === 'keyset');
    expect(keyset?.scbk).toBe(Buffer.from(secrets.store.get(scbkSecretPurpose)!).toString('hex'));
    await expect(adapter.selfTest(session)).resolves.toMatchObject({ passed: true });
    await adapter.activate(session);
    await adapter.authenticate(session);
  });

  it('moves a LibOSDP reader to a new PD address with COMSET inside the secure channel', async () => {
    const reader = await startLibosdpReader(0x65);
    const secrets = memoryDeviceSecrets();
    await adapter.pushConfiguration({ address: reader.address, secrets }, { templateId: 'osdp-reader', version: 1, settings: { pdAddress: 0x22, secureChannel: { required: true } } });
    expect(reader.events).toContainEqual({ event: 'comset', address: 0x22, baudRate: 9600 });
    await expect(adapter.selfTest({ address: reader.address.replace(/@0x65$/, '@0x22'), secrets })).resolves.toMatchObject({ passed: true });
  });

  it('refuses a LibOSDP reader that holds another SCBK with AuthenticationFailedError', async () => {
    const reader = await startLibosdpReader(0x65, new Uint8Array(Buffer.alloc(16, 0x13)));
    const secrets = memoryDeviceSecrets(new Map([[scbkSecretPurpose, new Uint8Array(Buffer.alloc(16, 0x42))]]));
    await expect(adapter.authenticate({ address: reader.address, secrets })).rejects.toThrow(AuthenticationFailedError);
  });

  it('rotates the SCBK of a LibOSDP reader by KEYSET: a channel opens with the new key, the old one is refused', async () => {
    const key = new Uint8Array(Buffer.alloc(16, 0x42));
    const reader = await startLibosdpReader(0x65, key);
    const secrets = memoryDeviceSecrets(new Map([[scbkSecretPurpose, key]]));
    await adapter.rotateCredentials({ address: reader.address, secrets });
    const fresh = secrets.store.get(scbkSecretPurpose)!;
    expect(reader.events.filter((event) => event.event === 'keyset').at(-1)?.scbk).toBe(Buffer.from(fresh).toString('hex'));
    await adapter.authenticate({ address: reader.address, secrets: memoryDeviceSecrets(new Map([[scbkSecretPurpose, fresh]])) });
    await expect(adapter.authenticate({ address: reader.address, secrets: memoryDeviceSecrets(new Map([[scbkSecretPurpose, key]])) })).rejects.toThrow(
      AuthenticationFailedError,
    );
  });

  it('authenticates with the per-device key to a LibOSDP reader that holds it', async () => {
    const key = new Uint8Array(Buffer.alloc(16, 0x42));
    const reader = await startLibosdpReader(0x65, key);
    await adapter.authenticate({ address: reader.address, secrets: memoryDeviceSecrets(new Map([[scbkSecretPurpose, key]])) });
  });
});
