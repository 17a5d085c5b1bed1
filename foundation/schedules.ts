/**
 * Temporal Schedules the service owns. Each is created at service start, or brought up to date if
 * it exists, so every start converges on the configured interval and task queue; a pause an
 * operator set is kept.
 */
import {
  ScheduleAlreadyRunning,
  ScheduleNotFoundError,
  ScheduleOverlapPolicy,
  type Client,
  type ScheduleHandle,
  type ScheduleOptionsStartWorkflowAction,
  type Workflow,
} from '@temporalio/client';
import type { Duration, SearchAttributePair } from '@temporalio/common';

export interface IntervalScheduleOptions<W extends Workflow> {
  scheduleId: string;
  workflowType: string;
  args: Parameters<W>;
  /** The queue of a worker that has the workflow and its activities. */
  taskQueue: string;
  /** e.g. `'5m'`. */
  every: Duration;
  /** A run stuck longer than this would block the next ones (overlap SKIP). */
  workflowExecutionTimeout: Duration;
  /** Run once as soon as the schedule is created (not when an existing one is brought up to date). */
  runOnCreation?: boolean;
  /** Set on every run it starts, so runs can be found by them (a tenant's, say). */
  typedSearchAttributes?: SearchAttributePair[];
}

export async function ensureIntervalSchedule<W extends Workflow>(client: Client, options: IntervalScheduleOptions<W>): Promise<ScheduleHandle> {
  const { scheduleId } = options;
  const spec = { intervals: [{ every: options.every }] };
  const action = {
    type: 'startWorkflow',
    workflowType: options.workflowType,
    // The schedule appends the scheduled time, so each run has its own id.
    workflowId: scheduleId,
    taskQueue: options.taskQueue,
    args: options.args,
    workflowExecutionTimeout: options.workflowExecutionTimeout,
    ...(options.typedSearchAttributes ? { typedSearchAttributes: options.typedSearchAttributes } : {}),
  } as ScheduleOptionsStartWorkflowAction<W>;
  const policies = {
    // A run still going when the next is due makes the next one pointless.
    overlap: ScheduleOverlapPolicy.SKIP,
    // After an outage one catch-up run is enough: each run looks at the present.
    catchupWindow: '1m',
  };

  try {
    return await client.schedule.create<W>({
      scheduleId,
      spec,
      action,
      policies,
      ...(options.runOnCreation ? { state: { triggerImmediately: true } } : {}),
    });
  } catch (error) {
    if (!(error instanceof ScheduleAlreadyRunning)) throw error;
  }
  const handle = client.schedule.getHandle(scheduleId);
  await handle.update<W>((previous) => ({ ...previous, spec, action, policies: { ...previous.policies, ...policies } }));
  return handle;
}

/** Removes a schedule the service owns; false when there was none. */
export async function deleteSchedule(client: Client, scheduleId: string): Promise<boolean> {
  try {
    await client.schedule.getHandle(scheduleId).delete();
    return true;
  } catch (error) {
    if (error instanceof ScheduleNotFoundError) return false;
    throw error;
  }
}
