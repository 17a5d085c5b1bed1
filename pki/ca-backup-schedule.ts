/**
 * The Temporal Schedule of CA backups: present, at the configured interval, while a backup
 * directory is configured; removed when it no longer is.
 */
import type { Client } from '@temporalio/client';
import { deleteSchedule, ensureIntervalSchedule } from '../foundation/schedules';
import type { backUpCertificateAuthority } from '../workflows/ca-backup';

export const caBackupScheduleId = 'ca-backup';

export interface ScheduledCaBackupSettings {
  directory: string;
  intervalHours: number;
  /** Backups kept in the directory; older ones are removed after each new one is written. */
  keep: number;
  /** Where the passphrase is read from at each backup: a file, or the value itself. */
  passphrase: { file: string } | { value: string };
}

export async function applyCaBackupSchedule(client: Client, options: { taskQueue: string; everyHours?: number }): Promise<void> {
  if (options.everyHours === undefined) {
    await deleteSchedule(client, caBackupScheduleId);
    return;
  }
  await ensureIntervalSchedule<typeof backUpCertificateAuthority>(client, {
    scheduleId: caBackupScheduleId,
    workflowType: 'backUpCertificateAuthority',
    args: [],
    taskQueue: options.taskQueue,
    every: `${options.everyHours}h`,
    workflowExecutionTimeout: '3h',
  });
}
