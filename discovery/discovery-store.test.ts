import { testDeviceNetworks } from '../test/support/device-networks';
import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DatabaseHandle } from '../db/client';
import { devices, discoveredDevices, discoveryEvents } from '../db/schema';
import { ValidationError } from '../foundation/errors';
import { DeviceRegistry } from '../registry/device-registry';
import { openTestDatabase } from '../test/support/database';
import { DiscoveryStore } from './discovery-store';
import type { DiscoveryObservation } from './observation';

let handle: DatabaseHandle;
let store: DiscoveryStore;
let tenantCounter = 0;
const newTenant = () => `discovery-${++tenantCounter}`;

beforeAll(async () => {
  handle = await openTestDatabase('server');
  store = new DiscoveryStore({ db: handle.db, networks: testDeviceNetworks, registry: new DeviceRegistry(handle.db) });
});
afterAll(async () => {
  await handle?.close();
});

function seen(fields: Partial<DiscoveryObservation> & Pick<DiscoveryObservation, 'source'>, at = '2026-01-01T10:00:00.000Z'): DiscoveryObservation {
  return { observedAt: at, endpoints: [], evidence: {}, ...fields };
}

async function registerDevice(tenantId: string, deviceId: string, macAddress: string, serialNumber: string, manufacturer?: string) {
  await handle.db.insert(devices).values({ tenantId, deviceId, macAddress, serialNumber, manufacturer, address: '10.0.0.9:80', protocol: 'onvif', deviceType: 'camera', site: 'hq' });
}

async function eventsOf(tenantId: string) {
  return handle.db.select().from(discoveryEvents).where(eq(discoveryEvents.tenantId, tenantId));
}

describe('discovery sites', () => {
  it('stores a site with a validated scope and reports each scope problem under scope.<field>', async () => {
    const tenantId = newTenant();
    const created = await store.upsertSite(tenantId, 'hq', { scope: { interfaces: ['eth0'], ranges: ['10.20.0.0/24'] }, scanners: ['snmp', 'ws-discovery'], intervalMinutes: 30 });
    expect(created.created).toBe(true);
    expect(created.site).toMatchObject({ site: 'hq', scanners: ['snmp', 'ws-discovery'], intervalMinutes: 30, enabled: true, scope: { ranges: ['10.20.0.0/24'], maxAddressesPerSweep: 1024 } });

    const updated = await store.upsertSite(tenantId, 'hq', { scope: { interfaces: ['eth0'], ranges: ['10.20.0.0/25'] }, scanners: ['mdns'], intervalMinutes: 60, enabled: false });
    expect(updated.created).toBe(false);
    expect(await store.listSites(tenantId)).toEqual([expect.objectContaining({ site: 'hq', scanners: ['mdns'], enabled: false })]);

    const refused = await store
      .upsertSite(tenantId, 'hq', { scope: { interfaces: ['lo'], ranges: ['10.0.0.0/16'] }, scanners: ['dhcp'], intervalMinutes: 1 })
      .catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(ValidationError);
    expect((refused as ValidationError).fields.map((field) => field.field).sort()).toEqual(['intervalMinutes', 'scanners[0]', 'scope.interfaces.0', 'scope.ranges.0']);

    expect(await store.deleteSite(tenantId, 'hq')).toBe(true);
    expect(await store.findSite(tenantId, 'hq')).toBeUndefined();
  });
});

describe('recording sweeps', () => {
  it('merges one device across protocols and sweeps, keeping when it was first seen', async () => {
    const tenantId = newTenant();
    const first = await store.recordSweep(tenantId, 'hq', [
      seen({ source: 'ws-discovery', ip: '10.0.0.5', endpoints: [{ protocol: 'onvif', address: '10.0.0.5:80' }], evidence: { types: ['dn:NetworkVideoTransmitter'] } }),
      seen({ source: 'snmp', ip: '10.0.0.5', macAddress: '00:40:8c:00:00:01', manufacturer: 'Axis Communications', endpoints: [{ protocol: 'snmp', address: '10.0.0.5:161' }] }),
    ]);
    expect(first.devices).toHaveLength(1);
    expect(first.devices[0]).toMatchObject({
      identityKey: 'mac:00:40:8c:00:00:01',
      ip: '10.0.0.5',
      manufacturer: 'Axis Communications',
      sources: ['ws-discovery', 'snmp'],
      firstSeenAt: new Date('2026-01-01T10:00:00.000Z'),
    });
    expect(first.devices[0]!.endpoints).toEqual(expect.arrayContaining([{ protocol: 'onvif', address: '10.0.0.5:80' }, { protocol: 'snmp', address: '10.0.0.5:161' }]));

    const second = await store.recordSweep(tenantId, 'hq', [seen({ source: 'snmp', ip: '10.0.0.5', macAddress: '00:40:8c:00:00:01' }, '2026-01-01T11:00:00.000Z')]);
    expect(second.devices).toHaveLength(1);
    expect(second.devices[0]).toMatchObject({ id: first.devices[0]!.id, firstSeenAt: new Date('2026-01-01T10:00:00.000Z'), lastSeenAt: new Date('2026-01-01T11:00:00.000Z'), sources: ['snmp'] });
    expect(second.moves).toEqual([]);
    expect(await handle.db.select().from(discoveredDevices).where(eq(discoveredDevices.tenantId, tenantId))).toHaveLength(1);
  });

  it('gives a device known only by its address the MAC it later shows, in the same row', async () => {
    const tenantId = newTenant();
    const first = await store.recordSweep(tenantId, 'hq', [seen({ source: 'ws-discovery', ip: '10.0.0.6' })]);
    expect(first.devices[0]!.identityKey).toBe('ip:10.0.0.6');
    const second = await store.recordSweep(tenantId, 'hq', [seen({ source: 'snmp', ip: '10.0.0.6', macAddress: '00:40:8c:00:00:06' }, '2026-01-02T00:00:00.000Z')]);
    expect(second.devices[0]).toMatchObject({ id: first.devices[0]!.id, identityKey: 'mac:00:40:8c:00:00:06', firstSeenAt: first.devices[0]!.firstSeenAt });
  });

  it('records a device seen under its MAC at a new address as a move, not a new device', async () => {
    const tenantId = newTenant();
    await store.recordSweep(tenantId, 'hq', [seen({ source: 'snmp', ip: '10.0.0.7', macAddress: '00:40:8c:00:00:07' })]);
    const moved = await store.recordSweep(tenantId, 'hq', [seen({ source: 'snmp', ip: '10.0.0.8', macAddress: '00:40:8c:00:00:07' }, '2026-01-02T00:00:00.000Z')]);
    expect(moved.devices).toHaveLength(1);
    expect(moved.devices[0]!.ip).toBe('10.0.0.8');
    expect(moved.moves).toEqual([{ mac: '00:40:8c:00:00:07', from: '10.0.0.7', to: '10.0.0.8', deviceId: 'mac:00:40:8c:00:00:07' }]);
    expect(await eventsOf(tenantId)).toEqual([
      expect.objectContaining({ kind: 'moved', subject: '00:40:8c:00:00:07', details: expect.objectContaining({ from: '10.0.0.7', to: '10.0.0.8' }), resolvedAt: expect.any(Date) }),
    ]);
    // The next sweep at the same address is no move.
    const again = await store.recordSweep(tenantId, 'hq', [seen({ source: 'snmp', ip: '10.0.0.8', macAddress: '00:40:8c:00:00:07' }, '2026-01-03T00:00:00.000Z')]);
    expect(again.moves).toEqual([]);
  });

  it('records a conflict once while it lasts, keeps the claimants apart, and resolves it when a sweep no longer sees it', async () => {
    const tenantId = newTenant();
    const clash = (at: string) => [
      seen({ source: 'snmp', ip: '10.0.0.20', macAddress: '02:00:00:00:00:01' }, at),
      seen({ source: 'mdns', ip: '10.0.0.20', macAddress: '02:00:00:00:00:02' }, at),
    ];
    const first = await store.recordSweep(tenantId, 'hq', clash('2026-01-01T10:00:00.000Z'));
    expect(first.conflicts).toEqual([expect.objectContaining({ kind: 'ip-claimed-by-several-macs', subject: '10.0.0.20', opened: true })]);
    expect(first.devices.map((row) => [row.identityKey, row.inConflict])).toEqual([
      ['mac:02:00:00:00:00:01', true],
      ['mac:02:00:00:00:00:02', true],
    ]);

    const second = await store.recordSweep(tenantId, 'hq', clash('2026-01-01T11:00:00.000Z'));
    expect(second.conflicts).toEqual([expect.objectContaining({ subject: '10.0.0.20', opened: false })]);
    expect(await eventsOf(tenantId)).toHaveLength(1);

    const cleared = await store.recordSweep(tenantId, 'hq', [seen({ source: 'snmp', ip: '10.0.0.20', macAddress: '02:00:00:00:00:01' }, '2026-01-01T12:00:00.000Z')]);
    expect(cleared.conflicts).toEqual([]);
    expect(cleared.resolvedConflicts).toEqual([{ kind: 'ip-claimed-by-several-macs', subject: '10.0.0.20' }]);
    const [event] = await eventsOf(tenantId);
    expect(event!.resolvedAt).toBeInstanceOf(Date);
    expect(cleared.devices[0]!.inConflict).toBe(false);

    // Seen again after it was resolved, it is a new event.
    const back = await store.recordSweep(tenantId, 'hq', clash('2026-01-01T13:00:00.000Z'));
    expect(back.conflicts[0]!.opened).toBe(true);
    expect(await store.listEvents(tenantId, { open: true })).toHaveLength(1);
    expect(await eventsOf(tenantId)).toHaveLength(2);
  });

  it('records a serial claimed by two MACs as a conflict and matches neither claimant to the registered device by serial', async () => {
    const tenantId = newTenant();
    await registerDevice(tenantId, 'cam-1', '00:40:8c:00:00:31', 'SER-31', 'Axis Communications');
    const record = await store.recordSweep(tenantId, 'hq', [
      seen({ source: 'bacnet', ip: '10.0.0.31', macAddress: '00:40:8c:00:00:99', serialNumber: 'SER-31', manufacturer: 'Axis Communications' }),
    ]);
    expect(record.conflicts).toEqual([expect.objectContaining({ kind: 'serial-claimed-by-several-macs', subject: expect.stringMatching(/\/SER-31$/) })]);
    expect(record.devices[0]).toMatchObject({ inConflict: true, registeredDeviceId: null });
    expect(record.unknown).toHaveLength(1);
  });

  it('matches registered devices by MAC, else by serial, and returns the others as unknown', async () => {
    const tenantId = newTenant();
    await registerDevice(tenantId, 'door-1', '00:11:22:33:44:01', 'DOOR-1');
    await registerDevice(tenantId, 'cam-2', '00:11:22:33:44:02', 'CAM-2');
    const record = await store.recordSweep(tenantId, 'hq', [
      seen({ source: 'snmp', ip: '10.0.0.41', macAddress: '00:11:22:33:44:01' }),
      seen({ source: 'ssdp', ip: '10.0.0.42', serialNumber: 'CAM-2', manufacturer: 'Simulated Optics' }),
      seen({ source: 'mdns', ip: '10.0.0.43', macAddress: '00:11:22:33:44:99', hostname: 'rogue' }),
    ]);
    const byIp = Object.fromEntries(record.devices.map((row) => [row.ip, row]));
    expect(byIp['10.0.0.41']!.registeredDeviceId).toBe('door-1');
    expect(byIp['10.0.0.42']!.registeredDeviceId).toBe('cam-2');
    expect(byIp['10.0.0.43']!.registeredDeviceId).toBeNull();
    expect(record.unknown.map((row) => row.identityKey)).toEqual(['mac:00:11:22:33:44:99']);
    expect(await store.listDevices(tenantId, { unknownOnly: true })).toEqual([expect.objectContaining({ identityKey: 'mac:00:11:22:33:44:99' })]);

    // Registered afterwards: the next sweep matches it and says it became registered.
    await registerDevice(tenantId, 'rogue-now-known', '00:11:22:33:44:99', 'LATE-1');
    const next = await store.recordSweep(tenantId, 'hq', [seen({ source: 'mdns', ip: '10.0.0.43', macAddress: '00:11:22:33:44:99' }, '2026-01-02T00:00:00.000Z')]);
    expect(next.unknown).toEqual([]);
    expect(next.becameRegistered.map((row) => row.identityKey)).toEqual(['mac:00:11:22:33:44:99']);
    const [stored] = await handle.db
      .select()
      .from(discoveredDevices)
      .where(and(eq(discoveredDevices.tenantId, tenantId), eq(discoveredDevices.identityKey, 'mac:00:11:22:33:44:99')));
    expect(stored!.registeredDeviceId).toBe('rogue-now-known');
  });

  it('recording the same sweep twice changes nothing more than the first time', async () => {
    const tenantId = newTenant();
    await store.recordSweep(tenantId, 'hq', [seen({ source: 'snmp', ip: '10.0.0.50', macAddress: '02:00:00:00:00:50' })]);
    const sweep = [seen({ source: 'snmp', ip: '10.0.0.51', macAddress: '02:00:00:00:00:50' }, '2026-01-02T00:00:00.000Z')];
    expect((await store.recordSweep(tenantId, 'hq', sweep)).moves).toHaveLength(1);
    expect((await store.recordSweep(tenantId, 'hq', sweep)).moves).toHaveLength(0);
    expect(await eventsOf(tenantId)).toHaveLength(1);
  });
});
