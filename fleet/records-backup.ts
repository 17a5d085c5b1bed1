/**
 * Backup and restore of the service's records in one encrypted file: the device registry,
 * configuration templates with every version, devices' parameters (secret ones unsealed only
 * inside the backup's own encryption), configuration history, compliance, drift and fleet
 * policies, the firmware catalogue, archived provisioning runs, health events, discovery sites,
 * approval policies, API keys (their hashes), alerts and the audit trail with its hash chains; and,
 * inside it, the CA backup (certificates, CRLs, CA keys), so one file and one passphrase restore
 * everything.
 *
 * A restore goes into a fresh install: it refuses a destination that holds records of any tenant in
 * the backup. It restores the CA first (idempotent), seals the device secrets again under the
 * destination's keys (idempotent), then inserts the records in one transaction that commits only if
 * every tenant's audit chain verifies and every certificate verifies against its issuer up to its
 * root. A restore that failed can therefore simply be run again.
 */
import { z } from 'zod';
import { AuditLog } from '../audit/audit-log';
import {
  BackupIntegrityError,
  checkScryptParameters,
  envelopeHeaderShape,
  openBackup,
  passphraseBytes,
  readBackupFileHeader,
  sealBackup,
  type BackupKind,
  type EnvelopeHeaderFields,
  type ScryptParameters,
} from '../custody/backup-envelope';
import type { SecretVault } from '../custody/secret-vault';
import type { Database } from '../db/client';
import { countTenantRecordRows, insertRecordRows, readRecordRows, recordTableNames, type RecordTableName } from '../db/record-tables';
import type { EncodedRow } from '../db/row-transfer';
import { holdAdvisoryLock } from '../db/transactions';
import { ConflictError } from '../foundation/errors';
import type { Logger } from '../foundation/logger';
import type { CaRestoreResult, CertificateAuthorityBackup } from '../pki/ca-backup';
import { certificateChainProblems } from '../pki/certificate-chains';
import { CertificateStore } from '../pki/certificate-store';

export const recordsBackupMagic = 'device-provisioning-records-backup';
export const recordsBackupFormatVersion = 1;

const restoreLock = { namespace: 'records-backup', name: 'restore' };

export interface RecordsBackupOwnHeader {
  formatVersion: number;
  createdAt: string;
  tenants: string[];
  counts: { tables: Record<RecordTableName, number>; deviceSecrets: number; certificateAuthority: boolean };
  /** Identifies (without revealing) the key-encryption key of the install backed up. */
  sourceKeyEncryptionKeyId: string;
}
export type RecordsBackupHeader = RecordsBackupOwnHeader & EnvelopeHeaderFields;

interface DeviceSecretEntry {
  tenantId: string;
  deviceId: string;
  purpose: string;
  value: unknown;
}

interface RecordsBackupPayload {
  formatVersion: number;
  tenants: string[];
  tables: Record<RecordTableName, EncodedRow[]>;
  deviceSecrets: DeviceSecretEntry[];
  /** The CA backup file (base64), sealed with the same passphrase; null when the install had no CA yet. */
  certificateAuthority: string | null;
}

const headerSchema = z.object({
  formatVersion: z.number().int(),
  createdAt: z.iso.datetime(),
  tenants: z.array(z.string().min(1)),
  counts: z.object({
    tables: z.object(Object.fromEntries(recordTableNames.map((name) => [name, z.number().int().min(0).default(0)]))),
    deviceSecrets: z.number().int().min(0),
    certificateAuthority: z.boolean(),
  }),
  sourceKeyEncryptionKeyId: z.string(),
  ...envelopeHeaderShape,
});

const encodedRowSchema = z.record(z.string(), z.unknown());
const payloadSchema = z.object({
  formatVersion: z.number().int(),
  tenants: z.array(z.string()),
  // A backup made before a table existed carries none of it.
  tables: z.object(Object.fromEntries(recordTableNames.map((name) => [name, z.array(encodedRowSchema).default([])]))),
  deviceSecrets: z.array(z.object({ tenantId: z.string().min(1), deviceId: z.string().min(1), purpose: z.string().min(1), value: z.unknown() })),
  certificateAuthority: z.base64().nullable(),
});

const recordsBackupKind: BackupKind<RecordsBackupOwnHeader> = {
  magic: recordsBackupMagic,
  what: 'records backup',
  formatVersion: recordsBackupFormatVersion,
  headerSchema: headerSchema as unknown as z.ZodType<RecordsBackupHeader>,
  passphraseCheckLabel: 'device-provisioning/records-backup/passphrase-check/v1',
};

export interface RecordsRestoreResult {
  header: RecordsBackupHeader;
  inserted: Record<RecordTableName, number>;
  deviceSecrets: number;
  certificateAuthority: CaRestoreResult | null;
  /** Each tenant's audit chain as verified after the insert, before the commit. */
  auditChains: { tenantId: string; eventsChecked: number; lastSequence: number }[];
  certificatesVerified: number;
}

export interface RecordsBackupDependencies {
  db: Database;
  vault: SecretVault;
  caBackup: CertificateAuthorityBackup;
  /** The install's key-encryption key id, named in the header. */
  keyEncryptionKeyId: string;
  logger: Logger;
}

export class RecordsBackup {
  readonly #deps: RecordsBackupDependencies;

  constructor(deps: RecordsBackupDependencies) {
    this.#deps = deps;
  }

  /** Every record of the install, and its CA, as an encrypted backup file's bytes. */
  async createBackup(options: { passphrase: Uint8Array | string; scrypt?: ScryptParameters }): Promise<{ file: Buffer; header: RecordsBackupHeader }> {
    const passphrase = passphraseBytes(options.passphrase);
    try {
      if (options.scrypt) checkScryptParameters(options.scrypt);
      // One snapshot, so rows that refer to each other (devices, runs, history, audit) agree.
      const tables = await this.#deps.db.transaction(
        async (tx) => {
          const read = {} as Record<RecordTableName, EncodedRow[]>;
          for (const name of recordTableNames) read[name] = await readRecordRows(tx, name);
          return read;
        },
        { isolationLevel: 'repeatable read', accessMode: 'read only' },
      );
      const deviceSecrets = await this.#deps.vault.exportAll();
      // An install that has issued nothing yet has no CA to carry; any other failure of the CA backup fails this one.
      const hasCertificates = (await new CertificateStore(this.#deps.db).tenantIds()).length > 0;
      const certificateAuthority = hasCertificates
        ? (await this.#deps.caBackup.createBackup({ passphrase, ...(options.scrypt ? { scrypt: options.scrypt } : {}) })).file.toString('base64')
        : null;

      const tenants = new Set<string>(deviceSecrets.map((entry) => entry.tenantId));
      for (const rows of Object.values(tables)) for (const row of rows) if (typeof row.tenantId === 'string') tenants.add(row.tenantId);
      const payload: RecordsBackupPayload = {
        formatVersion: recordsBackupFormatVersion,
        tenants: [...tenants].sort(),
        tables,
        deviceSecrets,
        certificateAuthority,
      };
      const { file, header } = await sealBackup(recordsBackupKind, {
        header: {
          formatVersion: recordsBackupFormatVersion,
          createdAt: new Date().toISOString(),
          tenants: payload.tenants,
          counts: countsOf(payload),
          sourceKeyEncryptionKeyId: this.#deps.keyEncryptionKeyId,
        },
        payload,
        passphrase,
        ...(options.scrypt ? { scrypt: options.scrypt } : {}),
      });
      this.#deps.logger.info({ tenants: header.tenants, counts: header.counts }, 'created records backup');
      return { file, header };
    } finally {
      passphrase.fill(0);
    }
  }

  /** Restores a backup into a fresh install; see the module comment for the order and the checks. */
  async restoreBackup(file: Uint8Array, options: { passphrase: Uint8Array | string }): Promise<RecordsRestoreResult> {
    const passphrase = passphraseBytes(options.passphrase);
    try {
      const { header, payload: opened } = await openBackup(recordsBackupKind, file, passphrase, payloadSchema);
      const payload = opened as unknown as RecordsBackupPayload;
      if (payload.formatVersion !== header.formatVersion || JSON.stringify(payload.tenants) !== JSON.stringify(header.tenants)) {
        throw new BackupIntegrityError('the backup payload does not match its header');
      }
      if (JSON.stringify(countsOf(payload)) !== JSON.stringify(header.counts)) {
        throw new BackupIntegrityError('the backup payload does not match the counts in its header');
      }

      await this.#refuseRecordsPresent(header.tenants);
      const certificateAuthority = payload.certificateAuthority
        ? await this.#deps.caBackup.restoreBackup(Buffer.from(payload.certificateAuthority, 'base64'), { passphrase })
        : null;
      await this.#sealSecretsAgain(payload.deviceSecrets);

      const { inserted, auditChains, certificatesVerified } = await this.#deps.db.transaction(async (tx) => {
        await holdAdvisoryLock(tx, restoreLock);
        const inserted = {} as Record<RecordTableName, number>;
        for (const name of recordTableNames) inserted[name] = await insertRecordRows(tx, name, payload.tables[name], BackupIntegrityError);

        const audit = new AuditLog({ db: tx as unknown as Database, logger: this.#deps.logger });
        const auditChains: RecordsRestoreResult['auditChains'] = [];
        for (const tenantId of [...new Set(payload.tables.auditEvents.map((row) => String(row.tenantId)))].sort()) {
          const verification = await audit.verify(tenantId);
          if (!verification.ok) {
            throw new BackupIntegrityError(
              `the audit chain of tenant ${tenantId} does not verify at sequence ${verification.firstProblem!.sequence}: ${verification.firstProblem!.problem}`,
            );
          }
          auditChains.push({ tenantId, eventsChecked: verification.eventsChecked, lastSequence: verification.lastSequence });
        }

        let certificatesVerified = 0;
        const certificates = new CertificateStore(tx);
        for (const tenantId of header.tenants) {
          const rows = await certificates.all(tenantId);
          const problems = certificateChainProblems(rows);
          if (problems.length > 0) {
            throw new BackupIntegrityError(
              `certificates of tenant ${tenantId} do not verify against their issuers: ${problems.slice(0, 5).map((p) => `${p.certificateId} ${p.problem}`).join('; ')}`,
            );
          }
          certificatesVerified += rows.length;
        }
        return { inserted, auditChains, certificatesVerified };
      });

      // The restore itself goes on each tenant's record, continuing the chain just verified.
      const audit = new AuditLog({ db: this.#deps.db, logger: this.#deps.logger });
      for (const tenantId of header.tenants) {
        await audit.append({
          tenantId,
          actor: 'records-restore',
          actorType: 'system',
          action: 'records.restored',
          details: { backupCreatedAt: header.createdAt, sourceKeyEncryptionKeyId: header.sourceKeyEncryptionKeyId },
        });
      }
      this.#deps.logger.info({ tenants: header.tenants, inserted }, 'restored records backup');
      return { header, inserted, deviceSecrets: payload.deviceSecrets.length, certificateAuthority, auditChains, certificatesVerified };
    } finally {
      passphrase.fill(0);
    }
  }

  async #refuseRecordsPresent(tenants: string[]): Promise<void> {
    for (const name of recordTableNames) {
      const present = await countTenantRecordRows(this.#deps.db, name, tenants);
      if (present > 0) {
        throw new ConflictError(
          `the destination already holds ${present} ${name} rows of the backup's tenants; restore records only into a fresh install (nothing was written)`,
        );
      }
    }
  }

  /** Under the destination's keys: its key-encryption key, or its tenants' data keys for enveloped purposes. */
  async #sealSecretsAgain(entries: DeviceSecretEntry[]): Promise<void> {
    const groups = new Map<string, { tenantId: string; purpose: string; entries: { deviceId: string; value: unknown }[] }>();
    for (const entry of entries) {
      const key = JSON.stringify([entry.tenantId, entry.purpose]);
      const group = groups.get(key) ?? { tenantId: entry.tenantId, purpose: entry.purpose, entries: [] };
      group.entries.push({ deviceId: entry.deviceId, value: entry.value });
      groups.set(key, group);
    }
    for (const group of groups.values()) await this.#deps.vault.storeMany(group.tenantId, group.purpose, group.entries);
  }
}

/** The header of a records backup file, for inspection without the passphrase (not yet authenticated). */
export function readRecordsBackupHeader(file: Uint8Array): RecordsBackupHeader {
  return readBackupFileHeader(recordsBackupKind, file);
}

function countsOf(payload: RecordsBackupPayload): RecordsBackupOwnHeader['counts'] {
  return {
    tables: Object.fromEntries(recordTableNames.map((name) => [name, payload.tables[name].length])) as Record<RecordTableName, number>,
    deviceSecrets: payload.deviceSecrets.length,
    certificateAuthority: payload.certificateAuthority !== null,
  };
}
