/**
 * Sites and edge workers: a site set to an edge worker has its device-facing work (the device
 * steps of provisioning, credential rotation, certificate renewal, configuration rollouts, drift
 * checks and decommissioning, health probes, discovery scanners) run by a worker at the site, on the
 * site's own task queue, while the CA and the bookkeeping stay on the central worker. The site's
 * devices live in a network namespace of their own; only the edge worker runs in it (reaching
 * Temporal and the database through bridges the test makes), so a device step the central worker
 * took would find nothing there. The central service keeps the CA's keys in the HSM (SoftHSM2) and
 * the edge worker is given none of its settings: configurations it pushes are signed centrally. With
 * the edge worker away, work for the site waits and `site.worker_missing` fires; with it back, the
 * work completes and the alert resolves.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { WorkflowHandle } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { preparedConfigurationPurposePrefix } from '../../activities/configuration-push';
import { alertKinds } from '../../alerts/alert-store';
import { siteTaskQueue } from '../../contracts/site-workers';
import type { DeviceProvisioningRecord } from '../../contracts/provisioning';
import { credentialRotationWorkflowId } from '../../contracts/credential-rotation';
import { renewalStatusQuery, renewalWorkflowId } from '../../contracts/certificates';
import { rolloutWorkflowId } from '../../contracts/configuration';
import type { SiteNetworkInput, SiteNetworkReady } from '../fixtures/site-network';
import { startTestApi, type TestApi } from '../support/api';
import { waitFor } from '../support/devices';
import { startTestNamespace, type PeerNamespace } from '../support/netns';
import { startTestService, type TestService } from '../support/service';
import { scheduledActivities } from '../support/temporal';

/** Each scheduled activity of a run: its type, the queue it was put on, and who ran it. */
const activitiesOf = async (handle: WorkflowHandle) => (await scheduledActivities(handle)).map(({ type, taskQueue, identity }) => ({ type, taskQueue, identity }));

const root = path.resolve(import.meta.dirname, '..', '..');
const tenantId = 'acme';
const site = 'north';
const network = '10.66.0.0/24';
/** A live poller polls again within the dev server's long-poll interval, set short here. */
const longPollSeconds = 3;
const pollerStaleSeconds = 10;

let service: TestService;
let api: TestApi;
let namespace: PeerNamespace<SiteNetworkReady>;
let workDir: string;
const bridges: ChildProcess[] = [];
let siteWorkerEnvironment: NodeJS.ProcessEnv;
let siteWorker: ChildProcess | undefined;
/** What the running edge worker has logged so far. */
let siteWorkerOutput = '';

const devices = ['SITE-A', 'SITE-B'].map((prefix) => ({
  serialNumber: `${prefix}-${randomBytes(3).toString('hex').toUpperCase()}`,
  macAddress: ['02', ...randomBytes(5).toString('hex').match(/../g)!].join(':'),
  credentials: { username: 'admin', password: randomBytes(9).toString('base64url') },
}));

/** A Unix socket forwarding to a TCP port on the test's loopback. */
function bridgeTo(port: number): { port: number; socket: string } {
  const socket = path.join(workDir, `bridge-${port}.sock`);
  bridges.push(spawn('socat', [`UNIX-LISTEN:${socket},fork,unlink-early`, `TCP:127.0.0.1:${port}`], { stdio: 'ignore' }));
  return { port, socket };
}

/** The service with only the site-worker role, inside the site's network namespace. */
async function startSiteWorker(): Promise<ChildProcess> {
  const child = spawn('nsenter', [`--net=/proc/${namespace.pid}/ns/net`, '--', process.execPath, '--import', 'tsx', 'scripts/start.ts'], {
    cwd: root,
    env: { ...siteWorkerEnvironment, DATA_DIR: mkdtempSync(path.join(workDir, 'edge-')) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  siteWorker = child;
  siteWorkerOutput = '';
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`the site worker exited early (${code}):\n${siteWorkerOutput.slice(-3000)}`)));
    child.stdout!.on('data', (chunk: Buffer) => {
      siteWorkerOutput += chunk.toString();
      if (siteWorkerOutput.includes('site worker:')) resolve();
    });
  });
  return child;
}

async function stopSiteWorker(): Promise<void> {
  const child = siteWorker;
  siteWorker = undefined;
  if (!child || child.exitCode !== null || child.pid === undefined) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  process.kill(child.pid, 'SIGTERM');
  await exited;
}

async function provision(index: number): Promise<WorkflowHandle> {
  const device = devices[index]!;
  const started = await api.call('POST', '/api/v1/provisioning/devices', {
    body: {
      devices: [{ ...device, address: namespace.ready.deviceAddresses[index], protocol: 'https', deviceType: 'camera', site }],
    },
  });
  expect(started.status, JSON.stringify(started.body)).toBe(202);
  return service.env.client.workflow.getHandle(started.body.provisionings[0].provisioningId);
}


/**
 * The run's device steps (each of `deviceSteps` at least once) went to the site's queue and were
 * taken by the edge worker; every other activity ran centrally.
 */
async function expectDeviceStepsAtSite(handle: WorkflowHandle, deviceSteps: string[]): Promise<{ type: string }[]> {
  const queue = siteTaskQueue(service.config.temporal.taskQueue, tenantId, site);
  const edgeWorker = new RegExp(`^${siteWorker!.pid}@`);
  const activities = await activitiesOf(handle);
  for (const step of deviceSteps) {
    const ran = activities.filter((activity) => activity.type === step);
    expect(ran.length, step).toBeGreaterThan(0);
    for (const activity of ran) {
      expect(activity.taskQueue, step).toBe(queue);
      expect(activity.identity, step).toMatch(edgeWorker);
    }
  }
  for (const activity of activities.filter((a) => !deviceSteps.includes(a.type))) {
    expect(activity.taskQueue, activity.type).toBe(service.config.temporal.taskQueue);
    expect(activity.identity, activity.type).not.toMatch(edgeWorker);
  }
  return activities;
}

/**
 * The configuration the run pushed was signed centrally: the edge worker holds no HSM (its key
 * custody is the software store) while the configuration signer's key is in the central service's
 * HSM, and the device, which applies only configurations signed under the trust anchors it was
 * given, applied it (recorded from the site). No sealed package is left for the site.
 */
async function expectSignedCentrally(deviceId: string, workflowId: string): Promise<void> {
  expect(siteWorkerOutput).toContain('key custody: software');
  const { signer } = await service.parts.ca.ensureConfigurationSigner(tenantId);
  expect(signer.location).toMatch(/^pkcs11:/);
  const [latest] = await service.parts.configurations.history(tenantId, deviceId, 1);
  expect(latest).toMatchObject({ outcome: 'applied', workflowId });
  const packages = (await service.parts.vault.exportAll()).filter((secret) => secret.purpose.startsWith(preparedConfigurationPurposePrefix));
  expect(packages).toEqual([]);
}

async function evaluateAlerts(): Promise<void> {
  await service.env.client.workflow.execute('evaluateAlerts', {
    workflowId: `alert-evaluation-${randomUUID()}`,
    taskQueue: service.config.temporal.taskQueue,
    args: [{ tenantIds: [tenantId] }],
  });
}

const siteWorkerMissing = async () =>
  (await service.parts.alerts.list(tenantId, { open: true })).filter((alert) => alert.kind === alertKinds.siteWorkerMissing);

beforeAll(async () => {
  workDir = mkdtempSync(path.join(process.env.TEST_WORK_DIR ?? '/tmp', 'sites-'));
  const keyEncryptionKey = randomBytes(32).toString('base64');
  const taskQueue = `provisioning-sites-${randomUUID()}`;
  // The CA's keys, the configuration signer's among them, are in the HSM, which the edge worker is not given.
  service = await startTestService({
    database: 'server',
    keyCustody: 'pkcs11',
    keyEncryptionKey,
    environment: { TEMPORAL_TASK_QUEUE: taskQueue, ALERT_SITE_WORKER_STALE_SECONDS: String(pollerStaleSeconds) },
    temporalServerArgs: ['--dynamic-config-value', `matching.longPollExpirationInterval="${longPollSeconds}s"`],
  });
  api = await startTestApi(service, { defaultTenant: tenantId });
  const temporal = new URL(`tcp://${service.env.address}`);
  const database = new URL(service.config.database.url!);
  namespace = await startTestNamespace<SiteNetworkReady>({
    script: 'test/fixtures/site-network.ts',
    input: { network, bridges: [bridgeTo(Number(temporal.port)), bridgeTo(Number(database.port))], devices } satisfies SiteNetworkInput,
    startTimeoutMs: 30_000,
  });
  const { HSM_MODULE: _module, HSM_TOKEN_LABEL: _label, HSM_SLOT: _slot, HSM_PIN: _pin, HSM_PIN_FILE: _pinFile, ...withoutHsm } = process.env;
  siteWorkerEnvironment = {
    ...withoutHsm,
    SERVICE_ROLES: 'site-worker',
    WORKER_SITES: `${tenantId}/${site}`,
    TEMPORAL_ADDRESS: service.env.address,
    TEMPORAL_TASK_QUEUE: taskQueue,
    DATABASE_URL: service.config.database.url,
    KEY_ENCRYPTION_KEY: keyEncryptionKey,
    SERVICE_ENVIRONMENT: 'development',
    DEVICE_NETWORKS: '10.0.0.0/8',
    DISCOVERY_SNMP_COMMUNITIES: 'public',
    METRICS_PORT: '0',
    EST_PORT: '0',
    LOG_LEVEL: 'info',
  };
});

afterAll(async () => {
  await stopSiteWorker();
  await namespace?.stop();
  for (const bridge of bridges) if (bridge.pid !== undefined && bridge.exitCode === null) process.kill(bridge.pid, 'SIGTERM');
  await api?.close();
  await service?.stop();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

describe('a site served by an edge worker', () => {
  it("is set by an administrator and names the site's own task queue", async () => {
    const path = `/api/v1/sites/${site}/edge-worker`;
    expect((await api.call('GET', path)).status).toBe(404);
    expect((await api.call('PUT', path, { key: await api.keyFor(tenantId, 'operator'), body: { edgeWorker: true } })).status).toBe(403);
    const bad = await api.call('PUT', path, { body: { edgeWorker: 'yes' } });
    expect(bad.status).toBe(400);
    expect(bad.body.errors).toEqual([expect.objectContaining({ field: 'edgeWorker' })]);
    const set = await api.call('PUT', path, { body: { edgeWorker: true } });
    expect(set.status).toBe(201);
    expect(set.body).toMatchObject({ site, edgeWorker: true, taskQueue: siteTaskQueue(service.config.temporal.taskQueue, tenantId, site) });
  });

  it('has its device provisioned by the edge worker at the site, the certificate issued centrally', async () => {
    // The site's addresses exist only in its namespace: the central worker has no way to them.
    expect(execFileSync('ip', ['-o', 'address'], { encoding: 'utf8' })).not.toContain(network.replace(/0\/24$/, ''));
    await startSiteWorker();
    const handle = await provision(0);
    const record: DeviceProvisioningRecord = await handle.result();
    expect(record.status).toBe('completed');

    const deviceSteps = ['identifyDevice', 'authenticateDevice', 'requestCertificateSigning', 'installDeviceCertificate', 'pushPreparedDeviceConfiguration', 'runDeviceSelfTest', 'activateDevice'];
    const activities = await expectDeviceStepsAtSite(handle, deviceSteps);
    expect(activities.map((a) => a.type)).toEqual(expect.arrayContaining(['issueDeviceCertificate', 'prepareDeviceConfiguration']));
    expect(activities.map((a) => a.type)).not.toContain('pushDeviceConfiguration');
    expect(record.provisioningSteps.filter((step) => step.step === 'pushConfiguration')).toEqual([expect.objectContaining({ status: 'completed' })]);
    await expectSignedCentrally(devices[0]!.serialNumber, handle.workflowId);
  });

  it("sends a credential rotation's device step to the site's worker", async () => {
    // A reference device holds no secret of ours to rotate (the API refuses it), so the run is
    // started as a sweep would start it: its device step still goes to the site and fails there.
    const handle = await service.env.client.workflow.start('rotateDeviceCredentials', {
      workflowId: credentialRotationWorkflowId(tenantId, devices[0]!.serialNumber),
      taskQueue: service.config.temporal.taskQueue,
      args: [{ tenantId, deviceId: devices[0]!.serialNumber, reason: 'site rotation', requestedBy: 'test' }],
    });
    await expect(handle.result()).rejects.toThrow();
    const onDevice = (await activitiesOf(handle)).filter((activity) => activity.type === 'rotateManagementSecrets');
    expect(onDevice).toEqual([
      { type: 'rotateManagementSecrets', taskQueue: siteTaskQueue(service.config.temporal.taskQueue, tenantId, site), identity: expect.stringMatching(new RegExp(`^${siteWorker!.pid}@`)) },
    ]);
  });

  it('is health-checked and discovered from the site', async () => {
    const health = await service.env.client.workflow.execute('healthSweep', {
      workflowId: `health-sweep-${randomUUID()}`,
      taskQueue: service.config.temporal.taskQueue,
      args: [{ tenantId, site }],
    });
    expect(health).toMatchObject({ probed: 1, online: 1, unanswered: 0 });

    await service.parts.discovery.upsertSite(tenantId, site, {
      scope: { interfaces: ['site0'], ranges: ['10.66.0.0/28'] },
      scanners: ['snmp'],
      intervalMinutes: 60,
      enabled: true,
    });
    const sweep = service.env.client.workflow.getHandle(
      (
        await service.env.client.workflow.start('discoverySweep', {
          workflowId: `discovery-sweep:${tenantId}:${site}:${randomUUID()}`,
          taskQueue: service.config.temporal.taskQueue,
          args: [{ tenantId, site }],
        })
      ).workflowId,
    );
    const summary = await sweep.result();
    expect(summary.failures).toEqual([]);
    const found = await service.parts.discovery.listDevices(tenantId, { site });
    expect(found.map((device) => device.ip)).toContain(namespace.ready.snmpAgent.split(':')[0]);
    const scanners = (await activitiesOf(sweep)).filter((activity) => activity.type === 'runDiscoveryScanner');
    expect(scanners.map((activity) => activity.taskQueue)).toEqual([siteTaskQueue(service.config.temporal.taskQueue, tenantId, site)]);
  });

  it('has a configuration rolled out to its device by the edge worker, the outcome recorded centrally', async () => {
    const deviceId = devices[0]!.serialNumber;
    const started = await api.call('POST', '/api/v1/provisioning/templates/default/rollouts', { body: { deviceIds: [deviceId] } });
    expect(started.status, JSON.stringify(started.body)).toBe(202);
    const handle = service.env.client.workflow.getHandle(rolloutWorkflowId(tenantId, started.body.rolloutId));
    expect(await handle.result()).toMatchObject({ state: 'completed', applied: 1, failed: 0 });
    const activities = await expectDeviceStepsAtSite(handle, ['applyPreparedDeviceConfiguration']);
    expect(activities.map((a) => a.type)).toEqual(expect.arrayContaining(['prepareDeviceConfiguration', 'recordRolloutOutcome']));
    await expectSignedCentrally(deviceId, handle.workflowId);
  });

  it("has its device's running configuration read for drift by the edge worker", async () => {
    const started = await api.call('POST', '/api/v1/provisioning/configuration/drift-checks', { body: { action: 'alert' } });
    expect(started.status, JSON.stringify(started.body)).toBe(202);
    const handle = service.env.client.workflow.getHandle(started.body.driftCheckId);
    expect(await handle.result()).toMatchObject({ checked: 1, inSync: 1, unreadable: 0 });
    await expectDeviceStepsAtSite(handle, ['checkDeviceDrift']);
  });

  it("has its device's certificate renewed at the site: new key, install and handshake by the edge worker, issued and revoked centrally", async () => {
    const deviceId = devices[0]!.serialNumber;
    const renewal = service.env.client.workflow.getHandle(renewalWorkflowId(tenantId, deviceId));
    const { runId } = await renewal.describe();
    const asked = await api.call('POST', `/api/v1/provisioning/devices/${deviceId}/certificate-renewal/renew`, { body: { reason: 'site renewal' } });
    expect(asked.status, JSON.stringify(asked.body)).toBe(202);
    // The renewal continues as new once done; a failed attempt would wait long before the next.
    const status = await waitFor(async () => {
      const current = await renewal.query(renewalStatusQuery);
      return current.completedRenewals > 0 || current.failedAttempts > 0 ? current : undefined;
    }, 'the renewal to finish', 60_000);
    expect(status, status.lastError).toMatchObject({ completedRenewals: 1, failedAttempts: 0 });
    const activities = await expectDeviceStepsAtSite(service.env.client.workflow.getHandle(renewal.workflowId, runId), [
      'requestCertificateSigning',
      'installDeviceCertificate',
      'verifyPresentedCertificate',
    ]);
    expect(activities.map((a) => a.type)).toEqual(expect.arrayContaining(['issueDeviceCertificate', 'revokeDeviceCertificate']));
  });

  it('has its device decommissioned, management access removed by the edge worker, certificates revoked centrally', async () => {
    const deviceId = devices[0]!.serialNumber;
    const started = await api.call('POST', `/api/v1/devices/${deviceId}/decommission`, { body: { reason: 'site decommission' } });
    expect(started.status, JSON.stringify(started.body)).toBe(202);
    const handle = service.env.client.workflow.getHandle(started.body.jobId);
    const progress = await handle.result();
    expect(progress.state).toBe('completed');
    expect(progress.steps.find((step: { step: string }) => step.step === 'removeManagementAccess').status).not.toBe('failed');
    expect(progress.revokedCertificates.length).toBeGreaterThan(0);
    await expectDeviceStepsAtSite(handle, ['removeDeviceManagementAccess']);
  });

  it('waits while its edge worker is away, raising site.worker_missing, and completes once the worker is back', async () => {
    await stopSiteWorker();
    const handle = await provision(1);
    // The identify step is scheduled on the site's queue and nobody takes it.
    await waitFor(async () => ((await activitiesOf(handle)).some((a) => a.type === 'identifyDevice') ? true : undefined), 'the identify step to be scheduled');
    await sleep((pollerStaleSeconds + longPollSeconds + 1) * 1000);
    const waiting: DeviceProvisioningRecord = await handle.query('status');
    expect(waiting.status).toBe('in_progress');
    expect((await activitiesOf(handle)).find((a) => a.type === 'identifyDevice')!.identity).toBeUndefined();

    await evaluateAlerts();
    expect(await siteWorkerMissing()).toEqual([
      expect.objectContaining({ severity: 'critical', details: expect.objectContaining({ site, taskQueue: siteTaskQueue(service.config.temporal.taskQueue, tenantId, site) }) }),
    ]);

    await startSiteWorker();
    const record: DeviceProvisioningRecord = await handle.result();
    expect(record.status).toBe('completed');
    await evaluateAlerts();
    expect(await siteWorkerMissing()).toEqual([]);
  });
});
