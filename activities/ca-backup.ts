/**
 * The scheduled CA backup: an encrypted backup file of every tenant's CA written into the
 * configured directory (owner-only, never over another file), the oldest beyond the number kept
 * removed, and an alert while backups fail. The passphrase is read at each run from where the
 * configuration says, and never leaves this activity.
 */
import { mkdir, readdir, unlink } from 'node:fs/promises';
import { ApplicationFailure } from '@temporalio/activity';
import path from 'node:path';
import { alertFingerprint, alertKinds, type AlertStore } from '../alerts/alert-store';
import type { AuditLog } from '../audit/audit-log';
import { readBackupPassphrase, writeBackupFile, type CertificateAuthorityBackup } from '../pki/ca-backup';
import type { ScheduledCaBackupSettings } from '../pki/ca-backup-schedule';
import { NotFoundError } from '../foundation/errors';
import type { Logger } from '../foundation/logger';

const unusableDirectoryCodes = new Set(['EACCES', 'EPERM', 'EROFS', 'ENOTDIR', 'EEXIST', 'EISDIR']);

/** Backup files this schedule writes, named so that their names sort by time. */
const backupFilePattern = /^ca-backup-\d{8}T\d{6}\d{3}Z\.dpsbak$/;

export function backupFileName(at: Date): string {
  return `ca-backup-${at.toISOString().replace(/[-:.]/g, '')}.dpsbak`;
}

export interface CaBackupOutcome {
  /** Absent when there was nothing to back up yet. */
  file?: string;
  bytes?: number;
  tenants?: string[];
  removed: string[];
  skippedBecause?: string;
}

export interface CaBackupActivityDependencies {
  caBackup: CertificateAuthorityBackup;
  settings: ScheduledCaBackupSettings;
  alerts: AlertStore;
  audit: AuditLog;
  /** The chain and alert tenant for what belongs to the whole install. */
  systemTenant: string;
  logger: Logger;
}

export function createCaBackupActivities(deps: CaBackupActivityDependencies) {
  const { caBackup, settings, alerts, audit, systemTenant, logger } = deps;
  const fingerprint = alertFingerprint(alertKinds.caBackupFailing, 'scheduled');

  return {
    async writeScheduledCaBackup(): Promise<CaBackupOutcome> {
      const passphrase = await readBackupPassphrase(
        'file' in settings.passphrase ? { file: settings.passphrase.file, environment: {} } : { environment: { CA_BACKUP_PASSPHRASE: settings.passphrase.value } },
      );
      let written: { file: string; bytes: number; tenants: string[] } | undefined;
      try {
        const { file, summary } = await caBackup.createBackup({ passphrase });
        await mkdir(settings.directory, { recursive: true, mode: 0o700 });
        const name = backupFileName(new Date());
        await writeBackupFile(path.join(settings.directory, name), file);
        written = { file: name, bytes: file.length, tenants: summary.header.tenants };
      } catch (error) {
        if (error instanceof NotFoundError) return { removed: [], skippedBecause: error.message };
        const code = (error as NodeJS.ErrnoException).code;
        // A directory that is not one, or that may not be written, stays so until someone fixes it.
        if (code !== undefined && unusableDirectoryCodes.has(code)) {
          throw ApplicationFailure.nonRetryable(`cannot write into ${settings.directory}: ${(error as Error).message}`, 'CaBackupDirectoryUnusable');
        }
        throw error;
      } finally {
        passphrase.fill(0);
      }

      const backups = (await readdir(settings.directory)).filter((name) => backupFilePattern.test(name)).sort();
      const removed = backups.slice(0, Math.max(0, backups.length - settings.keep));
      for (const name of removed) await unlink(path.join(settings.directory, name));

      await audit.append({
        tenantId: systemTenant,
        actor: 'ca-backup-schedule',
        actorType: 'system',
        action: 'ca.backup_written',
        details: { ...written, directory: settings.directory, removed },
      });
      await alerts.resolve(systemTenant, fingerprint, 'ca-backup-schedule');
      logger.info({ file: written.file, bytes: written.bytes, tenants: written.tenants.length, removed: removed.length }, 'wrote the scheduled CA backup');
      return { ...written, removed };
    },

    /** Raised once the backup's retries are spent; the next good backup resolves it. */
    async recordCaBackupFailure(input: { error: string }): Promise<void> {
      await alerts.raise({
        tenantId: systemTenant,
        kind: alertKinds.caBackupFailing,
        severity: 'critical',
        fingerprint,
        summary: `the scheduled CA backup into ${settings.directory} failed: ${input.error}`,
        details: { directory: settings.directory, error: input.error },
        raisedBy: 'ca-backup-schedule',
      });
    },
  };
}

export type CaBackupActivities = ReturnType<typeof createCaBackupActivities>;
