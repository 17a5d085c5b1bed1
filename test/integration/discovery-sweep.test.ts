/**
 * Discovery sweeps through the API against the real dev server and database, with simulated
 * devices on their own loopback addresses: an ONVIF camera answering WS-Discovery Probes sent to
 * it by unicast, and real snmpd agents swept by the SNMP scanner. A worker on a queue of its own
 * runs the sweep with a zero-touch service that records what it is offered.
 */
import { randomUUID } from 'node:crypto';
import { and, eq, inArray } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Worker } from '@temporalio/worker';
import { createDiscoveryActivities, type ZeroTouchOffers } from '../../activities/discovery';
import { createSiteRoutingActivities } from '../../activities/site-routing';
import { alertKinds } from '../../alerts/alert-store';
import { payloadDataConverter } from '../../custody/payload-codec';
import { devices, discoveredDevices, zeroTouchRegistrations } from '../../db/schema';
import { discoveryScheduleId, ensureDiscoverySchedules } from '../../discovery/sweep-schedule';
import { startOnvifDevice, type RunningOnvifDevice } from '../../scripts/simulators/onvif-device';
import { freeUdpPort, startSnmpd, type RunningSnmpd } from '../../scripts/simulators/snmp-agent';
import { workflowsPath } from '../../service/worker';
import type { DeviceSighting, ZeroTouchMatch } from '../../contracts/zero-touch';
import type { DiscoverySweepSummary } from '../../workflows/discovery-sweep';
import { startTestApi, type TestApi } from '../support/api';
import { waitFor } from '../support/devices';
import { startTestService, testLogger, type TestService } from '../support/service';

const tenantId = 'acme';
const admin = { userName: 'provadmin', authPassphrase: 'factory-auth-pass', privPassphrase: 'factory-priv-pass' };
/** Engine IDs in format 3 (a MAC) under Axis's enterprise number, as Axis agents have them. */
const registeredMac = '00:40:8c:5e:00:01';
const expectedMac = '00:40:8c:5e:00:02';
const strangerMac = '00:40:8c:5e:00:03';
const engineIdFor = (mac: string) => `0x80000170` + '03' + mac.replace(/:/g, '');

/** Answers as the zero-touch service does for registrations in the table, and keeps what it was offered. */
class RecordingZeroTouch implements ZeroTouchOffers {
  readonly offered: { tenantId: string; sightings: DeviceSighting[] }[] = [];
  constructor(private readonly parts: () => TestService['parts']) {}

  async offerSightings(tenant: string, sightings: DeviceSighting[]): Promise<{ matched: ZeroTouchMatch[] }> {
    this.offered.push({ tenantId: tenant, sightings });
    const macs = sightings.flatMap((sighting) => (sighting.macAddress ? [sighting.macAddress] : []));
    if (macs.length === 0) return { matched: [] };
    const rows = await this.parts()
      .database.db.select()
      .from(zeroTouchRegistrations)
      .where(and(eq(zeroTouchRegistrations.tenantId, tenant), inArray(zeroTouchRegistrations.macAddress, macs)));
    return { matched: rows.map((row) => ({ registrationId: row.id, deviceId: row.deviceId, macAddress: row.macAddress! })) };
  }
}

let service: TestService;
let api: TestApi;
let worker: Worker;
let running: Promise<void>;
let camera: RunningOnvifDevice;
let snmpPort: number;
const agents: RunningSnmpd[] = [];
const zeroTouch = new RecordingZeroTouch(() => service.parts);
const discoveryQueue = `discovery-test-${randomUUID()}`;

beforeAll(async () => {
  service = await startTestService({ database: 'server' });
  camera = await startOnvifDevice({
    host: '127.79.0.2',
    serialNumber: 'SWEEP-CAM-1',
    macAddress: '02:79:00:00:00:02',
    credentials: { username: 'admin', password: 'factory-admin' },
    discovery: { host: '127.79.0.2', port: 0 },
  });
  snmpPort = await freeUdpPort('127.79.0.3');
  agents.push(
    await startSnmpd({ host: '127.79.0.3', port: snmpPort, sysDescr: 'AXIS P3265-LVE Network Camera', sysObjectID: '1.3.6.1.4.1.368.4.1', admin, readOnlyCommunities: ['public'], extraConfig: [`exactEngineID ${engineIdFor(registeredMac)}`] }),
    await startSnmpd({ host: '127.79.0.4', port: snmpPort, sysDescr: 'AXIS M3045-V Network Camera', sysObjectID: '1.3.6.1.4.1.368.4.2', admin, readOnlyCommunities: ['public'], extraConfig: [`exactEngineID ${engineIdFor(expectedMac)}`] }),
    await startSnmpd({ host: '127.79.0.5', port: snmpPort, sysDescr: 'AXIS Q1656 Box Camera', sysObjectID: '1.3.6.1.4.1.368.4.3', admin, readOnlyCommunities: ['public'], extraConfig: [`exactEngineID ${engineIdFor(strangerMac)}`] }),
  );

  // A worker of its own, so the sweep's zero-touch offers reach the recorder.
  worker = await Worker.create({
    connection: service.env.nativeConnection,
    namespace: service.config.temporal.namespace,
    taskQueue: discoveryQueue,
    dataConverter: payloadDataConverter(service.parts.payloadKeyring),
    workflowsPath,
    activities: {
      // Where the site's scanners run: this installation has no edge workers, so here.
      ...createSiteRoutingActivities({ sites: service.parts.siteWorkers, registry: service.parts.registry }),
      ...createDiscoveryActivities({
        discovery: service.parts.discovery,
        alerts: service.parts.alerts,
        audit: service.parts.audit,
        zeroTouch,
        networks: service.parts.networks,
        logger: testLogger,
        scanTimeoutMs: 2_000,
        scanners: {
          'ws-discovery': { target: { host: camera.host, port: camera.discoveryPort! } },
          snmp: { port: snmpPort, communities: ['public'], hostTimeoutMs: 300, concurrency: 16 },
        },
      }),
    },
  });
  running = worker.run();
  api = await startTestApi(
    { ...service, config: { ...service.config, temporal: { ...service.config.temporal, taskQueue: discoveryQueue } } },
    { defaultTenant: tenantId },
  );

  await service.parts.database.db.insert(devices).values({
    tenantId,
    deviceId: 'lobby-cam',
    serialNumber: 'AXIS-LOBBY-1',
    macAddress: registeredMac,
    address: `127.79.0.3:80`,
    protocol: 'onvif',
    deviceType: 'camera',
    site: 'lab',
  });
  await service.parts.database.db.insert(zeroTouchRegistrations).values({
    tenantId,
    deviceId: 'dock-cam',
    macAddress: expectedMac,
    protocol: 'onvif',
    deviceType: 'camera',
    site: 'lab',
    templateId: 'camera-baseline',
    expiresAt: new Date(Date.now() + 86_400_000),
    createdBy: 'test',
  });
}, 180_000);

afterAll(async () => {
  await api?.close();
  if (worker) {
    worker.shutdown();
    await running;
  }
  await camera?.close();
  await Promise.all(agents.map((agent) => agent.close()));
  await service?.stop();
});

const scope = () => ({ interfaces: ['lo'], ranges: ['127.79.0.0/28'], ports: [snmpPort], allowLoopback: true });

async function finishedSweep(sweepId: string) {
  return waitFor(async () => {
    const response = await api.call('GET', `/api/v1/discovery/sweeps/${encodeURIComponent(sweepId)}`);
    return response.body.state === 'running' ? undefined : response;
  }, `sweep ${sweepId}`, 60_000);
}

describe('discovery sweeps', () => {
  it('refuses a site whose scope breaks the scan rules, naming each field, and a viewer who tries to configure one', async () => {
    const refused = await api.call('PUT', '/api/v1/discovery/sites/lab', {
      body: { scope: { interfaces: ['lo'], ranges: ['127.79.0.0/16'] }, scanners: ['snmp'], intervalMinutes: 60 },
    });
    expect(refused.status).toBe(400);
    expect(refused.type).toContain('application/problem+json');
    expect(refused.body.errors.map((error: { field: string }) => error.field).sort()).toEqual(['scope.interfaces.0', 'scope.ranges.0']);

    const tooOften = await api.call('PUT', '/api/v1/discovery/sites/lab', { body: { scope: scope(), scanners: ['snmp'], intervalMinutes: 1 } });
    expect(tooOften.status).toBe(400);
    expect(tooOften.body.errors).toEqual([expect.objectContaining({ field: 'intervalMinutes' })]);

    const viewer = await api.keyFor(tenantId, 'viewer');
    const forbidden = await api.call('PUT', '/api/v1/discovery/sites/lab', { body: { scope: scope(), scanners: ['snmp'], intervalMinutes: 60 }, key: viewer });
    expect(forbidden.status).toBe(403);
  });

  it('sweeps a site as soon as it is configured and again on demand, finding, merging and fingerprinting its devices, alerting on the unknown ones and offering all to zero-touch', async () => {
    // BACnet is configured but the scope lists only the SNMP port: that scanner fails, the sweep goes on.
    const configured = await api.call('PUT', '/api/v1/discovery/sites/lab', {
      body: { scope: scope(), scanners: ['ws-discovery', 'snmp', 'bacnet'], intervalMinutes: 60 },
    });
    expect(configured.status).toBe(201);
    expect(configured.body).toMatchObject({ site: 'lab', scanners: ['ws-discovery', 'snmp', 'bacnet'], scheduleId: discoveryScheduleId(tenantId, 'lab') });
    const schedule = await service.env.client.schedule.getHandle(discoveryScheduleId(tenantId, 'lab')).describe();
    expect(schedule.action).toMatchObject({ workflowType: 'discoverySweep', taskQueue: discoveryQueue, args: [{ tenantId, site: 'lab' }] });
    expect(schedule.spec.intervals).toEqual([expect.objectContaining({ every: 3_600_000 })]);

    // A site just configured is swept at once, without waiting an interval.
    const firstRun = await waitFor(async () => {
      const { info } = await service.env.client.schedule.getHandle(discoveryScheduleId(tenantId, 'lab')).describe();
      return info.runningActions[0]?.workflow ?? info.recentActions[0]?.action.workflow;
    }, 'the sweep run when the site was configured');
    const firstSweep: DiscoverySweepSummary = await service.env.client.workflow.getHandle(firstRun.workflowId).result();
    expect(firstSweep.recorded).toMatchObject({ devices: 4, unknown: 3, registered: 1, zeroTouchMatched: 1, conflicts: 0, alertsRaised: 2 });

    const operator = await api.keyFor(tenantId, 'operator');
    const started = await api.call('POST', '/api/v1/discovery/sites/lab/sweeps', { key: operator });
    expect(started.status).toBe(202);
    expect(started.body.sweepId).toMatch(/^discovery-sweep:acme:lab:/);

    const finished = await finishedSweep(started.body.sweepId);
    expect(finished.body.state).toBe('completed');
    const summary = finished.body.summary;
    expect(summary.failures).toEqual([{ scanner: 'bacnet', error: expect.stringContaining("not among the scope's ports") }]);
    expect(Object.fromEntries(summary.scanners.map((counts: { scanner: string; observations: number }) => [counts.scanner, counts.observations]))).toEqual({ 'ws-discovery': 1, snmp: 3 });
    // The same devices again: nothing new to alert on.
    expect(summary.recorded).toMatchObject({ devices: 4, unknown: 3, registered: 1, zeroTouchMatched: 1, conflicts: 0, alertsRaised: 0 });

    const listed = await api.call('GET', '/api/v1/discovery/devices?site=lab');
    const byIp = Object.fromEntries(listed.body.devices.map((device: { ip: string }) => [device.ip, device]));
    expect(byIp['127.79.0.2']).toMatchObject({
      identityKey: 'ip:127.79.0.2',
      deviceType: 'camera',
      sources: ['ws-discovery'],
      endpoints: [{ protocol: 'onvif', address: camera.address }],
      registeredDeviceId: null,
    });
    expect(byIp['127.79.0.3']).toMatchObject({ identityKey: `mac:${registeredMac}`, manufacturer: 'Axis Communications', registeredDeviceId: 'lobby-cam' });
    expect(byIp['127.79.0.4']).toMatchObject({ identityKey: `mac:${expectedMac}`, registeredDeviceId: null, zeroTouchRegistrationId: expect.any(String) });
    expect(byIp['127.79.0.4'].fingerprint.manufacturer).toMatchObject({ value: 'Axis Communications', confidence: expect.any(Number) });

    const unknown = await api.call('GET', '/api/v1/discovery/devices?site=lab&unknownOnly=true');
    expect(unknown.body.devices.map((device: { identityKey: string }) => device.identityKey).sort()).toEqual([`ip:127.79.0.2`, `mac:${expectedMac}`, `mac:${strangerMac}`]);

    // Only the device no registration expects is unauthorized.
    const open = await service.parts.alerts.list(tenantId, { open: true });
    expect(open.filter((alert) => alert.kind === alertKinds.deviceUnauthorized).map((alert) => alert.fingerprint).sort()).toEqual([
      'device.unauthorized:ip:127.79.0.2',
      `device.unauthorized:mac:${strangerMac}`,
    ]);

    // Every device reached zero-touch as a discovery sighting.
    const offered = zeroTouch.offered.at(-1)!;
    expect(offered.tenantId).toBe(tenantId);
    expect(offered.sightings).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ via: 'discovery', ip: '127.79.0.4', macAddress: expectedMac, endpoints: [{ protocol: 'snmp', address: `127.79.0.4:${snmpPort}` }] }),
        expect.objectContaining({ via: 'discovery', ip: '127.79.0.3', macAddress: registeredMac }),
        expect.objectContaining({ via: 'discovery', ip: '127.79.0.2', endpoints: [{ protocol: 'onvif', address: camera.address }] }),
      ]),
    );

    const [audited] = await service.parts.audit.list(tenantId, { action: 'discovery.sweep_recorded' });
    expect(audited).toMatchObject({ actor: 'discovery', targetId: 'lab', details: expect.objectContaining({ devices: 4, unknown: 3 }) });
  });

  it('closes the unauthorized alert once the device is registered, keeping one row per device across sweeps', async () => {
    await service.parts.database.db.insert(devices).values({
      tenantId,
      deviceId: 'yard-cam',
      serialNumber: 'AXIS-YARD-1',
      macAddress: strangerMac,
      address: '127.79.0.5:80',
      protocol: 'onvif',
      deviceType: 'camera',
      site: 'lab',
    });
    const again = await api.call('POST', '/api/v1/discovery/sites/lab/sweeps');
    const finished = await finishedSweep(again.body.sweepId);
    expect(finished.body.summary.recorded).toMatchObject({ devices: 4, unknown: 2, registered: 2, alertsRaised: 0, alertsResolved: 1 });

    const open = await service.parts.alerts.list(tenantId, { open: true });
    expect(open.filter((alert) => alert.kind === alertKinds.deviceUnauthorized).map((alert) => alert.fingerprint)).toEqual(['device.unauthorized:ip:127.79.0.2']);
    const rows = await service.parts.database.db.select().from(discoveredDevices).where(eq(discoveredDevices.tenantId, tenantId));
    expect(rows).toHaveLength(4);
    expect(rows.find((row) => row.macAddress === strangerMac)).toMatchObject({ registeredDeviceId: 'yard-cam' });
  });

  it("brings back a site's schedule at start when it was lost, and leaves disabled sites unscheduled", async () => {
    await service.env.client.schedule.getHandle(discoveryScheduleId(tenantId, 'lab')).delete();
    await service.parts.discovery.upsertSite(tenantId, 'quiet', { scope: scope(), scanners: ['snmp'], intervalMinutes: 120, enabled: false });

    expect(await ensureDiscoverySchedules(service.env.client, service.parts.discovery, discoveryQueue)).toBe(1);
    const restored = await service.env.client.schedule.getHandle(discoveryScheduleId(tenantId, 'lab')).describe();
    expect(restored.action).toMatchObject({ workflowType: 'discoverySweep', taskQueue: discoveryQueue });
    await expect(service.env.client.schedule.getHandle(discoveryScheduleId(tenantId, 'quiet')).describe()).rejects.toThrow();
    await service.parts.discovery.deleteSite(tenantId, 'quiet');
  });

  it('removes the site and its schedule', async () => {
    const removed = await api.call('DELETE', '/api/v1/discovery/sites/lab');
    expect(removed.status).toBe(204);
    await expect(service.env.client.schedule.getHandle(discoveryScheduleId(tenantId, 'lab')).describe()).rejects.toThrow();
    expect((await api.call('GET', '/api/v1/discovery/sites')).body.sites).toEqual([]);
    expect((await api.call('POST', '/api/v1/discovery/sites/lab/sweeps')).status).toBe(404);
  });
});
