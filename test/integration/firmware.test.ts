/**
 * Firmware judged against the tenant's catalogue through the real provisioning workflow, reference
 * devices, database and dev server: blocked firmware stops a run before anything is issued,
 * unapproved firmware alerts or waits for an approver as the tenant's fleet policy says, firmware
 * changed during provisioning is caught by the self-test, and the catalogue and report routes.
 */
import { randomBytes } from 'node:crypto';
import { WorkflowFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FleetPolicyInput } from '../../fleet/fleet-policies';
import { startOnvifDevice } from '../../scripts/simulators/onvif-device';
import { startTestApi, type TestApi } from '../support/api';
import { startTestDevice, waitFor, type TestDevice, type TestDeviceOptions } from '../support/devices';
import { startTestService, type TestService } from '../support/service';

let service: TestService;
let api: TestApi;
const devices: TestDevice[] = [];
const peers: { close(): Promise<void> }[] = [];

beforeAll(async () => {
  service = await startTestService();
  api = await startTestApi(service, { defaultTenant: 'acme' });
});

afterAll(async () => {
  await Promise.all(devices.map(({ device }) => device.stop()));
  await Promise.all(peers.map((peer) => peer.close()));
  await api?.close();
  await service?.stop();
});

const catalogue = '/api/v1/firmware/catalogue';

async function asAdministrator(tenantId: string) {
  const key = await api.keyFor(tenantId, 'administrator');
  return (method: string, path: string, body?: unknown) => api.call(method, path, { key, ...(body !== undefined ? { body } : {}) });
}

async function setPolicy(tenantId: string, change: Partial<FleetPolicyInput>) {
  const policies = service.parts.fleetPolicies;
  await policies.put(tenantId, { ...policies.defaults, ...change }, 'test');
}

async function device(options: TestDeviceOptions = {}) {
  const started = await startTestDevice(options);
  devices.push(started);
  return started;
}

/** Starts provisioning the device as the tenant's operator; returns the run's id. */
async function provision(tenantId: string, test: TestDevice): Promise<string> {
  const started = await api.call('POST', '/api/v1/provisioning/devices', {
    key: await api.keyFor(tenantId, 'operator'),
    body: { devices: [test.request] },
  });
  expect(started.status).toBe(202);
  return started.body.provisionings[0].provisioningId;
}

const outcome = (provisioningId: string) =>
  service.env.client.workflow
    .getHandle(provisioningId)
    .result()
    .then(() => 'completed' as const)
    .catch((error: unknown) => {
      if (error instanceof WorkflowFailedError) return 'failed' as const;
      throw error;
    });

async function statusOf(tenantId: string, provisioningId: string) {
  return (await api.call('GET', `/api/v1/provisioning/devices/${provisioningId}/status`, { key: await api.keyFor(tenantId, 'viewer') })).body;
}

async function firingAlerts(tenantId: string, deviceId: string) {
  const alerts = await api.call('GET', '/api/v1/alerts?state=firing', { key: await api.keyFor(tenantId, 'administrator') });
  return (alerts.body.alerts as { kind: string; severity: string; details: { deviceId?: string } }[]).filter((a) => a.details.deviceId === deviceId);
}

async function certificatesOf(tenantId: string, deviceId: string) {
  const listed = await api.call('GET', `/api/v1/provisioning/certificates?deviceId=${deviceId}`, { key: await api.keyFor(tenantId, 'viewer') });
  expect(listed.status).toBe(200);
  return listed.body.certificates as { serialNumber: string; revokedAt?: string | null }[];
}

describe('the firmware catalogue API', () => {
  it('refuses entries it cannot judge by, naming the field and the reason', async () => {
    const call = await asAdministrator('fw-api');
    const base = { vendor: 'Reference Devices', model: 'RD-1000', version: '1.0.0' };
    const cases: [unknown, string][] = [
      [{ ...base, status: 'approved' }, 'sha256'],
      [{ ...base, status: 'approved', sha256: 'abc' }, 'sha256'],
      [{ ...base, status: 'known_bad' }, 'reason'],
      [{ ...base, status: 'approved', sha256: null, colour: 'red' }, '(root)'],
      [{ ...base, vendor: ' ', status: 'approved', sha256: null }, 'vendor'],
      [{ ...base, status: 'trusted', sha256: null }, 'status'],
    ];
    for (const [body, field] of cases) {
      const response = await call('PUT', catalogue, body);
      expect(response.status, JSON.stringify(body)).toBe(400);
      expect(response.headers.get('content-type')).toContain('application/problem+json');
      expect(response.body.errors.map((e: { field: string }) => e.field), JSON.stringify(body)).toContain(field);
      expect(response.body.errors.every((e: { reason: string }) => e.reason.length > 0)).toBe(true);
    }
    expect((await call('DELETE', `${catalogue}/not-a-uuid`)).status).toBe(400);
    expect((await call('GET', catalogue)).body.entries).toEqual([]);
  });

  it('keeps one entry per vendor, model and version whatever their case, filters by vendor and model, and audits each change', async () => {
    const call = await asAdministrator('fw-api');
    const digest = randomBytes(32).toString('hex').toUpperCase();
    const added = await call('PUT', catalogue, { vendor: 'Reference Devices', model: 'RD-1000', version: '1.0.0', status: 'approved', sha256: digest });
    expect(added.status).toBe(201);
    expect(added.body).toMatchObject({ status: 'approved', sha256: digest.toLowerCase(), reason: null });
    const changed = await call('PUT', catalogue, { vendor: 'reference devices', model: 'rd-1000', version: '1.0.0', status: 'known_bad', reason: 'boot loader unsigned' });
    expect(changed.status).toBe(200);
    expect(changed.body).toMatchObject({ id: added.body.id, vendor: 'Reference Devices', status: 'known_bad', sha256: null, reason: 'boot loader unsigned' });
    expect((await call('PUT', catalogue, { vendor: 'Other', model: 'X', version: '1', status: 'approved', sha256: null })).status).toBe(201);

    expect((await call('GET', catalogue)).body.entries).toHaveLength(2);
    expect((await call('GET', `${catalogue}?vendor=REFERENCE%20DEVICES`)).body.entries).toEqual([expect.objectContaining({ id: added.body.id })]);
    expect((await call('GET', `${catalogue}?vendor=Other&model=Y`)).body.entries).toEqual([]);

    expect((await call('DELETE', `${catalogue}/${added.body.id}`)).status).toBe(204);
    expect((await call('DELETE', `${catalogue}/${added.body.id}`)).status).toBe(404);
    const events = await call('GET', `/api/v1/audit/events?targetId=${added.body.id}`);
    expect(events.body.events.map((e: { action: string }) => e.action)).toEqual(
      expect.arrayContaining(['firmware.catalogue_added', 'firmware.catalogue_changed', 'firmware.catalogue_removed']),
    );
  });

  it('lets viewers read the catalogue but only administrators change it', async () => {
    const body = { vendor: 'Reference Devices', model: 'RD-1000', version: '9', status: 'approved', sha256: null };
    expect((await api.call('GET', catalogue, { key: await api.keyFor('fw-api', 'viewer') })).status).toBe(200);
    expect((await api.call('PUT', catalogue, { key: await api.keyFor('fw-api', 'operator'), body })).status).toBe(403);
    expect((await api.call('PUT', catalogue, { key: await api.keyFor('fw-api', 'approver'), body })).status).toBe(403);
  });
});

describe('provisioning a device whose firmware the catalogue lists as known bad, under a `block` policy', () => {
  it('fails identification for good, issues nothing, and raises a critical alert on record', async () => {
    const call = await asAdministrator('fw-block');
    const test = await device({ firmwareVersion: '0.9.0' });
    await call('PUT', catalogue, { vendor: test.device.manufacturer, model: test.device.model, version: '0.9.0', status: 'known_bad', reason: 'debug shell open' });

    const provisioningId = await provision('fw-block', test);
    expect(await outcome(provisioningId)).toBe('failed');
    const status = await statusOf('fw-block', provisioningId);
    expect(status.error).toMatchObject({ step: 'identify', type: 'PolicyViolationError', message: expect.stringContaining('debug shell open') });
    expect(status.provisioningSteps.find((s: { step: string }) => s.step === 'identify').retryCount).toBe(0);
    expect(status.certificateInfo).toBeUndefined();
    expect(await certificatesOf('fw-block', test.request.serialNumber)).toEqual([]);
    expect(test.device.state).toBe('factory');

    expect(await firingAlerts('fw-block', test.request.serialNumber)).toEqual([expect.objectContaining({ kind: 'device.firmware_blocked', severity: 'critical' })]);
    const events = await call('GET', `/api/v1/audit/events?targetId=${test.request.serialNumber}`);
    expect(events.body.events).toContainEqual(
      expect.objectContaining({ action: 'firmware.blocked', outcome: 'failure', details: expect.objectContaining({ status: 'known_bad', basis: 'version', stage: 'identification' }) }),
    );
  });

  it('blocks an approved version whose image digest is not the approved image', async () => {
    const call = await asAdministrator('fw-block');
    const test = await device({ firmwareVersion: '1.2.0' });
    await call('PUT', catalogue, { vendor: test.device.manufacturer, model: test.device.model, version: '1.2.0', status: 'approved', sha256: 'f'.repeat(64) });
    const provisioningId = await provision('fw-block', test);
    expect(await outcome(provisioningId)).toBe('failed');
    expect((await statusOf('fw-block', provisioningId)).error.message).toContain('image digest does not match the approved image');
    expect(await certificatesOf('fw-block', test.request.serialNumber)).toEqual([]);
  });
});

describe('a fleet with approved and unknown firmware, under the default `alert` policy for unknown firmware', () => {
  let approved: TestDevice;
  let unknown: TestDevice;

  beforeAll(async () => {
    const call = await asAdministrator('fw-fleet');
    approved = await device();
    unknown = await device({ firmwareVersion: '3.0.0' });
    await call('PUT', catalogue, { vendor: approved.device.manufacturer, model: approved.device.model, version: '1.0.0', status: 'approved', sha256: approved.device.firmwareDigest });
    const runs = [await provision('fw-fleet', approved), await provision('fw-fleet', unknown)];
    expect(await Promise.all(runs.map(outcome))).toEqual(['completed', 'completed']);
  });

  it('provisions the device on unknown firmware, raising a warning, and the approved one quietly', async () => {
    expect(unknown.device.state).toBe('active');
    expect(await firingAlerts('fw-fleet', unknown.request.serialNumber)).toEqual([expect.objectContaining({ kind: 'device.firmware_unapproved', severity: 'warning' })]);
    expect(await firingAlerts('fw-fleet', approved.request.serialNumber)).toEqual([]);
    const registered = await service.parts.registry.get('fw-fleet', approved.request.serialNumber);
    expect(registered).toMatchObject({ firmwareStatus: 'approved', firmwareVerdict: expect.objectContaining({ basis: 'digest', stage: 'self-test' }) });
    const status = await statusOf('fw-fleet', `provision:fw-fleet:${unknown.request.serialNumber}`);
    expect(status.metadata.firmware).toMatchObject({ status: 'unknown', action: 'alert' });
  });

  it('reports counts per vendor, model and version with their verdicts, and pages through the devices on unapproved firmware', async () => {
    const call = await asAdministrator('fw-fleet');
    const report = await call('GET', '/api/v1/firmware/report');
    expect(report.status).toBe(200);
    expect(report.body.totals).toEqual({ devices: 2, approved: 1, unknown: 1, knownBad: 0, unchecked: 0 });
    expect(report.body.firmware).toEqual([
      { manufacturer: 'Reference Devices', model: 'RD-1000', firmwareVersion: '1.0.0', firmwareStatus: 'approved', count: 1 },
      { manufacturer: 'Reference Devices', model: 'RD-1000', firmwareVersion: '3.0.0', firmwareStatus: 'unknown', count: 1 },
    ]);
    expect(report.body.unapproved).toEqual([expect.objectContaining({ deviceId: unknown.request.serialNumber, firmwareVersion: '3.0.0', firmwareStatus: 'unknown' })]);
    expect(report.body.next).toBeUndefined();

    // A third device, registered but never identified, is not approved either.
    await service.parts.registry.register('fw-fleet', { ...(await device()).request, deviceId: 'never-identified' });
    const first = await call('GET', '/api/v1/firmware/report?limit=1');
    expect(first.body.unapproved).toHaveLength(1);
    const second = await call('GET', `/api/v1/firmware/report?limit=1&cursor=${first.body.next}`);
    expect([...first.body.unapproved, ...second.body.unapproved].map((d: { deviceId: string }) => d.deviceId).sort()).toEqual(
      ['never-identified', unknown.request.serialNumber].sort(),
    );
    expect((await call('GET', '/api/v1/firmware/report?cursor=%20bad')).status).toBe(400);
  });
});

describe('unknown firmware under an `approve` policy', () => {
  it('waits after identification, issuing nothing, until an approver lets it through', async () => {
    await setPolicy('fw-approve', { firmwareUnknown: 'approve' });
    const test = await device({ firmwareVersion: '4.0.0' });
    const provisioningId = await provision('fw-approve', test);
    const waiting = await waitFor(async () => {
      const status = await statusOf('fw-approve', provisioningId);
      return status.metadata?.awaitingApproval ? status : undefined;
    }, 'the run to wait for an approver of its firmware');
    expect(waiting.metadata.awaitingApproval.policyIds).toEqual(['firmware:unknown']);
    expect(waiting.metadata.firmware).toMatchObject({ status: 'unknown', action: 'approve' });
    expect(waiting.certificateInfo).toBeUndefined();
    expect(await certificatesOf('fw-approve', test.request.serialNumber)).toEqual([]);
    expect(test.device.state).toBe('factory');

    const decided = await api.call('POST', `/api/v1/provisioning/devices/${provisioningId}/approval`, {
      key: await api.keyFor('fw-approve', 'approver'),
      body: { decision: 'approve', comment: 'vendor hotfix, ticket 88' },
    });
    expect(decided.status).toBe(200);
    expect(await outcome(provisioningId)).toBe('completed');
    expect(test.device.state).toBe('active');
  });
});

describe('unknown firmware under an `approve` policy, on a site an approval policy covers too', () => {
  it('asks for one decision that answers both, and a rejection issues nothing', async () => {
    await setPolicy('fw-approve', { firmwareUnknown: 'approve' });
    const policy = await api.call('POST', '/api/v1/provisioning/approval-policies', {
      key: await api.keyFor('fw-approve', 'administrator'),
      body: { scope: 'site', scopeValue: 'guarded-site', timeoutSeconds: 600, escalateAfterSeconds: 300 },
    });
    expect(policy.status).toBe(201);
    const test = await device({ firmwareVersion: '4.1.0', site: 'guarded-site' });
    const provisioningId = await provision('fw-approve', test);
    const waiting = await waitFor(async () => {
      const status = await statusOf('fw-approve', provisioningId);
      return status.metadata?.awaitingApproval ? status : undefined;
    }, 'the run to wait for one approval');
    expect(waiting.metadata.awaitingApproval.policyIds).toEqual([policy.body.id, 'firmware:unknown']);
    // The longer of the two waits, the earlier of the two escalations.
    const { since, timeoutAt } = waiting.metadata.awaitingApproval;
    expect(Date.parse(timeoutAt) - Date.parse(since)).toBe(72 * 3600 * 1000);

    const decided = await api.call('POST', `/api/v1/provisioning/devices/${provisioningId}/approval`, {
      key: await api.keyFor('fw-approve', 'approver'),
      body: { decision: 'reject', comment: 'not this firmware' },
    });
    expect(decided.status).toBe(200);
    expect(await outcome(provisioningId)).toBe('failed');
    expect((await statusOf('fw-approve', provisioningId)).error).toMatchObject({ type: 'ApprovalRejected', step: 'approval' });
    expect(await certificatesOf('fw-approve', test.request.serialNumber)).toEqual([]);
  });
});

describe('firmware that changes while the device is being provisioned', () => {
  it('is judged again at the self-test: a known-bad version installed meanwhile fails the run and revokes what was issued', async () => {
    const call = await asAdministrator('fw-change');
    const test = await device({ site: 'change-site' });
    await call('PUT', catalogue, { vendor: test.device.manufacturer, model: test.device.model, version: '1.0.0', status: 'approved', sha256: test.device.firmwareDigest });
    await call('PUT', catalogue, { vendor: test.device.manufacturer, model: test.device.model, version: '1.1.0', status: 'known_bad', reason: 'certificate store wiped on boot' });
    // An approval policy holds the run after identification, while the device updates itself.
    await call('POST', '/api/v1/provisioning/approval-policies', { scope: 'site', scopeValue: 'change-site', timeoutSeconds: 3600 });
    const provisioningId = await provision('fw-change', test);
    await waitFor(async () => ((await statusOf('fw-change', provisioningId)).metadata?.awaitingApproval ? true : undefined), 'the approval wait');
    expect((await service.parts.registry.get('fw-change', test.request.serialNumber)).firmwareStatus).toBe('approved');

    test.device.installFirmware('1.1.0');
    const decided = await api.call('POST', `/api/v1/provisioning/devices/${provisioningId}/approval`, {
      key: await api.keyFor('fw-change', 'approver'),
      body: { decision: 'approve' },
    });
    expect(decided.status).toBe(200);
    expect(await outcome(provisioningId)).toBe('failed');
    const status = await statusOf('fw-change', provisioningId);
    expect(status.error).toMatchObject({ step: 'selfTest', type: 'PolicyViolationError', message: expect.stringContaining('certificate store wiped on boot') });
    expect(await certificatesOf('fw-change', test.request.serialNumber)).toEqual([expect.objectContaining({ revokedAt: expect.any(String) })]);
    expect(await service.parts.registry.get('fw-change', test.request.serialNumber)).toMatchObject({ firmwareVersion: '1.1.0', firmwareStatus: 'known_bad' });
    expect(await firingAlerts('fw-change', test.request.serialNumber)).toEqual([expect.objectContaining({ kind: 'device.firmware_blocked' })]);
  });
});

describe('a protocol that reports no image digest (ONVIF)', () => {
  it('is judged by version only, and the verdict says so', async () => {
    const call = await asAdministrator('fw-onvif');
    await call('PUT', catalogue, { vendor: 'Simulated Optics', model: 'SO-CAM-4K', version: '2.6.1', status: 'approved', sha256: 'c'.repeat(64) });
    const [a, b, c] = randomBytes(3);
    const macAddress = ['02', ...randomBytes(5).toString('hex').match(/../g)!].join(':');
    const credentials = { username: 'admin', password: randomBytes(9).toString('base64url') };
    const camera = await startOnvifDevice({ host: `127.${(a! % 250) + 1}.${b}.${(c! % 250) + 1}`, serialNumber: 'CAM-FW-1', macAddress, credentials });
    peers.push(camera);
    const started = await api.call('POST', '/api/v1/provisioning/devices', {
      key: await api.keyFor('fw-onvif', 'operator'),
      body: {
        templateId: 'onvif-camera',
        devices: [{ deviceId: 'cam-fw-1', serialNumber: 'CAM-FW-1', macAddress, address: camera.address, protocol: 'onvif', deviceType: 'camera', site: 'hq', credentials }],
      },
    });
    expect(started.status).toBe(202);
    expect(await outcome(started.body.provisionings[0].provisioningId)).toBe('completed');
    const registered = await service.parts.registry.get('fw-onvif', 'cam-fw-1');
    expect(registered.firmwareStatus).toBe('approved');
    expect(registered.firmwareVerdict).toMatchObject({ basis: 'version', protocol: 'onvif', reason: expect.stringContaining('reports no image digest') });
    expect(registered.firmwareVerdict).not.toHaveProperty('digest');
  });
});
