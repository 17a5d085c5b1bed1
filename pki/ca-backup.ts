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
 * The file is a passphrase-encrypted backup envelope (custody/backup-envelope.ts): magic line,
 * readable header (format version, created at, tenants, counts, KDF parameters), then AES-256-GCM
 * of the gzipped payload with the magic and header as associated data.
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { z } from 'zod';
import {
  BackupIntegrityError,
  checkScryptParameters,
  defaultScryptParameters,
  envelopeHeaderShape,
  openBackup as openBackupFile,
  passphraseBytes,
  readBackupFileHeader,
  sealBackup,
  type BackupKind,
  type EnvelopeHeaderFields,
  type ScryptParameters,
} from '../custody/backup-envelope';
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

export {
  BackupIntegrityError,
  BackupPassphraseError,
  defaultScryptParameters,
  readBackupPassphrase,
  writeBackupFile,
  type ScryptParameters,
} from '../custody/backup-envelope';

/** One restore at a time per database, whatever process runs it. */
const restoreLockId = 4_242_017;

const certificateTypes = ['root', 'intermediate', 'services-intermediate', 'ocsp', 'service', 'server', 'configuration-signing', 'device'] as const;
type CertificateType = (typeof certificateTypes)[number];

/** The readable part of a backup file; authenticated with the payload. */
export interface CaBackupOwnHeader {
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
}

/** The readable part of a backup file; authenticated with the payload. */
export type CaBackupHeader = CaBackupOwnHeader & EnvelopeHeaderFields;

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
  ...envelopeHeaderShape,
});

const caBackupKind: BackupKind<CaBackupOwnHeader> = {
  magic: caBackupMagic,
  what: 'CA backup',
  formatVersion: caBackupFormatVersion,
  headerSchema: headerSchema as unknown as z.ZodType<CaBackupHeader>,
  passphraseCheckLabel: 'device-provisioning/ca-backup/passphrase-check/v1',
};

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
    checkScryptParameters(scryptParameters);

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

      const { file, header } = await sealBackup(caBackupKind, {
        header: {
          formatVersion: caBackupFormatVersion,
          createdAt: new Date().toISOString(),
          tenants,
          counts: countsOf(payload, snapshot.certificates),
          sourceKeyEncryptionKeyId: this.#sealer.keyId,
        },
        payload,
        passphrase,
        scrypt: scryptParameters,
      });
      const summary: CaBackupSummary = { header, caCertificates: caCertificateSummaries(snapshot.certificates) };
      this.#logger.info({ tenants, counts: header.counts }, 'created CA backup');
      return { file, summary };
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

/** The header of a backup file, for inspection without the passphrase (not yet authenticated). */
export function readBackupHeader(file: Uint8Array): CaBackupHeader {
  return readBackupFileHeader(caBackupKind, file);
}

interface OpenedBackup {
  header: CaBackupHeader;
  payload: BackupPayload;
}

function openBackup(file: Uint8Array, passphrase: Buffer): Promise<OpenedBackup> {
  return openBackupFile(caBackupKind, file, passphrase, payloadSchema as z.ZodType<BackupPayload>);
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
