/**
 * The provisioning worker alone in its own process, configured from the environment, so a test can
 * kill it outright (SIGKILL) in the middle of a provisioning run. Prints `worker ready` when polling.
 */
import { Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { loadConfig } from '../../service/config';
import { createLogger } from '../../foundation/logger';
import { createServiceParts, serviceClient } from '../../service/parts';
import { createProvisioningWorker } from '../../service/worker';
import { installTemporalRuntime } from '../../service/temporal';

const config = loadConfig();
const logger = createLogger(config.logLevel);
installTemporalRuntime(logger);
const parts = await createServiceParts(config, logger);
const connection = await NativeConnection.connect({ address: config.temporal.address! });
const clientConnection = await Connection.connect({ address: config.temporal.address! });
const worker = await createProvisioningWorker(parts, {
  connection,
  client: serviceClient(parts, clientConnection, config.temporal.namespace),
  namespace: config.temporal.namespace,
  taskQueue: config.temporal.taskQueue,
  alerts: config.alerts,
  logger,
});
const running = worker.run();
process.stdout.write('worker ready\n');
process.on('SIGTERM', () => worker.shutdown());
await running;
await parts.close();
await connection.close();
await clientConnection.close();
