/**
 * A real Temporal cluster on this machine, the production shape rather than the dev server: a
 * private PostgreSQL server, Temporal's two databases with their schema applied by Temporal's own
 * SQL tool, the server (frontend, history, matching and worker services in one process) on
 * loopback ports from deploy/temporal/development-cluster.yaml, and the namespace registered with
 * its retention and the service's search attributes. `stop()` stops everything it started, by pid,
 * and a failed step stops what the steps before it started.
 *
 *   tsx scripts/temporal-cluster.ts     start one and keep it running until Ctrl-C
 *
 * The server and the SQL tool are built from their Go module by `node scripts/setup.mjs --for-cluster`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { Connection } from '@temporalio/client';
import { SearchAttributeType } from '@temporalio/common';
import { msToTs } from '@temporalio/common/lib/time';
import postgres from 'postgres';
import { allSearchAttributeKeys } from '../contracts/provisioning';
import { connectWhenReady, ensureSearchAttributes } from '../service/temporal';
import { startPostgresServer } from './postgres-server';

const root = path.resolve(import.meta.dirname, '..');
const versions = JSON.parse(readFileSync(path.join(root, 'scripts', 'tool-versions.json'), 'utf8')) as { temporalServer: string };
export const temporalServerVersion = versions.temporalServer;
const toolsDir = path.join(root, '.tools', 'temporal-server', 'bin');
export const temporalServerPath = path.join(toolsDir, 'server');
export const temporalSqlToolPath = path.join(toolsDir, 'sql');

/**
 * Custom search attributes SQL visibility (PostgreSQL v12 schema) can hold per namespace, by type:
 * each is a pre-made generated column (Keyword01..Keyword10 and so on), so there are no more.
 */
export const sqlVisibilityLimits: Record<string, number> = {
  [SearchAttributeType.KEYWORD]: 10,
  [SearchAttributeType.TEXT]: 3,
  [SearchAttributeType.INT]: 3,
  [SearchAttributeType.DOUBLE]: 3,
  [SearchAttributeType.BOOL]: 3,
  [SearchAttributeType.DATETIME]: 3,
  [SearchAttributeType.KEYWORD_LIST]: 3,
};

/** The types whose custom attributes exceed what SQL visibility holds, with the count wanted. */
export function searchAttributesBeyondSqlLimits(
  keys: ReadonlyArray<{ name: string; type: SearchAttributeType }> = allSearchAttributeKeys,
): Array<{ type: string; wanted: number; limit: number }> {
  const counts = new Map<string, number>();
  for (const key of keys) counts.set(key.type, (counts.get(key.type) ?? 0) + 1);
  return [...counts]
    .filter(([type, wanted]) => wanted > (sqlVisibilityLimits[type] ?? 0))
    .map(([type, wanted]) => ({ type, wanted, limit: sqlVisibilityLimits[type] ?? 0 }));
}

export interface TemporalClusterOptions {
  /** Where PostgreSQL's data, the server's log and config live; a fresh temporary folder otherwise. */
  workDir?: string;
  namespace?: string;
  retentionDays?: number;
  /** Further environment for the server process (a test run's marker, log level). */
  environment?: Record<string, string>;
}

export interface TemporalCluster {
  /** The frontend, `127.0.0.1:<port>`. */
  address: string;
  namespace: string;
  workDir: string;
  /** The superuser on the private PostgreSQL server's maintenance database. */
  postgresAdminUrl: string;
  serverPid: number;
  /** The private PostgreSQL server's postmaster. */
  postgresPid: number;
  /** A new database on the private PostgreSQL server, for the service: its URL. */
  createDatabase(name: string): Promise<string>;
  stop(): Promise<void>;
}

function runTool(command: string, args: string[]): void {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${path.basename(command)} ${args.join(' ')} failed: ${result.stderr || result.stdout}`);
}

/** Creates Temporal's database and brings its schema to the newest version the tool embeds. */
function applySchema(port: number, database: string, schemaName: string): void {
  const connection = ['--plugin', 'postgres12', '--endpoint', '127.0.0.1', '--port', String(port), '--user', 'postgres', '--database', database];
  runTool(temporalSqlToolPath, [...connection, 'create-database']);
  runTool(temporalSqlToolPath, [...connection, 'setup-schema', '-v', '0.0']);
  runTool(temporalSqlToolPath, [...connection, 'update-schema', '--schema-name', schemaName]);
}

/**
 * A free loopback port below 32768: the cluster's membership table keeps each host's port in a
 * PostgreSQL smallint, so the kernel's ephemeral ports (from 32768 up) make the server exit.
 */
async function freeClusterPort(taken: ReadonlySet<number>): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    // Nothing listens on the ones already chosen yet: a second pick of one would pass the check below.
    if (taken.has(port)) continue;
    const free = await new Promise<boolean>((resolve) => {
      const server = net.createServer();
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
    if (free) return port;
  }
}

async function stopProcess(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const done = await Promise.race([exited.then(() => true), sleep(graceMs).then(() => false)]);
  if (!done) {
    child.kill('SIGKILL');
    await exited;
  }
}

/** Registers the namespace (a fresh cluster has none) with its retention, once the server answers. */
async function registerNamespace(connection: Connection, namespace: string, retentionDays: number, deadline: number): Promise<void> {
  const retention = msToTs(retentionDays * 24 * 3600 * 1000);
  for (;;) {
    try {
      await connection.workflowService.registerNamespace({ namespace, workflowExecutionRetentionPeriod: retention });
      break;
    } catch (error) {
      if ((error as { code?: number }).code === 6) break; // ALREADY_EXISTS
      // UNAVAILABLE or INTERNAL while history and matching are still joining the ring.
      if (Date.now() > deadline) throw new Error(`could not register namespace ${namespace}`, { cause: error });
      await sleep(500);
    }
  }
  for (;;) {
    try {
      await connection.workflowService.describeNamespace({ namespace });
      return;
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`namespace ${namespace} is not visible`, { cause: error });
      await sleep(500);
    }
  }
}

export async function startTemporalCluster(options: TemporalClusterOptions = {}): Promise<TemporalCluster> {
  const workDir = options.workDir ?? mkdtempSync(path.join(os.tmpdir(), 'temporal-cluster-'));
  chmodSync(workDir, 0o755);
  const namespace = options.namespace ?? 'default';
  const retentionDays = options.retentionDays ?? 30;
  const beyond = searchAttributesBeyondSqlLimits();
  if (beyond.length > 0) {
    throw new Error(`SQL visibility holds too few custom search attributes: ${beyond.map((b) => `${b.wanted} of type ${b.type}, at most ${b.limit}`).join('; ')}`);
  }
  const undo: Array<() => Promise<void> | void> = [];
  const stop = async () => {
    for (const step of undo.reverse().splice(0)) await step();
  };
  try {
    const pg = await startPostgresServer(workDir);
    undo.push(() => pg.stop());
    applySchema(pg.port, 'temporal', 'postgresql/v12/temporal');
    applySchema(pg.port, 'temporal_visibility', 'postgresql/v12/visibility');

    const ports: Record<string, number> = {};
    for (const name of [
      'FRONTEND', 'FRONTEND_MEMBERSHIP', 'FRONTEND_HTTP', 'MATCHING', 'MATCHING_MEMBERSHIP',
      'HISTORY', 'HISTORY_MEMBERSHIP', 'WORKER', 'WORKER_MEMBERSHIP', 'METRICS',
    ]) {
      ports[`TEMPORAL_CLUSTER_${name}_PORT`] = await freeClusterPort(new Set(Object.values(ports)));
    }
    const log = openSync(path.join(workDir, 'temporal-server.log'), 'a');
    const server = spawn(
      temporalServerPath,
      ['--config-file', path.join(root, 'deploy', 'temporal', 'development-cluster.yaml'), '--allow-no-auth', 'start'],
      {
        cwd: workDir,
        stdio: ['ignore', log, log],
        env: {
          PATH: process.env.PATH,
          ...options.environment,
          ...Object.fromEntries(Object.entries(ports).map(([key, port]) => [key, String(port)])),
          TEMPORAL_CLUSTER_POSTGRES_PORT: String(pg.port),
          TEMPORAL_CLUSTER_POSTGRES_USER: 'postgres',
          TEMPORAL_CLUSTER_DYNAMIC_CONFIG: path.join(root, 'deploy', 'temporal', 'dynamic-config.yaml'),
        },
      },
    );
    undo.push(() => stopProcess(server));
    const failedToStart = new Promise<never>((_, reject) => {
      server.once('exit', (code, signal) => reject(new Error(`the Temporal server exited (${code ?? signal}); see ${path.join(workDir, 'temporal-server.log')}`)));
    });
    failedToStart.catch(() => {});
    const address = `127.0.0.1:${ports.TEMPORAL_CLUSTER_FRONTEND_PORT}`;
    const deadline = Date.now() + 120_000;
    const connection = await Promise.race([connectWhenReady(address, 120_000), failedToStart]);
    try {
      await Promise.race([registerNamespace(connection, namespace, retentionDays, deadline), failedToStart]);
      await ensureSearchAttributes(connection, namespace);
    } finally {
      await connection.close();
    }
    return {
      address,
      namespace,
      workDir,
      postgresAdminUrl: pg.adminUrl,
      serverPid: server.pid!,
      postgresPid: pg.pid,
      async createDatabase(name) {
        if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`not a database name: ${name}`);
        const admin = postgres(pg.adminUrl, { max: 1, onnotice: () => {} });
        try {
          await admin.unsafe(`create database ${name}`);
        } finally {
          await admin.end();
        }
        return `postgres://postgres@127.0.0.1:${pg.port}/${name}`;
      },
      async stop() {
        await stop();
        // A folder of its own making goes too; after a failed start it stays, for the server's log.
        if (!options.workDir) rmSync(workDir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const started = Date.now();
  const cluster = await startTemporalCluster();
  process.stdout.write(
    `Temporal ${temporalServerVersion} on PostgreSQL: ${cluster.address}, namespace ${cluster.namespace} ` +
      `(started in ${((Date.now() - started) / 1000).toFixed(1)} s; data and logs in ${cluster.workDir})\n` +
      `PostgreSQL: ${cluster.postgresAdminUrl}\n`,
  );
  let stopping = false;
  const shutdown = () => {
    if (stopping) return;
    stopping = true;
    void cluster.stop().then(() => process.exit(0));
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
}
