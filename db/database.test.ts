import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { devices } from './schema';
import { databaseKinds, openTestDatabase } from '../test/support/database';
import { migrationsFolder, type DatabaseHandle } from './client';

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

it('gives every API key made before principals existed its own key id as principal', async () => {
  const { PGlite } = await import('@electric-sql/pglite');
  const { drizzle } = await import('drizzle-orm/pglite');
  const { migrate } = await import('drizzle-orm/pglite/migrator');
  const { pg_trgm } = await import('@electric-sql/pglite/contrib/pg_trgm');
  // The migrations as they were before principals: the journal cut just before that migration.
  const before = mkdtempSync(path.join(process.env.TEST_WORK_DIR ?? '/tmp', 'migrations-'));
  cpSync(migrationsFolder, before, { recursive: true });
  const journalFile = path.join(before, 'meta', '_journal.json');
  const journal = JSON.parse(readFileSync(journalFile, 'utf8')) as { entries: { tag: string }[] };
  const cut = journal.entries.findIndex((entry) => entry.tag === '0010_api_key_principals');
  writeFileSync(journalFile, JSON.stringify({ ...journal, entries: journal.entries.slice(0, cut) }));

  const client = await PGlite.create({ extensions: { pg_trgm } });
  try {
    const db = drizzle(client);
    await migrate(db, { migrationsFolder: before });
    const { rows } = await client.query<{ id: string }>(
      "insert into api_keys (tenant_id, name, role, prefix, secret_hash, created_by) values ('acme', 'old', 'approver', 'abcdefabcdef', 'x', 'cli:ops') returning id",
    );
    await migrate(db, { migrationsFolder });
    const migrated = await client.query<{ principal: string }>('select principal from api_keys');
    expect(migrated.rows).toEqual([{ principal: `api-key:${rows[0]!.id}` }]);
  } finally {
    await client.close();
  }
});
