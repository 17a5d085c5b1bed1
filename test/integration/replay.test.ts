/**
 * Workflow code must stay able to replay the histories of runs already under way, or an upgrade
 * would break every in-flight provisioning. Histories recorded from earlier versions of the code
 * live in test/fixtures/histories (protobuf-encoded) and are replayed against the current code; a change that is not
 * replay-safe (one that should have used `patched()`) fails here.
 *
 * `UPDATE_HISTORY_FIXTURES=1 npx vitest run test/integration/replay.test.ts` records the current
 * version's histories; do that only when the workflow's command sequence changes on purpose and
 * under a `patched()` guard, keeping the older fixtures.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import proto from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadPayloadKeyring, payloadDataConverter } from '../../custody/payload-codec';
import { rolloutListing, rolloutWorkflowId, type ConfigurationRolloutInput } from '../../contracts/configuration';
import { BulkImporter } from '../../bulk/bulk-import';
import { BulkJobStore } from '../../bulk/bulk-job-store';
import { bulkWorkflowId } from '../../contracts/bulk';
import { configurationDriftCheck } from '../../workflows/configuration-drift';
import { healthSweep } from '../../workflows/health-sweep';
import { configRollout } from '../../workflows/configuration-rollout';
import { credentialRotationSweep, rotateDeviceCredentials } from '../../workflows/credential-rotation';
import { credentialRotationWorkflowId } from '../../contracts/credential-rotation';
import { startOnvifDevice, type RunningOnvifDevice } from '../../scripts/simulators/onvif-device';
import { renewalStatusQuery, renewalWorkflowId } from '../../contracts/certificates';
import { zeroTouchWorkflowId } from '../../contracts/zero-touch';
import { createDeviceLifecycle, createProvisioningPlanner, createZeroTouchRegistrations } from '../../service/parts';
import { workflowsPath } from '../../service/worker';
import { registrationRequestSchema } from '../../zero-touch/registrations';
import { provisioningWorkflowId } from '../../contracts/provisioning';
import { startTestDevice, waitFor, type TestDevice } from '../support/devices';
import { startTestService, startTestSiteWorker, type TestService } from '../support/service';

const { History } = proto.temporal.api.history.v1;

interface Recorded {
  /** The fixture file's prefix: which workflow the history is of. */
  workflow: string;
  name: string;
  history: proto.temporal.api.history.v1.IHistory;
}
const fixtures = path.resolve(import.meta.dirname, '../fixtures/histories');
/** A key for test fixtures only: the recorded payloads are encrypted with keys derived from it. */
const fixtureKeyEncryptionKey = Buffer.alloc(32, 7);
const dataConverter = payloadDataConverter(loadPayloadKeyring({ keyEncryptionKey: fixtureKeyEncryptionKey }));

let service: TestService;
const devices: TestDevice[] = [];
const cameras: RunningOnvifDevice[] = [];
const siteWorkers: { stop(): Promise<void> }[] = [];

beforeAll(async () => {
  service = await startTestService({ keyEncryptionKey: fixtureKeyEncryptionKey.toString('base64') });
});
afterAll(async () => {
  for (const worker of siteWorkers) await worker.stop();
  await Promise.all(devices.map(({ device }) => device.stop()));
  await Promise.all(cameras.map((camera) => camera.close()));
  await service?.stop();
});

/** A rollout of the default template to two provisioned devices, one of which refuses it. */
async function recordedRollout(outcome: string): Promise<Recorded> {
  const pair = await Promise.all([startTestDevice(), startTestDevice()]);
  devices.push(...pair);
  await service.provisioning.start('acme', { devices: pair.map((d) => d.request) });
  for (const d of pair) await service.env.client.workflow.getHandle(provisioningWorkflowId('acme', d.request.serialNumber)).result();
  pair[1]!.device.setFaults({ refuseConfiguration: true });
  return rolledOut(`replay-${pair[0]!.request.serialNumber}`, pair.map((d) => d.request.serialNumber), outcome);
}

/** A finished rollout of the default template to `deviceIds`, one at a time. */
async function rolledOut(rolloutId: string, deviceIds: string[], name: string): Promise<Recorded> {
  const version = await service.parts.templates.currentVersion('acme', 'default');
  const input: ConfigurationRolloutInput = {
    rolloutId,
    tenantId: 'acme',
    kind: 'rollout',
    targets: deviceIds.map((deviceId) => ({ deviceId, templateId: version.templateId, version: version.version })),
    concurrency: 1,
    maxFailureRate: 0.5,
    minimumDevicesBeforeHalt: 1,
    requestedBy: 'replay-test',
  };
  const handle = await service.env.client.workflow.start(configRollout, {
    workflowId: rolloutWorkflowId('acme', input.rolloutId),
    taskQueue: service.config.temporal.taskQueue,
    args: [input],
    ...rolloutListing(input),
  });
  await handle.result();
  return { workflow: 'config-rollout', name, history: await handle.fetchHistory() };
}

async function recordedRun(name: string, run: (device: TestDevice) => Promise<void>): Promise<Recorded & { device: TestDevice }> {
  const device = await startTestDevice();
  devices.push(device);
  await run(device);
  const handle = service.env.client.workflow.getHandle(provisioningWorkflowId('acme', device.request.serialNumber));
  await handle.result().catch(() => undefined);
  return { workflow: 'provision-device', name, history: await handle.fetchHistory(), device };
}

/** The renewal workflow activation started for the device, waiting durably for its renewal window. */
async function recordedRenewalWait(device: TestDevice): Promise<Recorded> {
  const handle = service.env.client.workflow.getHandle(renewalWorkflowId('acme', device.request.serialNumber));
  await waitFor(async () => ((await handle.query(renewalStatusQuery)).state === 'waiting' ? true : undefined), 'the renewal to wait');
  return { workflow: 'renew-device-certificate', name: 'waiting', history: await handle.fetchHistory() };
}

/** A zero-touch registration redeemed by an installer's enrolment token, through to the provisioned device. */
async function recordedZeroTouch(): Promise<Recorded> {
  const device = await startTestDevice();
  devices.push(device);
  const { request } = device;
  const registrations = createZeroTouchRegistrations(service.parts, service.env.client, service.config.temporal.taskQueue);
  await registrations.register(
    'acme',
    registrationRequestSchema(['https']).parse({
      devices: [{ serialNumber: request.serialNumber, protocol: 'https', deviceType: 'camera', site: 'hq', credentials: request.credentials }],
    }),
    'replay-test',
  );
  const { token } = await registrations.issueEnrolmentToken('acme', request.serialNumber);
  await registrations.redeemEnrolmentToken(token, request.address);
  const handle = service.env.client.workflow.getHandle(zeroTouchWorkflowId('acme', request.serialNumber));
  await handle.result();
  return { workflow: 'zero-touch', name: 'provisioned', history: await handle.fetchHistory() };
}

/** A bulk job of two devices from a CSV file, each provisioned as a child run, whose steps run locally first. */
async function recordedBulkJob(): Promise<Recorded[]> {
  const pair = await Promise.all([startTestDevice(), startTestDevice()]);
  devices.push(...pair);
  const importer = new BulkImporter({
    store: new BulkJobStore(service.parts.database.db),
    client: service.env.client,
    taskQueue: service.config.temporal.taskQueue,
    vault: service.parts.vault,
    registry: service.parts.registry,
    adapters: service.parts.adapters,
    networks: service.parts.networks,
    planner: createProvisioningPlanner(service.parts),
  });
  const header = 'serialNumber,macAddress,address,protocol,deviceType,site,username,password';
  const rows = pair.map(({ request: r }) => [r.serialNumber, r.macAddress, r.address, r.protocol, r.deviceType, r.site, r.credentials.username, r.credentials.password].join(','));
  const result = await importer.import({
    tenantId: 'acme',
    templateId: 'default',
    dryRun: false,
    concurrency: 2,
    options: { skipCertificateGeneration: false, autoActivate: true },
    file: { data: Buffer.from([header, ...rows].join('\n')), fileName: 'replay.csv', contentType: 'text/csv' },
    requestedBy: 'replay-test',
  });
  if (result.dryRun) throw new Error('expected a started job');
  const handle = service.env.client.workflow.getHandle(bulkWorkflowId('acme', result.jobId));
  await handle.result();
  const child = service.env.client.workflow.getHandle(provisioningWorkflowId('acme', pair[0]!.request.serialNumber));
  return [
    { workflow: 'bulk-provision', name: 'completed', history: await handle.fetchHistory() },
    { workflow: 'provision-device', name: 'steps-local-first', history: await child.fetchHistory() },
  ];
}

/** A drift check of every configured device, putting back any that drifted. */
async function recordedDriftCheck(): Promise<Recorded> {
  const handle = await service.env.client.workflow.start(configurationDriftCheck, {
    workflowId: `replay-drift-${Date.now()}`,
    taskQueue: service.config.temporal.taskQueue,
    args: [{ tenantId: 'acme', action: 'remediate' }],
  });
  await handle.result();
  return { workflow: 'configuration-drift-check', name: 'completed', history: await handle.fetchHistory() };
}

/** A health sweep of the site of the devices provisioned above, every one answering. */
async function recordedHealthSweep(site: string): Promise<Recorded> {
  const handle = await service.env.client.workflow.start(healthSweep, {
    workflowId: `replay-health-${Date.now()}`,
    taskQueue: service.config.temporal.taskQueue,
    args: [{ tenantId: 'acme', site }],
  });
  await handle.result();
  return { workflow: 'health-sweep', name: 'completed', history: await handle.fetchHistory() };
}

/**
 * An ONVIF camera provisioned and then given a new management password, once on request and once
 * by the tenant's sweep (its secrets made older than the fleet policy allows).
 */
async function recordedCredentialRotations(): Promise<Recorded[]> {
  const credentials = { username: 'admin', password: 'replay-Factory1' };
  const deviceId = `cam-replay-${Date.now()}`;
  const camera = await startOnvifDevice({ host: '127.211.0.7', serialNumber: deviceId.toUpperCase(), macAddress: '02:00:5e:21:10:07', credentials });
  cameras.push(camera);
  await service.provisioning.start('acme', {
    templateId: 'onvif-camera',
    devices: [{ deviceId, serialNumber: deviceId.toUpperCase(), macAddress: '02:00:5e:21:10:07', address: camera.address, protocol: 'onvif', deviceType: 'camera', site: 'hq', credentials }],
  });
  await service.env.client.workflow.getHandle(provisioningWorkflowId('acme', deviceId)).result();
  const rotation = await service.env.client.workflow.start(rotateDeviceCredentials, {
    workflowId: credentialRotationWorkflowId('acme', deviceId),
    taskQueue: service.config.temporal.taskQueue,
    args: [{ tenantId: 'acme', deviceId, reason: 'replay fixture', requestedBy: 'replay-test' }],
  });
  await rotation.result();

  const { tenantId: _t, updatedBy: _u, updatedAt: _a, ...policy } = await service.parts.fleetPolicies.get('acme');
  await service.parts.fleetPolicies.put('acme', { ...policy, credentialRotationDays: 1 }, 'replay-test');
  await service.parts.registry.update('acme', deviceId, { credentialsRotatedAt: new Date(Date.now() - 2 * 86_400_000) });
  const sweep = await service.env.client.workflow.start(credentialRotationSweep, {
    workflowId: `replay-credential-rotation-${Date.now()}`,
    taskQueue: service.config.temporal.taskQueue,
    args: [{ tenantId: 'acme', concurrency: 2 }],
  });
  await sweep.result();
  await service.parts.fleetPolicies.put('acme', policy, 'replay-test');
  return [
    { workflow: 'rotate-device-credentials', name: 'completed', history: await rotation.fetchHistory() },
    { workflow: 'credential-rotation-sweep', name: 'completed', history: await sweep.fetchHistory() },
  ];
}

/** A device's decommissioning, replacement by a new unit, and re-provisioning on purpose, each through to its end. */
async function recordedDeviceLifecycle(): Promise<Recorded[]> {
  const [retiring, replaced, unit, again] = await Promise.all([startTestDevice(), startTestDevice(), startTestDevice(), startTestDevice()]);
  devices.push(retiring, replaced, unit, again);
  await service.provisioning.start('acme', { devices: [retiring.request, replaced.request, again.request] });
  for (const d of [retiring, replaced, again]) await service.env.client.workflow.getHandle(provisioningWorkflowId('acme', d.request.serialNumber)).result();
  const lifecycle = createDeviceLifecycle(service.parts, service.env.client, service.config.temporal.taskQueue);
  const finished = async (workflow: string, name: string, jobId: string): Promise<Recorded> => {
    const handle = service.env.client.workflow.getHandle(jobId);
    await handle.result();
    return { workflow, name, history: await handle.fetchHistory() };
  };
  const { request: u } = unit;
  return [
    await finished('decommission-device', 'completed', (await lifecycle.decommission('acme', retiring.request.serialNumber, { reason: 'replay', resetToInstallKey: false }, 'replay-test')).jobId),
    await finished(
      'replace-device',
      'completed',
      (await lifecycle.replace('acme', replaced.request.serialNumber, { reason: 'replay', device: { serialNumber: u.serialNumber, macAddress: u.macAddress, address: u.address, credentials: u.credentials } }, 'replay-test')).jobId,
    ),
    await finished('reprovision-device', 'completed', (await lifecycle.reprovision('acme', again.request.serialNumber, { reason: 'replay' }, 'replay-test')).jobId),
  ];
}

/**
 * A device at a site served by an edge worker (run in this process), provisioned and then given a
 * configuration by a rollout: each push prepared and signed centrally, sent from the site's queue.
 */
async function recordedAtEdgeSite(): Promise<Recorded[]> {
  const site = 'replay-edge';
  await service.parts.siteWorkers.set('acme', site, true, 'replay-test');
  siteWorkers.push(await startTestSiteWorker(service, { tenantId: 'acme', site }));
  const provisioned = await recordedRun('prepared-centrally', async (d) => {
    await service.provisioning.start('acme', { devices: [{ ...d.request, site }] });
  });
  const { serialNumber } = provisioned.device.request;
  return [provisioned, await rolledOut(`replay-edge-${serialNumber}`, [serialNumber], 'prepared-centrally')];
}

it('replays the histories of earlier versions and of this one without nondeterminism', async () => {
  const completed = await recordedRun('completed', (d) => service.provisioning.start('acme', { devices: [d.request] }).then(() => undefined));
  const fresh: Recorded[] = [
    completed,
    await recordedRenewalWait(completed.device),
    await recordedRun('compensated', async (d) => {
      d.device.setFaults({ refuseConfiguration: true });
      await service.provisioning.start('acme', { devices: [d.request] });
    }),
    await recordedRun('activated-by-signal', async (d) => {
      const [started] = await service.provisioning.start('acme', { devices: [d.request], options: { autoActivate: false } });
      await waitFor(async () => {
        const record = await service.provisioning.status('acme', started.provisioningId);
        return record.metadata.awaitingActivation ? record : undefined;
      }, 'activation wait');
      await service.provisioning.activate('acme', started.provisioningId);
    }),
    await recordedRun('firmware-approval', async (d) => {
      // Firmware the catalogue does not know waits for an approver under this policy.
      const policies = service.parts.fleetPolicies;
      await policies.put('acme', { ...policies.defaults, firmwareUnknown: 'approve' }, 'replay-test');
      try {
        const [started] = await service.provisioning.start('acme', { devices: [d.request] });
        await waitFor(async () => {
          const record = await service.provisioning.status('acme', started.provisioningId);
          return record.metadata.awaitingApproval ? record : undefined;
        }, 'firmware approval wait');
        await service.provisioning.decideApproval('acme', started.provisioningId, {
          decision: 'approve',
          approver: { subject: 'user:replay-approver', tenantId: 'acme', role: 'approver' },
        });
      } finally {
        await policies.put('acme', policies.defaults, 'replay-test');
      }
    }),
    await recordedRollout('completed'),
    await recordedZeroTouch(),
    ...(await recordedBulkJob()),
    await recordedDriftCheck(),
    await recordedHealthSweep(completed.device.request.site),
    ...(await recordedCredentialRotations()),
    ...(await recordedDeviceLifecycle()),
    ...(await recordedAtEdgeSite()),
  ];

  if (process.env.UPDATE_HISTORY_FIXTURES === '1') {
    mkdirSync(fixtures, { recursive: true });
    const version = new Date().toISOString().slice(0, 10);
    for (const { workflow, name, history } of fresh) {
      writeFileSync(path.join(fixtures, `${workflow}.${version}.${name}.binpb`), History.encode(history).finish());
    }
  }

  const recorded = existsSync(fixtures)
    ? readdirSync(fixtures)
        .filter((file) => file.endsWith('.binpb'))
        .map((file) => ({ name: file, history: History.decode(readFileSync(path.join(fixtures, file))) }))
    : [];
  // Every workflow that runs long enough to be under way during an upgrade has recorded histories.
  for (const workflow of [
    'provision-device',
    'renew-device-certificate',
    'config-rollout',
    'zero-touch',
    'bulk-provision',
    'configuration-drift-check',
    'rotate-device-credentials',
    'credential-rotation-sweep',
    'health-sweep',
    'decommission-device',
    'replace-device',
    'reprovision-device',
  ]) {
    expect(recorded.some(({ name }) => name.startsWith(`${workflow}.`)), workflow).toBe(true);
  }

  for (const { name, history } of [...fresh.map(({ workflow, name, history }) => ({ name: `${workflow} ${name} (this version)`, history })), ...recorded]) {
    await expect(Worker.runReplayHistory({ workflowsPath, dataConverter }, history), name).resolves.toBeUndefined();
  }
}, 300_000);
