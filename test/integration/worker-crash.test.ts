/**
 * Durability: the worker is killed outright in the middle of a provisioning run; a new worker
 * finishes it, and the device ends up provisioned once, with exactly one certificate.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import path from 'node:path';
import { temporal } from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { certificates } from '../../db/schema';
import { loadConfig } from '../../service/config';
import { createDeviceLifecycle, createProvisioningService, createServiceParts, type ServiceParts } from '../../service/parts';
import { decommissionWorkflowId, type DecommissionProgress } from '../../contracts/device-lifecycle';
import { installTemporalRuntime } from '../../service/temporal';
import { payloadDataConverter } from '../../custody/payload-codec';
import { provisioningWorkflowId, type DeviceProvisioningRecord } from '../../contracts/provisioning';
import { createServerDatabaseUrl } from '../support/database';
import { startTestDevice, waitFor } from '../support/devices';
import { testLogger, testProvisioning } from '../support/service';
import { createTemporalTestEnvironment } from '../support/temporal';

const { PendingActivityState } = temporal.api.enums.v1;
const root = path.resolve(import.meta.dirname, '../..');
let env: TestWorkflowEnvironment;
let parts: ServiceParts;
let workerEnvironment: NodeJS.ProcessEnv;
const workers: ChildProcess[] = [];

function startWorkerProcess(): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'test/support/worker-process.ts')], {
    cwd: root,
    env: workerEnvironment,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  workers.push(child);
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`worker process exited early (${code})`)));
    child.stdout!.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('worker ready')) resolve(child);
    });
  });
}

beforeAll(async () => {
  installTemporalRuntime(testLogger);
  workerEnvironment = {
    ...process.env,
    DATA_DIR: mkdtempSync(path.join(process.env.TEST_WORK_DIR ?? '/tmp', 'crash-')),
    DATABASE_URL: await createServerDatabaseUrl(),
    KEY_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
    TEMPORAL_TASK_QUEUE: `provisioning-crash-${randomUUID()}`,
    LOG_LEVEL: 'silent',
    // The test devices run on loopback.
    SERVICE_ENVIRONMENT: 'development',
  };
  parts = await createServiceParts(loadConfig(workerEnvironment), testLogger);
  env = await createTemporalTestEnvironment(payloadDataConverter(parts.payloadKeyring));
  workerEnvironment.TEMPORAL_ADDRESS = env.address;
});

afterAll(async () => {
  for (const worker of workers) if (worker.exitCode === null) worker.kill('SIGKILL');
  await parts?.close();
  await env?.teardown();
});

it('a worker killed mid-provisioning is replaced and the device is provisioned once with one certificate', async () => {
  const firstWorker = await startWorkerProcess();
  const { device, request } = await startTestDevice({ faults: { latencyMs: { '/api/v1/configuration': 3_000 } } });
  const provisioning = testProvisioning(createProvisioningService(parts, env.client, workerEnvironment.TEMPORAL_TASK_QUEUE!), [...parts.adapters.keys()]);
  try {
    const [started] = await provisioning.start('acme', { devices: [request] });
    await waitFor(async () => {
      const record = await provisioning.status('acme', started.provisioningId);
      const step = record.provisioningSteps.find((s) => s.step === 'pushConfiguration');
      return step?.status === 'in_progress' ? record : undefined;
    }, 'the configuration step to be under way');

    firstWorker.kill('SIGKILL');
    await startWorkerProcess();

    const handle = env.client.workflow.getHandle(provisioningWorkflowId('acme', request.serialNumber));
    const record: DeviceProvisioningRecord = await handle.result();
    expect(record.status).toBe('completed');
    const issued = await parts.database.db.select().from(certificates).where(eq(certificates.deviceId, request.serialNumber));
    expect(issued).toHaveLength(1);
    expect(issued[0].fingerprint).toBe(device.certificateFingerprint);
    expect(record.certificateInfo?.serialNumber).toBe(issued[0].serialNumber);
    expect(device.state).toBe('active');
    // The step that the dead worker held was run again on the new one.
    expect(record.provisioningSteps.find((s) => s.step === 'pushConfiguration')?.retryCount).toBeGreaterThanOrEqual(1);
  } finally {
    await device.stop();
  }
}, 120_000);

it('a worker killed mid-decommissioning is replaced and the decommissioning finishes, each step once in effect', async () => {
  await startWorkerProcess();
  const { device, request } = await startTestDevice();
  const taskQueue = workerEnvironment.TEMPORAL_TASK_QUEUE!;
  const provisioning = testProvisioning(createProvisioningService(parts, env.client, taskQueue), [...parts.adapters.keys()]);
  try {
    // A run waiting for its activation signal: the decommissioning must end it, which takes a moment.
    const [started] = await provisioning.start('acme', { devices: [request], options: { autoActivate: false } });
    await waitFor(async () => ((await provisioning.status('acme', started.provisioningId)).metadata.awaitingActivation ? true : undefined), 'the run to wait for activation');

    const lifecycle = createDeviceLifecycle(parts, env.client, taskQueue);
    const { jobId } = await lifecycle.decommission('acme', request.serialNumber, { reason: 'site closed', resetToInstallKey: false }, 'crash-test');
    expect(jobId).toBe(decommissionWorkflowId('acme', request.serialNumber));
    const handle = env.client.workflow.getHandle(jobId);
    // Killed while a worker holds the step (started, not merely scheduled): the step ends the run, then waits for it to close.
    await waitFor(async () => {
      const pending = (await handle.describe()).raw.pendingActivities ?? [];
      return pending.some((a) => a.activityType?.name === 'endDeviceWorkflows' && a.state === PendingActivityState.PENDING_ACTIVITY_STATE_STARTED) ? true : undefined;
    }, 'the decommissioning to be ending the device workflows');

    // Every worker polling the queue dies (an earlier test's too), so the step cannot finish where it started.
    for (const worker of workers) if (worker.exitCode === null) worker.kill('SIGKILL');
    await startWorkerProcess();

    const progress: DecommissionProgress = await handle.result();
    expect(progress.state).toBe('completed');
    expect(progress.endedWorkflows).toEqual([started.provisioningId]);
    const issued = await parts.database.db.select().from(certificates).where(eq(certificates.deviceId, request.serialNumber));
    expect(issued).toHaveLength(1);
    expect(issued[0]!.revocationReason).toBe('cessationOfOperation');
    expect(await parts.registry.get('acme', request.serialNumber)).toMatchObject({ lifecycleState: 'decommissioned', decommissionReason: 'site closed' });
    // The step the dead worker held was run again on the new one.
    const history = await handle.fetchHistory();
    const attempts = history.events!.flatMap((event) => (event.activityTaskStartedEventAttributes ? [event.activityTaskStartedEventAttributes.attempt ?? 1] : []));
    expect(Math.max(...attempts)).toBeGreaterThanOrEqual(2);
  } finally {
    await device.stop();
  }
}, 180_000);
