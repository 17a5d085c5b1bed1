/**
 * Approval workflows: a policy makes provisioning wait, durably, for a decision from an approving
 * role of the same tenant who is not the requester; through the API and through `temporal workflow
 * update`; with escalation and a timeout; and every step is in the audit trail.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { WorkflowFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { approvalUpdate, provisioningWorkflowId, type ProvisionDeviceInput } from '../../contracts/provisioning';
import { startTestApi, type TestApi } from '../support/api';
import { startTestDevice, waitFor, type TestDevice } from '../support/devices';
import { startTestService, type TestService } from '../support/service';
import { temporalCliPath } from '../support/temporal';

let service: TestService;
let api: TestApi;
const devices: TestDevice[] = [];

beforeAll(async () => {
  service = await startTestService();
  api = await startTestApi(service, { defaultTenant: 'acme' });
  const policy = await api.call('POST', '/api/v1/provisioning/approval-policies', {
    body: { scope: 'site', scopeValue: 'vault-room', timeoutSeconds: 3600, escalateAfterSeconds: 600 },
  });
  expect(policy.status).toBe(201);
});

afterAll(async () => {
  await Promise.all(devices.map(({ device }) => device.stop()));
  await api?.close();
  await service?.stop();
});

async function startGuarded(operatorKey?: string, templateId?: string) {
  const device = await startTestDevice({ site: 'vault-room' });
  devices.push(device);
  const started = await api.call('POST', '/api/v1/provisioning/devices', {
    body: { devices: [device.request], ...(templateId ? { templateId } : {}) },
    key: operatorKey ?? (await api.keyFor('acme', 'operator')),
  });
  expect(started.status).toBe(202);
  const provisioningId: string = started.body.provisionings[0].provisioningId;
  await waitFor(async () => {
    const status = await api.call('GET', `/api/v1/provisioning/devices/${provisioningId}/status`);
    return status.body.metadata.awaitingApproval ? status.body : undefined;
  }, 'the run to wait for approval');
  return { device, provisioningId };
}

const decide = (provisioningId: string, key: string, decision: 'approve' | 'reject', comment?: string) =>
  api.call('POST', `/api/v1/provisioning/devices/${provisioningId}/approval`, { key, body: { decision, comment } });

describe('a provisioning covered by an approval policy', () => {
  it('waits after identifying the device, touching nothing else, until an approver approves', async () => {
    const { device, provisioningId } = await startGuarded();
    const waiting = await api.call('GET', `/api/v1/provisioning/devices/${provisioningId}/status`);
    const steps = Object.fromEntries(waiting.body.provisioningSteps.map((s: { step: string; status: string }) => [s.step, s.status]));
    expect(steps).toMatchObject({ identify: 'completed', approval: 'in_progress', authenticate: 'pending', generateCsr: 'pending' });
    expect(device.device.state).toBe('factory');

    const approved = await decide(provisioningId, await api.keyFor('acme', 'approver'), 'approve', 'work order 4711');
    expect(approved.status).toBe(200);
    expect(approved.body).toMatchObject({ decision: 'approve', comment: 'work order 4711' });
    await service.env.client.workflow.getHandle(provisioningId).result();
    expect(device.device.state).toBe('active');

    const events = await api.call('GET', `/api/v1/audit/events?targetId=${device.request.serialNumber}`);
    const actions = events.body.events.map((e: { action: string }) => e.action);
    expect(actions).toEqual(
      expect.arrayContaining(['provisioning.started', 'approval.requested', 'approval.granted', 'provisioning.completed']),
    );
    expect(events.body.events.find((e: { action: string }) => e.action === 'approval.granted').actor).toMatch(/^api-key:/);
  });

  it('refuses decisions from roles that may not approve, from the requester, and from another tenant', async () => {
    const requester = await api.keyFor('acme', 'administrator');
    const { provisioningId } = await startGuarded(requester);

    expect((await decide(provisioningId, await api.keyFor('acme', 'operator'), 'approve')).status).toBe(403);
    const own = await decide(provisioningId, requester, 'approve');
    expect(own.status).toBe(403);
    expect(own.body.detail).toContain('requester');
    expect((await decide(provisioningId, await api.keyFor('globex', 'approver'), 'approve')).status).toBe(404);

    const status = await api.call('GET', `/api/v1/provisioning/devices/${provisioningId}/status`);
    expect(status.body.metadata.awaitingApproval).toBeDefined();
    await decide(provisioningId, await api.keyFor('acme', 'approver'), 'reject');
  });

  it('refuses an approver key that the requesting administrator made through the API: the key acts for the same person', async () => {
    const administrator = await api.keyFor('acme', 'administrator');
    const minted = await api.call('POST', '/api/v1/access/api-keys', { key: administrator, body: { name: 'my other hat', role: 'approver' } });
    expect(minted.status).toBe(201);
    const me = await api.call('GET', '/api/v1/access/me', { key: administrator });
    expect(minted.body.apiKey.principal).toBe(me.body.subject);

    const { provisioningId } = await startGuarded(administrator);
    const own = await decide(provisioningId, minted.body.key, 'approve');
    expect(own.status).toBe(403);
    expect(own.body.detail).toContain('requester');
    const status = await api.call('GET', `/api/v1/provisioning/devices/${provisioningId}/status`);
    expect(status.body.metadata.awaitingApproval).toBeDefined();

    // Someone else can; their decision is on record under their own principal.
    const approver = await api.keyFor('acme', 'approver');
    expect((await decide(provisioningId, approver, 'approve')).status).toBe(200);
    await service.env.client.workflow.getHandle(provisioningId).result();
  });

  it('counts two keys the installation issued to one person as one principal', async () => {
    const ofJane = (role: 'operator' | 'approver') =>
      service.parts.apiKeys.create({ tenantId: 'acme', role, name: `jane ${role}`, createdBy: 'cli:test', principal: 'user:jane' });
    const [operator, approver] = await Promise.all([ofJane('operator'), ofJane('approver')]);
    const { provisioningId } = await startGuarded(operator.key);
    expect((await decide(provisioningId, approver.key, 'approve')).status).toBe(403);
    expect((await decide(provisioningId, await api.keyFor('acme', 'approver'), 'reject')).status).toBe(200);
  });

  it('fails without issuing anything when rejected, and refuses a second decision', async () => {
    const { provisioningId } = await startGuarded();
    const approver = await api.keyFor('acme', 'approver');
    expect((await decide(provisioningId, approver, 'reject', 'not on the floor plan')).status).toBe(200);
    await expect(service.env.client.workflow.getHandle(provisioningId).result()).rejects.toBeInstanceOf(WorkflowFailedError);

    const status = await api.call('GET', `/api/v1/provisioning/devices/${provisioningId}/status`);
    expect(status.body.error).toMatchObject({ type: 'ApprovalRejected', step: 'approval' });
    expect(status.body.certificateInfo).toBeUndefined();
    expect((await decide(provisioningId, approver, 'approve')).status).toBe(409);
  });

  it('accepts a decision sent with `temporal workflow update`', async () => {
    const { device, provisioningId } = await startGuarded();
    const input = JSON.stringify({
      decision: 'approve',
      approver: { subject: 'user:night-shift-lead', tenantId: 'acme', role: 'approver' },
      comment: 'approved by phone',
    });
    // Asynchronously: the worker that must answer the update runs in this very process.
    await promisify(execFile)(temporalCliPath(), [
      'workflow', 'update', 'execute', '--address', service.env.address, '--namespace', 'default',
      '--workflow-id', provisioningId, '--name', 'approval', '--input', input,
      // The result comes back encrypted; the CLI reads it through the API's codec endpoint.
      '--codec-endpoint', `${api.baseUrl}/codec`, '--codec-auth', `Bearer ${await api.keyFor('acme', 'approver')}`,
    ]);
    await service.env.client.workflow.getHandle(provisioningId).result();
    expect(device.device.state).toBe('active');
  });
});

describe('what a run waiting for approval will do', () => {
  it('pushes the template version judged when it was requested, even if the template changes during the wait', async () => {
    // The built-in baseline under an id of its own; the device's site puts the run under the approval policy.
    const { body: baseline } = await api.call('GET', '/api/v1/provisioning/templates/default');
    const template = { name: 'Vault cameras', protocol: 'https', deviceType: 'camera', body: { ...baseline.body, timezone: 'Europe/Berlin' } };
    expect((await api.call('POST', '/api/v1/provisioning/templates', { body: { ...template, id: 'vault-cameras' } })).status).toBe(201);
    const { device, provisioningId } = await startGuarded(undefined, 'vault-cameras');

    const changed = await api.call('PUT', '/api/v1/provisioning/templates/vault-cameras', {
      body: { ...template, body: { ...template.body, timezone: 'America/New_York' } },
    });
    expect(changed.body).toMatchObject({ version: 2 });
    expect((await decide(provisioningId, await api.keyFor('acme', 'approver'), 'approve')).status).toBe(200);
    const record = await service.env.client.workflow.getHandle(provisioningId).result();

    expect(record.configurationVersion).toBe(1);
    expect(device.device.configuration).toMatchObject({ templateId: 'vault-cameras', version: 1, settings: { timezone: 'Europe/Berlin' } });
  });
});

describe('a bulk job whose devices a policy covers', () => {
  it('waits for an approver device by device, each run on its own decision', async () => {
    const pair = await Promise.all([startTestDevice({ site: 'vault-room' }), startTestDevice({ site: 'vault-room' })]);
    devices.push(...pair);
    const header = 'serialNumber,macAddress,address,protocol,deviceType,site,username,password';
    const rows = pair.map(({ request: r }) => [r.serialNumber, r.macAddress, r.address, r.protocol, r.deviceType, r.site, r.credentials.username, r.credentials.password].join(','));
    const form = new FormData();
    form.set('file', new Blob([[header, ...rows].join('\n')], { type: 'text/csv' }), 'vault-room.csv');
    const uploaded = await api.call('POST', '/api/v1/provisioning/bulk', { form, key: await api.keyFor('acme', 'operator') });
    expect(uploaded.status).toBe(202);
    const [first, second] = pair.map(({ request }) => provisioningWorkflowId('acme', request.serialNumber));

    for (const provisioningId of [first!, second!]) {
      await waitFor(async () => {
        const status = await api.call('GET', `/api/v1/provisioning/devices/${provisioningId}/status`);
        return status.body.metadata?.awaitingApproval ? status.body : undefined;
      }, `${provisioningId} to wait for approval`);
    }
    const approver = await api.keyFor('acme', 'approver');
    expect((await decide(first!, approver, 'approve')).status).toBe(200);
    await service.env.client.workflow.getHandle(first!).result();
    expect(pair[0]!.device.state).toBe('active');
    const stillWaiting = await api.call('GET', `/api/v1/provisioning/devices/${second}/status`);
    expect(stillWaiting.body.metadata.awaitingApproval).toBeDefined();
    expect(pair[1]!.device.state).toBe('factory');

    expect((await decide(second!, approver, 'approve')).status).toBe(200);
    const job = await waitFor(async () => {
      const { body } = await api.call('GET', `/api/v1/provisioning/bulk/${uploaded.body.jobId}`);
      return body.progress.state === 'finished' ? body : undefined;
    }, 'the bulk job to finish');
    expect(job.progress).toMatchObject({ total: 2, completed: 2, failed: 0 });
    expect(pair[1]!.device.state).toBe('active');
  });
});

describe('a comment the audit trail cannot store', () => {
  it('is refused by the API, naming the field, and the run goes on waiting', async () => {
    const { provisioningId } = await startGuarded();
    const approver = await api.keyFor('acme', 'approver');
    const refused = await decide(provisioningId, approver, 'approve', 'work order\u0000 4711');
    expect(refused.status).toBe(400);
    expect(refused.body.errors).toEqual([{ field: 'comment', reason: expect.stringContaining('NUL') }]);
    const status = await api.call('GET', `/api/v1/provisioning/devices/${provisioningId}/status`);
    expect(status.body.metadata.awaitingApproval).toBeDefined();
    await decide(provisioningId, approver, 'reject');
  });

  it('sent with `temporal workflow update` does not hold the run: the refusal is on record and provisioning completes', async () => {
    const { device, provisioningId } = await startGuarded();
    const handle = service.env.client.workflow.getHandle(provisioningId);
    await handle.executeUpdate(approvalUpdate, {
      args: [{ decision: 'approve', approver: { subject: 'user:night-shift-lead', tenantId: 'acme', role: 'approver' }, comment: 'by phone\u0000' }],
    });
    await handle.result();
    expect(device.device.state).toBe('active');

    const events = await service.parts.audit.list('acme', { targetId: device.request.serialNumber });
    expect(events.map((e) => e.action)).toEqual(expect.arrayContaining(['audit.event_refused', 'provisioning.completed']));
    const refused = events.find((e) => e.action === 'audit.event_refused')!;
    expect(refused).toMatchObject({ actor: 'user:night-shift-lead', outcome: 'failure' });
    const details = refused.details as { action: string; problems: { field: string }[]; event: string };
    expect(details).toMatchObject({ action: 'approval.granted', problems: [{ field: 'details.comment' }] });
    expect(JSON.parse(details.event).details.comment).toBe('by phone\u0000');
    expect((await service.parts.audit.verify('acme')).ok).toBe(true);
    // The run's archived record keeps the comment, written as its escape.
    const archived = await service.parts.runArchive.latestRecord('acme', provisioningId);
    expect(archived).toMatchObject({ status: 'completed', metadata: { approval: { comment: 'by phone\\u0000' } } });
  });
});

it('escalates a request nobody decides, then refuses it when the time is up', async () => {
  const device = await startTestDevice();
  devices.push(device);
  const deviceId = device.request.serialNumber;
  const input: ProvisionDeviceInput = {
    tenantId: 'acme',
    device: { deviceId, ...device.request, name: undefined },
    provisioningMethod: 'api',
    templateId: 'default',
    options: { skipCertificateGeneration: false, autoActivate: true },
    hasInitialCredentials: false,
    approval: { policyIds: ['test'], timeoutSeconds: 3, escalateAfterSeconds: 1 },
  };
  const handle = await service.env.client.workflow.start('provisionDevice', {
    workflowId: provisioningWorkflowId('acme', deviceId),
    taskQueue: service.config.temporal.taskQueue,
    args: [input],
  });
  await expect(handle.result()).rejects.toBeInstanceOf(WorkflowFailedError);
  const events = await service.parts.audit.list('acme', { targetId: deviceId });
  const actions = events.map((e) => e.action);
  expect(actions).toEqual(expect.arrayContaining(['approval.requested', 'approval.escalated', 'approval.timed_out', 'provisioning.failed']));
  expect(actions.indexOf('approval.escalated')).toBeLessThan(actions.indexOf('approval.timed_out'));
  expect(device.device.state).toBe('factory');
  // The escalation raised an alert for the people who can decide, closed once the wait ended.
  const [escalation] = await service.parts.alerts.list('acme', { open: false });
  expect(escalation).toMatchObject({ kind: 'provisioning.approval_escalated', severity: 'warning' });
  expect(escalation.resolvedAt).not.toBeNull();
  const listed = await api.call('GET', '/api/v1/alerts?state=resolved');
  expect(listed.body.alerts.map((a: { kind: string }) => a.kind)).toContain('provisioning.approval_escalated');
});
