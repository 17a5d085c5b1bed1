/**
 * `npm start` as an operator runs it (scripts/start.ts in its own process, the embedded Temporal
 * dev server and database under DATA_DIR), killed hard in the middle of a bulk job and started
 * again on the same data: the job finishes with every device provisioned once.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { devServerPidFile } from '../../service/temporal-dev-server';
import { TestDevices, waitFor } from '../support/devices';
import { freeLoopbackPort } from '../support/network';
import { temporalCliPath } from '../support/temporal';
import { processAlive } from '../support/test-run';

const root = path.resolve(import.meta.dirname, '..', '..');
const devices = new TestDevices();
const started: ChildProcess[] = [];
const directories: string[] = [];

afterEach(async () => {
  for (const child of started.splice(0)) await stopProcess(child, 'SIGKILL');
});
afterAll(async () => {
  await devices.stopAll();
  for (const directory of directories) rmSync(directory, { recursive: true, force: true });
});

function listening(port: number): Promise<true | undefined> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(undefined));
  });
}

async function stopProcess(child: ChildProcess, signal: NodeJS.Signals): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill(signal);
  return exited;
}

interface Installation {
  dataDir: string;
  environment: Record<string, string>;
  apiUrl: string;
}

async function newInstallation(): Promise<Installation> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'service-restart-'));
  directories.push(dataDir);
  const [apiPort, temporalPort, uiPort] = [await freeLoopbackPort(), await freeLoopbackPort(), await freeLoopbackPort()];
  return {
    dataDir,
    apiUrl: `http://127.0.0.1:${apiPort}`,
    environment: {
      DATA_DIR: dataDir,
      PORT: String(apiPort),
      TEMPORAL_PORT: String(temporalPort),
      TEMPORAL_UI_PORT: String(uiPort),
      EST_PORT: '0',
      METRICS_PORT: '0',
      WORKER_METRICS_ADDRESS: '',
      LOG_LEVEL: 'info',
    },
  };
}

/** Starts the service exactly as `npm start` does after setup, and waits until its API answers. */
async function startService(installation: Installation): Promise<{ child: ChildProcess; output: () => string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/start.ts', '--development'], {
    cwd: root,
    env: { ...process.env, ...installation.environment },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  started.push(child);
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  await waitFor(
    async () => {
      if (child.exitCode !== null) throw new Error(`the service exited (${child.exitCode}): ${output.slice(-3000)}`);
      const response = await fetch(`${installation.apiUrl}/healthz`);
      return response.ok ? true : undefined;
    },
    'the service to answer',
    90_000,
  ).catch((error: Error) => {
    throw new Error(`${error.message}\n${output.slice(-3000)}`);
  });
  return { child, output: () => output };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function call(installation: Installation, method: string, route: string, body?: FormData): Promise<{ status: number; body: any }> {
  const key = readFileSync(path.join(installation.dataDir, 'bootstrap-admin-api-key'), 'utf8').trim();
  const response = await fetch(`${installation.apiUrl}${route}`, { method, body, headers: { authorization: `Bearer ${key}` } });
  return { status: response.status, body: await response.json() };
}

/** Entries under `directory` that its owner's group or others may read, write or enter. */
function readableByOthers(directory: string): string[] {
  const found: string[] = [];
  const walk = (entry: string) => {
    const stat = lstatSync(entry);
    if (stat.isSymbolicLink()) return;
    if ((stat.mode & 0o077) !== 0) found.push(`${entry} ${(stat.mode & 0o777).toString(8)}`);
    if (stat.isDirectory()) for (const name of readdirSync(entry)) walk(path.join(entry, name));
  };
  walk(directory);
  return found;
}

describe('npm start after a hard kill', () => {
  it('finishes a bulk job after the service is killed with SIGKILL mid-job and started again: every device once, one live certificate each', async () => {
    const installation = await newInstallation();
    let service = await startService(installation);

    const batch = await Promise.all(Array.from({ length: 24 }, () => devices.start({ faults: { latencyMs: { '/api/v1/configuration': 400 } } })));
    const header = 'serialNumber,macAddress,address,protocol,deviceType,site,username,password';
    const rows = batch.map(({ request: r }) => [r.serialNumber, r.macAddress, r.address, 'https', 'camera', 'lobby', r.credentials.username, r.credentials.password].join(','));
    const form = new FormData();
    form.set('file', new Blob([[header, ...rows].join('\n') + '\n'], { type: 'text/csv' }), 'devices.csv');
    form.set('concurrency', '4');
    const upload = await call(installation, 'POST', '/api/v1/provisioning/bulk', form);
    expect(upload.status).toBe(202);
    const jobId: string = upload.body.jobId;

    await waitFor(
      async () => ((await call(installation, 'GET', `/api/v1/provisioning/bulk/${jobId}`)).body.progress.completed >= 4 ? true : undefined),
      'a few devices to complete',
      90_000,
    );
    const devServer = JSON.parse(readFileSync(devServerPidFile(path.join(installation.dataDir, 'temporal', 'temporal.db')), 'utf8')) as { pid: number };
    expect(await stopProcess(service.child, 'SIGKILL')).toBeNull();

    // The dev server goes with the service that started it, freeing its port and SQLite file.
    await waitFor(async () => (processAlive(devServer.pid) ? undefined : true), 'the dev server to stop after its service died', 15_000);

    service = await startService(installation);
    const job = await waitFor(
      async () => {
        const { body } = await call(installation, 'GET', `/api/v1/provisioning/bulk/${jobId}`);
        return body.progress.state === 'finished' ? body : undefined;
      },
      'the job to finish after the restart',
      180_000,
    );
    expect(job.progress).toMatchObject({ total: 24, completed: 24, failed: 0 });
    for (const { device } of batch) expect(device.state).toBe('active');
    const live = await call(installation, 'GET', '/api/v1/provisioning/certificates?certificateType=device&liveOnly=true&limit=500');
    const perDevice = new Map<string, number>();
    for (const certificate of live.body.certificates as Array<{ deviceId: string }>) perDevice.set(certificate.deviceId, (perDevice.get(certificate.deviceId) ?? 0) + 1);
    expect([...perDevice.values()]).toEqual(batch.map(() => 1));
    expect([...perDevice.keys()].sort()).toEqual(batch.map((d) => d.request.serialNumber).sort());

    // Nobody but the owner may enter DATA_DIR or any folder in it while the service runs...
    expect(readableByOthers(installation.dataDir).filter((entry) => lstatSync(entry.split(' ')[0]!).isDirectory())).toEqual([]);

    // While the service holds the embedded database, the key command refuses and says what to do.
    const keyCommand = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/api-key.ts', 'create', '--tenant', 'default', '--role', 'operator', '--name', 'x'], {
      cwd: root,
      env: { ...process.env, ...installation.environment },
      encoding: 'utf8',
    });
    expect(keyCommand.status).toBe(2);
    expect(keyCommand.stdout).toBe('');
    expect(keyCommand.stderr).toContain('POST /api/v1/access/api-keys');

    // SIGTERM stops it in order, cleanly.
    expect(await stopProcess(service.child, 'SIGTERM')).toBe(0);
    expect(service.output()).not.toMatch(/"level":(50|60)/);
    expect(existsSync(devServerPidFile(path.join(installation.dataDir, 'temporal', 'temporal.db')))).toBe(false);
    // ...and at rest every file in it is private too.
    expect(readableByOthers(installation.dataDir)).toEqual([]);
  }, 360_000);

  it('stops a dev server a previous start left running on the same data folder, and starts on its port', async () => {
    const installation = await newInstallation();
    const dbFile = path.join(installation.dataDir, 'temporal', 'temporal.db');
    const temporalPort = installation.environment.TEMPORAL_PORT;
    mkdirSync(path.dirname(dbFile), { recursive: true });
    // A server whose service died without taking it along: its own session, holding the port.
    const leftover = spawn(temporalCliPath(), ['server', 'start-dev', '--ip', '127.0.0.1', '--port', temporalPort, '--headless', '--db-filename', dbFile, '--log-level', 'error'], {
      detached: true,
      stdio: 'ignore',
    });
    started.push(leftover);
    await waitFor(() => listening(Number(temporalPort)), 'the leftover to listen', 30_000);
    const stat = readFileSync(`/proc/${leftover.pid}/stat`, 'utf8');
    const startTime = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    writeFileSync(devServerPidFile(dbFile), JSON.stringify({ pid: leftover.pid, startTime, dbFile, owner: { pid: 2147483646, startTime: '1' } }));

    const service = await startService(installation);

    expect(processAlive(leftover.pid!)).toBe(false);
    expect(service.output()).toContain(`previous start left running (pid ${leftover.pid})`);
    expect(await stopProcess(service.child, 'SIGTERM')).toBe(0);
  }, 180_000);
});
