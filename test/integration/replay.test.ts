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
import { workflowsPath } from '../../service/main';
import { rolloutListing, rolloutWorkflowId, type ConfigurationRolloutInput } from '../../workflows/configuration-definitions';
import { configRollout } from '../../workflows/configuration-rollout';
import { provisioningWorkflowId } from '../../workflows/definitions';
import { startTestDevice, waitFor, type TestDevice } from '../support/devices';
import { startTestService, type TestService } from '../support/service';

const { History } = proto.temporal.api.history.v1;
const fixtures = path.resolve(import.meta.dirname, '../fixtures/histories');
/** A key for test fixtures only: the recorded payloads are encrypted with keys derived from it. */
const fixtureKeyEncryptionKey = Buffer.alloc(32, 7);
const dataConverter = payloadDataConverter(loadPayloadKeyring({ keyEncryptionKey: fixtureKeyEncryptionKey }));

let service: TestService;
const devices: TestDevice[] = [];

beforeAll(async () => {
  service = await startTestService({ keyEncryptionKey: fixtureKeyEncryptionKey.toString('base64') });
});
afterAll(async () => {
  await Promise.all(devices.map(({ device }) => device.stop()));
  await service?.stop();
});

/** A rollout of the default template to two provisioned devices, one of which refuses it. */
async function recordedRollout(name: string, outcome: string) {
  const pair = await Promise.all([startTestDevice(), startTestDevice()]);
  devices.push(...pair);
  await service.provisioning.start('acme', { devices: pair.map((d) => d.request) });
  for (const d of pair) await service.env.client.workflow.getHandle(provisioningWorkflowId('acme', d.request.serialNumber)).result();
  pair[1]!.device.setFaults({ refuseConfiguration: true });
  const version = await service.parts.templates.currentVersion('acme', 'default');
  const input: ConfigurationRolloutInput = {
    rolloutId: `replay-${pair[0]!.request.serialNumber}`,
    tenantId: 'acme',
    kind: 'rollout',
    targets: pair.map((d) => ({ deviceId: d.request.serialNumber, templateId: version.templateId, version: version.version })),
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
  return { name: `${name}.${outcome}`, history: await handle.fetchHistory() };
}

async function recordedRun(name: string, run: (device: TestDevice) => Promise<void>) {
  const device = await startTestDevice();
  devices.push(device);
  await run(device);
  const handle = service.env.client.workflow.getHandle(provisioningWorkflowId('acme', device.request.serialNumber));
  await handle.result().catch(() => undefined);
  return { name, history: await handle.fetchHistory() };
}

it('replays the histories of earlier versions and of this one without nondeterminism', async () => {
  const fresh = [
    await recordedRun('completed', (d) => service.provisioning.start('acme', { devices: [d.request] }).then(() => undefined)),
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
    await recordedRollout('config-rollout', 'completed'),
  ];

  if (process.env.UPDATE_HISTORY_FIXTURES === '1') {
    mkdirSync(fixtures, { recursive: true });
    const version = new Date().toISOString().slice(0, 10);
    for (const { name, history } of fresh) {
      const file = name.startsWith('config-rollout.') ? `${name.replace('.', `.${version}.`)}.binpb` : `provision-device.${version}.${name}.binpb`;
      writeFileSync(path.join(fixtures, file), History.encode(history).finish());
    }
  }

  const recorded = existsSync(fixtures)
    ? readdirSync(fixtures)
        .filter((file) => file.endsWith('.binpb'))
        .map((file) => ({ name: file, history: History.decode(readFileSync(path.join(fixtures, file))) }))
    : [];
  expect(recorded.length).toBeGreaterThanOrEqual(4);

  for (const { name, history } of [...fresh, ...recorded]) {
    await expect(Worker.runReplayHistory({ workflowsPath, dataConverter }, history), name).resolves.toBeUndefined();
  }
}, 180_000);
