import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type DatabaseHandle } from '../db/client';
import { fleetPolicies } from '../db/schema';
import { createServerDatabaseUrl, databaseKinds, openTestDatabase } from '../test/support/database';
import { waitFor } from '../test/support/devices';
import { FirmwareCatalogue } from './firmware-catalogue';
import { FleetPolicies, type FleetPolicyInput } from './fleet-policies';

const defaults: FleetPolicyInput = {
  healthChecksEnabled: true,
  healthCheckIntervalSeconds: 300,
  offlineAfterFailures: 3,
  healthProbeConcurrency: 20,
  firmwareUnknown: 'alert',
  firmwareKnownBad: 'block',
  credentialRotationDays: null,
};

describe.each(databaseKinds)('fleet settings every run reads, on the %s database', (kind) => {
  // Two service processes sharing one database: on the embedded one, a single process.
  let first: DatabaseHandle;
  let second: DatabaseHandle;
  const stops: Array<() => Promise<void>> = [];

  beforeAll(async () => {
    if (kind === 'server') {
      const url = await createServerDatabaseUrl();
      first = await openDatabase({ url });
      second = await openDatabase({ url });
    } else {
      first = second = await openTestDatabase('embedded');
    }
  });
  afterAll(async () => {
    for (const stop of stops) await stop();
    await first?.close();
    if (second !== first) await second?.close();
  });

  it("keeps a tenant's fleet policy between runs, and drops it as soon as another process changes it", async () => {
    const reader = new FleetPolicies(first.db, defaults, first);
    stops.push(await reader.reads.follow(first));
    const writer = new FleetPolicies(second.db, defaults, second);

    expect((await reader.get('acme')).firmwareUnknown).toBe('alert');
    // A write that announces nothing (made behind the service's back) is not seen: the read is kept.
    await second.db.insert(fleetPolicies).values({ tenantId: 'acme', ...defaults, firmwareUnknown: 'approve', updatedBy: 'test' });
    expect((await reader.get('acme')).firmwareUnknown).toBe('alert');

    await writer.put('acme', { ...defaults, firmwareUnknown: 'block' }, 'admin');
    await waitFor(async () => ((await reader.get('acme')).firmwareUnknown === 'block' ? true : undefined), 'the change to reach the reader', 5_000);
    await second.db.delete(fleetPolicies).where(eq(fleetPolicies.tenantId, 'acme'));
  });

  it("keeps a tenant's catalogue entries for a model, and drops them as soon as another process adds or removes one", async () => {
    const reader = new FirmwareCatalogue(first.db, first);
    stops.push(await reader.reads.follow(first));
    const writer = new FirmwareCatalogue(second.db, second);

    expect(await reader.entriesFor('acme', 'Axis', 'P3245')).toEqual([]);
    const { entry } = await writer.upsert('acme', { vendor: 'Axis', model: 'P3245', version: '10.12', status: 'approved' }, 'admin');
    const added = await waitFor(async () => {
      const entries = await reader.entriesFor('acme', 'axis', 'p3245');
      return entries.length === 1 ? entries : undefined;
    }, 'the new entry to reach the reader', 5_000);
    expect(added[0]).toMatchObject({ version: '10.12', status: 'approved' });

    await writer.remove('acme', entry.id);
    await waitFor(async () => ((await reader.entriesFor('acme', 'Axis', 'P3245')).length === 0 ? true : undefined), 'the removal to reach the reader', 5_000);
  });

  it('keeps nothing for a store given no notices', async () => {
    const uncached = new FleetPolicies(first.db, defaults);
    await first.db.insert(fleetPolicies).values({ tenantId: 'globex', ...defaults, offlineAfterFailures: 7, updatedBy: 'test' });
    expect((await uncached.get('globex')).offlineAfterFailures).toBe(7);
    await first.db.update(fleetPolicies).set({ offlineAfterFailures: 9 }).where(eq(fleetPolicies.tenantId, 'globex'));
    expect((await uncached.get('globex')).offlineAfterFailures).toBe(9);
  });
});
