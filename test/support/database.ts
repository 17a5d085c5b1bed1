/**
 * A fresh, migrated database for one test file, of either kind the service supports.
 */
import { mkdtempSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { openDatabase, type DatabaseHandle } from '../../db/client';

export type DatabaseKind = 'embedded' | 'server';
export const databaseKinds: DatabaseKind[] = ['embedded', 'server'];

/** A new database on the shared test server, for tests (or child processes) that need a URL. */
export async function createServerDatabaseUrl(): Promise<string> {
  const adminUrl = process.env.TEST_DATABASE_URL;
  if (!adminUrl) throw new Error('TEST_DATABASE_URL is not set; run the tests with `npm test`');
  const name = `test_${randomBytes(6).toString('hex')}`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`create database ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

export async function openTestDatabase(kind: DatabaseKind): Promise<DatabaseHandle> {
  if (kind === 'server') return openDatabase({ url: await createServerDatabaseUrl() });
  const base = process.env.TEST_WORK_DIR ?? '/tmp';
  return openDatabase({ embeddedDir: path.join(mkdtempSync(path.join(base, 'pglite-')), 'db') });
}
