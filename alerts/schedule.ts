/**
 * The Temporal Schedule that runs `evaluateAlerts`. Created at service start, or brought up to
 * date if it exists, so every start converges on the configured interval and task queue; a pause
 * an operator set is kept.
 */
import { ScheduleAlreadyRunning, ScheduleOverlapPolicy, type Client, type ScheduleHandle } from '@temporalio/client';
import type { Duration } from '@temporalio/common';
import type { evaluateAlerts } from '../workflows/alert-evaluation';

export const defaultAlertScheduleId = 'alert-evaluation';

export interface AlertScheduleOptions {
  /** The queue of a worker that has both the workflow and the alert activities. */
  taskQueue: string;
  /** e.g. `'5m'`. */
  every: Duration;
  scheduleId?: string;
}

export async function ensureAlertSchedule(client: Client, options: AlertScheduleOptions): Promise<ScheduleHandle> {
  const scheduleId = options.scheduleId ?? defaultAlertScheduleId;
  const spec = { intervals: [{ every: options.every }] };
  const action = {
    type: 'startWorkflow' as const,
    workflowType: 'evaluateAlerts',
    // The schedule appends the scheduled time, so each run has its own id.
    workflowId: scheduleId,
    taskQueue: options.taskQueue,
    args: [{}] as Parameters<typeof evaluateAlerts>,
    // A run stuck longer than this would block the next ones (overlap SKIP); its activities end well before.
    workflowExecutionTimeout: '30m',
  };
  const policies = {
    // An evaluation still running when the next is due makes the next one pointless.
    overlap: ScheduleOverlapPolicy.SKIP,
    // After an outage one catch-up run is enough; the rules look at the present anyway.
    catchupWindow: '1m',
  };

  try {
    return await client.schedule.create<typeof evaluateAlerts>({ scheduleId, spec, action, policies });
  } catch (error) {
    if (!(error instanceof ScheduleAlreadyRunning)) throw error;
  }
  const handle = client.schedule.getHandle(scheduleId);
  await handle.update<typeof evaluateAlerts>((previous) => ({
    ...previous,
    spec,
    action,
    policies: { ...previous.policies, ...policies },
  }));
  return handle;
}
