import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DatabaseHandle } from '../db/client';
import { NotFoundError } from '../foundation/errors';
import { DeviceRegistry } from '../registry/device-registry';
import { databaseKinds, openTestDatabase } from '../test/support/database';
import { FirmwareCatalogue, firmwareCatalogueEntryInputSchema } from './firmware-catalogue';
import { FirmwareReports } from './firmware-report';

describe.each(databaseKinds)('firmware catalogue and report on the %s database', (kind) => {
  let handle: DatabaseHandle;
  let catalogue: FirmwareCatalogue;
  let registry: DeviceRegistry;

  beforeAll(async () => {
    handle = await openTestDatabase(kind);
    catalogue = new FirmwareCatalogue(handle.db);
    registry = new DeviceRegistry(handle.db);
  });
  afterAll(async () => {
    await handle?.close();
  });

  const entry = (input: Record<string, unknown>) => firmwareCatalogueEntryInputSchema.parse(input);

  it('keeps one entry per vendor, model and version when writers differ only in case, even at once', async () => {
    const writes = ['Acme', 'ACME', 'acme ', 'aCmE'].map((vendor, i) =>
      catalogue.upsert('cat-tenant', entry({ vendor, model: 'Cam-1', version: '1.0', status: 'known_bad', reason: `reason ${i}` }), 'test'),
    );
    const results = await Promise.all(writes);
    expect(results.filter((result) => result.created)).toHaveLength(1);
    const listed = await catalogue.list('cat-tenant', { vendor: 'ACME', model: 'cam-1' });
    expect(listed).toHaveLength(1);
    expect(await catalogue.list('other-tenant')).toEqual([]);
    await expect(catalogue.remove('other-tenant', listed[0]!.id)).rejects.toBeInstanceOf(NotFoundError);
    await catalogue.remove('cat-tenant', listed[0]!.id);
    expect(await catalogue.list('cat-tenant')).toEqual([]);
  });

  it('counts devices per firmware and verdict, leaving out decommissioned ones, and pages the unapproved', async () => {
    const register = (n: number) =>
      registry.register('report-tenant', {
        deviceId: `dev-${n}`,
        serialNumber: `SN-${n}`,
        macAddress: `02:00:00:00:10:${String(n).padStart(2, '0')}`,
        address: `127.0.0.${n}:443`,
        protocol: 'https',
        deviceType: 'camera',
        site: 'hq',
      });
    for (const n of [1, 2, 3, 4]) await register(n);
    const judged = (status: 'approved' | 'unknown' | 'known_bad', version: string) => ({ firmwareVersion: version, firmwareHash: null, status, verdict: { status } });
    await registry.recordFirmwareVerdict('report-tenant', 'dev-1', judged('approved', '1.0'));
    await registry.recordFirmwareVerdict('report-tenant', 'dev-2', judged('unknown', '2.0'));
    await registry.recordFirmwareVerdict('report-tenant', 'dev-3', judged('known_bad', '0.9'));
    await registry.recordFirmwareVerdict('report-tenant', 'dev-4', judged('known_bad', '0.9'));
    await registry.update('report-tenant', 'dev-4', { lifecycleState: 'decommissioned' });

    const reports = new FirmwareReports(registry);
    const first = await reports.report('report-tenant', { limit: 1 });
    expect(first.totals).toEqual({ devices: 3, approved: 1, unknown: 1, knownBad: 1, unchecked: 0 });
    expect(first.firmware.map((row) => [row.firmwareVersion, row.firmwareStatus, row.count])).toEqual([
      ['0.9', 'known_bad', 1],
      ['1.0', 'approved', 1],
      ['2.0', 'unknown', 1],
    ]);
    expect(first.unapproved.map((device) => device.deviceId)).toEqual(['dev-2']);
    const second = await reports.report('report-tenant', { after: first.next, limit: 1 });
    expect(second.unapproved.map((device) => device.deviceId)).toEqual(['dev-3']);
    expect(second.next).toBeUndefined();
  });
});
