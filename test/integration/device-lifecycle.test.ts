/**
 * A device's life after activation through the API, against the real dev server, database, CA and
 * HTTPS reference devices: decommissioning (certificates revoked, workflows ended, secrets gone,
 * kept on record, idempotent, never provisioned again), replacing a unit (RMA) and provisioning an
 * active device again on purpose.
 */
import { randomBytes } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { certificates } from '../../db/schema';
import { renewalStatusQuery, renewalWorkflowId } from '../../contracts/certificates';
import { decommissionWorkflowId, replacementWorkflowId, reprovisioningWorkflowId } from '../../contracts/device-lifecycle';
import { provisioningWorkflowId, type DeviceProvisioningRecord } from '../../contracts/provisioning';
import { initialCredentialsPurpose } from '../../registry/initial-credentials';
import { startTestApi, type TestApi } from '../support/api';
import { TestDevices, waitFor, type TestDevice } from '../support/devices';
import { presentedCertificateFingerprint } from '../support/network';
import { startTestService, type TestService } from '../support/service';

let service: TestService;
let api: TestApi;
let operator: string;
const devices = new TestDevices();

beforeAll(async () => {
  service = await startTestService();
  api = await startTestApi(service, { defaultTenant: 'acme' });
  operator = await api.keyFor('acme', 'operator');
});
afterAll(async () => {
  await devices.stopAll();
  await api?.close();
  await service?.stop();
});

async function provision(name = 'Lobby camera'): Promise<{ device: TestDevice; deviceId: string; record: DeviceProvisioningRecord }> {
  const device = await devices.start();
  const started = await api.call('POST', '/api/v1/provisioning/devices', { body: { devices: [{ ...device.request, name }] } });
  expect(started.status).toBe(202);
  const deviceId = device.request.serialNumber;
  const record: DeviceProvisioningRecord = await service.env.client.workflow.getHandle(provisioningWorkflowId('acme', deviceId)).result();
  expect(record.status).toBe('completed');
  return { device, deviceId, record };
}

/** A template with parameters and a secret, as a site's door cameras would have. */
const doorTemplate = {
  id: 'door-cameras',
  name: 'Door cameras',
  protocol: 'https',
  deviceType: 'camera',
  body: {
    hostname: '{{device.hostname}}',
    timezone: 'Europe/Berlin',
    site: '{{device.site}}',
    ntp: { servers: '{{params.ntpServers}}' },
    syslog: { host: 'syslog.hq.internal', port: 6514, protocol: 'tls' },
    tls: { minVersion: 'TLSv1.2' },
    management: { httpEnabled: false, passwordLogin: false },
    vlan: { id: '{{params.vlan}}' },
    users: [{ username: 'ops', password: '{{secret.opsPassword}}', role: 'operator' }],
  },
  parameters: {
    ntpServers: { type: 'list' },
    vlan: { type: 'integer', minimum: 1, maximum: 4094 },
    opsPassword: { type: 'secret' },
  },
};

async function certificate(id: string) {
  const [row] = await service.parts.database.db.select().from(certificates).where(eq(certificates.id, id));
  return row!;
}

function result<T>(workflowId: string): Promise<T> {
  return service.env.client.workflow.getHandle(workflowId).result();
}

async function renewalWaiting(deviceId: string) {
  return waitFor(async () => {
    const status = await service.env.client.workflow.getHandle(renewalWorkflowId('acme', deviceId)).query(renewalStatusQuery);
    return status.state === 'waiting' ? status : undefined;
  }, 'the renewal workflow to wait');
}

describe('decommissioning', () => {
  it('revokes the certificate (cessationOfOperation), ends the renewal workflow, removes the secrets and keeps the device on record as decommissioned', async () => {
    const { deviceId, record } = await provision();
    await renewalWaiting(deviceId);
    expect(await service.parts.vault.read('acme', deviceId, initialCredentialsPurpose)).toBeDefined();

    const started = await api.call('POST', `/api/v1/devices/${deviceId}/decommission`, { key: operator, body: { reason: 'camera removed from lobby' } });
    expect(started.status).toBe(202);
    expect(started.body).toMatchObject({ deviceId, jobId: decommissionWorkflowId('acme', deviceId), outcome: 'started' });
    await result(started.body.jobId);

    const revoked = await certificate(record.certificateInfo!.certificateId);
    expect(revoked.revokedAt).not.toBeNull();
    expect(revoked.revocationReason).toBe('cessationOfOperation');
    const renewal = await service.env.client.workflow.getHandle(renewalWorkflowId('acme', deviceId)).describe();
    expect(renewal.status.name).toBe('CANCELLED');
    expect(await service.parts.vault.read('acme', deviceId, initialCredentialsPurpose)).toBeUndefined();
    const registered = await service.parts.registry.get('acme', deviceId);
    expect(registered).toMatchObject({ lifecycleState: 'decommissioned', decommissionReason: 'camera removed from lobby' });
    expect(registered.decommissionedAt).toBeInstanceOf(Date);

    const progress = await api.call('GET', `/api/v1/devices/${deviceId}/decommission`, { key: await api.keyFor('acme', 'viewer') });
    expect(progress.status).toBe(200);
    expect(progress.body).toMatchObject({
      state: 'completed',
      reason: 'camera removed from lobby',
      revokedCertificates: [record.certificateInfo!.serialNumber],
      endedWorkflows: [renewalWorkflowId('acme', deviceId)],
    });
    expect(progress.body.removedSecrets).toBeGreaterThanOrEqual(1);
    expect(progress.body.steps.map((s: { status: string }) => s.status)).not.toContain('pending');

    const trail = await service.parts.audit.list('acme', { targetId: deviceId, limit: 100 });
    const actions = trail.map((event) => event.action);
    expect(actions).toEqual(expect.arrayContaining(['device.decommission_started', 'device.decommission.revoke_certificates', 'device.decommissioned']));
  }, 120_000);

  it('answers a second request with the same job and refuses to provision the device again (409)', async () => {
    const { device, deviceId } = await provision();
    const first = await api.call('POST', `/api/v1/devices/${deviceId}/decommission`, { key: operator, body: { reason: 'end of life' } });
    const again = await api.call('POST', `/api/v1/devices/${deviceId}/decommission`, { key: operator, body: { reason: 'end of life' } });
    expect(again.status).toBe(202);
    expect(again.body.jobId).toBe(first.body.jobId);
    await result(first.body.jobId);
    const afterwards = await api.call('POST', `/api/v1/devices/${deviceId}/decommission`, { key: operator, body: { reason: 'asked once more' } });
    expect(afterwards.status).toBe(202);
    expect(afterwards.body).toMatchObject({ jobId: first.body.jobId, outcome: 'existing' });
    expect((await service.parts.registry.get('acme', deviceId)).decommissionReason).toBe('end of life');

    const provisionAgain = await api.call('POST', '/api/v1/provisioning/devices', { body: { devices: [device.request] } });
    expect(provisionAgain.status).toBe(409);
    expect(provisionAgain.body.errors).toEqual([{ field: 'devices[0].deviceId', reason: 'this device is decommissioned' }]);
    const reprovision = await api.call('POST', `/api/v1/devices/${deviceId}/reprovision`, { key: operator, body: { reason: 'try' } });
    expect(reprovision.status).toBe(409);
  }, 120_000);

  it('goes through for a device that no longer answers', async () => {
    const { device, deviceId } = await provision();
    await device.device.stop();
    const started = await api.call('POST', `/api/v1/devices/${deviceId}/decommission`, { key: operator, body: { reason: 'camera destroyed' } });
    const progress = await result<{ state: string; managementAccess: { removed: boolean } }>(started.body.jobId);
    expect(progress.state).toBe('completed');
    expect(progress.managementAccess.removed).toBe(false);
    expect((await service.parts.registry.get('acme', deviceId)).lifecycleState).toBe('decommissioned');
  }, 180_000);

  it('refuses bad input with the field at fault, and answers 404 for a device that is not registered', async () => {
    const { deviceId } = await provision();
    const empty = await api.call('POST', `/api/v1/devices/${deviceId}/decommission`, { key: operator, body: { reason: '' } });
    expect(empty.status).toBe(400);
    expect(empty.body.errors).toEqual([expect.objectContaining({ field: 'reason' })]);
    const missing = await api.call('POST', '/api/v1/devices/NO-SUCH-DEVICE/decommission', { key: operator, body: { reason: 'x' } });
    expect(missing.status).toBe(404);
    expect((await api.call('GET', `/api/v1/devices/${deviceId}/decommission`)).status).toBe(404);
  }, 120_000);

  it("answers from the registry once Temporal's retention has removed the finished workflow", async () => {
    const { deviceId } = await provision();
    // As the registry holds a device decommissioned long ago, its workflow gone from Temporal.
    await service.parts.registry.markDecommissioned('acme', deviceId, 'retired in 2025');
    const progress = await api.call('GET', `/api/v1/devices/${deviceId}/decommission`);
    expect(progress.status).toBe(200);
    expect(progress.body).toMatchObject({ state: 'completed', reason: 'retired in 2025' });
    expect(progress.body.steps[0].detail).toContain('retention');

    // And a replacement of long ago, by the successor the device names.
    const successor = await provision();
    await service.parts.registry.recordReplacement('acme', deviceId, successor.deviceId);
    const replacement = await api.call('GET', `/api/v1/devices/${deviceId}/replace`);
    expect(replacement.status).toBe(200);
    expect(replacement.body).toMatchObject({ state: 'completed', newDeviceId: successor.deviceId, reason: 'retired in 2025' });
  }, 120_000);
});

describe('replacement (RMA)', () => {
  it("provisions the new unit with the old one's site, template, parameters and name, then decommissions the old one", async () => {
    const template = await api.call('POST', '/api/v1/provisioning/templates', { body: doorTemplate });
    expect(template.status).toBe(201);
    const oldUnit = await devices.start();
    const oldDeviceId = oldUnit.request.serialNumber;
    const secret = `Ops-${randomBytes(12).toString('base64url')}-9!`;
    const parameters = await api.call('PUT', `/api/v1/provisioning/devices/${oldDeviceId}/configuration/parameters`, {
      key: operator,
      body: { values: { ntpServers: ['10.20.0.1'], vlan: 42 }, secrets: { opsPassword: secret } },
    });
    expect(parameters.status).toBe(200);
    const provisioned = await api.call('POST', '/api/v1/provisioning/devices', {
      body: { devices: [{ ...oldUnit.request, name: 'Door 4 camera' }], templateId: doorTemplate.id },
    });
    expect(provisioned.status).toBe(202);
    const oldRecord: DeviceProvisioningRecord = await result(provisioningWorkflowId('acme', oldDeviceId));
    expect(oldRecord.status).toBe('completed');

    const unit = await devices.start();
    const started = await api.call('POST', `/api/v1/devices/${oldDeviceId}/replace`, {
      key: operator,
      body: {
        reason: 'lens cracked',
        device: {
          serialNumber: unit.request.serialNumber,
          macAddress: unit.request.macAddress,
          address: unit.request.address,
          credentials: unit.request.credentials,
        },
      },
    });
    expect(started.status).toBe(202);
    expect(started.body.jobId).toBe(replacementWorkflowId('acme', oldDeviceId));
    await result(started.body.jobId);

    const newDeviceId = unit.request.serialNumber;
    const replaced = await service.parts.registry.get('acme', oldDeviceId);
    const replacement = await service.parts.registry.get('acme', newDeviceId);
    expect(replacement).toMatchObject({
      lifecycleState: 'active',
      site: replaced.site,
      protocol: replaced.protocol,
      deviceType: replaced.deviceType,
      name: 'Door 4 camera',
      configurationTemplate: doorTemplate.id,
      replacementOf: oldDeviceId,
    });
    expect(replaced).toMatchObject({ lifecycleState: 'decommissioned', replacedBy: newDeviceId });
    expect((await certificate(oldRecord.certificateInfo!.certificateId)).revocationReason).toBe('cessationOfOperation');
    // The new unit runs what the old one ran: the same parameters, the same secret.
    expect(unit.device.configuration?.settings).toMatchObject({ vlan: { id: 42 }, users: [{ username: 'ops', password: secret }] });
    const copied = await api.call('GET', `/api/v1/provisioning/devices/${newDeviceId}/configuration/parameters`);
    expect(copied.body.values).toEqual({ ntpServers: ['10.20.0.1'], vlan: 42 });
    expect(copied.body.secrets.map((s: { name: string }) => s.name)).toEqual(['opsPassword']);

    const progress = await api.call('GET', `/api/v1/devices/${oldDeviceId}/replace`);
    expect(progress.body).toMatchObject({ state: 'completed', newDeviceId, decommissionId: decommissionWorkflowId('acme', oldDeviceId) });
    const again = await api.call('POST', `/api/v1/devices/${oldDeviceId}/replace`, { key: operator, body: { reason: 'lens cracked', device: { serialNumber: 'RMA-OTHER', macAddress: '02:00:00:00:cc:01', address: unit.request.address } } });
    expect(again.body).toMatchObject({ jobId: started.body.jobId, outcome: 'existing' });
  }, 180_000);

  it('leaves the old device as it was when the new unit fails, and takes the same unit again once it works', async () => {
    const old = await provision();
    const unit = await devices.start({ faults: { refuseConfiguration: true } });
    const body = {
      reason: 'fan failed',
      device: { serialNumber: unit.request.serialNumber, macAddress: unit.request.macAddress, address: unit.request.address, credentials: unit.request.credentials },
    };
    const first = await api.call('POST', `/api/v1/devices/${old.deviceId}/replace`, { key: operator, body });
    await expect(result(first.body.jobId)).rejects.toThrow();
    expect((await api.call('GET', `/api/v1/devices/${old.deviceId}/replace`)).body).toMatchObject({ state: 'failed', error: expect.any(String) });
    expect((await service.parts.registry.get('acme', old.deviceId)).lifecycleState).toBe('active');
    expect((await certificate(old.record.certificateInfo!.certificateId)).revokedAt).toBeNull();

    unit.device.clearFaults();
    const second = await api.call('POST', `/api/v1/devices/${old.deviceId}/replace`, { key: operator, body });
    expect(second.body.outcome).toBe('started');
    await result(second.body.jobId);
    expect(await service.parts.registry.get('acme', old.deviceId)).toMatchObject({ lifecycleState: 'decommissioned', replacedBy: unit.request.serialNumber });
  }, 180_000);

  it('refuses a new unit that is already registered', async () => {
    const [a, b] = [await provision(), await provision()];
    const refused = await api.call('POST', `/api/v1/devices/${a.deviceId}/replace`, {
      key: operator,
      body: { reason: 'swap', device: { serialNumber: b.deviceId, macAddress: b.device.request.macAddress, address: b.device.request.address } },
    });
    expect(refused.status).toBe(409);
    expect((await service.parts.registry.get('acme', a.deviceId)).lifecycleState).toBe('active');
  }, 120_000);
});

describe('re-provisioning', () => {
  it('issues a new certificate the device then presents, and revokes the old one as superseded', async () => {
    const { device, deviceId, record } = await provision();
    const previous = record.certificateInfo!;
    const started = await api.call('POST', `/api/v1/devices/${deviceId}/reprovision`, { key: operator, body: { reason: 'key may have leaked' } });
    expect(started.status).toBe(202);
    expect(started.body.jobId).toBe(reprovisioningWorkflowId('acme', deviceId));
    const progress = await result<{ state: string; newCertificateSerial: string; previousCertificateRevoked: boolean }>(started.body.jobId);
    expect(progress).toMatchObject({ state: 'completed', previousCertificateRevoked: true });
    expect(progress.newCertificateSerial).not.toBe(previous.serialNumber);

    const registered = await service.parts.registry.get('acme', deviceId);
    expect(registered.lifecycleState).toBe('active');
    const current = await certificate(registered.activeCertificateId!);
    expect(current.serialNumber).toBe(progress.newCertificateSerial);
    expect(current.publicKey).not.toBe((await certificate(previous.certificateId)).publicKey);
    const [host, port] = device.request.address.split(':');
    expect(await presentedCertificateFingerprint(host!, Number(port))).toBe(current.fingerprint);
    const old = await certificate(previous.certificateId);
    expect(old.revocationReason).toBe('superseded');
    expect(current.revokedAt).toBeNull();

    // The renewal workflow now looks after the new certificate.
    await waitFor(async () => {
      const status = await service.env.client.workflow.getHandle(renewalWorkflowId('acme', deviceId)).query(renewalStatusQuery);
      return status.certificate.certificateId === current.id ? status : undefined;
    }, 'the renewal workflow to follow the new certificate');
    const status = await api.call('GET', `/api/v1/provisioning/devices/${provisioningWorkflowId('acme', deviceId)}/status`);
    expect(status.body.certificateInfo.serialNumber).toBe(progress.newCertificateSerial);
  }, 180_000);

  it('revokes the old certificate after all when the new run fails past installing its own, and fails the job', async () => {
    const { device, deviceId, record } = await provision();
    device.device.setFaults({ refuseConfiguration: true });
    const started = await api.call('POST', `/api/v1/devices/${deviceId}/reprovision`, { key: operator, body: { reason: 'rotate keys' } });
    await expect(result(started.body.jobId)).rejects.toThrow();
    const progress = await api.call('GET', `/api/v1/devices/${deviceId}/reprovision`);
    expect(progress.body).toMatchObject({ state: 'failed', previousCertificateRevoked: true });
    expect((await certificate(record.certificateInfo!.certificateId)).revocationReason).toBe('superseded');
    const registered = await service.parts.registry.get('acme', deviceId);
    expect(registered.lifecycleState).toBe('failed');
    expect((await certificate(registered.activeCertificateId!)).revocationReason).toBe('cessationOfOperation');
  }, 180_000);
});
