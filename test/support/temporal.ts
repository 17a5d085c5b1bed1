/**
 * A real Temporal dev server for a test file, from the pinned CLI that setup installed, with the
 * service's search attributes registered.
 */
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { allSearchAttributeKeys } from '../../workflows/definitions';

export function temporalCliPath(): string {
  const path = process.env.TEMPORAL_CLI_PATH;
  if (!path) throw new Error('TEMPORAL_CLI_PATH is not set; run the tests with `npm test`');
  return path;
}

export function createTemporalTestEnvironment(): Promise<TestWorkflowEnvironment> {
  return TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'existing-path', path: temporalCliPath() },
      ip: '127.0.0.1',
      searchAttributes: allSearchAttributeKeys,
      extraArgs: ['--log-level', 'error'],
    },
  });
}
