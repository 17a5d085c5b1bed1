/**
 * One scheduled CA backup: write it, keep the newest few, and raise an alert when it cannot be
 * done after its retries (the run then ends failed, as the schedule's history shows).
 */
import { ActivityFailure, ApplicationFailure, proxyActivities } from '@temporalio/workflow';
import type { CaBackupActivities, CaBackupOutcome } from '../activities/ca-backup';

const backups = proxyActivities<CaBackupActivities>({
  startToCloseTimeout: '30m',
  retry: { initialInterval: '30s', backoffCoefficient: 2, maximumInterval: '10m', maximumAttempts: 5 },
});

export async function backUpCertificateAuthority(): Promise<CaBackupOutcome> {
  try {
    return await backups.writeScheduledCaBackup();
  } catch (error) {
    const cause = error instanceof ActivityFailure ? error.cause : error;
    const message = cause instanceof ApplicationFailure || cause instanceof Error ? cause.message : String(cause);
    await backups.recordCaBackupFailure({ error: message });
    throw error;
  }
}
