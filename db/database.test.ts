import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { devices } from './schema';
import { databaseKinds, openTestDatabase } from '../test/support/database';
import type { DatabaseHandle } from './client';

describe.each(databaseKinds)('%s database', (kind) => {
  let handle: DatabaseHandle;
  beforeAll(async () => {
    handle = await openTestDatabase(kind);
  });
  afterAll(() => handle?.close());

  const device = (overrides: Partial<typeof devices.$inferInsert> = {}) => ({
    tenantId: 'acme',
    deviceId: 'cam-1',
    serialNumber: 'SN-1',
    macAddress: '00:11:22:33:44:55',
    address: '127.0.0.1:8443',
    protocol: 'https',
    deviceType: 'camera',
    site: 'hq',
    ...overrides,
  });

  it('applies the migrations and answers a ping', async () => {
    await handle.ping();
    expect(await handle.db.select().from(devices)).toEqual([]);
  });

  it('refuses a second device with the same serial number in one tenant', async () => {
    await handle.db.insert(devices).values(device());
    await expect(
      handle.db.insert(devices).values(device({ deviceId: 'cam-2', macAddress: '00:11:22:33:44:56' })),
    ).rejects.toThrow();
  });

  it('allows the same serial number in another tenant', async () => {
    await handle.db.insert(devices).values(device({ tenantId: 'globex' }));
    expect(await handle.db.select().from(devices)).toHaveLength(2);
  });
});
