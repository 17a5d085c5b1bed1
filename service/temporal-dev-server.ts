/**
 * The Temporal dev server `npm start` runs when no cluster is configured: file-backed SQLite under
 * DATA_DIR (runs survive a restart), with its Web UI.
 *
 * It must never outlive the service that started it, or the next start finds its port and its
 * SQLite file taken. Two guards: the server is started under a parent-death signal (it gets
 * SIGTERM when the service dies, even by SIGKILL), and a pid file in its data folder lets the next
 * start stop a server that survived anyway (a machine without `setpriv`, an older start).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { processStartTime } from '../db/directory-lock';
import type { Logger } from '../foundation/logger';

export interface DevServerSettings {
  /** The `temporal` CLI. */
  cli: string;
  port: number;
  uiPort: number;
  dbFile: string;
  namespace: string;
  /** Where the Web UI decrypts history. */
  codecEndpoint: string;
}

export interface RunningDevServer {
  pid: number;
  /** Stops the server (SIGTERM, then SIGKILL after the grace period) and removes its pid file. */
  stop(graceMs?: number): Promise<void>;
}

interface PidFile {
  pid: number;
  /** The process's start time in clock ticks since boot: a pid reused by another process differs. */
  startTime: string;
  dbFile: string;
  /** The service process that started it. */
  owner: { pid: number; startTime: string };
}

/** A start found the data folder's dev server still owned by a live service process. */
export class DevServerInUseError extends Error {
  override name = 'DevServerInUseError';
  constructor(readonly ownerPid: number, dbFile: string) {
    super(`a running service (pid ${ownerPid}) owns the Temporal dev server of ${dbFile}; stop it first`);
  }
}

export function devServerPidFile(dbFile: string): string {
  return path.join(path.dirname(dbFile), 'dev-server.pid');
}

function running(pid: number, startTime: string): boolean {
  return processStartTime(pid) === startTime;
}

async function stopProcess(pid: number, startTime: string, graceMs: number): Promise<void> {
  const signal = (name: NodeJS.Signals) => {
    try {
      process.kill(pid, name);
    } catch {
      // already gone
    }
  };
  signal('SIGTERM');
  const deadline = Date.now() + graceMs;
  while (running(pid, startTime) && Date.now() < deadline) await sleep(100);
  if (running(pid, startTime)) signal('SIGKILL');
  while (running(pid, startTime)) await sleep(50);
}

/**
 * Stops a dev server a previous start left running on the same data folder, if its pid file names
 * a live process that is that server and the service that started it is gone. Returns its pid when
 * it stopped one; throws DevServerInUseError while its service still runs.
 */
export async function stopLeftoverDevServer(dbFile: string, logger: Logger): Promise<number | undefined> {
  const file = devServerPidFile(dbFile);
  if (!existsSync(file)) return undefined;
  let recorded: PidFile | undefined;
  try {
    recorded = JSON.parse(readFileSync(file, 'utf8')) as PidFile;
  } catch {
    // Unreadable: nothing we can trust to stop.
  }
  if (recorded?.owner && running(recorded.owner.pid, recorded.owner.startTime) && recorded.owner.pid !== process.pid) {
    throw new DevServerInUseError(recorded.owner.pid, dbFile);
  }
  rmSync(file, { force: true });
  if (!recorded || recorded.dbFile !== dbFile || !running(recorded.pid, recorded.startTime)) return undefined;
  logger.warn({ pid: recorded.pid, dbFile }, `stopping the Temporal dev server a previous start left running (pid ${recorded.pid})`);
  await stopProcess(recorded.pid, recorded.startTime, 10_000);
  return recorded.pid;
}

function parentDeathSignalPrefix(): string[] {
  // util-linux's setpriv sets PR_SET_PDEATHSIG and execs the server: the kernel signals it when we die.
  const probe = spawnSync('setpriv', ['--help'], { encoding: 'utf8' });
  return probe.status === 0 && probe.stdout.includes('--pdeathsig') ? ['setpriv', '--pdeathsig', 'TERM', '--'] : [];
}

export async function startTemporalDevServer(
  settings: DevServerSettings,
  options: { logger: Logger; onUnexpectedExit: (code: number | null, signal: NodeJS.Signals | null) => void },
): Promise<RunningDevServer> {
  mkdirSync(path.dirname(settings.dbFile), { recursive: true, mode: 0o700 });
  await stopLeftoverDevServer(settings.dbFile, options.logger);
  const args = [
    'server', 'start-dev',
    '--ip', '127.0.0.1',
    '--port', String(settings.port),
    '--ui-port', String(settings.uiPort),
    // History is encrypted; the Web UI decrypts through the API's codec endpoint.
    '--ui-codec-endpoint', settings.codecEndpoint,
    '--db-filename', settings.dbFile,
    '--sqlite-pragma', 'journal_mode=wal',
    '--sqlite-pragma', 'synchronous=normal',
    '--namespace', settings.namespace,
    '--log-level', 'warn',
    // Activities scheduled by a workflow task go straight to the worker that completed it when it has
    // room, sparing a round trip through matching for every provisioning step.
    '--dynamic-config-value', 'system.enableActivityEagerExecution=true',
  ];
  const [command, ...prefix] = [...parentDeathSignalPrefix(), settings.cli];
  // Its own process group, so a terminal's Ctrl-C reaches the service first and the server stops last.
  const child: ChildProcess = spawn(command!, [...prefix, ...args], { stdio: ['ignore', 'inherit', 'inherit'], detached: true });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  const pid = child.pid!;
  const startTime = processStartTime(pid)!;
  const pidFile = devServerPidFile(settings.dbFile);
  const owner = { pid: process.pid, startTime: processStartTime(process.pid)! };
  writeFileSync(pidFile, JSON.stringify({ pid, startTime, dbFile: settings.dbFile, owner } satisfies PidFile), { mode: 0o600 });

  let stopping = false;
  child.on('exit', (code, signal) => {
    if (!stopping) options.onUnexpectedExit(code, signal);
  });
  return {
    pid,
    async stop(graceMs = 10_000) {
      stopping = true;
      if (child.exitCode === null && child.signalCode === null) await stopProcess(pid, startTime, graceMs);
      rmSync(pidFile, { force: true });
    },
  };
}
