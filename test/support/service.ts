/**
 * The service as the tests run it: real Temporal dev server, real database (embedded or server),
 * real key custody (software or the SoftHSM token), the real worker and provisioning service.
 */
import { mkdtempSync } from 'node:fs';
import path from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Worker } from '@temporalio/worker';
import { loadConfig, type ServiceConfig } from '../../service/config';
import { createLogger } from '../../foundation/logger';
import { parseOrThrow } from '../../foundation/validation';
import type { ProvisioningService } from '../../provisioning/provisioning-service';
import { provisioningRequestSchema } from '../../provisioning/requests';
import { createProvisioningService, createServiceParts, type ServiceParts } from '../../service/parts';
import { createProvisioningWorker, createSiteWorker } from '../../service/worker';
import type { WorkerSite } from '../../contracts/site-workers';
import { installTemporalRuntime } from '../../service/temporal';
import { payloadDataConverter } from '../../custody/payload-codec';
import { createServerDatabaseUrl, type DatabaseKind } from './database';
import { testDeviceNetworkRanges } from './device-networks';
import { createTemporalTestEnvironment, createTimeSkippingTestEnvironment } from './temporal';

export const testLogger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');

export interface TestServiceOptions {
  database?: DatabaseKind;
  keyCustody?: 'software' | 'pkcs11';
  /** Base64; a fresh random key unless a test needs a known one. */
  keyEncryptionKey?: string;
  /** `time-skipping` for workflows that wait months (certificate renewal); the dev server otherwise. */
  temporal?: 'dev-server' | 'time-skipping';
  /** Further settings, as the environment would give them. */
  environment?: Record<string, string>;
  /** Further arguments of the dev server (`--dynamic-config-value ...`). */
  temporalServerArgs?: string[];
  /** Configuration signatures the worker makes last this long (the signer's default otherwise). */
  configurationSignatureLifetimeMs?: number;
}

export async function testConfig(options: TestServiceOptions = {}): Promise<ServiceConfig> {
  const dataDir = mkdtempSync(path.join(process.env.TEST_WORK_DIR ?? '/tmp', 'service-'));
  const environment: NodeJS.ProcessEnv = {
    DATA_DIR: dataDir,
    KEY_ENCRYPTION_KEY: options.keyEncryptionKey ?? randomBytes(32).toString('base64'),
    TEMPORAL_TASK_QUEUE: `provisioning-test-${randomUUID()}`,
    LOG_LEVEL: 'silent',
    // Test devices run on loopback and in the 10.x networks of the namespaces tests make.
    SERVICE_ENVIRONMENT: 'development',
    DEVICE_NETWORKS: testDeviceNetworkRanges.join(','),
    ...options.environment,
  };
  if ((options.database ?? 'embedded') === 'server') environment.DATABASE_URL = await createServerDatabaseUrl();
  if (options.keyCustody === 'pkcs11') {
    environment.HSM_MODULE = process.env.TEST_HSM_MODULE;
    environment.HSM_TOKEN_LABEL = process.env.TEST_HSM_TOKEN_LABEL;
    environment.HSM_PIN = process.env.TEST_HSM_PIN;
  }
  return loadConfig(environment);
}

/**
 * The provisioning service as tests drive it: `start` takes a body as a client sends it, parsed with
 * the API's schema first, as the route does before the service sees it.
 */
export interface TestProvisioning extends Pick<ProvisioningService, 'validate' | 'status' | 'cancel' | 'activate' | 'decideApproval'> {
  start(tenantId: string, body: unknown, requestedBy?: string): ReturnType<ProvisioningService['start']>;
}

export function testProvisioning(provisioning: ProvisioningService, protocols: readonly string[]): TestProvisioning {
  const schema = provisioningRequestSchema(protocols);
  return {
    start: (tenantId, body, requestedBy) => provisioning.start(tenantId, parseOrThrow(schema, body, 'provisioning request'), requestedBy),
    validate: (...args) => provisioning.validate(...args),
    status: (...args) => provisioning.status(...args),
    cancel: (...args) => provisioning.cancel(...args),
    activate: (...args) => provisioning.activate(...args),
    decideApproval: (...args) => provisioning.decideApproval(...args),
  };
}

export interface TestService {
  env: TestWorkflowEnvironment;
  config: ServiceConfig;
  parts: ServiceParts;
  worker: Worker;
  provisioning: TestProvisioning;
  stop(): Promise<void>;
}

export async function startTestService(options: TestServiceOptions = {}): Promise<TestService> {
  installTemporalRuntime(testLogger);
  const config = await testConfig(options);
  const parts = await createServiceParts(config, testLogger);
  const dataConverter = payloadDataConverter(parts.payloadKeyring);
  const env =
    options.temporal === 'time-skipping'
      ? await createTimeSkippingTestEnvironment(dataConverter)
      : await createTemporalTestEnvironment(dataConverter, options.temporalServerArgs);
  const worker = await createProvisioningWorker(parts, {
    connection: env.nativeConnection,
    client: env.client,
    namespace: config.temporal.namespace,
    taskQueue: config.temporal.taskQueue,
    alerts: config.alerts,
    capacity: config.worker,
    searchAttributes: options.temporal !== 'time-skipping',
    caBackup: config.caBackup,
    configurationSignatureLifetimeMs: options.configurationSignatureLifetimeMs,
    logger: testLogger,
  });
  const running = worker.run();
  const provisioning = testProvisioning(createProvisioningService(parts, env.client, config.temporal.taskQueue), [...parts.adapters.keys()]);
  return {
    env,
    config,
    parts,
    worker,
    provisioning,
    async stop() {
      worker.shutdown();
      await running;
      await parts.close();
      await env.teardown();
    },
  };
}

/**
 * An edge worker's share for `site` in this process, over the test service's parts and connection:
 * for tests of the routing itself, where the site's network need not be apart from the central one.
 */
export async function startTestSiteWorker(service: TestService, site: WorkerSite): Promise<{ stop(): Promise<void> }> {
  const worker = await createSiteWorker(service.parts, {
    connection: service.env.nativeConnection,
    client: service.env.client,
    namespace: service.config.temporal.namespace,
    taskQueue: service.config.temporal.taskQueue,
    alerts: service.config.alerts,
    logger: testLogger,
    site,
  });
  const running = worker.run();
  return {
    async stop() {
      worker.shutdown();
      await running;
    },
  };
}
