/**
 * Configurations for devices a site's worker reaches are rendered, judged and signed centrally and
 * left sealed in the vault for that worker, which only sends them: the edge worker never signs. A
 * worker away longer than a signature lasts finds its package expired, and the workflow prepares it
 * again. The site worker runs in this process here (the network apart is site-workers.test.ts's).
 */
import { X509Certificate } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { WorkflowHandle } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { preparedConfigurationPurposePrefix } from '../../activities/configuration-push';
import { rolloutListing, rolloutWorkflowId, type ConfigurationRolloutInput } from '../../contracts/configuration';
import { provisioningWorkflowId, statusQuery, type DeviceProvisioningRecord } from '../../contracts/provisioning';
import { siteTaskQueue } from '../../contracts/site-workers';
import { configRollout } from '../../workflows/configuration-rollout';
import { startTestDevice, waitFor, type TestDevice } from '../support/devices';
import { startTestService, startTestSiteWorker, type TestService } from '../support/service';
import { scheduledActivities } from '../support/temporal';

/** Each scheduled activity of a run: its type, its queue, and the failure type of each failed attempt. */
const activitiesOf = async (handle: WorkflowHandle) => (await scheduledActivities(handle)).map(({ type, taskQueue, failure }) => ({ type, taskQueue, failure }));

const tenantId = 'acme';
const site = 'edge-east';
/** Short, so a site worker can stay away longer than a signature lasts within a test. */
const signatureLifetimeMs = 6_000;

let service: TestService;
const devices: TestDevice[] = [];
let siteWorker: { stop(): Promise<void> } | undefined;

beforeAll(async () => {
  service = await startTestService({ configurationSignatureLifetimeMs: signatureLifetimeMs });
});
afterAll(async () => {
  await siteWorker?.stop();
  await Promise.all(devices.map(({ device }) => device.stop()));
  await service?.stop();
});

async function device(options: Parameters<typeof startTestDevice>[0] = {}): Promise<TestDevice> {
  const started = await startTestDevice({ site, ...options });
  devices.push(started);
  return started;
}


/** Packages still sealed in the vault for a site's worker. */
async function preparedPackages(): Promise<string[]> {
  const secrets = await service.parts.vault.exportAll();
  return secrets.filter((secret) => secret.purpose.startsWith(preparedConfigurationPurposePrefix)).map((secret) => `${secret.deviceId} ${secret.purpose}`);
}

async function rollout(targets: TestDevice[], name: string): Promise<WorkflowHandle<typeof configRollout>> {
  const version = await service.parts.templates.currentVersion(tenantId, 'default');
  const input: ConfigurationRolloutInput = {
    rolloutId: `${name}-${targets[0]!.request.serialNumber}`,
    tenantId,
    kind: 'rollout',
    targets: targets.map((d) => ({ deviceId: d.request.serialNumber, templateId: version.templateId, version: version.version })),
    concurrency: 2,
    maxFailureRate: 1,
    minimumDevicesBeforeHalt: 1,
    requestedBy: 'test',
  };
  return service.env.client.workflow.start(configRollout, {
    workflowId: rolloutWorkflowId(tenantId, input.rolloutId),
    taskQueue: service.config.temporal.taskQueue,
    args: [input],
    ...rolloutListing(input),
  });
}

async function centralSignerSubject(): Promise<string> {
  return new X509Certificate((await service.parts.ca.ensureConfigurationSigner(tenantId)).row.pem).subject;
}

describe('a configuration pushed through a site worker', () => {
  let provisioned: TestDevice;
  const queue = () => siteTaskQueue(service.config.temporal.taskQueue, tenantId, site);

  it('is prepared and signed centrally in provisioning, sent by the site worker, in one push step, and leaves no package behind', async () => {
    await service.parts.siteWorkers.set(tenantId, site, true, 'test');
    siteWorker = await startTestSiteWorker(service, { tenantId, site });
    provisioned = await device();
    await service.provisioning.start(tenantId, { devices: [provisioned.request] });
    const handle = service.env.client.workflow.getHandle(provisioningWorkflowId(tenantId, provisioned.request.serialNumber));
    const record: DeviceProvisioningRecord = await handle.result();
    expect(record.status).toBe('completed');
    expect(record.provisioningSteps.filter((step) => step.step === 'pushConfiguration')).toEqual([
      expect.objectContaining({ status: 'completed', retryCount: 0 }),
    ]);
    expect((await handle.query(statusQuery)).provisioningSteps.map((step) => step.step)).toEqual(record.provisioningSteps.map((step) => step.step));

    const activities = await activitiesOf(handle);
    expect(activities.filter((a) => a.type === 'prepareDeviceConfiguration')).toEqual([{ type: 'prepareDeviceConfiguration', taskQueue: service.config.temporal.taskQueue }]);
    expect(activities.filter((a) => a.type === 'pushPreparedDeviceConfiguration')).toEqual([{ type: 'pushPreparedDeviceConfiguration', taskQueue: queue() }]);
    expect(activities.map((a) => a.type)).not.toContain('pushDeviceConfiguration');
    expect(provisioned.device.configuration?.signature?.signerSubject).toBe(await centralSignerSubject());
    expect(await preparedPackages()).toEqual([]);
  });

  it('whose signature expired while the site worker was away is prepared and signed again, then applied', async () => {
    await siteWorker!.stop();
    siteWorker = undefined;
    const before = provisioned.device.configuration!.signature!.signedAt;
    const handle = await rollout([provisioned], 'expiry');
    // Prepared centrally at once; the push waits on the site's queue for a worker.
    await waitFor(async () => ((await activitiesOf(handle)).some((a) => a.type === 'applyPreparedDeviceConfiguration') ? true : undefined), 'the push to be scheduled');
    expect(await preparedPackages()).toHaveLength(1);
    await sleep(signatureLifetimeMs + 1_000);
    siteWorker = await startTestSiteWorker(service, { tenantId, site });

    expect(await handle.result()).toMatchObject({ state: 'completed', applied: 1, failed: 0 });
    const activities = (await activitiesOf(handle)).filter((a) => a.type.endsWith('DeviceConfiguration'));
    expect(activities).toEqual([
      { type: 'prepareDeviceConfiguration', taskQueue: service.config.temporal.taskQueue },
      { type: 'applyPreparedDeviceConfiguration', taskQueue: queue(), failure: 'PreparedConfigurationExpiredError' },
      { type: 'prepareDeviceConfiguration', taskQueue: service.config.temporal.taskQueue },
      { type: 'applyPreparedDeviceConfiguration', taskQueue: queue() },
    ]);
    const applied = provisioned.device.configuration!.signature!;
    expect(applied.signerSubject).toBe(await centralSignerSubject());
    expect(Date.parse(applied.signedAt)).toBeGreaterThan(Date.parse(before));
    expect(await preparedPackages()).toEqual([]);
  });

  it('breaking a compliance rule is blocked centrally as any push is: recorded, alerted, audited, never sent to the site', async () => {
    const current = await service.parts.templates.currentVersion(tenantId, 'default');
    const management = (current.body.management ?? {}) as Record<string, unknown>;
    await service.parts.templates.create(tenantId, {
      id: 'edge-plain-http',
      name: 'plain HTTP at the edge',
      protocol: current.protocol,
      body: { ...current.body, management: { ...management, httpEnabled: true } },
      parameters: current.parameters,
    });
    const blocked = await device();
    // Plain HTTP only warns when the request is checked, and blocks again (the default) by the time
    // the run pushes: the site's worker is away until then.
    await siteWorker!.stop();
    await service.parts.compliance.replacePolicy(tenantId, { rules: { 'http-disabled': { enabled: true, severity: 'warning' } } }, 'test');
    await service.provisioning.start(tenantId, { templateId: 'edge-plain-http', devices: [blocked.request] });
    await service.parts.compliance.replacePolicy(tenantId, { rules: {} }, 'test');
    siteWorker = await startTestSiteWorker(service, { tenantId, site });
    const handle = service.env.client.workflow.getHandle(provisioningWorkflowId(tenantId, blocked.request.serialNumber));
    await expect(handle.result()).rejects.toThrow();
    const record: DeviceProvisioningRecord = await handle.query(statusQuery);
    expect(record.error).toMatchObject({ type: 'ComplianceViolationError', step: 'pushConfiguration' });
    expect(record.provisioningSteps.find((step) => step.step === 'pushConfiguration')).toMatchObject({ status: 'failed', retryCount: 0 });
    expect(blocked.device.configuration).toBeUndefined();

    const [latest] = await service.parts.configurations.history(tenantId, blocked.request.serialNumber, 1);
    expect(latest).toMatchObject({ templateId: 'edge-plain-http', outcome: 'blocked', workflowId: handle.workflowId });
    const alerts = await service.parts.alerts.list(tenantId, { open: true });
    expect(alerts).toEqual(expect.arrayContaining([expect.objectContaining({ kind: 'configuration.compliance_violation', summary: expect.stringContaining(blocked.request.serialNumber) })]));
    const audited = await service.parts.audit.list(tenantId, { action: 'configuration.blocked', targetId: blocked.request.serialNumber });
    expect(audited).toEqual([expect.objectContaining({ outcome: 'failure', actor: handle.workflowId })]);
    const activities = (await activitiesOf(handle)).filter((a) => a.type.endsWith('DeviceConfiguration'));
    expect(activities).toEqual([{ type: 'prepareDeviceConfiguration', taskQueue: service.config.temporal.taskQueue, failure: 'ComplianceViolationError' }]);
    expect(await preparedPackages()).toEqual([]);
  });

  it('refused by its device fails that device, recorded as failed, and its package is discarded', async () => {
    const refusing = await device();
    await service.provisioning.start(tenantId, { devices: [refusing.request] });
    await service.env.client.workflow.getHandle(provisioningWorkflowId(tenantId, refusing.request.serialNumber)).result();
    refusing.device.setFaults({ refuseConfiguration: true });

    const handle = await rollout([refusing], 'refused');
    const report = await handle.result();
    expect(report).toMatchObject({ applied: 0, failed: 1 });
    expect(report.devices[0]).toMatchObject({ outcome: 'failed', errorType: 'ConfigurationRejectedError' });
    const history = await service.parts.configurations.history(tenantId, refusing.request.serialNumber, 5);
    expect(history[0]).toMatchObject({ outcome: 'failed', workflowId: handle.workflowId });
    expect((await activitiesOf(handle)).map((a) => a.type)).toContain('discardPreparedConfiguration');
    expect(await preparedPackages()).toEqual([]);
  });
});
