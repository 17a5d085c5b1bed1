/**
 * A real Temporal dev server for a test file, from the pinned CLI that setup installed, with the
 * service's search attributes registered.
 */
import type { WorkflowHandle } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { allSearchAttributeKeys } from '../../contracts/provisioning';

export function temporalCliPath(): string {
  const path = process.env.TEMPORAL_CLI_PATH;
  if (!path) throw new Error('TEMPORAL_CLI_PATH is not set; run the tests with `npm test`');
  return path;
}

/** `dataConverter` must be the one the workers use, so the environment's client can read payloads. */
export function createTemporalTestEnvironment(dataConverter?: DataConverter, serverArgs: string[] = []): Promise<TestWorkflowEnvironment> {
  return TestWorkflowEnvironment.createLocal({
    ...(dataConverter ? { client: { dataConverter } } : {}),
    server: {
      executable: { type: 'existing-path', path: temporalCliPath() },
      ip: '127.0.0.1',
      searchAttributes: allSearchAttributeKeys,
      extraArgs: ['--log-level', 'error', ...serverArgs],
    },
  });
}

/**
 * The time-skipping test server: timers of workflows that sleep for months fire as soon as
 * nothing else is running. Activities still run in real time, against real devices.
 */
export function createTimeSkippingTestEnvironment(dataConverter?: DataConverter): Promise<TestWorkflowEnvironment> {
  const path = process.env.TEMPORAL_TEST_SERVER_PATH;
  if (!path) throw new Error('TEMPORAL_TEST_SERVER_PATH is not set; run the tests with `npm test`');
  // It has no custom search attributes: workflows started here must not set any.
  return TestWorkflowEnvironment.createTimeSkipping({
    ...(dataConverter ? { client: { dataConverter } } : {}),
    server: { executable: { type: 'existing-path', path } },
  });
}

/** A run's activity as its history tells it: type, queue, who ran it, and the last failure type. */
export interface ScheduledActivity {
  type: string;
  taskQueue: string;
  identity?: string;
  failure?: string;
}

/** Each activity a run scheduled, in order. */
export async function scheduledActivities(handle: WorkflowHandle): Promise<ScheduledActivity[]> {
  const { events } = await handle.fetchHistory();
  const scheduled = new Map<string, ScheduledActivity>();
  for (const event of events ?? []) {
    const attributes = event.activityTaskScheduledEventAttributes;
    if (attributes) scheduled.set(String(event.eventId), { type: attributes.activityType!.name!, taskQueue: attributes.taskQueue!.name! });
    const started = event.activityTaskStartedEventAttributes;
    if (started) scheduled.get(String(started.scheduledEventId))!.identity = started.identity ?? undefined;
    const failed = event.activityTaskFailedEventAttributes;
    if (failed) scheduled.get(String(failed.scheduledEventId))!.failure = failed.failure?.applicationFailureInfo?.type ?? 'unknown';
  }
  return [...scheduled.values()];
}
