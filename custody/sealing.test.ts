import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { ConfigurationError } from '../foundation/errors';
import type { Logger } from '../foundation/logger';
import { associatedData, keyEncryptionKeyFileName, readKeyEncryptionKey, Sealer, SealedValueError } from './sealing';

/** The Sealer the service builds from its configured or generated key-encryption key. */
const loadKeyEncryptionKey = async (...args: Parameters<typeof readKeyEncryptionKey>) => new Sealer(await readKeyEncryptionKey(...args));

function quietLogger() {
  return { warn: vi.fn(), info: vi.fn() } as unknown as Logger & { warn: ReturnType<typeof vi.fn> };
}

function temporaryDirectory() {
  return mkdtempSync(path.join(process.env.TEST_WORK_DIR ?? os.tmpdir(), 'kek-'));
}

describe('Sealer', () => {
  const sealer = new Sealer(randomBytes(32));
  const plaintext = Buffer.from('the device password is hunter2');
  const binding = associatedData('device-secret', 'acme', 'cam-1', 'initial-credentials');

  it('opens what it sealed when given the same associated data', () => {
    const blob = sealer.seal(plaintext, binding);
    expect(sealer.unseal(blob, binding)).toEqual(plaintext);
  });

  it('writes version | iv | tag | ciphertext and never the plaintext', () => {
    const blob = sealer.seal(plaintext, binding);
    expect(blob[0]).toBe(1);
    expect(blob.length).toBe(1 + 12 + 16 + plaintext.length);
    expect(blob.includes(plaintext)).toBe(false);
  });

  it('uses a fresh IV for every seal', () => {
    expect(sealer.seal(plaintext, binding).equals(sealer.seal(plaintext, binding))).toBe(false);
  });

  it.each([
    ['the version', 0],
    ['the IV', 5],
    ['the tag', 20],
    ['the ciphertext', 30],
  ])('refuses a blob with a byte flipped in %s', (_part, offset) => {
    const blob = sealer.seal(plaintext, binding);
    blob[offset]! ^= 0x01;
    expect(() => sealer.unseal(blob, binding)).toThrow(SealedValueError);
  });

  it('refuses a truncated blob', () => {
    const blob = sealer.seal(plaintext, binding);
    expect(() => sealer.unseal(blob.subarray(0, 20), binding)).toThrow(SealedValueError);
    expect(() => sealer.unseal(blob.subarray(0, blob.length - 1), binding)).toThrow(SealedValueError);
  });

  it('refuses to open a value with associated data of another row or purpose', () => {
    const blob = sealer.seal(plaintext, binding);
    expect(() => sealer.unseal(blob, associatedData('device-secret', 'acme', 'cam-2', 'initial-credentials'))).toThrow(
      SealedValueError,
    );
    expect(() => sealer.unseal(blob, associatedData('device-secret', 'acme', 'cam-1', 'other'))).toThrow(SealedValueError);
  });

  it('refuses to open a value sealed under another key', () => {
    const blob = sealer.seal(plaintext, binding);
    expect(() => new Sealer(randomBytes(32)).unseal(blob, binding)).toThrow(SealedValueError);
  });

  it('keeps associated data parts from running into each other', () => {
    expect(associatedData('a', 'bc')).not.toBe(associatedData('ab', 'c'));
    expect(associatedData('a|b', 'c')).not.toBe(associatedData('a', 'b|c'));
  });

  it('derives a stable key id that does not reveal the key', () => {
    const key = randomBytes(32);
    const id = new Sealer(key).keyId;
    expect(id).toMatch(/^[0-9a-f]{16}$/);
    expect(new Sealer(key).keyId).toBe(id);
    expect(new Sealer(randomBytes(32)).keyId).not.toBe(id);
    expect(key.toString('hex')).not.toContain(id);
  });

  it('rejects a key that is not 32 bytes', () => {
    expect(() => new Sealer(randomBytes(16))).toThrow(ConfigurationError);
  });
});

describe('readKeyEncryptionKey', () => {
  it('uses the configured key', async () => {
    const key = randomBytes(32);
    const logger = quietLogger();
    const sealer = await loadKeyEncryptionKey({ keyEncryptionKey: key.toString('base64'), dataDir: temporaryDirectory() }, logger);
    expect(sealer.keyId).toBe(new Sealer(key).keyId);
    expect(logger.warn).not.toHaveBeenCalled();
  });

  it.each([
    ['too short', randomBytes(31).toString('base64')],
    ['too long', randomBytes(33).toString('base64')],
    ['not base64', '!'.repeat(44)],
  ])('rejects a configured key that is %s', async (_case, value) => {
    await expect(loadKeyEncryptionKey({ keyEncryptionKey: value, dataDir: temporaryDirectory() }, quietLogger())).rejects.toThrow(
      ConfigurationError,
    );
  });

  it('creates a private key file once, warns that it is for development, and reuses it', async () => {
    const dataDir = path.join(temporaryDirectory(), 'data');
    const logger = quietLogger();
    const first = await loadKeyEncryptionKey({ dataDir }, logger);
    const file = path.join(dataDir, keyEncryptionKeyFileName);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(Buffer.from(readFileSync(file, 'utf8').trim(), 'base64')).toHaveLength(32);
    expect(logger.warn).toHaveBeenCalledWith(expect.anything(), expect.stringContaining('development only'));

    const second = await loadKeyEncryptionKey({ dataDir }, logger);
    expect(second.keyId).toBe(first.keyId);
    const blob = first.seal(Buffer.from('x'), 'purpose');
    expect(second.unseal(blob, 'purpose').toString()).toBe('x');
  });

  it('agrees on one key when several loaders start at once', async () => {
    const dataDir = temporaryDirectory();
    const sealers = await Promise.all(Array.from({ length: 5 }, () => loadKeyEncryptionKey({ dataDir }, quietLogger())));
    expect(new Set(sealers.map((sealer) => sealer.keyId)).size).toBe(1);
  });
});
