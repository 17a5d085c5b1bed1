/**
 * Configuration rollouts, rollbacks and drift detection end to end, over the API, against a fleet
 * of reference devices: the concurrency cap as the devices see it, halting on the failure rate,
 * pausing and cancelling, a rollback as one job, and drift found on the device itself, alerted on,
 * and put back by a remediation rollout.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { provisioningWorkflowId } from '../../contracts/provisioning';
import { startTestApi, type TestApi } from '../support/api';
import { TestDevices, waitFor, type TestDevice } from '../support/devices';
import { startTestService, type TestService } from '../support/service';

let service: TestService;
let api: TestApi;
const devices = new TestDevices();
let fleet: TestDevice[] = [];
let administrator: string;

const site = 'rollout-site';
const templatesPath = '/api/v1/provisioning/templates';
const configurationPush = 'PUT /api/v1/configuration';
const fleetBody = {
  hostname: '{{device.hostname}}',
  timezone: 'Europe/Berlin',
  site: '{{device.site}}',
  ntp: { servers: ['10.30.0.1'] },
  syslog: { host: 'syslog.hq.internal', port: 6514, protocol: 'tls' },
  tls: { minVersion: 'TLSv1.2' },
  management: { httpEnabled: false, passwordLogin: false },
  users: [{ username: 'ops', password: '{{secret.opsPassword}}', role: 'operator' }],
};
const fleetTemplate = {
  name: 'Rollout fleet',
  protocol: 'https',
  deviceType: 'camera',
  body: fleetBody,
  parameters: { opsPassword: { type: 'secret', description: 'The local operator account' } },
};

const ids = (list: TestDevice[]) => list.map((d) => d.request.serialNumber);
const pushesTo = (device: TestDevice) => device.device.receivedRequests.filter((r) => r === configurationPush).length;

async function finishedRollout(rolloutId: string) {
  return waitFor(async () => {
    const response = await api.call('GET', `/api/v1/provisioning/rollouts/${rolloutId}`);
    return ['running', 'paused'].includes(response.body.state) ? undefined : response.body;
  }, `rollout ${rolloutId} to finish`, 60_000);
}

async function finishedDriftCheck(driftCheckId: string) {
  return waitFor(async () => {
    const response = await api.call('GET', `/api/v1/provisioning/configuration/drift-checks/${encodeURIComponent(driftCheckId)}`);
    return response.body.state === 'running' ? undefined : response.body;
  }, `drift check ${driftCheckId} to finish`, 60_000);
}

async function driftCheck(action: 'alert' | 'remediate') {
  const started = await api.call('POST', '/api/v1/provisioning/configuration/drift-checks', { body: { action } });
  expect(started.status).toBe(202);
  return finishedDriftCheck(started.body.driftCheckId);
}

async function timezoneTemplateVersion(timezone: string): Promise<number> {
  const updated = await api.call('PUT', `${templatesPath}/fleet`, { body: { ...fleetTemplate, body: { ...fleetBody, timezone } } });
  expect(updated.status).toBe(200);
  return updated.body.version;
}

beforeAll(async () => {
  service = await startTestService();
  api = await startTestApi(service, { defaultTenant: 'acme' });
  administrator = (await api.call('GET', '/api/v1/access/me')).body.subject;
  expect((await api.call('POST', templatesPath, { body: { id: 'fleet', ...fleetTemplate } })).status).toBe(201);
  fleet = await Promise.all(Array.from({ length: 6 }, () => devices.start({ site })));
  for (const device of fleet) {
    const parameters = await api.call('PUT', `/api/v1/provisioning/devices/${device.request.serialNumber}/configuration/parameters`, {
      body: { values: {}, secrets: { opsPassword: `Ops-${randomBytes(12).toString('base64url')}-9!` } },
    });
    expect(parameters.status).toBe(200);
  }
  const started = await api.call('POST', '/api/v1/provisioning/devices', { body: { devices: fleet.map((d) => d.request), templateId: 'fleet' } });
  expect(started.status).toBe(202);
  for (const device of fleet) {
    await service.env.client.workflow.getHandle(provisioningWorkflowId('acme', device.request.serialNumber)).result();
    expect(device.device.configuration).toMatchObject({ templateId: 'fleet', version: 1 });
  }
}, 120_000);

afterAll(async () => {
  await devices.stopAll();
  await api?.close();
  await service?.stop();
});

describe('a rollout', () => {
  let rolloutId: string;

  it('never has more devices in flight than its concurrency, and gives every device the new version', async () => {
    const version = await timezoneTemplateVersion('UTC');
    for (const device of fleet) device.device.setFaults({ hang: ['/api/v1/configuration'] });
    const before = fleet.map(pushesTo);

    const started = await api.call('POST', `${templatesPath}/fleet/rollouts`, { body: { site, concurrency: 2 } });
    expect(started.status).toBe(202);
    rolloutId = started.body.rolloutId;
    expect(started.headers.get('location')).toBe(`/api/v1/provisioning/rollouts/${rolloutId}`);
    expect(started.body).toMatchObject({ kind: 'rollout', total: 6, concurrency: 2 });

    const reached = () => fleet.filter((device, i) => pushesTo(device) > before[i]!).length;
    await waitFor(async () => (reached() === 2 ? true : undefined), 'two devices to receive the configuration');
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(reached()).toBe(2);
    const meanwhile = await api.call('GET', `/api/v1/provisioning/rollouts/${rolloutId}`);
    expect(meanwhile.body).toMatchObject({ state: 'running', inProgress: 2, pending: 4, applied: 0 });

    for (const device of fleet) {
      device.device.clearFaults();
      device.device.release();
    }
    const report = await finishedRollout(rolloutId);
    expect(report).toMatchObject({ state: 'completed', total: 6, applied: 6, failed: 0, skipped: 0 });
    for (const device of fleet) {
      expect(device.device.configuration).toMatchObject({ templateId: 'fleet', version, settings: { timezone: 'UTC' } });
      expect(report.devices).toContainEqual(
        expect.objectContaining({
          deviceId: device.request.serialNumber,
          outcome: 'applied',
          previous: { templateId: 'fleet', version: 1 },
          applied: { templateId: 'fleet', version, hash: device.device.configuration!.hash },
        }),
      );
    }
  });

  it('records each push in the device history with who asked, and the version the device runs', async () => {
    const device = fleet[0]!;
    const configuration = await api.call('GET', `/api/v1/provisioning/devices/${device.request.serialNumber}/configuration`);
    expect(configuration.body.current).toMatchObject({ templateId: 'fleet', version: 2 });
    expect(configuration.body.history[0]).toMatchObject({
      version: 2,
      outcome: 'applied',
      requestedBy: administrator,
      workflowId: `config-rollout:acme:${rolloutId}`,
    });
    const events = await api.call('GET', `/api/v1/audit/events?action=configuration.rollout_finished&targetId=${rolloutId}`);
    expect(events.body.events).toEqual([expect.objectContaining({ outcome: 'success', details: expect.objectContaining({ applied: 6, requestedBy: administrator }) })]);
  });

  it('is rolled back as one tracked job that puts every device back on the version it ran before', async () => {
    const rollback = await api.call('POST', `/api/v1/provisioning/rollouts/${rolloutId}/rollback`);
    expect(rollback.status).toBe(202);
    expect(rollback.body).toMatchObject({ kind: 'rollback', rollbackOf: rolloutId, total: 6 });
    const report = await finishedRollout(rollback.body.rolloutId);
    expect(report).toMatchObject({ state: 'completed', applied: 6, failed: 0 });
    for (const device of fleet) {
      expect(device.device.configuration).toMatchObject({ version: 1, settings: { timezone: 'Europe/Berlin' } });
    }
    const again = await api.call('POST', `/api/v1/provisioning/rollouts/${rolloutId}/rollback`);
    expect(again.status).toBe(409);
  });

  it("lists the tenant's rollouts and rollbacks with what each is and who asked, and no other tenant's", async () => {
    const listed = await waitFor(async () => {
      const response = await api.call('GET', '/api/v1/provisioning/rollouts?running=false');
      return response.body.rollouts?.length >= 2 ? response.body.rollouts : undefined;
    }, 'the rollouts to be listed');
    expect(listed).toEqual([
      expect.objectContaining({ rolloutId: `${rolloutId}.rollback`, kind: 'rollback', rollbackOf: rolloutId, total: 6, execution: 'completed' }),
      expect.objectContaining({ rolloutId, kind: 'rollout', total: 6, requestedBy: administrator, execution: 'completed' }),
    ]);
    const theirs = await api.call('GET', '/api/v1/provisioning/rollouts', { key: await api.keyFor('globex', 'viewer') });
    expect(theirs.status).toBe(200);
    expect(theirs.body.rollouts).toEqual([]);
  });

  it('halts once more devices failed than the threshold allows, skipping the devices not yet started, and raises an alert', async () => {
    const refusing = fleet.slice(0, 3);
    for (const device of refusing) device.device.setFaults({ refuseConfiguration: true });
    const before = fleet.map(pushesTo);
    try {
      const started = await api.call('POST', `${templatesPath}/fleet/rollouts`, {
        body: { deviceIds: ids(fleet), concurrency: 1, maxFailureRate: 0.5, minimumDevicesBeforeHalt: 2, rolloutId: 'halting' },
      });
      expect(started.status).toBe(202);
      const report = await finishedRollout('halting');
      expect(report).toMatchObject({ state: 'halted', applied: 0, failed: 2, skipped: 4, haltedBecause: expect.stringContaining('2 of 2 devices failed') });
      expect(report.devices.filter((d: { outcome: string }) => d.outcome === 'failed')).toEqual([
        expect.objectContaining({ deviceId: fleet[0]!.request.serialNumber, errorType: 'ConfigurationRejectedError' }),
        expect.objectContaining({ deviceId: fleet[1]!.request.serialNumber, errorType: 'ConfigurationRejectedError' }),
      ]);
      // The devices after the halt never heard of it.
      expect(fleet.slice(2).map((device, i) => pushesTo(device) - before[i + 2]!)).toEqual([0, 0, 0, 0]);
      const alerts = await api.call('GET', '/api/v1/alerts?state=firing');
      expect(alerts.body.alerts).toContainEqual(expect.objectContaining({ kind: 'configuration.rollout_halted', severity: 'critical', summary: expect.stringContaining('halting') }));
    } finally {
      for (const device of refusing) device.device.clearFaults();
    }
  });

  it('pauses without starting another device, even with its concurrency raised, and once cancelled skips the devices it had not started', async () => {
    const targets = fleet.slice(3, 6);
    for (const device of targets) device.device.setFaults({ hang: ['/api/v1/configuration'] });
    const before = targets.map(pushesTo);
    const started = await api.call('POST', `${templatesPath}/fleet/rollouts`, { body: { deviceIds: ids(targets), concurrency: 1, rolloutId: 'steered' } });
    expect(started.status).toBe(202);
    await waitFor(async () => (pushesTo(targets[0]!) > before[0]! ? true : undefined), 'the first device to receive the configuration');

    const paused = await api.call('POST', '/api/v1/provisioning/rollouts/steered/pause');
    expect(paused.status).toBe(202);
    expect(paused.body.state).toBe('paused');
    for (const device of targets) {
      device.device.clearFaults();
      device.device.release();
    }
    await waitFor(async () => ((await api.call('GET', '/api/v1/provisioning/rollouts/steered')).body.applied === 1 ? true : undefined), 'the device in flight to finish');
    const widened = await api.call('PUT', '/api/v1/provisioning/rollouts/steered/concurrency', { body: { concurrency: 3 } });
    expect(widened.status).toBe(202);
    expect(widened.body).toMatchObject({ concurrency: 3, state: 'paused' });
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    // Paused, even with room for three: no further device heard of it.
    expect(targets.slice(1).map((device, i) => pushesTo(device) - before[i + 1]!)).toEqual([0, 0]);

    const cancelled = await api.call('POST', '/api/v1/provisioning/rollouts/steered/cancel', { body: { reason: 'change window closed' } });
    expect(cancelled.status).toBe(202);
    const report = await finishedRollout('steered');
    expect(report).toMatchObject({ state: 'cancelled', applied: 1, skipped: 2, cancelledBecause: 'change window closed' });
    expect(report.devices.filter((d: { outcome: string }) => d.outcome === 'skipped').map((d: { deviceId: string }) => d.deviceId)).toEqual(ids(targets.slice(1)));
    expect((await api.call('POST', '/api/v1/provisioning/rollouts/steered/resume')).status).toBe(409);
  });
});

describe('a rollout request', () => {
  it('names the device that is unknown or speaks another protocol, and starts nothing', async () => {
    const response = await api.call('POST', `${templatesPath}/fleet/rollouts`, { body: { deviceIds: [fleet[0]!.request.serialNumber, 'NO-SUCH-DEVICE'], rolloutId: 'refused' } });
    expect(response.status).toBe(400);
    expect(response.headers.get('content-type')).toContain('application/problem+json');
    expect(response.body.errors).toEqual([{ field: 'deviceIds[1]', reason: 'no device NO-SUCH-DEVICE is registered' }]);
    expect((await api.call('GET', '/api/v1/provisioning/rollouts/refused')).status).toBe(404);
  });

  it('is refused unless it names either devices or a site, and names a version that exists', async () => {
    const both = await api.call('POST', `${templatesPath}/fleet/rollouts`, { body: { deviceIds: ids(fleet), site } });
    expect(both.status).toBe(400);
    expect(both.body.errors).toEqual([expect.objectContaining({ field: 'deviceIds' })]);
    const version = await api.call('POST', `${templatesPath}/fleet/rollouts`, { body: { site, version: 99 } });
    expect(version.status).toBe(404);
    const rate = await api.call('POST', `${templatesPath}/fleet/rollouts`, { body: { site, maxFailureRate: 2 } });
    expect(rate.body.errors).toEqual([expect.objectContaining({ field: 'maxFailureRate' })]);
  });

  it('is refused with the compliance findings when a device would get a configuration that breaks the policy, and the refusal is on record', async () => {
    const insecure = await api.call('POST', templatesPath, {
      body: { id: 'fleet-insecure', ...fleetTemplate, body: { ...fleetBody, management: { httpEnabled: true, passwordLogin: false } } },
    });
    expect(insecure.status).toBe(201);
    const response = await api.call('POST', `${templatesPath}/fleet-insecure/rollouts`, { body: { deviceIds: ids(fleet.slice(0, 2)) } });
    expect(response.status).toBe(422);
    expect(response.body.errors).toEqual([
      { field: 'deviceIds[0]', reason: expect.stringContaining('http-disabled') },
      { field: 'deviceIds[1]', reason: expect.stringContaining('http-disabled') },
    ]);
    for (const device of fleet.slice(0, 2)) {
      expect(device.device.configuration!.templateId).toBe('fleet');
      // On record as a deployment the policy stopped, with who asked: what an approver's exception checks.
      const history = await api.call('GET', `/api/v1/provisioning/devices/${device.request.serialNumber}/configuration`);
      expect(history.body.history[0]).toMatchObject({ templateId: 'fleet-insecure', outcome: 'blocked', requestedBy: administrator });
    }
  });
});

describe('drift detection', () => {
  it('finds every device in sync with what it was sent, secrets it never reports aside', async () => {
    const report = await driftCheck('alert');
    expect(report).toMatchObject({ state: 'completed', checked: 6, inSync: 6, drifted: 0, unreadable: 0, unsupported: 0 });
  });

  it('finds a setting changed on the device itself, names it in an alert, and leaves the device as it is when the policy is to alert', async () => {
    const changed = fleet[1]!;
    changed.device.tamperConfiguration({ timezone: 'Asia/Tokyo', management: { httpEnabled: true } });
    const report = await driftCheck('alert');
    expect(report).toMatchObject({ checked: 6, inSync: 5, drifted: 1, driftedDevices: [changed.request.serialNumber] });
    expect(report.remediationRolloutId).toBeUndefined();
    const alerts = await api.call('GET', '/api/v1/alerts?state=firing');
    expect(alerts.body.alerts).toContainEqual(
      expect.objectContaining({
        kind: 'configuration.drift',
        details: expect.objectContaining({ deviceId: changed.request.serialNumber, fields: ['management.httpEnabled', 'timezone'] }),
      }),
    );
    expect(changed.device.configuration!.settings).toMatchObject({ timezone: 'Asia/Tokyo' });
  });

  it('puts a drifted device back with a remediation rollout when the policy is to remediate, and the alert resolves', async () => {
    const changed = fleet[1]!;
    const report = await driftCheck('remediate');
    expect(report).toMatchObject({ drifted: 1, remediationRolloutId: expect.any(String) });
    const remediation = await finishedRollout(report.remediationRolloutId);
    expect(remediation).toMatchObject({ kind: 'remediation', state: 'completed', applied: 1, devices: [expect.objectContaining({ deviceId: changed.request.serialNumber })] });
    expect(changed.device.configuration!.settings).toMatchObject({ timezone: 'Europe/Berlin', management: { httpEnabled: false } });

    expect(await driftCheck('alert')).toMatchObject({ inSync: 6, drifted: 0 });
    const firing = await api.call('GET', '/api/v1/alerts?state=firing');
    expect(firing.body.alerts.filter((a: { kind: string }) => a.kind === 'configuration.drift')).toEqual([]);
  });

  it("lists the tenant's drift checks newest first, and no other tenant's", async () => {
    const listed = await waitFor(async () => {
      const response = await api.call('GET', '/api/v1/provisioning/configuration/drift-checks');
      return response.body.driftChecks?.length >= 4 ? response.body.driftChecks : undefined;
    }, 'the drift checks to be listed');
    expect(listed[0]).toMatchObject({ driftCheckId: expect.stringMatching(/^configuration-drift:acme:/), trigger: 'on-demand', execution: 'completed' });
    const startTimes = listed.map((check: { startedAt: string }) => Date.parse(check.startedAt));
    expect(startTimes).toEqual([...startTimes].sort((a, b) => b - a));
    const theirs = await api.call('GET', '/api/v1/provisioning/configuration/drift-checks', { key: await api.keyFor('globex', 'viewer') });
    expect(theirs.body.driftChecks).toEqual([]);
  });

  it("runs on a Temporal Schedule that follows the tenant's policy, and stops when it is disabled", async () => {
    expect((await api.call('GET', '/api/v1/provisioning/configuration/drift-policy')).body).toMatchObject({ enabled: false, action: 'alert' });
    const set = await api.call('PUT', '/api/v1/provisioning/configuration/drift-policy', { body: { enabled: true, action: 'remediate', intervalMinutes: 30 } });
    expect(set.status).toBe(200);
    expect(set.body).toMatchObject({ enabled: true, action: 'remediate', intervalMinutes: 30, scheduleId: 'configuration-drift:acme', updatedBy: administrator });
    const schedule = await service.env.client.schedule.getHandle('configuration-drift:acme').describe();
    expect(schedule.action).toMatchObject({ workflowType: 'configurationDriftCheck', args: [{ tenantId: 'acme', action: 'remediate' }] });
    expect(schedule.spec.intervals).toEqual([expect.objectContaining({ every: 30 * 60_000 })]);

    const invalid = await api.call('PUT', '/api/v1/provisioning/configuration/drift-policy', { body: { enabled: true, action: 'alert', intervalMinutes: 1 } });
    expect(invalid.status).toBe(400);
    expect(invalid.body.errors).toEqual([expect.objectContaining({ field: 'intervalMinutes' })]);

    const disabled = await api.call('PUT', '/api/v1/provisioning/configuration/drift-policy', { body: { enabled: false, action: 'remediate' } });
    expect(disabled.body.scheduleId).toBeUndefined();
    await expect(service.env.client.schedule.getHandle('configuration-drift:acme').describe()).rejects.toThrow(/not found/i);
  });
});
