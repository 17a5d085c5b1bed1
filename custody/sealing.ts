/**
 * Sealing of secrets at rest (software CA keys, device passwords) with AES-256-GCM under one
 * key-encryption key (KEK). The associated data names what a sealed value is for and which row it
 * belongs to, so a blob copied into another row or used for another purpose fails to open.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ConfigurationError } from '../foundation/errors';
import type { Logger } from '../foundation/logger';

const keyLength = 32;
const ivLength = 12;
const tagLength = 16;
/** Leading byte of every blob, so the format can change without guessing what a stored value is. */
const formatVersion = 1;
const headerLength = 1 + ivLength + tagLength;

export const keyEncryptionKeyFileName = 'key-encryption.key';

export type AssociatedData = string | Uint8Array;

export class SealedValueError extends Error {
  override name = 'SealedValueError';
}

export class Sealer {
  /** Identifies the KEK without revealing anything about it; stored next to each sealed value. */
  readonly keyId: string;
  readonly #key: Buffer;

  constructor(key: Uint8Array) {
    if (key.byteLength !== keyLength) {
      throw new ConfigurationError(`key-encryption key must be ${keyLength} bytes, got ${key.byteLength}`);
    }
    this.#key = Buffer.from(key);
    // Domain-separated, so the identifier is never a hash that is also used elsewhere.
    this.keyId = createHash('sha256')
      .update('device-provisioning/key-encryption-key-id/v1\0')
      .update(this.#key)
      .digest()
      .subarray(0, 8)
      .toString('hex');
  }

  /** version(1) | iv(12) | tag(16) | ciphertext */
  seal(plaintext: Uint8Array, associatedData: AssociatedData): Buffer {
    const iv = randomBytes(ivLength);
    const cipher = createCipheriv('aes-256-gcm', this.#key, iv, { authTagLength: tagLength });
    cipher.setAAD(toBytes(associatedData));
    const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return Buffer.concat([Buffer.of(formatVersion), iv, cipher.getAuthTag(), ciphertext]);
  }

  /** Throws SealedValueError when the blob was altered, sealed under another key or for other data. */
  unseal(blob: Uint8Array, associatedData: AssociatedData): Buffer {
    const bytes = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
    if (bytes.length < headerLength || bytes[0] !== formatVersion) {
      throw new SealedValueError('sealed value has an unknown format');
    }
    const iv = bytes.subarray(1, 1 + ivLength);
    const tag = bytes.subarray(1 + ivLength, headerLength);
    const decipher = createDecipheriv('aes-256-gcm', this.#key, iv, { authTagLength: tagLength });
    decipher.setAAD(toBytes(associatedData));
    decipher.setAuthTag(tag);
    try {
      return Buffer.concat([decipher.update(bytes.subarray(headerLength)), decipher.final()]);
    } catch (error) {
      throw new SealedValueError('sealed value failed authentication (tampered, wrong key or wrong purpose)', {
        cause: error,
      });
    }
  }
}

function toBytes(data: AssociatedData): Buffer {
  return typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data);
}

/**
 * Associated data from its parts. Encoded as a JSON array so that no choice of part values can
 * make two different part lists produce the same bytes.
 */
export function associatedData(...parts: string[]): string {
  return JSON.stringify(parts);
}

/**
 * The key-encryption key's 32 bytes (the Sealer and the payload codec derive from it). A configured
 * key (base64 of 32 bytes) wins;
 * without one a random key is created once under `dataDir` and reused, which keeps a fresh clone
 * runnable but is not a production setup: that file sits next to the data it protects.
 */
export async function readKeyEncryptionKey(
  options: { keyEncryptionKey?: string; dataDir: string },
  logger: Logger,
): Promise<Buffer> {
  if (options.keyEncryptionKey !== undefined) {
    return decodeKey(options.keyEncryptionKey, 'KEY_ENCRYPTION_KEY');
  }

  const file = path.join(options.dataDir, keyEncryptionKeyFileName);
  const warning = 'it is for development only; set KEY_ENCRYPTION_KEY in production';
  const existing = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (existing !== undefined) {
    logger.warn({ file }, `using the locally generated key-encryption key; ${warning}`);
    return decodeKey(existing, file);
  }

  await mkdir(options.dataDir, { recursive: true });
  // Written in full under a unique name, then linked into place: link() fails if the file exists,
  // so processes starting together agree on one key and none ever reads a half-written file.
  const draft = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
  await writeFile(draft, `${randomBytes(keyLength).toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
  try {
    await link(draft, file);
    logger.warn({ file }, `generated a local key-encryption key; ${warning}`);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  } finally {
    await unlink(draft);
  }
  return decodeKey(await readFile(file, 'utf8'), file);
}

function decodeKey(encoded: string, source: string): Buffer {
  const text = encoded.trim();
  const key = Buffer.from(text, 'base64');
  // Buffer.from silently skips characters that are not base64; re-encoding catches that.
  if (key.toString('base64').replace(/=+$/, '') !== text.replace(/=+$/, '') || key.length !== keyLength) {
    throw new ConfigurationError(`${source}: must be the base64 encoding of exactly ${keyLength} bytes`);
  }
  return key;
}
