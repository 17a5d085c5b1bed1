/**
 * Encrypted backup and restore of the certificate authority: every certificate row (CAs, retired
 * and revoked ones included, device certificates with their revocation state), every CRL row (so
 * CRL numbers keep growing after a restore) and the CA private keys.
 *
 * Software keys are unsealed from the source's key-encryption key and carried inside the backup's
 * own encryption, to be re-sealed under the destination's. HSM keys never leave the token: the
 * backup carries their PKCS#11 references and public keys, and a restore checks that each still
 * resolves to the same key in the destination's token.
 *
 * File layout (the first two lines are readable text, the rest binary):
 *
 *   device-provisioning-ca-backup\n      magic
 *   {header JSON}\n                      format version, created at, tenants, counts, KDF parameters
 *   iv (12) | tag (16) | ciphertext      AES-256-GCM of the gzipped payload JSON
 *
 * The backup key comes from an operator passphrase through scrypt (random salt, parameters in the
 * header). The magic and the header line are the associated data, so no header field can be
 * changed without the file failing to open.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  createPrivateKey,
  createPublicKey,
  randomBytes,
  scrypt,
  timingSafeEqual,
  type BinaryLike,
  type ScryptOptions,
} from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { link, open, readFile, unlink } from 'node:fs/promises';
import { gunzipSync, gzipSync } from 'node:zlib';
import { z } from 'zod';
import type { KeyCustody } from '../custody/key-custody';
import type { Sealer } from '../custody/sealing';
import {
  softwareKeyBinding,
  softwareKeyRowCodec,
  SoftwareKeyRows,
  type NewSoftwareKeyRow,
  type SoftwareKeyRow,
} from '../custody/software-keystore/software-key-store';
import { isUniqueViolation, type Database } from '../db/client';
import type { EncodedRow } from '../db/row-transfer';
import { holdAdvisoryLock, type Transaction } from '../db/transactions';
import { ConflictError, NotFoundError, ValidationError } from '../foundation/errors';
import type { Logger } from '../foundation/logger';
import { fingerprintOf, fromPem, toPem } from '../x509/pem';
import { certificateRowCodec, CertificateStore, type CertificateRow, type NewCertificateRow } from './certificate-store';
import { CrlStore, crlRowCodec, type NewCertificateRevocationListRow } from './crl-store';

export const caBackupMagic = 'device-provisioning-ca-backup';
export const caBackupFormatVersion = 1;

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
/** One restore at a time per database, whatever process runs it. */
const restoreLockId = 4_242_017;
const passphraseCheckLabel = 'device-provisioning/ca-backup/passphrase-check/v1';

const certificateTypes = ['root', 'intermediate', 'services-intermediate', 'ocsp', 'service', 'server', 'configuration-signing', 'device'] as const;
type CertificateType = (typeof certificateTypes)[number];

/** The passphrase does not derive this backup's key (or the header's KDF fields were changed). */
export class BackupPassphraseError extends ValidationError {
  override readonly name = 'BackupPassphraseError';
}

/** The file is not a backup this version reads, or it was altered or truncated. */
export class BackupIntegrityError extends ValidationError {
  override readonly name = 'BackupIntegrityError';
}

/** The readable part of a backup file; authenticated with the payload. */
export interface CaBackupHeader {
  formatVersion: number;
  createdAt: string;
  tenants: string[];
  counts: {
    certificates: Record<CertificateType, number>;
    revokedCertificates: number;
    certificateRevocationLists: number;
    softwareKeys: number;
    hsmKeyReferences: number;
  };
  /** Identifies (without revealing) the key-encryption key the software keys were sealed under. */
  sourceKeyEncryptionKeyId: string;
  kdf: { name: 'scrypt'; salt: string } & ScryptParameters;
  cipher: 'aes-256-gcm';
  compression: 'gzip';
  /** HMAC under a key derived with the cipher key: tells a wrong passphrase from an altered file. */
  passphraseCheck: string;
}

/** What the operator sees after a backup: counts and the CA certificates by fingerprint, no key material. */
export interface CaBackupSummary {
  header: CaBackupHeader;
  caCertificates: CaCertificateSummary[];
}

export interface CaCertificateSummary {
  id: string;
  tenantId: string;
  certificateType: Exclude<CertificateType, 'device'>;
  site: string | null;
  subjectDn: string;
  /** SHA-256 of the DER, lower-case hex. */
  fingerprint: string;
  state: 'live' | 'retired' | 'revoked' | 'expired';
  keyCustody: 'software' | 'pkcs11';
}

export interface CaRestoreResult {
  header: CaBackupHeader;
  tenants: { tenantId: string; outcome: 'restored' | 'already-present' }[];
  inserted: { certificates: number; certificateRevocationLists: number; softwareKeys: number };
  caCertificates: CaCertificateSummary[];
}

export interface CertificateAuthorityBackupDependencies {
  db: Database;
  /** The install's key-encryption key: unseals software keys on backup, re-seals them on restore. */
  sealer: Sealer;
  /** The install's configured key custody; a restore checks HSM references against it. */
  custody: KeyCustody;
  logger: Logger;
}

interface BackupPayload {
  formatVersion: number;
  tenants: string[];
  certificates: EncodedRow[];
  certificateRevocationLists: EncodedRow[];
  softwareKeys: { row: EncodedRow; sealedPlaintext: string }[];
  hsmKeys: { location: string; publicKeySpki: string; certificateIds: string[] }[];
}

const headerSchema = z.object({
  formatVersion: z.number().int(),
  createdAt: z.iso.datetime(),
  tenants: z.array(z.string().min(1)).min(1),
  counts: z.object({
    // A backup made before a certificate type existed counts none of it.
    certificates: z.object(Object.fromEntries(certificateTypes.map((type) => [type, z.number().int().min(0).default(0)]))),
    revokedCertificates: z.number().int().min(0),
    certificateRevocationLists: z.number().int().min(0),
    softwareKeys: z.number().int().min(0),
    hsmKeyReferences: z.number().int().min(0),
  }),
  sourceKeyEncryptionKeyId: z.string(),
  kdf: z.object({ name: z.literal('scrypt'), salt: z.base64(), N: z.number().int(), r: z.number().int(), p: z.number().int() }),
  cipher: z.literal('aes-256-gcm'),
  compression: z.literal('gzip'),
  passphraseCheck: z.base64(),
});

const encodedRowSchema = z.record(z.string(), z.unknown());
const payloadSchema = z.object({
  formatVersion: z.number().int(),
  tenants: z.array(z.string()),
  certificates: z.array(encodedRowSchema),
  certificateRevocationLists: z.array(encodedRowSchema),
  softwareKeys: z.array(z.object({ row: encodedRowSchema, sealedPlaintext: z.base64() })),
  hsmKeys: z.array(z.object({ location: z.string(), publicKeySpki: z.base64(), certificateIds: z.array(z.uuid()) })),
});

export class CertificateAuthorityBackup {
  readonly #db: Database;
  readonly #sealer: Sealer;
  readonly #custody: KeyCustody;
  readonly #logger: Logger;

  constructor(deps: CertificateAuthorityBackupDependencies) {
    this.#db = deps.db;
    this.#sealer = deps.sealer;
    this.#custody = deps.custody;
    this.#logger = deps.logger;
  }

  /**
   * The whole CA (or one tenant's part of it) as an encrypted backup file's bytes. Reads in one
   * repeatable-read snapshot, so certificates, CRLs and keys are consistent with each other.
   */
  async createBackup(options: {
    passphrase: Uint8Array | string;
    tenantId?: string;
    scrypt?: ScryptParameters;
  }): Promise<{ file: Buffer; summary: CaBackupSummary }> {
    const passphrase = passphraseBytes(options.passphrase);
    const scryptParameters = options.scrypt ?? defaultScryptParameters;
    checkScryptParameters(scryptParameters, ValidationError);

    const snapshot = await this.#readSnapshot(options.tenantId);
    if (snapshot.certificates.length === 0) {
      throw new NotFoundError(
        options.tenantId === undefined ? 'there are no certificates to back up' : `tenant ${options.tenantId} has no certificates to back up`,
      );
    }
    const tenants = [...new Set(snapshot.certificates.map((row) => row.tenantId))].sort();

    // Software keys: unsealed here and only ever written out again inside the backup's encryption.
    const keyMaterial: BackupPayload['softwareKeys'] = [];
    const plaintexts: Buffer[] = [];
    try {
      for (const row of snapshot.softwareKeys) {
        if (row.keyEncryptionKeyId !== this.#sealer.keyId) {
          throw new ValidationError(
            `software key ${row.id} is sealed under key-encryption key ${row.keyEncryptionKeyId}, but this install is configured with ${this.#sealer.keyId}`,
          );
        }
        const plaintext = this.#sealer.unseal(row.sealedPrivateKey, softwareKeyBinding(row.id, row.algorithm));
        plaintexts.push(plaintext);
        checkKeyPair(plaintext, row.publicKeySpki, `software key ${row.id}`, ValidationError);
        const { sealedPrivateKey: _sealed, keyEncryptionKeyId: _kek, ...rest } = row;
        keyMaterial.push({ row: softwareKeyRowCodec.encode(rest), sealedPlaintext: plaintext.toString('base64') });
      }

      const payload: BackupPayload = {
        formatVersion: caBackupFormatVersion,
        tenants,
        certificates: snapshot.certificates.map((row) => certificateRowCodec.encode(row)),
        certificateRevocationLists: snapshot.crls.map((row) => crlRowCodec.encode(row)),
        softwareKeys: keyMaterial,
        hsmKeys: hsmKeyReferencesOf(snapshot.certificates),
      };

      const salt = randomBytes(16);
      const derived = await deriveKeys(passphrase, salt, scryptParameters);
      try {
        const header: CaBackupHeader = {
          formatVersion: caBackupFormatVersion,
          createdAt: new Date().toISOString(),
          tenants,
          counts: countsOf(payload, snapshot.certificates),
          sourceKeyEncryptionKeyId: this.#sealer.keyId,
          kdf: { name: 'scrypt', salt: salt.toString('base64'), ...scryptParameters },
          cipher: 'aes-256-gcm',
          compression: 'gzip',
          passphraseCheck: passphraseCheckOf(derived).toString('base64'),
        };
        const preamble = Buffer.from(`${caBackupMagic}\n${JSON.stringify(header)}\n`, 'utf8');
        const compressed = gzipSync(Buffer.from(JSON.stringify(payload), 'utf8'));
        const iv = randomBytes(ivLength);
        const cipher = createCipheriv('aes-256-gcm', derived.subarray(0, 32), iv, { authTagLength: tagLength });
        cipher.setAAD(preamble);
        const ciphertext = Buffer.concat([cipher.update(compressed), cipher.final()]);
        compressed.fill(0);
        const summary: CaBackupSummary = { header, caCertificates: caCertificateSummaries(snapshot.certificates) };
        this.#logger.info({ tenants, counts: header.counts }, 'created CA backup');
        return { file: Buffer.concat([preamble, iv, cipher.getAuthTag(), ciphertext]), summary };
      } finally {
        derived.fill(0);
      }
    } finally {
      for (const plaintext of plaintexts) plaintext.fill(0);
      passphrase.fill(0);
    }
  }

  /**
   * Restores a backup into this install. Everything is checked before anything is written (the
   * passphrase, the file's integrity, each key against its certificate, each HSM reference against
   * the token), then one transaction inserts the rows with their original ids, so issuer links,
   * device rows and the published CRL and OCSP URLs stay valid. A tenant whose rows are already
   * exactly those of the backup is left alone, which makes a repeated restore a no-op; a tenant
   * with any other certificates makes the whole restore fail.
   */
  async restoreBackup(file: Uint8Array, options: { passphrase: Uint8Array | string }): Promise<CaRestoreResult> {
    const passphrase = passphraseBytes(options.passphrase);
    let opened: OpenedBackup;
    try {
      opened = await openBackup(file, passphrase);
    } finally {
      passphrase.fill(0);
    }
    const { header, payload } = opened;
    const decoded = decodePayload(header, payload);

    try {
      await this.#checkHsmReferences(payload.hsmKeys);
      const sealedKeys = decoded.softwareKeys.map(({ row, plaintext }) => ({
        ...row,
        sealedPrivateKey: this.#sealer.seal(plaintext, softwareKeyBinding(row.id, row.algorithm)),
        keyEncryptionKeyId: this.#sealer.keyId,
      }));

      const outcome = await this.#db.transaction(async (tx) => {
        await holdAdvisoryLock(tx, restoreLockId);
        const tenants: CaRestoreResult['tenants'] = [];
        const restoring = new Set<string>();
        for (const tenantId of header.tenants) {
          const state = await compareTenant(tx, tenantId, decoded, payload);
          if (state === 'empty') restoring.add(tenantId);
          tenants.push({ tenantId, outcome: state === 'empty' ? 'restored' : 'already-present' });
        }

        const certificateRows = decoded.certificates.filter((row) => restoring.has(row.tenantId));
        const crlRows = decoded.crls.filter((row) => restoring.has(row.tenantId));
        const keyIds = new Set(
          certificateRows.flatMap((row) => (row.privateKeyLocation.startsWith(softwareLocationPrefix) ? [softwareKeyIdOf(row.privateKeyLocation)] : [])),
        );
        const keyRows = sealedKeys.filter((row) => keyIds.has(row.id));
        try {
          await new SoftwareKeyRows(tx).insertAll(keyRows);
          // Issuers before what they issued keeps the rows in a sensible physical order.
          await new CertificateStore(tx).insertAll(issuersFirst(certificateRows));
          await new CrlStore(tx).insertAll(crlRows);
        } catch (error) {
          if (isUniqueViolation(error)) {
            throw new ConflictError(
              `the destination already holds a row the backup needs (${constraintOf(error) ?? 'a unique key'}): another tenant's certificate with the same id or serial number, or a key with the same id`,
              { cause: error },
            );
          }
          throw error;
        }
        return {
          tenants,
          inserted: { certificates: certificateRows.length, certificateRevocationLists: crlRows.length, softwareKeys: keyRows.length },
        };
      });

      this.#logger.info({ tenants: outcome.tenants, inserted: outcome.inserted }, 'restored CA backup');
      return { header, ...outcome, caCertificates: caCertificateSummaries(decoded.certificates) };
    } finally {
      for (const { plaintext } of decoded.softwareKeys) plaintext.fill(0);
    }
  }

  async #readSnapshot(tenantId: string | undefined) {
    return this.#db.transaction(
      async (tx) => {
        const certificateRows = await new CertificateStore(tx).all(tenantId);
        const crls = await new CrlStore(tx).all(tenantId);
        const keyIds = [
          ...new Set(
            certificateRows.flatMap((row) =>
              row.privateKeyLocation.startsWith(softwareLocationPrefix) ? [softwareKeyIdOf(row.privateKeyLocation)] : [],
            ),
          ),
        ];
        const keys = await new SoftwareKeyRows(tx).byIds(keyIds);
        const missing = keyIds.filter((id) => !keys.some((key) => key.id === id));
        if (missing.length > 0) throw new NotFoundError(`certificates refer to software keys that do not exist: ${missing.join(', ')}`);
        for (const row of certificateRows) checkKeyLocation(row);
        return { certificates: certificateRows, crls, softwareKeys: keys.sort((a, b) => a.id.localeCompare(b.id)) };
      },
      { isolationLevel: 'repeatable read', accessMode: 'read only' },
    );
  }

  /** Every HSM key must be on the destination's token and be the key its certificates certify. */
  async #checkHsmReferences(references: BackupPayload['hsmKeys']): Promise<void> {
    const problems: string[] = [];
    for (const reference of references) {
      try {
        const key = await this.#custody.getKey(reference.location);
        if (!Buffer.from(key.publicKeySpki).equals(Buffer.from(reference.publicKeySpki, 'base64'))) {
          problems.push(`${reference.location} (a different key than the one its certificates certify)`);
        }
      } catch (error) {
        problems.push(`${reference.location} (${(error as Error).message})`);
      }
    }
    if (problems.length > 0) {
      const where = this.#custody.kind === 'pkcs11' ? "the destination's HSM token" : 'this install, which has no HSM configured';
      throw new NotFoundError(`HSM key references in the backup do not resolve in ${where}: ${problems.join('; ')}`);
    }
  }
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

/** The header of a backup file, for inspection without the passphrase (not yet authenticated). */
export function readBackupHeader(file: Uint8Array): CaBackupHeader {
  return splitBackup(file).header;
}

// ---------------------------------------------------------------------------------------------
// File format

interface SplitBackup {
  header: CaBackupHeader;
  preamble: Buffer;
  iv: Buffer;
  tag: Buffer;
  ciphertext: Buffer;
}

function splitBackup(file: Uint8Array): SplitBackup {
  const bytes = Buffer.from(file.buffer, file.byteOffset, file.byteLength);
  const magic = Buffer.from(`${caBackupMagic}\n`, 'utf8');
  if (!bytes.subarray(0, magic.length).equals(magic)) throw new BackupIntegrityError('this is not a CA backup file');
  const end = bytes.indexOf(0x0a, magic.length);
  if (end < 0 || end - magic.length > maximumHeaderBytes) throw new BackupIntegrityError('the backup header is missing or truncated');
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.subarray(magic.length, end).toString('utf8'));
  } catch {
    throw new BackupIntegrityError('the backup header is not valid JSON: the file was altered');
  }
  const result = headerSchema.safeParse(parsed);
  if (!result.success) throw new BackupIntegrityError(`the backup header is malformed: ${result.error.issues[0]?.message ?? 'invalid'}`);
  const header = result.data as CaBackupHeader;
  if (header.formatVersion !== caBackupFormatVersion) {
    throw new BackupIntegrityError(`backup format version ${header.formatVersion} is not supported (this version reads ${caBackupFormatVersion})`);
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

interface OpenedBackup {
  header: CaBackupHeader;
  payload: BackupPayload;
}

async function openBackup(file: Uint8Array, passphrase: Buffer): Promise<OpenedBackup> {
  const split = splitBackup(file);
  const { header } = split;
  const derived = await deriveKeys(passphrase, Buffer.from(header.kdf.salt, 'base64'), header.kdf);
  let compressed: Buffer;
  try {
    const expected = Buffer.from(header.passphraseCheck, 'base64');
    const actual = passphraseCheckOf(derived);
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
  return { header, payload: result.data as BackupPayload };
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

function passphraseCheckOf(derived: Buffer): Buffer {
  return createHmac('sha256', derived.subarray(32)).update(passphraseCheckLabel).digest();
}

function checkScryptParameters(parameters: ScryptParameters, ErrorType: new (message: string) => Error): void {
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

function passphraseBytes(passphrase: Uint8Array | string): Buffer {
  // NFC, so the same passphrase typed on systems that compose characters differently still opens the file.
  const bytes = typeof passphrase === 'string' ? Buffer.from(passphrase.normalize('NFC'), 'utf8') : Buffer.from(passphrase);
  if ([...bytes.toString('utf8')].length < minimumPassphraseLength) {
    bytes.fill(0);
    throw new ValidationError(`the backup passphrase must be at least ${minimumPassphraseLength} characters long`);
  }
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// Rows

type SoftwareKeyInsert = Omit<NewSoftwareKeyRow, 'sealedPrivateKey' | 'keyEncryptionKeyId'> & { id: string; algorithm: string };

interface DecodedPayload {
  certificates: (NewCertificateRow & { id: string })[];
  crls: (NewCertificateRevocationListRow & { id: string })[];
  softwareKeys: { row: SoftwareKeyInsert; plaintext: Buffer }[];
}

/** Every cross-check that needs no database: counts, fingerprints, issuer links, keys against certificates. */
function decodePayload(header: CaBackupHeader, payload: BackupPayload): DecodedPayload {
  if (payload.formatVersion !== header.formatVersion || JSON.stringify(payload.tenants) !== JSON.stringify(header.tenants)) {
    throw new BackupIntegrityError('the backup payload does not match its header');
  }
  const tenants = new Set(header.tenants);
  const decodedCertificates = payload.certificates.map((encoded, index) => {
    const row = certificateRowCodec.decode(encoded, `certificate ${String(encoded.id ?? index)}`, BackupIntegrityError) as NewCertificateRow & { id: string };
    if (!row.id) throw new BackupIntegrityError(`certificate ${index} has no id`);
    if (!tenants.has(row.tenantId)) throw new BackupIntegrityError(`certificate ${row.id} belongs to tenant ${row.tenantId}, which the header does not list`);
    const der = fromPem(row.pem, ['CERTIFICATE']);
    if (!der || fingerprintOf(der) !== row.fingerprint) throw new BackupIntegrityError(`certificate ${row.id} does not match its fingerprint`);
    return row;
  });
  const byId = new Map(decodedCertificates.map((row) => [row.id, row]));
  for (const row of decodedCertificates) {
    if (row.issuerCertificateId && !byId.has(row.issuerCertificateId)) {
      throw new BackupIntegrityError(`certificate ${row.id} names issuer ${row.issuerCertificateId}, which the backup does not hold`);
    }
  }

  const crls = payload.certificateRevocationLists.map((encoded, index) => {
    const row = crlRowCodec.decode(encoded, `CRL ${String(encoded.id ?? index)}`, BackupIntegrityError) as NewCertificateRevocationListRow & { id: string };
    if (!row.id || !tenants.has(row.tenantId) || byId.get(row.caCertificateId)?.tenantId !== row.tenantId) {
      throw new BackupIntegrityError(`CRL ${row.id ?? index} does not belong to a CA certificate in the backup`);
    }
    return row;
  });

  const keys = payload.softwareKeys.map(({ row: encoded, sealedPlaintext }, index) => {
    const row = softwareKeyRowCodec.decode(
      { ...encoded, sealedPrivateKey: '', keyEncryptionKeyId: '' },
      `software key ${String(encoded.id ?? index)}`,
      BackupIntegrityError,
    ) as SoftwareKeyInsert;
    delete (row as Partial<SoftwareKeyRow>).sealedPrivateKey;
    delete (row as Partial<SoftwareKeyRow>).keyEncryptionKeyId;
    const plaintext = Buffer.from(sealedPlaintext, 'base64');
    checkKeyPair(plaintext, row.publicKeySpki, `software key ${row.id}`, BackupIntegrityError);
    return { row, plaintext };
  });
  const keysById = new Map(keys.map((key) => [key.row.id, key]));
  for (const row of decodedCertificates) {
    if (!row.privateKeyLocation.startsWith(softwareLocationPrefix)) continue;
    const key = keysById.get(softwareKeyIdOf(row.privateKeyLocation));
    if (!key) throw new BackupIntegrityError(`certificate ${row.id} uses ${row.privateKeyLocation}, whose key the backup does not hold`);
    if (toPem(key.row.publicKeySpki, 'PUBLIC KEY') !== row.publicKey) {
      throw new BackupIntegrityError(`certificate ${row.id} does not certify the key at ${row.privateKeyLocation}`);
    }
  }

  const expected = countsOf(payload, decodedCertificates as CertificateRow[]);
  if (JSON.stringify(expected) !== JSON.stringify(header.counts)) throw new BackupIntegrityError('the backup payload does not match the counts in its header');
  return { certificates: decodedCertificates, crls, softwareKeys: keys };
}

/**
 * 'empty' when the destination holds no certificates of the tenant, 'same' when it holds exactly
 * the backup's (and the backup's CRLs and keys are there too); anything else is refused.
 */
async function compareTenant(tx: Transaction, tenantId: string, decoded: DecodedPayload, payload: BackupPayload): Promise<'empty' | 'same'> {
  const existing = await new CertificateStore(tx).all(tenantId);
  if (existing.length === 0) return 'empty';

  const conflict = (detail: string) =>
    new ConflictError(`the destination already holds certificates of tenant ${tenantId} that differ from the backup (${detail}); restore only into an install without them`);
  const wanted = new Map(payload.certificates.filter((row) => row.tenantId === tenantId).map((row) => [row.id as string, canonicalJson(row)]));
  if (existing.length !== wanted.size) throw conflict(`${existing.length} certificates there, ${wanted.size} in the backup`);
  for (const row of existing) {
    if (wanted.get(row.id) !== canonicalJson(certificateRowCodec.encode(row))) throw conflict(`certificate ${row.id} differs or is not in the backup`);
  }

  const crls = await new CrlStore(tx).all(tenantId);
  const present = new Set(crls.map((row) => canonicalJson(crlRowCodec.encode(row))));
  for (const row of payload.certificateRevocationLists.filter((crl) => crl.tenantId === tenantId)) {
    if (!present.has(canonicalJson(row))) throw conflict(`CRL ${String(row.id)} is missing or differs`);
  }

  const keyIds = decoded.certificates
    .filter((row) => row.tenantId === tenantId && row.privateKeyLocation.startsWith(softwareLocationPrefix))
    .map((row) => softwareKeyIdOf(row.privateKeyLocation));
  const keys = new Map((await new SoftwareKeyRows(tx).byIds(keyIds)).map((row) => [row.id, row]));
  for (const id of keyIds) {
    const key = keys.get(id);
    const backedUp = decoded.softwareKeys.find((candidate) => candidate.row.id === id)!;
    if (!key || !Buffer.from(key.publicKeySpki).equals(Buffer.from(backedUp.row.publicKeySpki))) throw conflict(`software key ${id} is missing or differs`);
  }
  return 'same';
}

/** Roots, then what they issued, and so on down: a topological order over issuer links. */
function issuersFirst<T extends { id: string; issuerCertificateId?: string | null }>(rows: T[]): T[] {
  const depth = new Map<string, number>();
  const byId = new Map(rows.map((row) => [row.id, row]));
  const depthOf = (row: T, seen = 0): number => {
    const known = depth.get(row.id);
    if (known !== undefined) return known;
    const issuer = row.issuerCertificateId ? byId.get(row.issuerCertificateId) : undefined;
    // A self-reference or a loop would be corrupt data; cut it off rather than recurse forever.
    const value = issuer && issuer.id !== row.id && seen < rows.length ? depthOf(issuer, seen + 1) + 1 : 0;
    depth.set(row.id, value);
    return value;
  };
  return [...rows].sort((a, b) => depthOf(a) - depthOf(b));
}

// ---------------------------------------------------------------------------------------------
// Keys

const softwareLocationPrefix = 'software:';

function softwareKeyIdOf(location: string): string {
  return location.slice(softwareLocationPrefix.length);
}

/**
 * The sealed plaintext is the store's export-policy byte then the PKCS#8 key; its public half must
 * be the public key stored beside it, or the backup would carry a key that signs for nobody.
 */
function checkKeyPair(plaintext: Buffer, publicKeySpki: Uint8Array, what: string, ErrorType: new (message: string) => Error): void {
  let derived: Buffer;
  try {
    const privateKey = createPrivateKey({ key: plaintext.subarray(1), format: 'der', type: 'pkcs8' });
    derived = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  } catch {
    throw new ErrorType(`${what} cannot be read as a private key`);
  }
  if (!derived.equals(Buffer.from(publicKeySpki))) throw new ErrorType(`${what} does not match its public key`);
}

/** A location this code does not know would be silently left out of a backup; refuse instead. */
function checkKeyLocation(row: CertificateRow): void {
  const location = row.privateKeyLocation;
  if (location.startsWith(softwareLocationPrefix) || location.startsWith('pkcs11:') || location.startsWith('device:')) return;
  throw new ValidationError(`certificate ${row.id} has its key at ${location}, a kind of location backups do not know`);
}

function hsmKeyReferencesOf(rows: CertificateRow[]): BackupPayload['hsmKeys'] {
  const references = new Map<string, BackupPayload['hsmKeys'][number]>();
  for (const row of rows) {
    if (!row.privateKeyLocation.startsWith('pkcs11:')) continue;
    const spki = fromPem(row.publicKey, ['PUBLIC KEY']);
    if (!spki) throw new ValidationError(`certificate ${row.id} has no public key stored`);
    const reference = references.get(row.privateKeyLocation) ?? {
      location: row.privateKeyLocation,
      publicKeySpki: Buffer.from(spki).toString('base64'),
      certificateIds: [],
    };
    reference.certificateIds.push(row.id);
    references.set(row.privateKeyLocation, reference);
  }
  return [...references.values()];
}

// ---------------------------------------------------------------------------------------------
// Summaries

function countsOf(payload: BackupPayload, rows: Pick<CertificateRow, 'certificateType' | 'revokedAt'>[]): CaBackupHeader['counts'] {
  const byType = Object.fromEntries(certificateTypes.map((type) => [type, 0])) as Record<CertificateType, number>;
  for (const row of rows) byType[row.certificateType] += 1;
  return {
    certificates: byType,
    revokedCertificates: rows.filter((row) => row.revokedAt).length,
    certificateRevocationLists: payload.certificateRevocationLists.length,
    softwareKeys: payload.softwareKeys.length,
    hsmKeyReferences: payload.hsmKeys.length,
  };
}

type SummarisedRow = Pick<CertificateRow, 'id' | 'tenantId' | 'certificateType' | 'subjectDn' | 'fingerprint' | 'expiresAt' | 'privateKeyLocation'> &
  Partial<Pick<CertificateRow, 'site' | 'revokedAt' | 'retiredAt'>>;

function caCertificateSummaries(rows: SummarisedRow[]): CaCertificateSummary[] {
  const now = Date.now();
  return rows
    .filter((row) => row.certificateType !== 'device')
    .map((row) => ({
      id: row.id,
      tenantId: row.tenantId,
      certificateType: row.certificateType as CaCertificateSummary['certificateType'],
      site: row.site ?? null,
      subjectDn: row.subjectDn,
      fingerprint: row.fingerprint,
      state: row.revokedAt ? 'revoked' : row.retiredAt ? 'retired' : row.expiresAt.getTime() <= now ? 'expired' : 'live',
      keyCustody: row.privateKeyLocation.startsWith('pkcs11:') ? 'pkcs11' : 'software',
    }));
}

/** One line per CA certificate, for the scripts' output. */
export function formatCaCertificateSummary(summary: CaCertificateSummary): string {
  const where = summary.site ? ` site ${summary.site}` : '';
  return `${summary.tenantId} ${summary.certificateType}${where} ${summary.state} ${summary.keyCustody} sha256:${summary.fingerprint} ${summary.subjectDn} (${summary.id})`;
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, entry]) => entry !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, entry]) => `${JSON.stringify(key)}:${canonicalJson(entry)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

function constraintOf(error: unknown): string | undefined {
  for (let current = error; current instanceof Object; current = (current as { cause?: unknown }).cause) {
    const name = (current as { constraint_name?: unknown; constraint?: unknown }).constraint_name ?? (current as { constraint?: unknown }).constraint;
    if (typeof name === 'string') return name;
  }
  return undefined;
}
