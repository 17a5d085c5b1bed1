/**
 * The encrypted file every backup is written in (the CA backup, the records backup):
 *
 *   <magic>\n                            what the file is
 *   {header JSON}\n                      the backup's own fields, then KDF parameters, cipher, passphrase check
 *   iv (12) | tag (16) | ciphertext      AES-256-GCM of the gzipped payload JSON
 *
 * The key comes from an operator passphrase through scrypt (random salt, parameters in the header).
 * The magic and the header line are the associated data, so no header field can be changed without
 * the file failing to open. An HMAC under a second derived key tells a wrong passphrase from an
 * altered file.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes, scrypt, timingSafeEqual, type BinaryLike, type ScryptOptions } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { link, open, readFile, unlink } from 'node:fs/promises';
import { gunzipSync, gzipSync } from 'node:zlib';
import { z } from 'zod';
import { ConflictError, ValidationError } from '../foundation/errors';

/** scrypt cost: N = 2^17, r = 8 takes 128 MiB and a fraction of a second, once per backup or restore. */
export const defaultScryptParameters: ScryptParameters = { N: 2 ** 17, r: 8, p: 1 };

export interface ScryptParameters {
  N: number;
  r: number;
  p: number;
}

/** Limits on what a header may ask for, so a forged one cannot make us allocate gigabytes. */
const scryptLimits = { minimumLogN: 14, maximumLogN: 20, maximumR: 32, maximumP: 16 };
const minimumPassphraseLength = 12;
const ivLength = 12;
const tagLength = 16;
/** 32 bytes of AES key, then 32 bytes of the passphrase-check key. */
const derivedKeyLength = 64;
const maximumHeaderBytes = 64 * 1024;
/** The inflated payload may be large (every device certificate), but not unbounded. */
const maximumPayloadBytes = 2 * 1024 ** 3;

/** The passphrase does not derive this backup's key (or the header's KDF fields were changed). */
export class BackupPassphraseError extends ValidationError {
  override readonly name = 'BackupPassphraseError';
}

/** The file is not a backup this version reads, or it was altered or truncated. */
export class BackupIntegrityError extends ValidationError {
  override readonly name = 'BackupIntegrityError';
}

/** The header fields the envelope adds after the backup's own. */
export interface EnvelopeHeaderFields {
  kdf: { name: 'scrypt'; salt: string } & ScryptParameters;
  cipher: 'aes-256-gcm';
  compression: 'gzip';
  /** HMAC under a key derived with the cipher key: tells a wrong passphrase from an altered file. */
  passphraseCheck: string;
}

export const envelopeHeaderShape = {
  kdf: z.object({ name: z.literal('scrypt'), salt: z.base64(), N: z.number().int(), r: z.number().int(), p: z.number().int() }),
  cipher: z.literal('aes-256-gcm'),
  compression: z.literal('gzip'),
  passphraseCheck: z.base64(),
};

/** What kind of backup a file is: its first line, its readable header, the format version this code reads. */
export interface BackupKind<Header extends { formatVersion: number }> {
  magic: string;
  /** For messages: "CA backup", "records backup". */
  what: string;
  formatVersion: number;
  /** The whole header, own fields and `envelopeHeaderShape`. */
  headerSchema: z.ZodType<Header & EnvelopeHeaderFields>;
  /** Label of the passphrase check's HMAC; distinct per kind, so one kind's check never passes for another. */
  passphraseCheckLabel: string;
}

/**
 * Encrypts `payload` (JSON) under a key derived from the passphrase. The header's own fields come
 * first and stay readable; the envelope's are appended.
 */
export async function sealBackup<Header extends { formatVersion: number }>(
  kind: BackupKind<Header>,
  options: { header: Header; payload: unknown; passphrase: Buffer; scrypt?: ScryptParameters },
): Promise<{ file: Buffer; header: Header & EnvelopeHeaderFields }> {
  const scryptParameters = options.scrypt ?? defaultScryptParameters;
  checkScryptParameters(scryptParameters, ValidationError);
  const salt = randomBytes(16);
  const derived = await deriveKeys(options.passphrase, salt, scryptParameters);
  try {
    const header: Header & EnvelopeHeaderFields = {
      ...options.header,
      kdf: { name: 'scrypt', salt: salt.toString('base64'), ...scryptParameters },
      cipher: 'aes-256-gcm',
      compression: 'gzip',
      passphraseCheck: passphraseCheckOf(derived, kind.passphraseCheckLabel).toString('base64'),
    };
    const preamble = Buffer.from(`${kind.magic}\n${JSON.stringify(header)}\n`, 'utf8');
    const compressed = gzipSync(Buffer.from(JSON.stringify(options.payload), 'utf8'));
    const iv = randomBytes(ivLength);
    const cipher = createCipheriv('aes-256-gcm', derived.subarray(0, 32), iv, { authTagLength: tagLength });
    cipher.setAAD(preamble);
    const ciphertext = Buffer.concat([cipher.update(compressed), cipher.final()]);
    compressed.fill(0);
    return { file: Buffer.concat([preamble, iv, cipher.getAuthTag(), ciphertext]), header };
  } finally {
    derived.fill(0);
  }
}

/** The header of a backup file, for inspection without the passphrase (not yet authenticated). */
export function readBackupFileHeader<Header extends { formatVersion: number }>(kind: BackupKind<Header>, file: Uint8Array): Header & EnvelopeHeaderFields {
  return splitBackup(kind, file).header;
}

/**
 * Opens a backup: checks the passphrase, authenticates header and payload together, inflates and
 * parses the payload with `payloadSchema`.
 */
export async function openBackup<Header extends { formatVersion: number }, Payload>(
  kind: BackupKind<Header>,
  file: Uint8Array,
  passphrase: Buffer,
  payloadSchema: z.ZodType<Payload>,
): Promise<{ header: Header & EnvelopeHeaderFields; payload: Payload }> {
  const split = splitBackup(kind, file);
  const { header } = split;
  const derived = await deriveKeys(passphrase, Buffer.from(header.kdf.salt, 'base64'), header.kdf);
  let compressed: Buffer;
  try {
    const expected = Buffer.from(header.passphraseCheck, 'base64');
    const actual = passphraseCheckOf(derived, kind.passphraseCheckLabel);
    if (expected.length !== actual.length || !timingSafeEqual(expected, actual)) {
      throw new BackupPassphraseError('the passphrase does not open this backup (or its key-derivation header was altered)');
    }
    const decipher = createDecipheriv('aes-256-gcm', derived.subarray(0, 32), split.iv, { authTagLength: tagLength });
    decipher.setAAD(split.preamble);
    decipher.setAuthTag(split.tag);
    try {
      compressed = Buffer.concat([decipher.update(split.ciphertext), decipher.final()]);
    } catch (error) {
      throw new BackupIntegrityError('the backup failed authentication: it was altered or truncated', { cause: error });
    }
  } finally {
    derived.fill(0);
  }

  let payload: unknown;
  try {
    const json = gunzipSync(compressed, { maxOutputLength: maximumPayloadBytes });
    payload = JSON.parse(json.toString('utf8'));
    json.fill(0);
  } catch (error) {
    throw new BackupIntegrityError(`the backup payload cannot be read: ${(error as Error).message}`, { cause: error });
  } finally {
    compressed.fill(0);
  }
  const result = payloadSchema.safeParse(payload);
  if (!result.success) throw new BackupIntegrityError(`the backup payload is malformed: ${result.error.issues[0]?.message ?? 'invalid'}`);
  return { header, payload: result.data };
}

interface SplitBackup<Header> {
  header: Header;
  preamble: Buffer;
  iv: Buffer;
  tag: Buffer;
  ciphertext: Buffer;
}

function splitBackup<Header extends { formatVersion: number }>(kind: BackupKind<Header>, file: Uint8Array): SplitBackup<Header & EnvelopeHeaderFields> {
  const bytes = Buffer.from(file.buffer, file.byteOffset, file.byteLength);
  const magic = Buffer.from(`${kind.magic}\n`, 'utf8');
  if (!bytes.subarray(0, magic.length).equals(magic)) throw new BackupIntegrityError(`this is not a ${kind.what} file`);
  const end = bytes.indexOf(0x0a, magic.length);
  if (end < 0 || end - magic.length > maximumHeaderBytes) throw new BackupIntegrityError('the backup header is missing or truncated');
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.subarray(magic.length, end).toString('utf8'));
  } catch {
    throw new BackupIntegrityError('the backup header is not valid JSON: the file was altered');
  }
  const result = kind.headerSchema.safeParse(parsed);
  if (!result.success) throw new BackupIntegrityError(`the backup header is malformed: ${result.error.issues[0]?.message ?? 'invalid'}`);
  const header = result.data;
  if (header.formatVersion !== kind.formatVersion) {
    throw new BackupIntegrityError(`backup format version ${header.formatVersion} is not supported (this version reads ${kind.formatVersion})`);
  }
  checkScryptParameters(header.kdf, BackupIntegrityError);
  const body = end + 1;
  if (bytes.length < body + ivLength + tagLength) throw new BackupIntegrityError('the backup is truncated');
  return {
    header,
    preamble: bytes.subarray(0, body),
    iv: bytes.subarray(body, body + ivLength),
    tag: bytes.subarray(body + ivLength, body + ivLength + tagLength),
    ciphertext: bytes.subarray(body + ivLength + tagLength),
  };
}

async function deriveKeys(passphrase: BinaryLike, salt: Buffer, parameters: ScryptParameters): Promise<Buffer> {
  const options: ScryptOptions = {
    N: parameters.N,
    r: parameters.r,
    p: parameters.p,
    // scrypt needs 128·N·r bytes; Node refuses anything above 32 MiB unless told otherwise.
    maxmem: 256 * parameters.N * parameters.r + 16 * 1024 * 1024,
  };
  return new Promise((resolve, reject) =>
    scrypt(passphrase, salt, derivedKeyLength, options, (error, key) => (error ? reject(error) : resolve(key))),
  );
}

function passphraseCheckOf(derived: Buffer, label: string): Buffer {
  return createHmac('sha256', derived.subarray(32)).update(label).digest();
}

export function checkScryptParameters(parameters: ScryptParameters, ErrorType: new (message: string) => Error = ValidationError): void {
  const logN = Math.log2(parameters.N);
  if (
    !Number.isInteger(logN) ||
    logN < scryptLimits.minimumLogN ||
    logN > scryptLimits.maximumLogN ||
    !Number.isInteger(parameters.r) ||
    parameters.r < 1 ||
    parameters.r > scryptLimits.maximumR ||
    !Number.isInteger(parameters.p) ||
    parameters.p < 1 ||
    parameters.p > scryptLimits.maximumP
  ) {
    throw new ErrorType(
      `scrypt parameters N=${parameters.N} r=${parameters.r} p=${parameters.p} are outside the supported range (N a power of two from 2^${scryptLimits.minimumLogN} to 2^${scryptLimits.maximumLogN}, r ≤ ${scryptLimits.maximumR}, p ≤ ${scryptLimits.maximumP})`,
    );
  }
}

/** The passphrase as bytes, refused when too short. Callers zero it when done. */
export function passphraseBytes(passphrase: Uint8Array | string): Buffer {
  // NFC, so the same passphrase typed on systems that compose characters differently still opens the file.
  const bytes = typeof passphrase === 'string' ? Buffer.from(passphrase.normalize('NFC'), 'utf8') : Buffer.from(passphrase);
  if ([...bytes.toString('utf8')].length < minimumPassphraseLength) {
    bytes.fill(0);
    throw new ValidationError(`the backup passphrase must be at least ${minimumPassphraseLength} characters long`);
  }
  return bytes;
}

/**
 * Reads the operator's passphrase from a file (first line's line ending dropped) or from the
 * environment: never from a command-line argument, which other users of the host can read.
 */
export async function readBackupPassphrase(options: { file?: string; environment?: NodeJS.ProcessEnv }): Promise<Buffer> {
  const environment = options.environment ?? process.env;
  const file = options.file ?? environment.CA_BACKUP_PASSPHRASE_FILE;
  let text: string | undefined;
  if (file !== undefined && file !== '') {
    try {
      text = (await readFile(file, 'utf8')).replace(/\r?\n$/, '');
    } catch (error) {
      throw new ValidationError(`cannot read the passphrase file ${file}: ${(error as Error).message}`);
    }
  } else {
    text = environment.CA_BACKUP_PASSPHRASE;
  }
  if (text === undefined || text === '') {
    throw new ValidationError('no backup passphrase: pass --passphrase-file, or set CA_BACKUP_PASSPHRASE_FILE or CA_BACKUP_PASSPHRASE');
  }
  return passphraseBytes(text);
}

/**
 * Writes a backup readable by its owner only, and never over an existing file: the bytes go to a
 * private draft first, which is then linked into place (link fails when the name is taken).
 */
export async function writeBackupFile(path: string, bytes: Uint8Array): Promise<void> {
  const draft = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.partial`;
  const handle = await open(draft, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
  try {
    await handle.chmod(0o600);
    await handle.writeFile(bytes);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await link(draft, path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw new ConflictError(`${path} already exists; choose another file name`);
    throw error;
  } finally {
    await unlink(draft);
  }
}
