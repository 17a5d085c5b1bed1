/** The Temporal Schedule that runs `evaluateAlerts`. */
import type { Client, ScheduleHandle } from '@temporalio/client';
import type { Duration } from '@temporalio/common';
import { ensureIntervalSchedule } from '../foundation/schedules';
import type { evaluateAlerts } from '../workflows/alert-evaluation';

export const defaultAlertScheduleId = 'alert-evaluation';

export interface AlertScheduleOptions {
  /** The queue of a worker that has both the workflow and the alert activities. */
  taskQueue: string;
  /** e.g. `'5m'`. */
  every: Duration;
  scheduleId?: string;
}

export function ensureAlertSchedule(client: Client, options: AlertScheduleOptions): Promise<ScheduleHandle> {
  return ensureIntervalSchedule<typeof evaluateAlerts>(client, {
    scheduleId: options.scheduleId ?? defaultAlertScheduleId,
    workflowType: 'evaluateAlerts',
    args: [{}],
    taskQueue: options.taskQueue,
    every: options.every,
    // Its activities end well before this.
    workflowExecutionTimeout: '30m',
  });
}
