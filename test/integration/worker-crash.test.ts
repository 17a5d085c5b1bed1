/**
 * Durability: the worker is killed outright in the middle of a provisioning run; a new worker
 * finishes it, and the device ends up provisioned once, with exactly one certificate. The same for
 * a rotation of a camera's management password killed after the camera took the new one but before
 * the vault was told: the new worker finds the camera on the pending password and promotes it.
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
import { credentialRotationWorkflowId } from '../../contracts/credential-rotation';
import { vaultDeviceSecrets } from '../../custody/device-secrets';
import { onvifSecretPurposes } from '../../adapters/onvif';
import { startOnvifDevice } from '../../scripts/simulators/onvif-device';
import { createCredentialRotations } from '../../service/parts';
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

it('a worker killed mid-rotation is replaced and the camera ends on the password the vault holds, the pending one forgotten', async () => {
  // Only the worker killed below may hold the rotation: none left from an earlier test.
  for (const worker of workers) if (worker.exitCode === null) worker.kill('SIGKILL');
  const firstWorker = await startWorkerProcess();
  const credentials = { username: 'admin', password: randomBytes(9).toString('base64url') };
  const camera = await startOnvifDevice({ host: '127.213.0.9', serialNumber: 'CAM-CRASH-1', macAddress: '02:00:5e:21:30:09', credentials });
  const taskQueue = workerEnvironment.TEMPORAL_TASK_QUEUE!;
  const provisioning = testProvisioning(createProvisioningService(parts, env.client, taskQueue), [...parts.adapters.keys()]);
  const secrets = vaultDeviceSecrets(parts.vault, 'acme', 'cam-crash-1');
  const passwordOf = (secret: Uint8Array | undefined) => Buffer.from(secret!).toString('base64url');
  try {
    await provisioning.start('acme', {
      templateId: 'onvif-camera',
      devices: [{ deviceId: 'cam-crash-1', serialNumber: 'CAM-CRASH-1', macAddress: '02:00:5e:21:30:09', address: camera.address, protocol: 'onvif', deviceType: 'camera', site: 'hq', credentials }],
    });
    await env.client.workflow.getHandle(provisioningWorkflowId('acme', 'cam-crash-1')).result();
    const before = passwordOf(await secrets.read(onvifSecretPurposes.managementPassword));

    // SetUser is held for a while, so the worker dies while the camera is taking the new password.
    camera.faults.delayMs = { SetUser: 3_000 };
    await createCredentialRotations(parts, env.client, taskQueue).start('acme', 'cam-crash-1', { reason: 'crash test', requestedBy: 'test' });
    const pending = await waitFor(async () => secrets.read(`${onvifSecretPurposes.managementPassword}:pending`), 'the new password to be sealed');
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    firstWorker.kill('SIGKILL');
    await waitFor(async () => (camera.passwordMatches('provisioning', passwordOf(pending)) ? true : undefined), 'the camera to take the new password');
    expect(passwordOf(await secrets.read(onvifSecretPurposes.managementPassword))).toBe(before);

    camera.faults.delayMs = {};
    await startWorkerProcess();
    const outcome = await env.client.workflow.getHandle(credentialRotationWorkflowId('acme', 'cam-crash-1')).result();
    expect(outcome).toMatchObject({ rotated: ['ONVIF management user password'] });
    expect(passwordOf(await secrets.read(onvifSecretPurposes.managementPassword))).toBe(passwordOf(pending));
    expect(await secrets.read(`${onvifSecretPurposes.managementPassword}:pending`)).toBeUndefined();
    expect(camera.passwordMatches('provisioning', passwordOf(pending))).toBe(true);
  } finally {
    await camera.close();
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
