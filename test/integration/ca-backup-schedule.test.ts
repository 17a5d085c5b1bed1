/**
 * Scheduled CA backups against the real dev server: each run writes an encrypted backup that
 * restores with the configured passphrase, keeps only the newest few, and a run that cannot write
 * raises an alert that the next good run resolves.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupFileName } from '../../activities/ca-backup';
import { alerts } from '../../db/schema';
import { caBackupScheduleId } from '../../pki/ca-backup-schedule';
import { BackupPassphraseError, readBackupHeader } from '../../pki/ca-backup';
import { applyCaBackupSchedule } from '../../pki/ca-backup-schedule';
import { systemAuditTenant } from '../../service/parts';
import { backUpCertificateAuthority } from '../../workflows/ca-backup';
import { startTestService, type TestService } from '../support/service';

const passphrase = 'correct horse battery staple, scheduled';
let service: TestService;
let directory: string;

beforeAll(async () => {
  const work = mkdtempSync(path.join(process.env.TEST_WORK_DIR ?? os.tmpdir(), 'ca-backups-'));
  directory = path.join(work, 'backups');
  const passphraseFile = path.join(work, 'passphrase');
  writeFileSync(passphraseFile, `${passphrase}\n`, { mode: 0o600 });
  service = await startTestService({
    environment: { CA_BACKUP_DIRECTORY: directory, CA_BACKUP_KEEP: '2', CA_BACKUP_PASSPHRASE_FILE: passphraseFile },
  });
  await service.parts.ca.ensureSiteIntermediateCa('acme', 'hq');
});
afterAll(async () => {
  await service?.stop();
});

async function backUp() {
  return service.env.client.workflow.execute(backUpCertificateAuthority, {
    workflowId: `ca-backup-test-${Date.now()}`,
    taskQueue: service.config.temporal.taskQueue,
  });
}

async function openBackupAlerts() {
  const rows = await service.parts.database.db
    .select()
    .from(alerts)
    .where(and(eq(alerts.tenantId, systemAuditTenant), eq(alerts.kind, 'certificate_authority.backup_failing')));
  return rows.filter((row) => row.resolvedAt === null);
}

describe('scheduled CA backups', () => {
  it('write an owner-only encrypted backup of every tenant that restores with the configured passphrase', async () => {
    const outcome = await backUp();
    expect(outcome).toMatchObject({ file: expect.stringMatching(/^ca-backup-\d{8}T\d{9}Z\.dpsbak$/), tenants: ['acme'], removed: [] });
    const file = path.join(directory, outcome.file!);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const bytes = readFileSync(file);
    expect(bytes.includes(Buffer.from(passphrase))).toBe(false);
    expect(readBackupHeader(bytes).tenants).toEqual(['acme']);
    // It opens with the configured passphrase and with no other.
    await expect(service.parts.caBackup.restoreBackup(bytes, { passphrase: 'not the passphrase at all' })).rejects.toBeInstanceOf(BackupPassphraseError);
    await expect(service.parts.caBackup.restoreBackup(bytes, { passphrase })).resolves.toBeDefined();
  });

  it('keep only the newest backups, as many as configured', async () => {
    const old = backupFileName(new Date('2026-01-01T00:00:00Z'));
    writeFileSync(path.join(directory, old), 'old');
    writeFileSync(path.join(directory, 'notes.txt'), 'not a backup');
    const before = readdirSync(directory).filter((name) => name.endsWith('.dpsbak'));
    const outcome = await backUp();
    const backups = readdirSync(directory).filter((name) => name.endsWith('.dpsbak')).sort();
    expect(backups).toHaveLength(2);
    expect(backups.at(-1)).toBe(outcome.file);
    // The oldest went first: the one planted from January, then earlier runs' beyond the two kept.
    expect(outcome.removed[0]).toBe(old);
    expect(outcome.removed).toHaveLength(before.length + 1 - 2);
    expect(existsSync(path.join(directory, 'notes.txt'))).toBe(true);
  });

  it('raise an alert when the backup cannot be written, resolved by the next good one', async () => {
    // Where the directory should be, a file: nothing can be written there until someone moves it.
    renameSync(directory, `${directory}.aside`);
    writeFileSync(directory, 'in the way');
    try {
      await expect(backUp()).rejects.toThrow();
      expect(await openBackupAlerts()).toEqual([expect.objectContaining({ severity: 'critical', summary: expect.stringContaining(directory) })]);
    } finally {
      rmSync(directory);
      renameSync(`${directory}.aside`, directory);
    }
    await backUp();
    expect(await openBackupAlerts()).toEqual([]);
  }, 120_000);

  it('run on a Temporal Schedule at the configured interval, removed when backups are no longer configured', async () => {
    await applyCaBackupSchedule(service.env.client, { taskQueue: service.config.temporal.taskQueue, everyHours: service.config.caBackup!.intervalHours });
    const schedule = await service.env.client.schedule.getHandle(caBackupScheduleId).describe();
    expect(schedule.action).toMatchObject({ workflowType: 'backUpCertificateAuthority' });
    expect(schedule.spec.intervals).toEqual([expect.objectContaining({ every: 24 * 3_600_000 })]);
    await applyCaBackupSchedule(service.env.client, { taskQueue: service.config.temporal.taskQueue });
    await expect(service.env.client.schedule.getHandle(caBackupScheduleId).describe()).rejects.toThrow(/not found/i);
  });
});
