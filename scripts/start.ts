/**
 * `npm start`: the whole service in one process tree. Unless TEMPORAL_ADDRESS names a cluster, a
 * Temporal dev server (file-backed SQLite under DATA_DIR, so runs survive a restart, with its Web
 * UI) is started as a child; then the worker and the API run in this process. Ctrl-C or SIGTERM
 * stops the API, lets the worker finish its tasks, then stops the server.
 *
 * `--development` (what `npm start` passes) makes the defaults those of a development installation
 * on one machine: SERVICE_ENVIRONMENT=development (reference devices on loopback) and
 * CODEC_UI_DECODE_TENANT=default (the embedded dev server's Web UI reads tenant default's history). Settings in
 * the environment win. Without the flag, as the container runs it, nothing is assumed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { loadConfig, type ServiceConfig } from '../service/config';
import { createLogger } from '../service/logger';
import { startService, type RunningService } from '../service/main';

const root = path.resolve(import.meta.dirname, '..');
const temporalCli = path.join(root, '.tools', 'venv', 'bin', 'temporal');

if (process.argv.includes('--development')) {
  process.env.SERVICE_ENVIRONMENT ??= 'development';
  if (process.env.SERVICE_ENVIRONMENT === 'development' && !process.env.TEMPORAL_ADDRESS) process.env.CODEC_UI_DECODE_TENANT ??= 'default';
}
const config = loadConfig();
const logger = createLogger(config.logLevel);

function startTemporalDevServer(
  settings: ServiceConfig['temporal']['devServer'],
  namespace: string,
  codecEndpoint: string,
): ChildProcess {
  mkdirSync(path.dirname(settings.dbFile), { recursive: true });
  const args = [
    'server', 'start-dev',
    '--ip', '127.0.0.1',
    '--port', String(settings.port),
    '--ui-port', String(settings.uiPort),
    // History is encrypted; the Web UI decrypts through the API's codec endpoint.
    '--ui-codec-endpoint', codecEndpoint,
    '--db-filename', settings.dbFile,
    '--sqlite-pragma', 'journal_mode=wal',
    '--sqlite-pragma', 'synchronous=normal',
    '--namespace', namespace,
    '--log-level', 'warn',
    // Activities scheduled by a workflow task go straight to the worker that completed it when it has
    // room, sparing a round trip through matching for every provisioning step.
    '--dynamic-config-value', 'system.enableActivityEagerExecution=true',
  ];
  // Its own process group, so a terminal's Ctrl-C reaches us first and we stop it last.
  const child = spawn(temporalCli, args, { stdio: ['ignore', 'inherit', 'inherit'], detached: true });
  child.on('exit', (code, signal) => {
    if (!stopping) {
      logger.fatal({ code, signal }, 'the Temporal dev server exited unexpectedly');
      process.exit(1);
    }
  });
  logger.info(
    { component: 'temporal', address: `127.0.0.1:${settings.port}`, ui: `http://127.0.0.1:${settings.uiPort}` },
    `temporal: 127.0.0.1:${settings.port} (Web UI http://127.0.0.1:${settings.uiPort}, data ${settings.dbFile})`,
  );
  return child;
}

let stopping = false;
let temporalServer: ChildProcess | undefined;
let service: RunningService | undefined;

async function stop(signal: string, exitCode = 0): Promise<void> {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, 'shutting down');
  try {
    await service?.stop();
  } catch (error) {
    logger.error({ err: error }, 'error while stopping the service');
  }
  if (temporalServer?.pid && temporalServer.exitCode === null) {
    const exited = new Promise((resolve) => temporalServer!.once('exit', resolve));
    process.kill(-temporalServer.pid, 'SIGTERM');
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 10_000).unref())]);
  }
  logger.info('stopped');
  process.exit(exitCode);
}

process.on('SIGINT', () => void stop('SIGINT'));
process.on('SIGTERM', () => void stop('SIGTERM'));

try {
  if (!config.temporal.address) {
    const apiHost = ['0.0.0.0', '::'].includes(config.http.host) ? '127.0.0.1' : config.http.host;
    temporalServer = startTemporalDevServer(
      config.temporal.devServer,
      config.temporal.namespace,
      `http://${apiHost}:${config.http.port}/codec`,
    );
  } else {
    logger.info({ component: 'temporal', address: config.temporal.address }, `temporal: ${config.temporal.address} (existing cluster)`);
  }
  service = await startService(config, logger);
  logger.info('ready');
} catch (error) {
  logger.fatal({ err: error }, 'could not start the service');
  await stop('startup-failure', 1);
}
