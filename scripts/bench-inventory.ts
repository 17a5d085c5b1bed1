/**
 * `npm run bench:inventory -- [--devices N] [--repeat R] [--database embedded|server] [--keep DIR]`
 *
 * Measures the inventory as operators page through it: N devices of one tenant (100,000 by default,
 * spread over 200 sites, five protocols, every lifecycle state, health and firmware verdict, with
 * certificate expiries over two years) beside a second tenant of a tenth that size, then each
 * query `GET /api/v1/devices` makes for a page of 100 (first page and a page deep into the list),
 * timed R times after one warm-up. Prints p50 and p95 per query against the target: a filtered
 * page under 50 ms. With `--database server`, DATABASE_URL names an empty PostgreSQL database.
 * `--keep DIR` keeps the embedded database in DIR and reuses it on the next run (seeded once).
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { openDatabase } from '../db/client';
import { DeviceRegistry, type InventoryFilters, type InventoryPosition, type InventorySort } from '../registry/device-registry';

const { values } = parseArgs({
  options: {
    devices: { type: 'string', default: '100000' },
    repeat: { type: 'string', default: '30' },
    database: { type: 'string', default: 'embedded' },
    keep: { type: 'string' },
  },
});
const deviceCount = Number(values.devices);
const repeat = Number(values.repeat);
const targetMs = 50;

const protocols = ['https', 'onvif', 'snmp', 'osdp', 'bacnet'] as const;
const deviceTypes = ['camera', 'door_controller', 'card_reader', 'building_controller'] as const;
const states = ['registered', 'provisioning', 'active', 'active', 'active', 'active', 'failed', 'decommissioned'] as const;
const healths = ['online', 'online', 'online', 'offline', 'unknown'] as const;
const firmware = ['approved', 'approved', 'approved', 'unknown', 'known_bad', 'unchecked'] as const;
const vendors = ['Axis', 'Hanwha', 'HID', 'Mercury', 'Siemens'] as const;

/** A spread that does not line up with the other columns' (each salt its own stride). */
function pick<T>(values: readonly T[], i: number, salt: number): T {
  return values[Math.floor((i * salt + (i >> 3)) % 1_000_003) % values.length]!;
}

function fleet(tenantId: string, count: number) {
  const now = Date.now();
  return Array.from({ length: count }, (_, i) => {
    const hex = i.toString(16).padStart(8, '0');
    return {
      tenantId,
      deviceId: `${tenantId}-dev-${String(i).padStart(6, '0')}`,
      serialNumber: `SN${hex.toUpperCase()}`,
      macAddress: `02:${hex.match(/../g)!.join(':')}:00`,
      address: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:443`,
      protocol: pick(protocols, i, 1),
      deviceType: pick(deviceTypes, i, 3),
      site: `site-${String(i % 200).padStart(3, '0')}`,
      name: `${pick(deviceTypes, i, 3)} ${i} floor ${i % 12}`,
      manufacturer: pick(vendors, i, 7),
      model: `M-${i % 17}`,
      lifecycleState: pick(states, i, 11),
      health: pick(healths, i, 13),
      firmwareStatus: pick(firmware, i, 17),
      certificateExpiresAt: new Date(now + ((i * 7919) % 730) * 86_400_000),
    };
  });
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function main() {
  const dir = values.keep ? path.resolve(values.keep) : mkdtempSync(path.join(os.tmpdir(), 'bench-inventory-'));
  const reuse = values.keep !== undefined && existsSync(path.join(dir, 'postgres'));
  const handle = await openDatabase(
    values.database === 'server' ? { url: process.env.DATABASE_URL! } : { embeddedDir: path.join(dir, 'postgres') },
  );
  try {
    const registry = new DeviceRegistry(handle.db);
    if (!reuse) {
      const seedStart = performance.now();
      await registry.insertMany(fleet('bench', deviceCount));
      await registry.insertMany(fleet('other', Math.ceil(deviceCount / 10)));
      await handle.db.execute('analyze devices');
      console.log(`seeded ${deviceCount} devices (+${Math.ceil(deviceCount / 10)} of another tenant) in ${((performance.now() - seedStart) / 1000).toFixed(1)} s, ${handle.kind} database`);
    }

    const deep: InventoryPosition = { key: 'bench-dev-050000', deviceId: 'bench-dev-050000' };
    const queries: Array<{ name: string; filters: InventoryFilters; sort?: InventorySort; after?: InventoryPosition }> = [
      { name: 'no filter, first page', filters: {} },
      { name: 'no filter, page after 50,000', filters: {}, after: deep },
      { name: 'site', filters: { site: 'site-042' } },
      { name: 'state=offline (active and offline)', filters: { state: 'offline' } },
      { name: 'health=offline, protocol=onvif', filters: { health: 'offline', protocol: 'onvif' } },
      { name: 'firmwareStatus=known_bad, vendor', filters: { firmwareStatus: 'known_bad', vendor: 'hid' } },
      { name: 'certificate expiring within 30 days', filters: { certificateExpiringWithinDays: 30 } },
      { name: 'free text q=floor 7', filters: { q: 'floor 7' } },
      { name: 'free text q=serial fragment', filters: { q: '0001f4' } },
      { name: 'site order, site + type, page after', filters: { deviceType: 'camera' }, sort: 'site', after: { key: 'site-100', deviceId: 'bench-dev-000100' } },
    ];
    console.log(`\n${'query'.padEnd(42)} ${'rows'.padStart(5)} ${'p50 ms'.padStart(8)} ${'p95 ms'.padStart(8)}  target < ${targetMs} ms`);
    let worst = 0;
    for (const query of queries) {
      const page = { limit: 100, ...(query.sort ? { sort: query.sort } : {}), ...(query.after ? { after: query.after } : {}) };
      const rows = (await registry.search('bench', query.filters, page)).items.length;
      const times: number[] = [];
      for (let i = 0; i < repeat; i++) {
        const start = performance.now();
        await registry.search('bench', query.filters, page);
        times.push(performance.now() - start);
      }
      times.sort((a, b) => a - b);
      const p95 = percentile(times, 95);
      worst = Math.max(worst, p95);
      console.log(`${query.name.padEnd(42)} ${String(rows).padStart(5)} ${percentile(times, 50).toFixed(1).padStart(8)} ${p95.toFixed(1).padStart(8)}  ${p95 < targetMs ? 'ok' : 'SLOW'}`);
    }
    console.log(`\nworst p95 ${worst.toFixed(1)} ms: ${worst < targetMs ? 'every filtered page within' : 'over'} the ${targetMs} ms target`);
  } finally {
    await handle.close();
    if (!values.keep) rmSync(dir, { recursive: true, force: true });
  }
}

await main();
