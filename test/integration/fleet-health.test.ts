/**
 * Health after activation, end to end: a device of every protocol is provisioned against its real
 * or faithful peer, then the site's health sweep (a workflow on the real dev server, started by its
 * Temporal Schedule or on demand) probes them. Each peer is stopped (it goes offline and alerts once
 * the tenant's threshold of failed probes is reached), started again (it comes back, the alert
 * resolves, a reboot is noticed where the protocol reports uptime), and the HTTPS reference device
 * swaps its certificate (a critical mismatch alert).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { and, eq } from 'drizzle-orm';
import { startBacnetDevice, type SimulatedBacnetDevice } from '../../scripts/simulators/bacnet-device';
import { startOnvifDevice, type RunningOnvifDevice } from '../../scripts/simulators/onvif-device';
import { startOsdpReader, type RunningOsdpReader } from '../../scripts/simulators/osdp-reader';
import { startSnmpd, type RunningSnmpd } from '../../scripts/simulators/snmp-agent';
import { SnmpDeviceAdapter } from '../../adapters/snmp';
import { alerts } from '../../db/schema';
import { provisioningWorkflowId } from '../../contracts/provisioning';
import { healthScheduleId, type HealthSweepReport } from '../../contracts/fleet-health';
import { FleetHealth } from '../../fleet/fleet-health';
import { createCredentialRotations } from '../../service/parts';
import { createMetricsRegistry } from '../../observability/metrics';
import { testDeviceNetworks } from '../support/device-networks';
import { startTestDevice, waitFor, type TestDevice } from '../support/devices';
import { startTestService, testLogger, type TestService } from '../support/service';

const tenant = 'acme';
const site = 'hq';
let service: TestService;
let health: FleetHealth;
let reference: TestDevice;
let camera: RunningOnvifDevice;
let snmpd: RunningSnmpd;
let reader: RunningOsdpReader;
let controller: SimulatedBacnetDevice;
let intervalAfterActivation: unknown;
const deviceIds = ['rd-lobby', 'cam-gate', 'enc-yard', 'reader-door', 'ahu-roof'] as const;

const localMac = () => ['02', ...randomBytes(5).toString('hex').match(/../g)!].join(':');
const loopbackHost = () => {
  const [a, b, c] = randomBytes(3);
  return `127.${(a! % 250) + 1}.${b}.${(c! % 250) + 1}`;
};

beforeAll(async () => {
  service = await startTestService();
  health = new FleetHealth({
    client: service.env.client,
    taskQueue: service.config.temporal.taskQueue,
    policies: service.parts.fleetPolicies,
    registry: service.parts.registry,
    events: service.parts.healthEvents,
    credentialRotations: createCredentialRotations(service.parts, service.env.client, service.config.temporal.taskQueue),
  });

  reference = await startTestDevice({ site });
  const cameraCredentials = { username: 'admin', password: randomBytes(9).toString('base64url') };
  const cameraMac = localMac();
  camera = await startOnvifDevice({ host: loopbackHost(), serialNumber: 'CAM-H1', macAddress: cameraMac, credentials: cameraCredentials });
  const admin = { userName: 'provadmin', authPassphrase: 'factory-auth-Secret1', privPassphrase: 'factory-priv-Secret1' };
  snmpd = await startSnmpd({ sysDescr: 'AXIS Q7424-R Mk II Video Encoder', sysObjectID: '1.3.6.1.4.1.368.1.1', admin });
  const snmpCredentials = { username: admin.userName, password: JSON.stringify({ auth: admin.authPassphrase, priv: admin.privPassphrase }) };
  const label = await new SnmpDeviceAdapter({ networks: testDeviceNetworks }).identify({ address: snmpd.address, credentials: snmpCredentials });
  reader = await startOsdpReader({ serialNumber: 0xc0ffee21 });
  controller = await startBacnetDevice({ serialNumber: 'BC-H1', password: 'factory-Secret9', scCapable: true });

  const requests = [
    { templateId: 'default', device: { ...reference.request, deviceId: 'rd-lobby' } },
    {
      templateId: 'onvif-camera',
      device: { deviceId: 'cam-gate', serialNumber: 'CAM-H1', macAddress: cameraMac, address: camera.address, protocol: 'onvif', deviceType: 'camera', site, credentials: cameraCredentials },
    },
    {
      templateId: 'snmp-v3-baseline',
      device: { deviceId: 'enc-yard', serialNumber: label.serialNumber, macAddress: label.macAddress ?? localMac(), address: snmpd.address, protocol: 'snmp', deviceType: 'camera', site, credentials: snmpCredentials },
    },
    {
      templateId: 'osdp-reader',
      device: { deviceId: 'reader-door', serialNumber: 'C0FFEE21', macAddress: localMac(), address: reader.address, protocol: 'osdp', deviceType: 'card_reader', site },
    },
    {
      templateId: 'bacnet-sc-controller',
      device: {
        deviceId: 'ahu-roof',
        serialNumber: 'BC-H1',
        macAddress: localMac(),
        address: controller.address,
        protocol: 'bacnet',
        deviceType: 'building_controller',
        site,
        credentials: { username: 'bacnet', password: 'factory-Secret9' },
      },
    },
  ];
  for (const { templateId, device } of requests) await service.provisioning.start(tenant, { templateId, devices: [device] });
  const records = await Promise.all(deviceIds.map((id) => service.env.client.workflow.getHandle(provisioningWorkflowId(tenant, id)).result()));
  expect(records.map((record) => record.status)).toEqual(deviceIds.map(() => 'completed'));
  // Activation gave the site its schedule, at the service's default interval.
  intervalAfterActivation = (await service.env.client.schedule.getHandle(healthScheduleId(tenant, site)).describe()).spec.intervals?.[0]?.every;

  await health.setPolicy(
    tenant,
    { ...service.parts.fleetPolicies.defaults, healthChecksEnabled: true, healthCheckIntervalSeconds: 3600, offlineAfterFailures: 2, healthProbeConcurrency: 5 },
    'user:test',
  );
}, 240_000);

afterAll(async () => {
  await Promise.all([reference?.device.stop(), camera?.close(), snmpd?.close(), reader?.close(), controller?.close()]);
  await service?.stop();
});

async function sweep(): Promise<HealthSweepReport> {
  const started = await health.sweepNow(tenant, site);
  return service.env.client.workflow.getHandle(started.healthSweepId).result();
}

async function healthOf() {
  const devices = await service.parts.registry.findMany(tenant, [...deviceIds]);
  return Object.fromEntries(devices.map((device) => [device.deviceId, device]));
}

async function openAlerts(kind: string) {
  const rows = await service.parts.database.db.select().from(alerts).where(and(eq(alerts.tenantId, tenant), eq(alerts.kind, kind)));
  return rows.filter((row) => row.resolvedAt === null).map((row) => (row.details as { deviceId: string }).deviceId).sort();
}

async function eventKinds(deviceId: string): Promise<string[]> {
  const page = await health.events(tenant, deviceId, { limit: 100 });
  return page.items.map((event) => event.kind);
}

async function metric(name: string): Promise<string | undefined> {
  const registry = createMetricsRegistry({ db: service.parts.database.db, devices: service.parts.registry, templates: service.parts.templates, alerts: service.parts.alerts, logger: testLogger });
  return (await registry.metrics()).split('\n').find((line) => line.startsWith(`${name}{tenant="${tenant}"}`));
}

describe('health sweeps of a site', () => {
  it("activation gives the site its schedule; the policy sets its interval; it runs a sweep that finds every protocol's device online, recorded once", async () => {
    expect(intervalAfterActivation).toBe(300_000);
    const schedule = service.env.client.schedule.getHandle(healthScheduleId(tenant, site));
    const described = await schedule.describe();
    expect(described.spec.intervals?.[0]?.every).toBe(3_600_000);
    await schedule.trigger();
    const runId = await waitFor(async () => (await schedule.describe()).info.recentActions.at(-1)?.action.workflow.workflowId, 'the scheduled sweep');
    const report = (await service.env.client.workflow.getHandle(runId).result()) as HealthSweepReport;
    expect(report).toMatchObject({ tenantId: tenant, site, probed: 5, online: 5, unanswered: 0, unsupported: 0 });

    const devices = await healthOf();
    for (const id of deviceIds) {
      expect(devices[id]).toMatchObject({ health: 'online', consecutiveProbeFailures: 0 });
      expect(await eventKinds(id)).toEqual(['online']);
    }
    // Uptime where the protocol reports it: the reference device and snmpd's sysUpTime.
    expect(devices['rd-lobby']!.uptimeSeconds).toEqual(expect.any(Number));
    expect(devices['enc-yard']!.uptimeSeconds).toEqual(expect.any(Number));
    expect(await metric('devices_online')).toBe(`devices_online{tenant="${tenant}"} 5`);

    // A second sweep finds nothing new: no event per probe.
    await sweep();
    for (const id of deviceIds) expect(await eventKinds(id)).toEqual(['online']);
  }, 120_000);

  it('a stopped device of every protocol goes offline after the threshold of failed probes and alerts; back, the alert resolves', async () => {
    // The reference device must have been up a second or more, so its restart shows as uptime going down.
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    // Every device answers before the stop, so no failure counts from an earlier probe that a busy
    // machine let time out.
    await waitFor(async () => ((await sweep()).online === deviceIds.length ? true : undefined), 'a sweep with every device online');
    await reference.device.stop();
    camera.faults.hang = ['GetSystemDateAndTime'];
    process.kill(snmpd.pid, 'SIGSTOP');
    reader.faults.silent = true;
    controller.faults.silent = true;
    try {
      const first = await sweep();
      expect(first).toMatchObject({ probed: 5, unanswered: 5, wentOffline: 0 });
      expect(Object.values(await healthOf()).map((device) => [device.deviceId, device.health, device.consecutiveProbeFailures])).toEqual(
        expect.arrayContaining(deviceIds.map((id) => [id, 'online', 1])),
      );
      expect(await openAlerts('device.offline')).toEqual([]);

      const second = await sweep();
      expect(second).toMatchObject({ probed: 5, unanswered: 5, wentOffline: 5 });
      for (const device of Object.values(await healthOf())) expect(device).toMatchObject({ health: 'offline', consecutiveProbeFailures: 2 });
      expect(await openAlerts('device.offline')).toEqual([...deviceIds].sort());
      for (const id of deviceIds) expect(await eventKinds(id)).toEqual(['offline', 'online']);
      expect(await metric('devices_offline')).toBe(`devices_offline{tenant="${tenant}"} 5`);

      // Still silent: no new event, the alert stays one alert.
      await sweep();
      for (const id of deviceIds) expect(await eventKinds(id)).toEqual(['offline', 'online']);
    } finally {
      await reference.device.start();
      camera.faults.hang = [];
      process.kill(snmpd.pid, 'SIGCONT');
      reader.faults.silent = false;
      controller.faults.silent = false;
    }

    const back = await sweep();
    expect(back).toMatchObject({ probed: 5, online: 5, cameBack: 5, rebooted: 1 });
    for (const device of Object.values(await healthOf())) expect(device).toMatchObject({ health: 'online', consecutiveProbeFailures: 0 });
    expect(await openAlerts('device.offline')).toEqual([]);
    // Back online and rebooted are seen by one probe, at one time.
    const kinds = await eventKinds('rd-lobby');
    expect([...kinds.slice(0, 2)].sort()).toEqual(['online', 'rebooted']);
    expect(kinds.slice(2)).toEqual(['offline', 'online']);
    expect((await healthOf())['rd-lobby']!.lastRebootAt).toBeInstanceOf(Date);
    for (const id of deviceIds.filter((id) => id !== 'rd-lobby')) expect(await eventKinds(id)).toEqual(['online', 'offline', 'online']);
  }, 240_000);

  it('a device presenting a certificate other than ours raises a critical mismatch alert, once, and nothing is sent to it', async () => {
    const presented = await reference.device.presentForeignCertificate();
    const requestsBefore = reference.device.receivedRequests.length;
    try {
      const report = await sweep();
      expect(report).toMatchObject({ certificateMismatches: 1 });
      expect(reference.device.receivedRequests.length).toBe(requestsBefore);
      const [alert] = await service.parts.database.db
        .select()
        .from(alerts)
        .where(and(eq(alerts.tenantId, tenant), eq(alerts.kind, 'device.certificate_mismatch')));
      expect(alert).toMatchObject({ severity: 'critical', resolvedAt: null, details: expect.objectContaining({ deviceId: 'rd-lobby', presentedFingerprint: presented }) });
      await sweep();
      expect((await eventKinds('rd-lobby')).filter((kind) => kind === 'certificate_mismatch')).toHaveLength(1);
    } finally {
      await reference.device.presentOwnCertificate();
    }
    await sweep();
    expect(await openAlerts('device.certificate_mismatch')).toEqual([]);
  }, 120_000);

  it("pages a device's health events newest first, and answers 404 for another tenant's device", async () => {
    const all = await health.events(tenant, 'rd-lobby', { limit: 100 });
    const seen: string[] = [];
    let page = await health.events(tenant, 'rd-lobby', { limit: 2 });
    for (;;) {
      seen.push(...page.items.map((event) => event.id));
      if (!page.next) break;
      page = await health.events(tenant, 'rd-lobby', { limit: 2, before: page.next });
    }
    expect(seen).toEqual(all.items.map((event) => event.id));
    await expect(health.events('other-tenant', 'rd-lobby', { limit: 10 })).rejects.toThrow(/not registered/);
    await expect(health.sweepNow(tenant, 'no-such-site')).rejects.toThrow(/no active devices/);
  });
});
