/**
 * The compose file's schema job (deploy/temporal/setup-schema.sh), run with Temporal's SQL tool
 * of the pinned server version against the test run's real PostgreSQL, as the admin tools image
 * runs it against the installation's.
 */
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');
const script = path.join(root, 'deploy/temporal/setup-schema.sh');
const serverVersion = '1.32.2';

/** The SQL tool and schema files the cluster tooling installs (`.tools/temporal-server`). */
function installedSqlTool(): { tool: string; schemas: string } | undefined {
  const bin = path.join(root, '.tools', 'temporal-server', 'bin');
  const tool = ['temporal-sql-tool', 'sql'].map((name) => path.join(bin, name)).find((candidate) => existsSync(candidate));
  const modules = spawnSync('go', ['env', 'GOMODCACHE'], { encoding: 'utf8' }).stdout?.trim();
  const schemas = [path.join(root, '.tools', 'temporal-server', 'schema'), modules && path.join(modules, `go.temporal.io/server@v${serverVersion}/schema`)]
    .filter((candidate): candidate is string => Boolean(candidate))
    .find((candidate) => existsSync(path.join(candidate, 'postgresql', 'v12')));
  return tool && schemas ? { tool, schemas } : undefined;
}

/** The highest versioned step the schema files hold, e.g. `1.18`. */
function latestVersion(directory: string): string {
  return readdirSync(directory)
    .map((name) => name.replace(/^v/, ''))
    .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }))
    .at(-1)!;
}

const installed = installedSqlTool();
const databases = { history: 'compose_job_temporal', visibility: 'compose_job_temporal_visibility' };
let scratch: string;
let server: URL;

beforeAll(() => {
  server = new URL(process.env.TEST_DATABASE_URL!);
  scratch = mkdtempSync(path.join(os.tmpdir(), 'temporal-schema-job-'));
  writeFileSync(path.join(scratch, 'postgres-password'), decodeURIComponent(server.password));
  if (installed) symlinkSync(installed.tool, path.join(scratch, 'temporal-sql-tool'));
});

afterAll(async () => {
  const admin = postgres(server.toString(), { max: 1, onnotice: () => {} });
  for (const database of Object.values(databases)) await admin.unsafe(`drop database if exists ${database}`);
  await admin.end();
  rmSync(scratch, { recursive: true, force: true });
});

function runJob() {
  return promisify(execFile)('sh', [script], {
    env: {
      PATH: `${scratch}:${process.env.PATH}`,
      SQL_HOST: server.hostname,
      SQL_PORT: server.port,
      SQL_USER: decodeURIComponent(server.username),
      SQL_PASSWORD_FILE: path.join(scratch, 'postgres-password'),
      TEMPORAL_DATABASE: databases.history,
      TEMPORAL_VISIBILITY_DATABASE: databases.visibility,
      TEMPORAL_SCHEMA_DIRECTORY: installed!.schemas,
    },
    timeout: 120_000,
  });
}

async function schemaVersion(database: string): Promise<string> {
  const url = new URL(server);
  url.pathname = `/${database}`;
  const client = postgres(url.toString(), { max: 1, onnotice: () => {} });
  try {
    const [row] = await client<Array<{ curr_version: string }>>`select curr_version from schema_version`;
    return row!.curr_version;
  } finally {
    await client.end();
  }
}

describe.skipIf(!installed)('the compose schema job (needs the Temporal server tools in .tools/temporal-server)', () => {
  it('creates both Temporal databases and brings each to the newest schema version its files hold', async () => {
    await runJob();
    const v12 = path.join(installed!.schemas, 'postgresql', 'v12');
    expect(await schemaVersion(databases.history)).toBe(latestVersion(path.join(v12, 'temporal', 'versioned')));
    expect(await schemaVersion(databases.visibility)).toBe(latestVersion(path.join(v12, 'visibility', 'versioned')));
  });

  it('run again on databases already at that version, succeeds and changes nothing', async () => {
    const before = [await schemaVersion(databases.history), await schemaVersion(databases.visibility)];
    await runJob();
    expect([await schemaVersion(databases.history), await schemaVersion(databases.visibility)]).toEqual(before);
  });
});
