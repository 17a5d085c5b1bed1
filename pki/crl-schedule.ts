/** The Temporal Schedule that republishes every CA's CRL before its nextUpdate. */
import type { Client, ScheduleHandle } from '@temporalio/client';
import { ensureIntervalSchedule } from '../foundation/schedules';
import type { publishCrls } from '../workflows/crl-publication';

export const defaultCrlScheduleId = 'crl-publication';

export function ensureCrlSchedule(
  client: Client,
  options: { taskQueue: string; everyMinutes: number; scheduleId?: string },
): Promise<ScheduleHandle> {
  return ensureIntervalSchedule<typeof publishCrls>(client, {
    scheduleId: options.scheduleId ?? defaultCrlScheduleId,
    workflowType: 'publishCrls',
    args: [],
    taskQueue: options.taskQueue,
    every: `${options.everyMinutes}m`,
    workflowExecutionTimeout: '1h',
  });
}
