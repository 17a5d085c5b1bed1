/**
 * The production shape on a real Temporal server (not the dev server) on PostgreSQL: the API in one
 * process (SERVICE_ROLES=api), two workers in two others (SERVICE_ROLES=worker), the service's
 * database on the same PostgreSQL server. Devices of every protocol are provisioned through the API
 * against their reference peers, a configuration rollout and a certificate renewal run on them, and a
 * bulk job finishes with every device provisioned once although one worker is killed with SIGKILL
 * mid-job; the audit chain is intact at the end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SnmpDeviceAdapter } from '../../adapters/snmp';
import { allSearchAttributeKeys } from '../../contracts/provisioning';
import { startBacnetDevice } from '../../scripts/simulators/bacnet-device';
import { startOnvifDevice } from '../../scripts/simulators/onvif-device';
import { startOsdpReader } from '../../scripts/simulators/osdp-reader';
import { startSnmpd } from '../../scripts/simulators/snmp-agent';
import { searchAttributesBeyondSqlLimits, startTemporalCluster, type TemporalCluster } from '../../scripts/temporal-cluster';
import { testDeviceNetworks } from '../support/device-networks';
import { TestDevices, waitFor, type TestDevice } from '../support/devices';
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
/** The HTTPS reference device provisioned first; its certificate is renewed later. */
let reference: TestDevice;
/** Devices whose certificate is renewed, so they hold two: the first revoked as superseded. */
const renewedDevices = new Set<string>();
const peers: Array<{ close(): Promise<void> }> = [];

const localMac = () => ['02', ...randomBytes(5).toString('hex').match(/../g)!].join(':');
const loopbackHost = () => {
  const [a, b, c] = randomBytes(3);
  return `127.${(a! % 250) + 1}.${b}.${(c! % 250) + 1}`;
};

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

/** Fingerprints of the device certificates per device id, every page of them: the live ones, or every one ever issued. */
async function certificatesPerDevice(liveOnly: boolean): Promise<Map<string, string[]>> {
  const perDevice = new Map<string, string[]>();
  let cursor: string | undefined;
  do {
    const page = await call('GET', `/api/v1/provisioning/certificates?certificateType=device&liveOnly=${liveOnly}&limit=500${cursor ? `&cursor=${cursor}` : ''}`);
    expect(page.status).toBe(200);
    for (const certificate of page.body.certificates as Array<{ deviceId: string; fingerprint: string }>) {
      perDevice.set(certificate.deviceId, [...(perDevice.get(certificate.deviceId) ?? []), certificate.fingerprint]);
    }
    cursor = page.body.next;
  } while (cursor);
  return perDevice;
}

const liveCertificatesPerDevice = () => certificatesPerDevice(true);

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
  await Promise.all(peers.splice(0).map((peer) => peer.close()));
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
    reference = await devices.start();
    const { device, request } = reference;
    const record = await provisionThroughApi({ devices: [request] });
    expect(record.status).toBe('completed');
    expect(device.state).toBe('active');
    expect((await liveCertificatesPerDevice()).get(request.serialNumber)).toEqual([device.certificateFingerprint]);
  });

  it('provisions an ONVIF camera, an OSDP reader, an SNMP encoder and a BACnet/SC controller (their reference peers) side by side: a certificate each where the protocol takes one, none otherwise', async () => {
    const cameraCredentials = { username: 'admin', password: randomBytes(9).toString('base64url') };
    const cameraSerial = `CAM-${randomBytes(3).toString('hex').toUpperCase()}`;
    const cameraMac = localMac();
    const camera = await startOnvifDevice({ host: loopbackHost(), serialNumber: cameraSerial, macAddress: cameraMac, credentials: cameraCredentials });
    peers.push(camera);
    const reader = await startOsdpReader({ serialNumber: 0xc1a57e01 });
    peers.push(reader);
    const controller = await startBacnetDevice({ serialNumber: 'BC-CL1', password: 'factory-Secret9', scCapable: true });
    peers.push(controller);
    const admin = { userName: 'provadmin', authPassphrase: 'factory-auth-Secret1', privPassphrase: 'factory-priv-Secret1' };
    const snmpd = await startSnmpd({ sysDescr: 'AXIS Q7424-R Mk II Video Encoder', sysObjectID: '1.3.6.1.4.1.368.1.1', admin, readOnlyCommunities: ['public'] });
    peers.push(snmpd);
    const snmpCredentials = { username: admin.userName, password: JSON.stringify({ auth: admin.authPassphrase, priv: admin.privPassphrase }) };
    const label = await new SnmpDeviceAdapter({ networks: testDeviceNetworks }).identify({ address: snmpd.address, credentials: snmpCredentials });

    const runs = [
      {
        templateId: 'onvif-camera',
        device: { deviceId: 'cam-cluster', serialNumber: cameraSerial, macAddress: cameraMac, address: camera.address, protocol: 'onvif', deviceType: 'camera', site: 'hq', credentials: cameraCredentials },
      },
      {
        templateId: 'osdp-reader',
        device: { deviceId: 'reader-cluster', serialNumber: 'C1A57E01', macAddress: localMac(), address: reader.address, protocol: 'osdp', deviceType: 'card_reader', site: 'hq' },
      },
      {
        templateId: 'snmp-v3-baseline',
        device: { deviceId: 'enc-cluster', serialNumber: label.serialNumber, macAddress: label.macAddress ?? localMac(), address: snmpd.address, protocol: 'snmp', deviceType: 'camera', site: 'hq', credentials: snmpCredentials },
      },
      {
        templateId: 'bacnet-sc-controller',
        device: {
          deviceId: 'ahu-cluster',
          serialNumber: 'BC-CL1',
          macAddress: localMac(),
          address: controller.address,
          protocol: 'bacnet',
          deviceType: 'building_controller',
          site: 'hq',
          credentials: { username: 'bacnet', password: 'factory-Secret9' },
        },
      },
    ];
    const records = await Promise.all(runs.map(({ templateId, device }) => provisionThroughApi({ templateId, devices: [device] })));
    expect(records.map((record) => [record.deviceId, record.status])).toEqual(runs.map(({ device }) => [device.deviceId, 'completed']));

    // Each peer holds what provisioning gave it.
    expect(camera.state().protocols.http.enabled).toBe(false);
    expect(reader.state().installMode).toBe(false);
    expect(controller.state().primaryHubUri).toBe('wss://bacnet-hub-1.hq.internal/hub');
    const everIssued = await certificatesPerDevice(false);
    expect(everIssued.get('cam-cluster')).toEqual([camera.state().servingCertificateFingerprint]);
    const controllerCertificate = new X509Certificate(controller.state().activeCertificate!).fingerprint256.replace(/:/g, '').toLowerCase();
    expect(everIssued.get('ahu-cluster')).toEqual([controllerCertificate]);
    // OSDP and SNMP enrol keys of their own kind, no certificate.
    expect(everIssued.get('reader-cluster')).toBeUndefined();
    expect(everIssued.get('enc-cluster')).toBeUndefined();
  });

  it('rolls a new template version out to a site of reference devices: every device applies it, each pushed once', async () => {
    const body = {
      hostname: '{{device.hostname}}',
      timezone: 'UTC',
      site: '{{device.site}}',
      ntp: { servers: ['10.30.0.1'] },
      tls: { minVersion: 'TLSv1.2' },
      management: { httpEnabled: false, passwordLogin: false },
    };
    const template = { name: 'Cluster fleet', protocol: 'https', deviceType: 'camera', body };
    expect((await call('POST', '/api/v1/provisioning/templates', { id: 'cluster-fleet', ...template })).status).toBe(201);
    const fleet = await Promise.all(Array.from({ length: 4 }, () => devices.start({ site: 'cluster-rollout' })));
    const records = await Promise.all(fleet.map(({ request }) => provisionThroughApi({ templateId: 'cluster-fleet', devices: [request] })));
    expect(records.map((record) => record.status)).toEqual(fleet.map(() => 'completed'));

    const updated = await call('PUT', '/api/v1/provisioning/templates/cluster-fleet', { ...template, body: { ...body, timezone: 'Europe/Berlin' } });
    expect(updated.status).toBe(200);
    const started = await call('POST', '/api/v1/provisioning/templates/cluster-fleet/rollouts', { site: 'cluster-rollout', concurrency: 2 });
    expect(started.status).toBe(202);
    const report = await waitFor(
      async () => {
        const { body: rollout } = await call('GET', `/api/v1/provisioning/rollouts/${started.body.rolloutId}`);
        return ['running', 'paused'].includes(rollout.state) ? undefined : rollout;
      },
      'the rollout to finish',
      120_000,
    );
    expect(report).toMatchObject({ state: 'completed', total: 4, applied: 4, failed: 0, skipped: 0 });
    for (const { device } of fleet) {
      expect(device.configuration).toMatchObject({ templateId: 'cluster-fleet', version: updated.body.version, settings: { timezone: 'Europe/Berlin' } });
      expect(device.receivedRequests.filter((r) => r === 'PUT /api/v1/configuration')).toHaveLength(2);
    }
  });

  it('renews the HTTPS device\'s certificate on request: the device presents the new one, the old one is revoked as superseded, nothing else is issued', async () => {
    const deviceId = reference.request.serialNumber;
    const [first] = (await liveCertificatesPerDevice()).get(deviceId)!;
    const asked = await call('POST', `/api/v1/provisioning/devices/${deviceId}/certificate-renewal/renew`, { reason: 'cluster check' });
    expect(asked.status).toBe(202);
    renewedDevices.add(deviceId);
    const renewed = await waitFor(
      async () => {
        const { body: status } = await call('GET', `/api/v1/provisioning/devices/${deviceId}/certificate-renewal`);
        return status.completedRenewals === 1 ? status : undefined;
      },
      'the renewal to complete',
      120_000,
    );
    expect(renewed.state).toBe('waiting');
    const live = (await liveCertificatesPerDevice()).get(deviceId);
    expect(live).toEqual([reference.device.certificateFingerprint]);
    expect(live).not.toEqual([first]);
    const { body } = await call('GET', `/api/v1/provisioning/certificates?certificateType=device&deviceId=${deviceId}`);
    const issued = body.certificates as Array<{ id: string; fingerprint: string; revocationReason?: string; renewalOfCertificateId?: string }>;
    expect(issued).toHaveLength(2);
    const old = issued.find((certificate) => certificate.fingerprint === first)!;
    expect(old.revocationReason).toBe('superseded');
    expect(issued.find((certificate) => certificate.fingerprint !== first)!.renewalOfCertificateId).toBe(old.id);
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

  it('issued one certificate to every device that was not renewed, kill or no kill, and kept the audit chain intact', async () => {
    const everIssued = await certificatesPerDevice(false);
    const twice = [...everIssued].filter(([deviceId, fingerprints]) => fingerprints.length !== 1 && !renewedDevices.has(deviceId));
    expect(twice).toEqual([]);
    const audit = await call('GET', '/api/v1/audit/verify');
    expect(audit.status).toBe(200);
    expect(audit.body).toMatchObject({ ok: true });
    expect(audit.body.eventsChecked).toBeGreaterThan(bulkDevices);
  });
});
