/**
 * Opens the database: an embedded PostgreSQL (PGlite, file-backed under DATA_DIR) when no
 * DATABASE_URL is given, a PostgreSQL server otherwise. Both get the same schema and migrations,
 * applied on open.
 */
import { mkdir } from 'node:fs/promises';
import { acquireDirectoryLock } from './directory-lock';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import * as schema from './schema';

export type Database = PgDatabase<PgQueryResultHKT, typeof schema>;

export interface DatabaseHandle {
  db: Database;
  kind: 'embedded' | 'server';
  /** Round-trips to the database; throws when it cannot. */
  ping(): Promise<void>;
  /**
   * Hears every NOTIFY on `channel` from any process sharing the database, this one included.
   * Resolves once listening; the function it returns stops.
   */
  listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>>;
  /** NOTIFY: every process listening on `channel` hears `payload` (no secrets: anyone connected may listen). */
  notify(channel: string, payload: string): Promise<void>;
  close(): Promise<void>;
}

/** PostgreSQL's unique_violation, however the driver (and drizzle around it) wraps it. */
export function isUniqueViolation(error: unknown): boolean {
  for (let current = error; current instanceof Object; current = (current as { cause?: unknown }).cause) {
    if ((current as { code?: unknown }).code === '23505') return true;
  }
  return false;
}

export const migrationsFolder = path.join(path.dirname(fileURLToPath(import.meta.url)), 'migrations');

/** Serialises migrations when several service processes start against one server at once. */
const migrationLockId = 4_242_001;

export async function openDatabase(options: { url?: string; embeddedDir?: string }): Promise<DatabaseHandle> {
  if (options.url) return openServerDatabase(options.url);
  if (!options.embeddedDir) throw new Error('openDatabase: a url or an embeddedDir is required');
  return openEmbeddedDatabase(options.embeddedDir);
}

async function openServerDatabase(url: string): Promise<DatabaseHandle> {
  const { default: postgres } = await import('postgres');
  const { drizzle } = await import('drizzle-orm/postgres-js');
  const { migrate } = await import('drizzle-orm/postgres-js/migrator');

  const migrationClient = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await migrationClient`select pg_advisory_lock(${migrationLockId})`;
    await migrate(drizzle(migrationClient), { migrationsFolder });
    await migrationClient`select pg_advisory_unlock(${migrationLockId})`;
  } finally {
    await migrationClient.end();
  }

  const client = postgres(url, { max: 20, onnotice: () => {} });
  const db = drizzle(client, { schema }) as unknown as Database;
  return {
    db,
    kind: 'server',
    ping: async () => {
      await client`select 1`;
    },
    listen: async (channel, onPayload) => {
      const { unlisten } = await client.listen(channel, onPayload);
      return unlisten;
    },
    notify: async (channel, payload) => {
      await client.notify(channel, payload);
    },
    close: () => client.end({ timeout: 5 }),
  };
}

async function openEmbeddedDatabase(directory: string): Promise<DatabaseHandle> {
  const { PGlite } = await import('@electric-sql/pglite');
  // Trigram indexes serve the inventory's free-text search; a PostgreSQL server ships the extension.
  const { pg_trgm } = await import('@electric-sql/pglite/contrib/pg_trgm');
  const { drizzle } = await import('drizzle-orm/pglite');
  const { migrate } = await import('drizzle-orm/pglite/migrator');

  await mkdir(path.dirname(directory), { recursive: true, mode: 0o700 });
  // One process at a time: a second writer on the same files would corrupt them, and would not see
  // the first one's caches (an API key it creates would be refused until a restart).
  const lock = acquireDirectoryLock(directory);
  let client: InstanceType<typeof PGlite>;
  try {
    client = await PGlite.create(directory, { extensions: { pg_trgm } });
  } catch (error) {
    lock.release();
    throw error;
  }
  const db = drizzle(client, { schema });
  await migrate(db, { migrationsFolder });
  return {
    db: db as unknown as Database,
    kind: 'embedded',
    ping: async () => {
      await client.query('select 1');
    },
    listen: (channel, onPayload) => client.listen(channel, onPayload),
    notify: async (channel, payload) => {
      await client.query('select pg_notify($1, $2)', [channel, payload]);
    },
    close: async () => {
      try {
        await client.close();
      } finally {
        lock.release();
      }
    },
  };
}
