/**
 * A real Temporal dev server for a test file, from the pinned CLI that setup installed, with the
 * service's search attributes registered.
 */
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
