/**
 * The fleet after activation, read from the database rather than from Temporal: a run's record is
 * archived as it closes, so status, the device's runs and the already-provisioned guard survive
 * the run's removal from Temporal; the inventory lists, filters, pages and exports the devices.
 */
import ExcelJS from 'exceljs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureNamespaceRetention } from '../../service/temporal';
import { startTestApi, type TestApi } from '../support/api';
import { startTestDevice, waitFor, type TestDevice } from '../support/devices';
import { startTestService, type TestService } from '../support/service';

let service: TestService;
let api: TestApi;
const devices: TestDevice[] = [];

beforeAll(async () => {
  service = await startTestService();
  api = await startTestApi(service, { defaultTenant: 'fleet' });
});

afterAll(async () => {
  await Promise.all(devices.map(({ device }) => device.stop()));
  await api?.close();
  await service?.stop();
});

async function provision(options: { site?: string; name?: string; metadata?: Record<string, string> } = {}) {
  const device = await startTestDevice({ site: options.site ?? 'lobby' });
  devices.push(device);
  const started = await api.call('POST', '/api/v1/provisioning/devices', {
    body: { devices: [{ ...device.request, ...(options.name ? { name: options.name } : {}), ...(options.metadata ? { metadata: options.metadata } : {}) }] },
  });
  expect(started.status).toBe(202);
  const provisioningId: string = started.body.provisionings[0].provisioningId;
  await service.env.client.workflow.getHandle(provisioningId).result();
  return { device, provisioningId, deviceId: device.request.serialNumber };
}

/** What `temporal workflow delete` does, and what the namespace's retention does to every closed run in the end. */
async function forget(workflowId: string) {
  await service.env.connection.workflowService.deleteWorkflowExecution({
    namespace: service.config.temporal.namespace,
    workflowExecution: { workflowId },
  });
  await waitFor(
    () => service.env.client.workflow.getHandle(workflowId).describe().then(() => undefined, () => 'gone' as const),
    `Temporal to remove ${workflowId}`,
    90_000,
  );
}

describe('a provisioning run that Temporal no longer remembers', () => {
  let completed: Awaited<ReturnType<typeof provision>> & { live: Record<string, any> }; // eslint-disable-line @typescript-eslint/no-explicit-any
  let failed: { provisioningId: string; deviceId: string };

  beforeAll(async () => {
    const run = await provision({ metadata: { ticket: 'CHG-1042' } });
    const live = await api.call('GET', `/api/v1/provisioning/devices/${run.provisioningId}/status`);
    expect(live.body.status).toBe('completed');
    completed = { ...run, live: live.body };

    const refusing = await startTestDevice({ site: 'lobby', faults: { refuseConfiguration: true } });
    devices.push(refusing);
    const started = await api.call('POST', '/api/v1/provisioning/devices', { body: { devices: [refusing.request] } });
    expect(started.status).toBe(202);
    failed = { provisioningId: started.body.provisionings[0].provisioningId, deviceId: refusing.request.serialNumber };
    await expect(service.env.client.workflow.getHandle(failed.provisioningId).result()).rejects.toThrow();

    // Both at once: the server removes a run some seconds after it is asked to.
    await Promise.all([forget(completed.provisioningId), forget(failed.provisioningId)]);
  }, 120_000);

  it('answers the same status record from the archive', async () => {
    const archived = await api.call('GET', `/api/v1/provisioning/devices/${completed.provisioningId}/status`);
    expect(archived.status).toBe(200);
    expect(archived.body).toEqual(completed.live);
  });

  it("lists every run of the device with its outcome and certificate serial", async () => {
    const runs = await api.call('GET', `/api/v1/devices/${completed.deviceId}/runs`);
    expect(runs.status).toBe(200);
    expect(runs.body.runs).toEqual([
      expect.objectContaining({
        workflowId: completed.provisioningId,
        provisioningMethod: 'api',
        outcome: 'completed',
        certificateSerial: completed.live.certificateInfo.serialNumber,
      }),
    ]);
  });

  it('still refuses to provision the active device twice, from the registry, starting nothing', async () => {
    const again = await api.call('POST', '/api/v1/provisioning/devices', { body: { devices: [completed.device.request] } });
    expect(again.status).toBe(409);
    expect(again.body.errors).toEqual([{ field: 'devices[0].deviceId', reason: 'this device is already provisioned' }]);
    expect(await service.env.client.workflow.getHandle(completed.provisioningId).describe().then(() => 'started', () => 'none')).toBe('none');
  });

  it('keeps a failed run with its outcome, failed step and error', async () => {
    const runs = await api.call('GET', `/api/v1/devices/${failed.deviceId}/runs`);
    expect(runs.body.runs).toEqual([expect.objectContaining({ outcome: 'failed' })]);
    expect(runs.body.runs[0].certificateSerial).toBeUndefined();
    const status = await api.call('GET', `/api/v1/provisioning/devices/${failed.provisioningId}/status`);
    expect(status.status).toBe(200);
    expect(status.body).toMatchObject({ status: 'failed', error: { step: 'pushConfiguration' } });
  });

  it('answers 404 to another tenant for an archived run, its device and its runs', async () => {
    const otherTenant = await api.keyFor('elsewhere', 'administrator');
    expect((await api.call('GET', `/api/v1/provisioning/devices/${completed.provisioningId}/status`, { key: otherTenant })).status).toBe(404);
    expect((await api.call('GET', `/api/v1/devices/${completed.deviceId}/runs`, { key: otherTenant })).status).toBe(404);
    expect((await api.call('GET', `/api/v1/devices/${completed.deviceId}`, { key: otherTenant })).status).toBe(404);
  });
});

describe('the inventory', () => {
  let camera: Awaited<ReturnType<typeof provision>>;

  beforeAll(async () => {
    camera = await provision({ site: 'car-park', name: '=HYPERLINK("x")', metadata: { floor: 'B2', owner: 'facilities' } });
    // Registered devices that never ran, to filter among.
    for (let index = 0; index < 7; index++) {
      await service.parts.registry.register('fleet', {
        deviceId: `door-${index}`,
        serialNumber: `DC-${index}`,
        macAddress: `02:00:00:00:10:0${index}`,
        address: `10.9.0.${index + 10}:443`,
        protocol: 'https',
        deviceType: 'door_controller',
        site: index < 4 ? 'north' : 'south',
        name: `Door ${index} west wing`,
      });
    }
    await service.parts.registry.update('fleet', 'door-2', { health: 'offline', lifecycleState: 'active' });
  });

  it('shows one device whole: identity, site, state, certificate with pins, configuration, last run, metadata', async () => {
    const view = await api.call('GET', `/api/v1/devices/${camera.deviceId}`);
    expect(view.status).toBe(200);
    expect(view.body).toMatchObject({
      deviceId: camera.deviceId,
      site: 'car-park',
      protocol: 'https',
      state: 'active',
      metadata: { floor: 'B2', owner: 'facilities' },
      firmware: { status: expect.any(String) },
      configuration: { templateId: expect.any(String), version: expect.any(Number), drift: 'in-sync' },
      lastRun: { workflowId: camera.provisioningId, outcome: 'completed' },
    });
    // The reference device's firmware is in no catalogue here: the default policy lets it through and alerts.
    expect(view.body.firmware).toMatchObject({ status: 'unknown', verdict: { basis: 'digest' } });
    expect(view.body.openAlerts.map((alert: { kind: string }) => alert.kind)).toEqual(['device.firmware_unapproved']);
    expect(view.body.certificate.pins.certificateSha256).toBe(view.body.certificate.fingerprint);
    expect(view.body.certificateExpiresAt).toBe(view.body.certificate.expiresAt);
  });

  it('filters by site, type, state, health, certificate expiry and free text', async () => {
    const ids = async (query: string) => (await api.call('GET', `/api/v1/devices?${query}`)).body.devices.map((d: { deviceId: string }) => d.deviceId);
    expect(await ids('site=north')).toEqual(['door-0', 'door-1', 'door-2', 'door-3']);
    expect(await ids('deviceType=door_controller&site=south')).toEqual(['door-4', 'door-5', 'door-6']);
    expect(await ids('state=offline')).toEqual(['door-2']);
    expect(await ids('health=offline')).toEqual(['door-2']);
    expect(await ids('state=registered&site=north')).toEqual(['door-0', 'door-1', 'door-3']);
    expect(await ids('certificateExpiringWithinDays=3650&site=car-park')).toEqual([camera.deviceId]);
    expect(await ids('certificateExpiringWithinDays=1')).toEqual([]);
    expect(await ids('q=WEST%20WING&site=south')).toEqual(['door-4', 'door-5', 'door-6']);
    expect(await ids('q=dc-5')).toEqual(['door-5']);
    expect(await ids('q=02:00:00:00:10:03')).toEqual(['door-3']);
    expect(await ids('q=100%25')).toEqual([]);
  });

  it('pages with an opaque cursor in device id or site order, and refuses a forged cursor with a field', async () => {
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await api.call('GET', `/api/v1/devices?deviceType=door_controller&sort=site&limit=3${cursor ? `&cursor=${cursor}` : ''}`);
      expect(page.status).toBe(200);
      seen.push(...page.body.devices.map((d: { site: string; deviceId: string }) => `${d.site}/${d.deviceId}`));
      cursor = page.body.next;
    } while (cursor);
    expect(seen).toEqual(['north/door-0', 'north/door-1', 'north/door-2', 'north/door-3', 'south/door-4', 'south/door-5', 'south/door-6']);

    const forged = await api.call('GET', `/api/v1/devices?cursor=${Buffer.from("x' or 1=1|y").toString('base64url')}`);
    expect(forged.status).toBe(400);
    expect(forged.body.errors).toEqual([{ field: 'query:cursor', reason: 'must be the `next` value of a previous page' }]);
    const unknownState = await api.call('GET', '/api/v1/devices?state=lost');
    expect(unknownState.status).toBe(400);
    expect(unknownState.body.errors[0].field).toBe('query:state');
  });

  it('exports the filtered devices as CSV and as a workbook, with a formula-like name shown as text', async () => {
    const csv = await api.call('GET', '/api/v1/devices/export?site=car-park&format=csv');
    expect(csv.status).toBe(200);
    expect(csv.type).toMatch(/^text\/csv/);
    const lines = String(csv.body).replace(/^\uFEFF/, '').trim().split('\r\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]!.split(',').slice(0, 3)).toEqual(['deviceId', 'name', 'serialNumber']);
    expect(lines[1]).toContain(`"'=HYPERLINK(""x"")"`);

    const xlsx = await fetch(`${api.baseUrl}/api/v1/devices/export?site=north&format=xlsx`, {
      headers: { authorization: `Bearer ${await api.keyFor('fleet', 'viewer')}` },
    });
    expect(xlsx.status).toBe(200);
    const workbook = new ExcelJS.Workbook();
    await workbook.xlsx.load(Buffer.from(await xlsx.arrayBuffer()) as unknown as ArrayBuffer);
    const sheet = workbook.getWorksheet('Devices')!;
    expect(sheet.rowCount).toBe(5);
    expect(sheet.getRow(2).getCell(1).value).toBe('door-0');
    expect(sheet.getRow(2).getCell(1).type).not.toBe(ExcelJS.ValueType.Formula);
  });

  it('keeps other tenants out of the list and the export', async () => {
    const otherTenant = await api.keyFor('elsewhere', 'viewer');
    expect((await api.call('GET', '/api/v1/devices', { key: otherTenant })).body.devices).toEqual([]);
    const csv = await api.call('GET', '/api/v1/devices/export', { key: otherTenant });
    expect(String(csv.body).replace(/^\uFEFF/, '').trim().split('\r\n')).toHaveLength(1);
  });
});

describe('namespace retention', () => {
  it('is set to the configured number of days, and left alone when it already is', async () => {
    const { connection } = service.env;
    const namespace = service.config.temporal.namespace;
    await ensureNamespaceRetention(connection, namespace, 30);
    expect(await ensureNamespaceRetention(connection, namespace, 30)).toBe(30);
    const described = await connection.workflowService.describeNamespace({ namespace });
    expect(Number(described.config?.workflowExecutionRetentionTtl?.seconds)).toBe(30 * 24 * 3600);
  });
});
