/**
 * The compose file's namespace job (deploy/temporal/setup-namespace.sh), run with the pinned
 * `temporal` CLI against a real Temporal server that has none of the service's search attributes,
 * as a fresh cluster has none.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { temporal } from '@temporalio/proto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allSearchAttributeKeys } from '../../contracts/provisioning';
import { temporalCliPath } from '../support/temporal';

const script = path.resolve(import.meta.dirname, '../../deploy/temporal/setup-namespace.sh');
const namespace = 'compose-namespace-job';

let env: TestWorkflowEnvironment;
let cliDirectory: string;

beforeAll(async () => {
  env = await TestWorkflowEnvironment.createLocal({
    server: { executable: { type: 'existing-path', path: temporalCliPath() }, ip: '127.0.0.1', extraArgs: ['--log-level', 'error'] },
  });
  // The job calls `temporal` by name, as in the admin tools image.
  cliDirectory = mkdtempSync(path.join(os.tmpdir(), 'temporal-cli-'));
  symlinkSync(temporalCliPath(), path.join(cliDirectory, 'temporal'));
});

afterAll(async () => {
  await env?.teardown();
  if (cliDirectory) rmSync(cliDirectory, { recursive: true, force: true });
});

function runJob(retention: string) {
  return promisify(execFile)('sh', [script], {
    env: {
      PATH: `${cliDirectory}:${process.env.PATH}`,
      TEMPORAL_ADDRESS: env.address,
      TEMPORAL_NAMESPACE: namespace,
      TEMPORAL_RETENTION: retention,
    },
    timeout: 90_000,
  });
}

async function retentionDays(): Promise<number> {
  const described = await env.connection.workflowService.describeNamespace({ namespace });
  return Number(described.config?.workflowExecutionRetentionTtl?.seconds) / 86_400;
}

async function customSearchAttributes(): Promise<Record<string, number>> {
  const listed = await env.connection.operatorService.listSearchAttributes({ namespace });
  return Object.fromEntries(Object.entries(listed.customAttributes ?? {}).map(([name, type]) => [name, Number(type)]));
}

describe('the compose namespace job', () => {
  it('creates the namespace with the retention asked for and every search attribute the service queries, with its type', async () => {
    await runJob('3d');
    expect(await retentionDays()).toBe(3);
    const attributes = await customSearchAttributes();
    const indexedType = (type: string) => temporal.api.enums.v1.IndexedValueType[`INDEXED_VALUE_TYPE_${type}` as 'INDEXED_VALUE_TYPE_KEYWORD'];
    expect(attributes).toEqual(Object.fromEntries(allSearchAttributeKeys.map((key) => [key.name, indexedType(key.type)])));
  });

  it('run again, changes the retention and leaves the search attributes as they are', async () => {
    const before = await customSearchAttributes();
    await runJob('45d');
    expect(await retentionDays()).toBe(45);
    expect(await customSearchAttributes()).toEqual(before);
  });
});
