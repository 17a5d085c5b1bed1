/**
 * The production shape on a real Temporal server (not the dev server) on PostgreSQL: the API in one
 * process (SERVICE_ROLES=api), two workers in two others (SERVICE_ROLES=worker), the service's
 * database on the same PostgreSQL server. Devices are provisioned through the API, and a bulk job
 * finishes with every device provisioned once although one worker is killed with SIGKILL mid-job.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allSearchAttributeKeys } from '../../contracts/provisioning';
import { startOnvifDevice } from '../../scripts/simulators/onvif-device';
import { searchAttributesBeyondSqlLimits, startTemporalCluster, type TemporalCluster } from '../../scripts/temporal-cluster';
import { TestDevices, waitFor } from '../support/devices';
import { freeLoopbackPort } from '../support/network';
import { testRunEnvironment } from '../support/test-run';

const { IndexedValueType } = temporal.api.enums.v1;
const root = path.resolve(import.meta.dirname, '..', '..');
const bulkDevices = Number(process.env.CLUSTER_BULK_DEVICES ?? 500);
const devices = new TestDevices();
const processes: ChildProcess[] = [];
let cluster: TemporalCluster;
let serviceEnvironment: NodeJS.ProcessEnv;
let apiUrl: string;
let apiKey: string;
const workers: ServiceProcess[] = [];

interface ServiceProcess {
  child: ChildProcess;
  output: () => string;
}

/** scripts/start.ts with the given roles, as an operator runs each process of the cluster shape. */
async function startServiceProcess(roles: string, ready: (output: string) => Promise<boolean>, extra: Record<string, string> = {}): Promise<ServiceProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/start.ts'], {
    cwd: root,
    env: { ...serviceEnvironment, SERVICE_ROLES: roles, DATA_DIR: mkdtempSync(path.join(cluster.workDir, `${roles}-`)), ...extra },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  processes.push(child);
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  await waitFor(
    async () => {
      if (child.exitCode !== null) throw new Error(`the ${roles} process exited (${child.exitCode}): ${output.slice(-3000)}`);
      return (await ready(output)) ? true : undefined;
    },
    `the ${roles} process to be ready`,
    120_000,
  ).catch((error: Error) => {
    throw new Error(`${error.message}\n${output.slice(-3000)}`);
  });
  return { child, output: () => output };
}

async function startWorker(): Promise<ServiceProcess> {
  const worker = await startServiceProcess('worker', async (output) => output.includes('worker: task queue'));
  workers.push(worker);
  return worker;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function call(method: string, route: string, body?: unknown): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = { authorization: `Bearer ${apiKey}` };
  let payload: FormData | string | undefined;
  if (body instanceof FormData) payload = body;
  else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers['content-type'] = 'application/json';
  }
  const response = await fetch(`${apiUrl}${route}`, { method, body: payload, headers });
  return { status: response.status, body: await response.json() };
}

/** Fingerprints of the live device certificates per device id, every page of them. */
async function liveCertificatesPerDevice(): Promise<Map<string, string[]>> {
  const perDevice = new Map<string, string[]>();
  let cursor: string | undefined;
  do {
    const page = await call('GET', `/api/v1/provisioning/certificates?certificateType=device&liveOnly=true&limit=500${cursor ? `&cursor=${cursor}` : ''}`);
    expect(page.status).toBe(200);
    for (const certificate of page.body.certificates as Array<{ deviceId: string; fingerprint: string }>) {
      perDevice.set(certificate.deviceId, [...(perDevice.get(certificate.deviceId) ?? []), certificate.fingerprint]);
    }
    cursor = page.body.next;
  } while (cursor);
  return perDevice;
}

/** Starts one run through the API and waits for its end: the final record. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function provisionThroughApi(body: unknown): Promise<any> {
  const started = await call('POST', '/api/v1/provisioning/devices', body);
  expect(started.status).toBe(202);
  const provisioningId: string = started.body.provisionings[0].provisioningId;
  return waitFor(
    async () => {
      const { body: record } = await call('GET', `/api/v1/provisioning/devices/${encodeURIComponent(provisioningId)}/status`);
      return record.status === 'completed' || record.status === 'failed' ? record : undefined;
    },
    'the run to end',
    120_000,
  );
}

beforeAll(async () => {
  cluster = await startTemporalCluster({ environment: testRunEnvironment() });
  const apiPort = await freeLoopbackPort();
  apiUrl = `http://127.0.0.1:${apiPort}`;
  serviceEnvironment = {
    ...process.env,
    TEMPORAL_ADDRESS: cluster.address,
    TEMPORAL_NAMESPACE: cluster.namespace,
    DATABASE_URL: await cluster.createDatabase('provisioning'),
    // Every process seals and reads the same secrets and history payloads.
    KEY_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
    // The reference devices listen on loopback.
    SERVICE_ENVIRONMENT: 'development',
    PKI_PUBLIC_URL: apiUrl,
    PORT: String(apiPort),
    EST_PORT: '0',
    METRICS_PORT: '0',
    WORKER_METRICS_ADDRESS: '',
    LOG_LEVEL: 'info',
  };
  const api = await startServiceProcess('api', async () => (await fetch(`${apiUrl}/healthz`)).ok);
  const keyFile = /"file":"([^"]+bootstrap-admin-api-key)"/.exec(api.output())?.[1];
  if (!keyFile) throw new Error(`the API did not say where its bootstrap key is:\n${api.output().slice(-2000)}`);
  apiKey = readFileSync(keyFile, 'utf8').trim();
  // One after the other: both register the same schedules at start.
  await startWorker();
  await startWorker();
}, 300_000);

afterAll(async () => {
  for (const child of processes) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await devices.stopAll();
  await cluster?.stop();
});

describe('a real Temporal cluster on PostgreSQL', () => {
  it('runs on PostgreSQL with the namespace, its retention and every search attribute as a keyword within what SQL visibility holds', async () => {
    expect(searchAttributesBeyondSqlLimits()).toEqual([]);
    const connection = await Connection.connect({ address: cluster.address });
    try {
      const info = await connection.workflowService.getClusterInfo({});
      expect(info.persistenceStore).toBe('postgres12');
      expect(info.visibilityStore).toBe('postgres12');
      expect(info.serverVersion).toBe('1.32.2');
      const namespace = await connection.workflowService.describeNamespace({ namespace: cluster.namespace });
      expect(Number(namespace.config?.workflowExecutionRetentionTtl?.seconds)).toBe(30 * 24 * 3600);
      const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace: cluster.namespace });
      for (const key of allSearchAttributeKeys) expect(customAttributes?.[key.name]).toBe(IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD);
    } finally {
      await connection.close();
    }
  });

  it('provisions an HTTPS reference device through the API process, run by the worker processes, with one certificate', async () => {
    const { device, request } = await devices.start();
    const record = await provisionThroughApi({ devices: [request] });
    expect(record.status).toBe('completed');
    expect(device.state).toBe('active');
    expect((await liveCertificatesPerDevice()).get(request.serialNumber)).toEqual([device.certificateFingerprint]);
  });

  it('provisions an ONVIF camera (the camera simulator) the same way, with one certificate', async () => {
    const credentials = { username: 'admin', password: randomBytes(9).toString('base64url') };
    const serialNumber = `CAM-${randomBytes(3).toString('hex').toUpperCase()}`;
    const macAddress = ['02', ...randomBytes(5).toString('hex').match(/../g)!].join(':');
    const camera = await startOnvifDevice({ host: '127.214.0.9', serialNumber, macAddress, credentials });
    try {
      const record = await provisionThroughApi({
        templateId: 'onvif-camera',
        devices: [{ deviceId: serialNumber.toLowerCase(), serialNumber, macAddress, address: camera.address, protocol: 'onvif', deviceType: 'camera', site: 'hq', credentials }],
      });
      expect(record.status).toBe('completed');
      expect((await liveCertificatesPerDevice()).get(serialNumber.toLowerCase())).toEqual([camera.state().servingCertificateFingerprint]);
    } finally {
      await camera.close();
    }
  });

  it(`finishes a bulk job of ${bulkDevices} devices with one worker killed by SIGKILL mid-job: every device once, one certificate each`, async () => {
    const batch = await Promise.all(Array.from({ length: bulkDevices }, () => devices.start()));
    const header = 'serialNumber,macAddress,address,protocol,deviceType,site,username,password';
    const rows = batch.map(({ request: r }) => [r.serialNumber, r.macAddress, r.address, 'https', 'camera', 'lobby', r.credentials.username, r.credentials.password].join(','));
    const form = new FormData();
    form.set('file', new Blob([[header, ...rows].join('\n') + '\n'], { type: 'text/csv' }), 'devices.csv');
    form.set('concurrency', '50');
    const upload = await call('POST', '/api/v1/provisioning/bulk', form);
    expect(upload.status).toBe(202);
    const jobId: string = upload.body.jobId;
    const startedAt = Date.now();

    await waitFor(
      async () => ((await call('GET', `/api/v1/provisioning/bulk/${jobId}`)).body.progress.completed >= Math.min(20, bulkDevices / 4) ? true : undefined),
      'a part of the job to complete',
      240_000,
    );
    workers[0].child.kill('SIGKILL');

    const job = await waitFor(
      async () => {
        const { body } = await call('GET', `/api/v1/provisioning/bulk/${jobId}`);
        return body.progress.state === 'finished' ? body : undefined;
      },
      'the job to finish on the remaining worker',
      600_000,
    );
    const seconds = (Date.now() - startedAt) / 1000;
    process.stderr.write(`cluster bulk job: ${bulkDevices} devices in ${seconds.toFixed(1)} s (${(bulkDevices / seconds).toFixed(1)} devices/s), one of two workers killed\n`);
    expect(job.progress).toMatchObject({ total: bulkDevices, completed: bulkDevices, failed: 0 });
    for (const { device } of batch) expect(device.state).toBe('active');
    const perDevice = await liveCertificatesPerDevice();
    expect(batch.map(({ request }) => perDevice.get(request.serialNumber))).toEqual(batch.map(({ device }) => [device.certificateFingerprint]));
  }, 900_000);
});
