/**
 * The Temporal Schedule of CA backups: present, at the configured interval, while a backup
 * directory is configured; removed when it no longer is.
 */
import type { Client } from '@temporalio/client';
import { deleteSchedule, ensureIntervalSchedule } from '../foundation/schedules';
import type { backUpCertificateAuthority } from '../workflows/ca-backup';

export const caBackupScheduleId = 'ca-backup';

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
