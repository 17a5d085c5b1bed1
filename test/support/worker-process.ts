/**
 * The provisioning worker alone in its own process, configured from the environment, so a test can
 * kill it outright (SIGKILL) in the middle of a provisioning run. Prints `worker ready` when polling.
 */
import { NativeConnection } from '@temporalio/worker';
import { loadConfig } from '../../service/config';
import { createLogger } from '../../service/logger';
import { createProvisioningWorker, createServiceParts } from '../../service/main';
import { installTemporalRuntime } from '../../service/temporal';

const config = loadConfig();
const logger = createLogger(config.logLevel);
installTemporalRuntime(logger);
const parts = await createServiceParts(config, logger);
const connection = await NativeConnection.connect({ address: config.temporal.address! });
const worker = await createProvisioningWorker(parts, {
  connection,
  namespace: config.temporal.namespace,
  taskQueue: config.temporal.taskQueue,
  logger,
});
const running = worker.run();
process.stdout.write('worker ready\n');
process.on('SIGTERM', () => worker.shutdown());
await running;
await parts.close();
await connection.close();
