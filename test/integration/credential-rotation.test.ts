/**
 * Rotating a device's per-device management secrets through the service: the API starts the
 * rotation workflow on the real dev server, the ONVIF camera simulator takes the new password, the
 * vault holds it sealed, the registry and the audit trail record it; a camera that stays away fails
 * the rotation and raises an alert that the next good rotation resolves; the tenant's schedule and
 * sweep follow its fleet policy.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { alertFingerprint, alertKinds } from '../../alerts/alert-store';
import { vaultDeviceSecrets } from '../../custody/device-secrets';
import { provisioningWorkflowId } from '../../contracts/provisioning';
import { credentialRotationScheduleId, credentialRotationWorkflowId } from '../../contracts/credential-rotation';
import { decommissionWorkflowId } from '../../contracts/device-lifecycle';
import { onvifSecretPurposes } from '../../adapters/onvif';
import { startOnvifDevice, type RunningOnvifDevice } from '../../scripts/simulators/onvif-device';
import type { credentialRotationSweep, rotateDeviceCredentials } from '../../workflows/credential-rotation';
import { createCredentialRotations } from '../../service/parts';
import { startTestApi, type TestApi } from '../support/api';
import { startTestService, type TestService } from '../support/service';

let service: TestService;
let api: TestApi;
const cameras: RunningOnvifDevice[] = [];

beforeAll(async () => {
  service = await startTestService();
  api = await startTestApi(service, { defaultTenant: 'acme' });
});
afterAll(async () => {
  await api?.close();
  await service?.stop();
});
afterEach(async () => {
  await Promise.all(cameras.splice(0).map((camera) => camera.close()));
});

const localMac = () => ['02', ...randomBytes(5).toString('hex').match(/../g)!].join(':');
const loopbackHost = () => {
  const [a, b, c] = randomBytes(3);
  return `127.${(a! % 250) + 1}.${b}.${(c! % 250) + 1}`;
};

/** An ONVIF camera provisioned through the service, active, with its management user in the vault. */
async function activeCamera(deviceId: string): Promise<RunningOnvifDevice> {
  const credentials = { username: 'admin', password: randomBytes(9).toString('base64url') };
  const macAddress = localMac();
  const serialNumber = `CAM-${randomBytes(3).toString('hex').toUpperCase()}`;
  const camera = await startOnvifDevice({ host: loopbackHost(), serialNumber, macAddress, credentials });
  cameras.push(camera);
  await service.provisioning.start('acme', {
    templateId: 'onvif-camera',
    devices: [{ deviceId, serialNumber, macAddress, address: camera.address, protocol: 'onvif', deviceType: 'camera', site: 'hq', credentials }],
  });
  const record = await service.env.client.workflow.getHandle(provisioningWorkflowId('acme', deviceId)).result();
  expect(record.status).toBe('completed');
  return camera;
}

const managementPassword = async (deviceId: string) => {
  const secret = await vaultDeviceSecrets(service.parts.vault, 'acme', deviceId).read(onvifSecretPurposes.managementPassword);
  return Buffer.from(secret!).toString('base64url');
};

describe('credential rotation through the API, the dev server and the ONVIF camera simulator', () => {
  it('rotates the management password: 202, the camera takes the new one, the old one is refused, recorded and audited', async () => {
    const camera = await activeCamera('cam-rotate-1');
    const before = await managementPassword('cam-rotate-1');

    const started = await api.call('POST', '/api/v1/devices/cam-rotate-1/rotate-credentials', { body: { reason: 'quarterly rotation' } });
    expect(started.status).toBe(202);
    expect(started.body).toMatchObject({ deviceId: 'cam-rotate-1', workflowId: credentialRotationWorkflowId('acme', 'cam-rotate-1') });
    expect(started.headers.get('location')).toBe('/api/v1/devices/cam-rotate-1/credential-rotation');
    const outcome = await service.env.client.workflow.getHandle<typeof rotateDeviceCredentials>(started.body.workflowId).result();
    expect(outcome.rotated).toEqual(['ONVIF management user password']);

    const after = await managementPassword('cam-rotate-1');
    expect(after).not.toBe(before);
    expect(camera.passwordMatches('provisioning', after)).toBe(true);
    expect(camera.passwordMatches('provisioning', before)).toBe(false);
    const device = await service.parts.registry.get('acme', 'cam-rotate-1');
    expect(device.credentialsRotatedAt?.toISOString()).toBe(outcome.rotatedAt);

    const status = await api.call('GET', '/api/v1/devices/cam-rotate-1/credential-rotation');
    expect(status.status).toBe(200);
    expect(status.body).toMatchObject({ state: 'completed', rotated: ['ONVIF management user password'] });
    const audited = await service.parts.audit.list('acme', { limit: 500 });
    const event = audited.find((e) => e.action === 'device.credentials_rotated' && e.targetId === 'cam-rotate-1');
    expect(event).toMatchObject({ outcome: 'success', details: { reason: 'quarterly rotation' } });
    // No secret reaches the workflow's history or the audit trail.
    expect(JSON.stringify(event)).not.toContain(after);
    const history = await service.env.client.workflow.getHandle(started.body.workflowId).fetchHistory();
    expect(JSON.stringify(history)).not.toContain(after);
  });

  it('refuses a device that is not active (409), one of a protocol without such secrets (501), and bad input (400)', async () => {
    await service.parts.registry.register('acme', {
      deviceId: 'cam-not-active',
      serialNumber: 'NA-1',
      macAddress: localMac(),
      address: '127.0.0.1:1',
      protocol: 'onvif',
      deviceType: 'camera',
      site: 'hq',
    });
    expect((await api.call('POST', '/api/v1/devices/cam-not-active/rotate-credentials', { body: { reason: 'x' } })).status).toBe(409);
    const missingReason = await api.call('POST', '/api/v1/devices/cam-not-active/rotate-credentials', { body: {} });
    expect(missingReason.status).toBe(400);
    expect(missingReason.type).toContain('application/problem+json');
    expect(missingReason.body.errors).toEqual([expect.objectContaining({ field: 'reason' })]);
    await service.parts.registry.register('acme', {
      deviceId: 'rd-https-1',
      serialNumber: 'RD-HTTPS-1',
      macAddress: localMac(),
      address: '127.0.0.1:1',
      protocol: 'https',
      deviceType: 'camera',
      site: 'hq',
    });
    await service.parts.registry.update('acme', 'rd-https-1', { lifecycleState: 'active' });
    expect((await api.call('POST', '/api/v1/devices/rd-https-1/rotate-credentials', { body: { reason: 'x' } })).status).toBe(501);
  });

  it('fails a rotation the camera stays away for, with an alert that the next good rotation resolves', async () => {
    const camera = await activeCamera('cam-away-1');
    const before = await managementPassword('cam-away-1');
    camera.faults.truncated = ['GetUsers'];
    const workflowId = credentialRotationWorkflowId('acme', 'cam-away-1');
    const args = { tenantId: 'acme', deviceId: 'cam-away-1', reason: 'test', requestedBy: 'test', retryWindowSeconds: 8 };
    const failed = service.env.client.workflow.execute<typeof rotateDeviceCredentials>('rotateDeviceCredentials', {
      workflowId,
      taskQueue: service.config.temporal.taskQueue,
      args: [args],
    });
    await expect(failed).rejects.toThrow();
    const fingerprint = alertFingerprint(alertKinds.credentialRotationFailing, 'cam-away-1');
    expect((await service.parts.alerts.list('acme', { open: true })).map((alert) => alert.fingerprint)).toContain(fingerprint);
    expect(await managementPassword('cam-away-1')).toBe(before);

    camera.faults.truncated = [];
    await service.env.client.workflow.execute<typeof rotateDeviceCredentials>('rotateDeviceCredentials', {
      workflowId,
      taskQueue: service.config.temporal.taskQueue,
      args: [args],
    });
    expect((await service.parts.alerts.list('acme', { open: true })).map((alert) => alert.fingerprint)).not.toContain(fingerprint);
    expect(camera.passwordMatches('provisioning', await managementPassword('cam-away-1'))).toBe(true);
  });

  it('keeps a schedule per tenant while its fleet policy rotates, and the sweep rotates only devices whose secrets are due', async () => {
    const camera = await activeCamera('cam-sweep-due');
    await activeCamera('cam-sweep-fresh');
    const rotations = createCredentialRotations(service.parts, service.env.client, service.config.temporal.taskQueue);
    const policy = await service.parts.fleetPolicies.get('acme');
    const { tenantId: _t, updatedBy: _u, updatedAt: _a, ...input } = policy;

    // The fleet policy route: the schedule follows it at once.
    expect((await api.call('PUT', '/api/v1/fleet/policy', { body: { ...input, credentialRotationDays: 30 } })).status).toBe(200);
    const schedule = await service.env.client.schedule.getHandle(credentialRotationScheduleId('acme')).describe();
    expect(schedule.action).toMatchObject({ workflowType: 'credentialRotationSweep', args: [{ tenantId: 'acme' }] });

    // Only the camera whose secrets were set 31 days ago is due.
    await service.parts.registry.update('acme', 'cam-sweep-due', { activatedAt: new Date(Date.now() - 31 * 86_400_000) });
    const before = await managementPassword('cam-sweep-due');
    const report = await service.env.client.workflow.execute<typeof credentialRotationSweep>('credentialRotationSweep', {
      workflowId: `${credentialRotationScheduleId('acme')}-test`,
      taskQueue: service.config.temporal.taskQueue,
      args: [{ tenantId: 'acme' }],
    });
    expect(report).toMatchObject({ tenantId: 'acme', due: 1, rotated: 1, failed: 0 });
    expect(camera.passwordMatches('provisioning', await managementPassword('cam-sweep-due'))).toBe(true);
    expect(await managementPassword('cam-sweep-due')).not.toBe(before);

    expect((await api.call('PUT', '/api/v1/fleet/policy', { body: { ...input, credentialRotationDays: null } })).status).toBe(200);
    await expect(service.env.client.schedule.getHandle(credentialRotationScheduleId('acme')).describe()).rejects.toThrow();
    expect(await rotations.ensureSchedules()).toBe(0);
  });
});

describe('decommissioning an ONVIF camera', () => {
  it('deletes the management user provisioning created on the camera, and forgets its password', async () => {
    const camera = await activeCamera('cam-retired');
    expect(camera.state().users.map((user) => user.username)).toContain('provisioning');

    const started = await api.call('POST', '/api/v1/devices/cam-retired/decommission', { body: { reason: 'camera moved to storage' } });
    expect(started.status).toBe(202);
    await service.env.client.workflow.getHandle(decommissionWorkflowId('acme', 'cam-retired')).result();

    expect(camera.state().users.map((user) => user.username)).not.toContain('provisioning');
    expect(await vaultDeviceSecrets(service.parts.vault, 'acme', 'cam-retired').read(onvifSecretPurposes.managementPassword)).toBeUndefined();
    const job = await api.call('GET', '/api/v1/devices/cam-retired/decommission');
    expect(JSON.stringify(job.body)).toContain('ONVIF');
    expect((await service.parts.registry.get('acme', 'cam-retired')).lifecycleState).toBe('decommissioned');
  });
});
