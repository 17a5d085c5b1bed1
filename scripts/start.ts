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
import path from 'node:path';
import { DirectoryInUseError } from '../db/directory-lock';
import { loadConfig } from '../service/config';
import { secureDataDirectory } from '../service/data-directory';
import { createLogger } from '../foundation/logger';
import { startService, type RunningService } from '../service/main';
import { DevServerInUseError, startTemporalDevServer, type RunningDevServer } from '../service/temporal-dev-server';

const root = path.resolve(import.meta.dirname, '..');

if (process.argv.includes('--development')) {
  process.env.SERVICE_ENVIRONMENT ??= 'development';
  if (process.env.SERVICE_ENVIRONMENT === 'development' && !process.env.TEMPORAL_ADDRESS) process.env.CODEC_UI_DECODE_TENANT ??= 'default';
}
const config = loadConfig();
const logger = createLogger(config.logLevel);

let stopping = false;
let temporalServer: RunningDevServer | undefined;
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
  await temporalServer?.stop();
  // The embedded database writes some files with modes of its own; leave none readable by others.
  secureDataDirectory(config.dataDir);
  logger.info('stopped');
  process.exit(exitCode);
}

process.on('SIGINT', () => void stop('SIGINT'));
process.on('SIGTERM', () => void stop('SIGTERM'));

try {
  secureDataDirectory(config.dataDir);
  if (!config.temporal.address) {
    const { port, uiPort, dbFile } = config.temporal.devServer;
    const apiHost = ['0.0.0.0', '::'].includes(config.http.host) ? '127.0.0.1' : config.http.host;
    temporalServer = await startTemporalDevServer(
      {
        cli: path.join(root, '.tools', 'venv', 'bin', 'temporal'),
        port,
        uiPort,
        dbFile,
        namespace: config.temporal.namespace,
        codecEndpoint: `http://${apiHost}:${config.http.port}/codec`,
      },
      {
        logger,
        onUnexpectedExit: (code, signal) => {
          if (stopping) return;
          logger.fatal({ code, signal }, 'the Temporal dev server exited unexpectedly');
          void stop('temporal-exit', 1);
        },
      },
    );
    logger.info(
      { component: 'temporal', address: `127.0.0.1:${port}`, ui: `http://127.0.0.1:${uiPort}`, pid: temporalServer.pid },
      `temporal: 127.0.0.1:${port} (Web UI http://127.0.0.1:${uiPort}, data ${dbFile})`,
    );
  } else {
    logger.info({ component: 'temporal', address: config.temporal.address }, `temporal: ${config.temporal.address} (existing cluster)`);
  }
  service = await startService(config, logger);
  logger.info('ready');
} catch (error) {
  if (error instanceof DirectoryInUseError) {
    logger.fatal(`${error.message}: another service runs on this data folder; stop it first`);
  } else if (error instanceof DevServerInUseError) {
    logger.fatal(error.message);
  } else {
    logger.fatal({ err: error }, 'could not start the service');
  }
  await stop('startup-failure', 1);
}
