/**
 * `npm run bench:bulk -- --devices N [--concurrency C] [--database embedded|server] [--temporal dev|cluster] [--kill-every S]`
 *
 * Provisions N simulated devices end to end on this machine, exactly as an operator would: a
 * Temporal dev server (file-backed, as `npm start` runs it), the service (API and worker) in its own
 * process, N reference devices in another, and one CSV upload through the API. With
 * `--temporal cluster` Temporal is instead a real server on a private PostgreSQL server
 * (scripts/temporal-cluster.ts), and the service's database is on that PostgreSQL server too, as on
 * a cluster; the PostgreSQL server's CPU is counted with the other processes'. Prints throughput,
 * per-device latency percentiles, failures, each process's peak memory and CPU time, and the
 * worker's time per activity type, so it shows where the time goes.
 *
 * With `--kill-every S` the service (API and worker) is killed with SIGKILL every S seconds and
 * started again at once; at the end the records are checked: every device provisioned, none lost,
 * one live certificate each, none issued twice, none left unrevoked without its device using it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { openDatabase } from '../db/client';
import { CertificateStore } from '../pki/certificate-store';
import { DeviceRegistry } from '../registry/device-registry';
import { loadConfig } from '../service/config';
import { freeLoopbackPort } from './postgres-server';
import { startTemporalCluster, type TemporalCluster } from './temporal-cluster';

const root = path.resolve(import.meta.dirname, '..');
const temporalCli = path.join(root, '.tools', 'venv', 'bin', 'temporal');

const { values } = parseArgs({
  options: {
    devices: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '1000' },
    database: { type: 'string', default: 'embedded' },
    'kill-every': { type: 'string' },
    temporal: { type: 'string', default: 'dev' },
  },
});
const killEverySeconds = values['kill-every'] === undefined ? undefined : Number(values['kill-every']);
if (killEverySeconds !== undefined && !(killEverySeconds >= 5)) throw new Error('--kill-every must be at least 5 (seconds)');
if (values.temporal !== 'dev' && values.temporal !== 'cluster') throw new Error('--temporal must be dev or cluster');
// On a cluster the service's database is on the cluster's PostgreSQL server.
const database = values.temporal === 'cluster' ? 'server (the cluster\'s PostgreSQL)' : values.database;
const deviceCount = Number(values.devices);
const concurrency = Number(values.concurrency);
if (!Number.isInteger(deviceCount) || deviceCount < 1 || deviceCount > 10_000) throw new Error('--devices must be 1..10000');
if (!Number.isInteger(concurrency) || concurrency < 1) throw new Error('--concurrency must be a positive integer');

const say = (message: string) => process.stderr.write(`bench: ${message}\n`);
const children: ChildProcess[] = [];
const killedOnPurpose = new Set<ChildProcess>();
const workDir = mkdtempSync(path.join(os.tmpdir(), 'bench-bulk-'));

function start(name: string, command: string, args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const child = spawn(command, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  // The last of what a process said on stderr, to show if it dies.
  let lastWords = '';
  // Both streams are read (a full pipe would stall the process); the service logs to stdout.
  const listen = (chunk: Buffer) => {
    lastWords = (lastWords + chunk.toString()).slice(-2000);
  };
  child.stderr!.on('data', listen);
  if (name !== 'simulators') child.stdout!.on('data', listen);
  child.on('exit', (code, signal) => {
    if (!stopping && !killedOnPurpose.has(child)) say(`${name} exited unexpectedly (${code ?? signal}):\n${lastWords}`);
  });
  children.push(child);
  return child;
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** Peak resident memory (VmHWM) and CPU seconds of a process, from /proc. */
function processUsage(pid: number): { peakMiB: number; cpuSeconds: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const peakKiB = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return { peakMiB: Math.round(peakKiB / 1024), cpuSeconds: Math.round((ticks / 100) * 10) / 10 };
}

/** A PostgreSQL server's CPU seconds (its postmaster, the backends it reaped and those still running) and its largest process's peak memory. */
function postgresUsage(postmasterPid: number): { peakMiB: number; cpuSeconds: number } {
  const children = readFileSync(`/proc/${postmasterPid}/task/${postmasterPid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  let ticks = 0;
  let peakMiB = 0;
  for (const pid of [postmasterPid, ...children]) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
      peakMiB = Math.max(peakMiB, processUsage(pid).peakMiB);
    } catch {
      // A backend that ended meanwhile: its time is in the postmaster's reaped children's.
    }
  }
  return { peakMiB, cpuSeconds: Math.round((ticks / 100) * 10) / 10 };
}

/** The node process tsx starts under a launcher (the launcher itself is small). */
function nodeProcessOf(child: ChildProcess): number {
  const tree = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  return tree[0] ?? child.pid!;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

let stopping = false;
let cluster: TemporalCluster | undefined;
async function stopAll() {
  stopping = true;
  for (const child of children.reverse()) {
    if (child.exitCode === null && child.pid) child.kill('SIGTERM');
  }
  // A process writing its CPU profile needs a moment longer to exit.
  const graceMs = process.env.BENCH_CPU_PROFILE ? 30_000 : 3_000;
  const running = children.filter((child) => child.exitCode === null && child.signalCode === null);
  await Promise.race([
    Promise.all(running.map((child) => new Promise((resolve) => child.once('exit', resolve)))),
    new Promise((resolve) => setTimeout(resolve, graceMs)),
  ]);
  for (const child of children) if (child.exitCode === null && child.pid) child.kill('SIGKILL');
  await cluster?.stop();
  rmSync(workDir, { recursive: true, force: true });
}

async function main() {
  const [temporalPort, uiPort, apiPort, metricsPort, workerMetricsPort, estPort] = await Promise.all(
    Array.from({ length: 6 }, () => freeLoopbackPort()),
  );

  const temporal = await startTemporal(temporalPort, uiPort);

  say(`starting ${deviceCount} reference devices`);
  const simulatorsStarted = Date.now();
  const simulators = start('simulators', process.execPath, ['--import', 'tsx', 'scripts/simulate.ts', '--count', String(deviceCount), '--site', 'bench']);
  let simulatorOutput = '';
  simulators.stdout!.on('data', (chunk: Buffer) => (simulatorOutput += chunk.toString()));
  const requests = await until(
    'the simulators',
    async () => {
      if (!simulatorOutput.trimEnd().endsWith(']')) return undefined;
      return JSON.parse(simulatorOutput) as Array<Record<string, unknown> & { credentials: { username: string; password: string } }>;
    },
    20 * 60_000,
  );
  say(`devices ready in ${((Date.now() - simulatorsStarted) / 1000).toFixed(1)} s`);

  const dataDir = path.join(workDir, 'service');
  const env: NodeJS.ProcessEnv = {
    DATA_DIR: dataDir,
    PORT: String(apiPort),
    METRICS_PORT: String(metricsPort),
    EST_PORT: String(estPort),
    WORKER_METRICS_ADDRESS: `127.0.0.1:${workerMetricsPort}`,
    ...temporal.environment,
    WORKER_MAX_CONCURRENT_ACTIVITIES: String(Math.max(200, concurrency)),
    WORKER_MAX_CACHED_WORKFLOWS: String(Math.max(2000, concurrency * 2)),
    API_RATE_LIMIT_PER_MINUTE: '100000',
    LOG_LEVEL: 'warn',
    // The simulated devices run on loopback.
    SERVICE_ENVIRONMENT: 'development',
  };
  if (values.database === 'server' && !temporal.environment.DATABASE_URL) {
    if (!process.env.DATABASE_URL) throw new Error('--database server needs DATABASE_URL');
    env.DATABASE_URL = process.env.DATABASE_URL;
  }
  say('starting the service (API and worker)');
  // BENCH_CPU_PROFILE=<dir> writes a V8 CPU profile of the service process there, to see where its time goes.
  const profile = process.env.BENCH_CPU_PROFILE ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_CPU_PROFILE] : [];
  const startService = () => start('service', process.execPath, [...profile, '--import', 'tsx', 'scripts/start.ts'], env);
  let service = startService();
  /** What the service's earlier lives (before each kill) used. */
  const serviceBefore = { peakMiB: 0, cpuSeconds: 0, kills: 0 };
  const api = `http://127.0.0.1:${apiPort}`;
  await until('the API', async () => ((await fetch(`${api}/healthz`)).ok ? true : undefined), 120_000);
  const key = readFileSync(path.join(dataDir, 'bootstrap-admin-api-key'), 'utf8').trim();
  const authorization = { authorization: `Bearer ${key}` };

  const columns = ['serialNumber', 'macAddress', 'address', 'protocol', 'deviceType', 'site', 'name', 'username', 'password'];
  const csv = [
    columns.join(','),
    ...requests.map((r) =>
      columns
        .map((c) => (c === 'username' ? r.credentials.username : c === 'password' ? r.credentials.password : String(r[c] ?? '')))
        .join(','),
    ),
  ].join('\n');
  const form = new FormData();
  form.set('file', new Blob([csv], { type: 'text/csv' }), 'bench.csv');
  form.set('concurrency', String(concurrency));

  const submitted = Date.now();
  const upload = await fetch(`${api}/api/v1/provisioning/bulk`, { method: 'POST', headers: authorization, body: form });
  const uploaded = (await upload.json()) as { jobId: string };
  if (upload.status !== 202) throw new Error(`upload refused: ${JSON.stringify(uploaded)}`);
  say(`job ${uploaded.jobId} accepted in ${((Date.now() - submitted) / 1000).toFixed(1)} s; provisioning with concurrency ${concurrency}`);

  // Each life of the service lasts S seconds from the moment its API answers, however long it took to start.
  let jobOver = false;
  const killer = (async () => {
    if (killEverySeconds === undefined) return;
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, killEverySeconds * 1000));
      if (jobOver) return;
      const usage = processUsage(nodeProcessOf(service));
      serviceBefore.peakMiB = Math.max(serviceBefore.peakMiB, usage.peakMiB);
      serviceBefore.cpuSeconds += usage.cpuSeconds;
      serviceBefore.kills += 1;
      killedOnPurpose.add(service);
      service.kill('SIGKILL');
      say(`killed the service (${serviceBefore.kills}); starting it again`);
      service = startService();
      await until('the API', async () => ((await fetch(`${api}/healthz`)).ok ? true : undefined), 300_000);
    }
  })();

  let mostInFlight = 0;
  const job = await until(
    'the job',
    async () => {
      const response = await fetch(`${api}/api/v1/provisioning/bulk/${uploaded.jobId}`, { headers: authorization });
      const body = (await response.json()) as { progress: { state: string; completed: number; failed: number; inProgress: number; ratePerSecond: number } };
      const { progress } = body;
      mostInFlight = Math.max(mostInFlight, progress.inProgress);
      say(`${progress.completed} completed, ${progress.failed} failed, ${progress.inProgress} in flight, ${progress.ratePerSecond}/s`);
      await new Promise((resolve) => setTimeout(resolve, 2000));
      return progress.state === 'finished' ? body : undefined;
    },
    6 * 3600_000,
  );
  const finishedAt = Date.now();
  jobOver = true;
  await killer;

  const report = (await (await fetch(`${api}/api/v1/provisioning/bulk/${uploaded.jobId}/report`, { headers: authorization })).json()) as {
    devices: { outcome: string; durationMs: number | null; error: string | null }[];
  };
  const durations = report.devices.map((d) => d.durationMs ?? 0).sort((a, b) => a - b);
  const failures = report.devices.filter((d) => d.outcome !== 'completed');
  const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();

  const usage = {
    temporal: processUsage(temporal.pid),
    ...(cluster ? { postgresql: postgresUsage(cluster.postgresPid) } : {}),
    service: (() => {
      const usage = processUsage(nodeProcessOf(service));
      return { peakMiB: Math.max(usage.peakMiB, serviceBefore.peakMiB), cpuSeconds: Math.round((usage.cpuSeconds + serviceBefore.cpuSeconds) * 10) / 10 };
    })(),
    simulators: processUsage(nodeProcessOf(simulators)),
    bench: processUsage(process.pid),
  };

  const seconds = (finishedAt - submitted) / 1000;
  const totalCpu = Object.values(usage).reduce((sum, u) => sum + u.cpuSeconds, 0);
  if (killEverySeconds !== undefined) {
    killedOnPurpose.add(service);
    service.kill('SIGTERM');
    await new Promise((resolve) => service.once('exit', resolve));
  }
  const lines = [
    '',
    `devices            ${deviceCount} (concurrency ${concurrency}, most in flight ${mostInFlight}, database ${database}, Temporal ${values.temporal === 'cluster' ? 'server on PostgreSQL' : 'dev server'})`,
    `completed          ${report.devices.length - failures.length}`,
    `failed             ${failures.length}${failures.length ? `  e.g. ${failures[0].error}` : ''}`,
    `wall time          ${seconds.toFixed(1)} s from upload to the job's end`,
    `throughput         ${(deviceCount / seconds).toFixed(1)} devices/s`,
    `latency per device p50 ${percentile(durations, 50)} ms, p95 ${percentile(durations, 95)} ms, p99 ${percentile(durations, 99)} ms`,
    '',
    'process            peak RSS   CPU time   CPU per device',
    ...Object.entries(usage).map(
      ([name, u]) =>
        `${name.padEnd(18)} ${String(u.peakMiB).padStart(5)} MiB  ${String(u.cpuSeconds).padStart(7)} s  ${((u.cpuSeconds * 1000) / deviceCount).toFixed(1).padStart(8)} ms`,
    ),
    `${'all'.padEnd(18)}            ${String(Math.round(totalCpu * 10) / 10).padStart(7)} s  ${((totalCpu * 1000) / deviceCount).toFixed(1).padStart(8)} ms`,
    ...(killEverySeconds === undefined ? [] : ['', ...(await checkRecords(env, requests.map((r) => String(r.serialNumber)), serviceBefore.kills))]),
    '',
    'worker time by activity (mean execution latency, count; local attempts marked):',
    ...activityBreakdown(metrics),
    `job status: ${JSON.stringify((job as { progress: unknown }).progress)}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

/**
 * After a run with kills: every device provisioned once, with one certificate, live and in use;
 * none issued twice, none left unrevoked that its device does not use.
 */
async function checkRecords(env: NodeJS.ProcessEnv, serialNumbers: string[], kills: number): Promise<string[]> {
  const config = loadConfig(env);
  const database = await openDatabase(config.database);
  try {
    const tenantId = 'default';
    const registered = new Map((await new DeviceRegistry(database.db).list(tenantId)).map((device) => [device.deviceId, device]));
    const issued = (await new CertificateStore(database.db).all(tenantId)).filter((row) => row.certificateType === 'device');
    const byDevice = new Map<string, typeof issued>();
    for (const row of issued) byDevice.set(row.deviceId!, [...(byDevice.get(row.deviceId!) ?? []), row]);
    const lost = serialNumbers.filter((serial) => {
      const device = registered.get(serial);
      return !device || device.lifecycleState !== 'active' || !byDevice.get(serial)?.some((row) => row.id === device.activeCertificateId && !row.revokedAt);
    });
    const issuedTwice = [...byDevice.values()].filter((rows) => rows.length > 1);
    const orphans = issued.filter((row) => !row.revokedAt && row.id !== registered.get(row.deviceId!)?.activeCertificateId);
    return [
      `records after ${kills} kills of the service: ${byDevice.size} devices with certificates`,
      `  devices not active on a live certificate (lost)   ${lost.length}${lost.length ? ` e.g. ${lost.slice(0, 3).join(', ')}` : ''}`,
      `  devices issued more than one certificate          ${issuedTwice.length}`,
      `  live certificates no device uses (orphans)        ${orphans.length}`,
    ];
  } finally {
    await database.close();
  }
}

/**
 * Temporal for the run: the dev server as `npm start` runs it, or a real server on PostgreSQL (the
 * service's database then on the same PostgreSQL server). The server's pid and the service's
 * environment for it.
 */
async function startTemporal(port: number, uiPort: number): Promise<{ pid: number; environment: NodeJS.ProcessEnv }> {
  if (values.temporal === 'cluster') {
    // Builds the server from its Go module once (a stamp records the version); quick once built.
    const setup = spawnSync(process.execPath, ['scripts/setup.mjs', '--for-cluster'], { cwd: root, stdio: ['ignore', 2, 2] });
    if (setup.status !== 0) throw new Error('node scripts/setup.mjs --for-cluster failed');
    say('starting a Temporal server on PostgreSQL (scripts/temporal-cluster.ts)');
    cluster = await startTemporalCluster();
    return {
      pid: cluster.serverPid,
      environment: { TEMPORAL_ADDRESS: cluster.address, TEMPORAL_NAMESPACE: cluster.namespace, DATABASE_URL: await cluster.createDatabase('provisioning') },
    };
  }
  say(`starting the Temporal dev server (SQLite with WAL in ${workDir})`);
  const server = start('temporal', temporalCli, [
    'server', 'start-dev', '--ip', '127.0.0.1', '--port', String(port), '--ui-port', String(uiPort),
    '--db-filename', path.join(workDir, 'temporal.db'), '--sqlite-pragma', 'journal_mode=wal',
    '--sqlite-pragma', 'synchronous=normal', '--log-level', 'error',
    '--dynamic-config-value', 'system.enableActivityEagerExecution=true',
  ]);
  return { pid: server.pid!, environment: { TEMPORAL_ADDRESS: `127.0.0.1:${port}` } };
}

/** Mean execution latency per activity type, from the worker runtime's Prometheus histogram. */
function activityBreakdown(metrics: string): string[] {
  const sums = new Map<string, number>();
  const counts = new Map<string, number>();
  for (const line of metrics.split('\n')) {
    const match = /^temporal_(local_)?activity_execution_latency(?:_seconds)?_(sum|count)\{[^}]*activity_type="([^"]+)"[^}]*\}\s+([\d.e+-]+)/.exec(line);
    if (!match) continue;
    const [, local, kind, activityType, value] = match;
    const type = `${activityType}${local ? ' (local)' : ''}`;
    const target = kind === 'sum' ? sums : counts;
    target.set(type, (target.get(type) ?? 0) + Number(value));
  }
  const unit = metrics.includes('temporal_activity_execution_latency_seconds') ? 1000 : 1;
  return [...counts.entries()]
    .sort((a, b) => (sums.get(b[0]) ?? 0) - (sums.get(a[0]) ?? 0))
    .map(([type, count]) => `  ${type.padEnd(28)} ${(((sums.get(type) ?? 0) * unit) / count).toFixed(1).padStart(8)} ms  x${count}`);
}

try {
  await main();
} catch (error) {
  say(`failed: ${(error as Error).message}`);
  process.exitCode = 1;
} finally {
  await stopAll();
}
