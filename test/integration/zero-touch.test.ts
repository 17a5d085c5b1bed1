/**
 * Zero-touch provisioning through the API against the real dev server, database, CA and simulated
 * devices on loopback: a pre-registered device is provisioned with no further call once a DHCP
 * lease or an installer's enrolment token reports it; a device that shows the registered MAC
 * with another serial is not; and enrolment tokens are single-use.
 */
import { X509Certificate, randomBytes } from 'node:crypto';
import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alerts, certificates } from '../../db/schema';
import { startOnvifDevice, type RunningOnvifDevice } from '../../scripts/simulators/onvif-device';
import { startTestApi, type TestApi } from '../support/api';
import { TestDevices, waitFor } from '../support/devices';
import { startTestService, type TestService } from '../support/service';

let service: TestService;
let api: TestApi;
const devices = new TestDevices();
const cameras: RunningOnvifDevice[] = [];

beforeAll(async () => {
  // Behind a proxy on loopback, as in production behind a load balancer; a small budget of wrong tokens.
  service = await startTestService({
    environment: { TRUST_PROXY: 'loopback', ZERO_TOUCH_FAILED_TOKEN_BURST: '3', ZERO_TOUCH_FAILED_TOKEN_PER_MINUTE: '1' },
  });
  api = await startTestApi(service, { defaultTenant: 'acme' });
});
afterAll(async () => {
  await Promise.all(cameras.map((camera) => camera.close()));
  await devices.stopAll();
  await api?.close();
  await service?.stop();
});

const mac = () => ['02', ...randomBytes(5).toString('hex').match(/../g)!].join(':');
const loopbackHost = () => {
  const [a, b, c] = randomBytes(3);
  return `127.${(a! % 250) + 1}.${b}.${(c! % 250) + 1}`;
};

/** A camera on its own loopback address, its ONVIF service on port 80 as DHCP-found cameras are. */
async function camera(serialNumber: string, macAddress: string, credentials: { username: string; password: string }) {
  const started = await startOnvifDevice({ host: loopbackHost(), port: 80, serialNumber, macAddress, credentials });
  cameras.push(started);
  return started;
}

function dhcpLease(macAddress: string, ip: string) {
  return {
    hookVersion: 1,
    event: 'add',
    macAddress,
    ip,
    observedAt: new Date().toISOString(),
    hostname: 'axis-camera',
    vendorClass: 'AXIS,Network Camera,Q1656,11.9.60',
    requestedOptions: '1,3,6,12,15,28,42',
  };
}

async function registrationState(deviceId: string, wanted: string) {
  return waitFor(async () => {
    const response = await api.call('GET', `/api/v1/provisioning/zero-touch/${deviceId}`);
    return response.body.status?.state === wanted ? response.body : undefined;
  }, `registration ${deviceId} to be ${wanted}`, 60_000);
}

describe('zero-touch provisioning', () => {
  it('provisions a pre-registered camera with no further call once the DHCP server reports its lease', async () => {
    const credentials = { username: 'admin', password: randomBytes(9).toString('base64url') };
    const macAddress = mac();
    const cam = await camera('ZT-CAM-1', macAddress, credentials);

    const registered = await api.call('POST', '/api/v1/provisioning/zero-touch', {
      body: { devices: [{ serialNumber: 'ZT-CAM-1', macAddress, protocol: 'onvif', deviceType: 'camera', site: 'hq', templateId: 'onvif-camera', credentials }] },
    });
    expect(registered.status).toBe(202);
    expect(registered.body.registrations[0]).toMatchObject({ deviceId: 'ZT-CAM-1', macAddress, workflowId: 'zero-touch:acme:ZT-CAM-1' });
    expect((await registrationState('ZT-CAM-1', 'waiting')).status.sightings).toEqual([]);

    const lease = await api.call('POST', '/api/v1/discovery/dhcp-events', { body: dhcpLease(macAddress, cam.host), key: await api.keyFor('acme', 'reporter') });
    expect(lease.status).toBe(202);
    expect(lease.body.matched).toEqual(['ZT-CAM-1']);

    const done = await registrationState('ZT-CAM-1', 'provisioned');
    expect(done.status.provisioningId).toBe('provision:acme:ZT-CAM-1');
    const record = await api.call('GET', '/api/v1/provisioning/devices/provision:acme:ZT-CAM-1/status');
    expect(record.body).toMatchObject({ status: 'completed', provisioningMethod: 'automatic' });
    const [issued] = await service.parts.database.db.select().from(certificates).where(eq(certificates.deviceId, 'ZT-CAM-1'));
    expect(cam.state().servingCertificateFingerprint).toBe(issued!.fingerprint);
  });

  it('does not provision a device that shows the registered MAC with another serial: the mismatch is recorded and alerted, and the wait goes on', async () => {
    const credentials = { username: 'admin', password: randomBytes(9).toString('base64url') };
    const macAddress = mac();
    const impostor = await camera('ZT-OTHER-9', macAddress, credentials);
    await api.call('POST', '/api/v1/provisioning/zero-touch', {
      body: { devices: [{ serialNumber: 'ZT-CAM-2', macAddress, protocol: 'onvif', deviceType: 'camera', site: 'hq', templateId: 'onvif-camera', credentials }] },
    });

    await api.call('POST', '/api/v1/discovery/dhcp-events', { body: dhcpLease(macAddress, impostor.host), key: await api.keyFor('acme', 'reporter') });
    const waiting = await waitFor(async () => {
      const response = await api.call('GET', '/api/v1/provisioning/zero-touch/ZT-CAM-2');
      return response.body.status?.mismatches.length > 0 && response.body.status.state === 'waiting' ? response.body : undefined;
    }, 'the mismatch', 60_000);
    expect(waiting.status.mismatches[0].reason).toContain('ZT-OTHER-9');
    expect(await service.parts.database.db.select().from(certificates).where(eq(certificates.deviceId, 'ZT-CAM-2'))).toEqual([]);
    expect(impostor.state().servingCertificateFingerprint).toBeUndefined();
    const raised = await service.parts.database.db
      .select()
      .from(alerts)
      .where(and(eq(alerts.tenantId, 'acme'), eq(alerts.kind, 'zero_touch.identity_mismatch')));
    expect(raised.map((alert) => (alert.details as { deviceId: string }).deviceId)).toContain('ZT-CAM-2');
  });

  it("starts provisioning from an installer's single-use enrolment token and its QR code, reading the MAC from the device", async () => {
    const { device, request } = await devices.start();
    await api.call('POST', '/api/v1/provisioning/zero-touch', {
      body: { devices: [{ serialNumber: request.serialNumber, protocol: 'https', deviceType: 'camera', site: 'hq', credentials: request.credentials }] },
    });
    const issued = await api.call('POST', `/api/v1/provisioning/zero-touch/${request.serialNumber}/enrolment-token`);
    expect(issued.status).toBe(201);
    expect(issued.body.token).toMatch(/^dzt_/);
    expect(issued.body.enrolUrl).toContain(`#token=${issued.body.token}`);
    expect(issued.body.qrCode.svg).toContain('<svg');
    expect(Buffer.from(issued.body.qrCode.pngBase64, 'base64').subarray(1, 4).toString()).toBe('PNG');

    const enrolled = await api.call('POST', '/api/v1/provisioning/zero-touch/enrol', { key: null, body: { token: issued.body.token, address: request.address } });
    expect(enrolled.status).toBe(202);
    expect(enrolled.body.deviceId).toBe(request.serialNumber);
    const again = await api.call('POST', '/api/v1/provisioning/zero-touch/enrol', { key: null, body: { token: issued.body.token, address: request.address } });
    expect(again.status).toBe(401);

    await registrationState(request.serialNumber, 'provisioned');
    const registry = await service.parts.registry.get('acme', request.serialNumber);
    expect(registry.macAddress).toBe(request.macAddress);
    const [certificate] = await service.parts.database.db.select().from(certificates).where(eq(certificates.deviceId, request.serialNumber));
    expect(device.certificateFingerprint).toBe(certificate!.fingerprint);
    expect(new X509Certificate(certificate!.pem).subject).toContain(`CN=${request.serialNumber}`);
  });

  it('refuses registrations without a serial or MAC, for unknown protocols, and twice for one device, naming the field', async () => {
    const missing = await api.call('POST', '/api/v1/provisioning/zero-touch', { body: { devices: [{ protocol: 'onvif', site: 'hq', templateId: 'onvif-camera' }] } });
    expect(missing.status).toBe(400);
    expect(missing.body.errors).toEqual([expect.objectContaining({ field: 'devices[0].serialNumber' })]);
    const protocol = await api.call('POST', '/api/v1/provisioning/zero-touch', { body: { devices: [{ serialNumber: 'X1', protocol: 'telnet', site: 'hq' }] } });
    expect(protocol.body.errors).toEqual([expect.objectContaining({ field: 'devices[0].protocol' })]);
    const wrongTemplate = await api.call('POST', '/api/v1/provisioning/zero-touch', { body: { devices: [{ serialNumber: 'X2', protocol: 'onvif', site: 'hq' }] } });
    expect(wrongTemplate.body.errors).toEqual([expect.objectContaining({ field: 'devices[0].templateId' })]);

    const body = { devices: [{ serialNumber: 'ZT-TWICE', protocol: 'https', site: 'hq' }] };
    expect((await api.call('POST', '/api/v1/provisioning/zero-touch', { body })).status).toBe(202);
    expect((await api.call('POST', '/api/v1/provisioning/zero-touch', { body })).status).toBe(409);
    const cancelled = await api.call('POST', '/api/v1/provisioning/zero-touch/ZT-TWICE/cancel', { body: { reason: 'order cancelled' } });
    expect(cancelled.status).toBe(202);
    const ended = await registrationState('ZT-TWICE', 'cancelled');
    expect(ended.status.error).toBe('order cancelled');
  });
});

describe('the public enrolment endpoint', () => {
  const enrol = (body: unknown, from: string) =>
    api.call('POST', '/api/v1/provisioning/zero-touch/enrol', { key: null, body, headers: { 'x-forwarded-for': from } });

  it('validates its body like every other operation: none, or a token that is not text, is a 400 naming the field', async () => {
    const empty = await api.call('POST', '/api/v1/provisioning/zero-touch/enrol', { key: null, headers: { 'x-forwarded-for': '198.51.100.1' } });
    expect(empty.status).toBe(400);
    const numeric = await enrol({ token: 12345678901, address: '127.0.0.1' }, '198.51.100.1');
    expect(numeric.status).toBe(400);
    expect(numeric.body.errors).toEqual([expect.objectContaining({ field: 'token' })]);
  });

  it('throttles wrong tokens per client address, as told by the trusted proxy, while /healthz keeps answering', async () => {
    const guesser = '198.51.100.7';
    for (let attempt = 0; attempt < 3; attempt++) {
      expect((await enrol({ token: `dzt_wrong-guess-${attempt}`, address: '127.0.0.1' }, guesser)).status).toBe(401);
    }
    const throttled = await enrol({ token: 'dzt_wrong-guess-again', address: '127.0.0.1' }, guesser);
    expect(throttled.status).toBe(429);
    expect(Number(throttled.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect((await enrol({ token: 'dzt_someone-else', address: '127.0.0.1' }, '198.51.100.8')).status).toBe(401);

    // A flood beyond the per-address budget of public calls never takes health checks down with it.
    let limited = false;
    for (let batch = 0; batch < 200 && !limited; batch++) {
      const statuses = await Promise.all(
        Array.from({ length: 50 }, async () => {
          const response = await fetch(`${api.baseUrl}/api/v1/openapi.json`, { headers: { 'x-forwarded-for': guesser } });
          await response.arrayBuffer();
          return response.status;
        }),
      );
      limited = statuses.includes(429);
    }
    expect(limited).toBe(true);
    const health = await api.call('GET', '/healthz', { key: null, headers: { 'x-forwarded-for': guesser } });
    expect(health.status).toBe(200);
  });
});
