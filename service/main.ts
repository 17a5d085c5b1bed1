/**
 * The composition root: builds the service's parts from configuration and runs the roles asked
 * for (API, worker, or both in one process).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Client, type Connection } from '@temporalio/client';
import type { Express } from 'express';
import { NativeConnection, Worker } from '@temporalio/worker';
import { ApiKeyStore } from '../access/api-keys';
import { BearerTokenVerifier } from '../access/bearer-tokens';
import { deviceAdapters } from '../adapters';
import type { DeviceAdapter } from '../adapters/device-adapter';
import { SoftwareKeyStore } from '../adapters/software-keystore';
import { createApp } from '../api/app';
import { createProvisioningActivities } from '../activities/provisioning';
import { TemplateCatalog } from '../configuration/templates';
import { createKeyCustody } from '../custody';
import type { KeyCustody } from '../custody/key-custody';
import { loadKeyEncryptionKey } from '../custody/sealing';
import { SecretVault } from '../custody/secret-vault';
import { openDatabase, type DatabaseHandle } from '../db/client';
import { CertificateAuthority } from '../pki/certificate-authority';
import { ProvisioningService } from '../provisioning/provisioning-service';
import { DeviceRegistry } from '../registry/device-registry';
import type { ServiceConfig } from './config';
import { NotImplementedError } from './errors';
import type { Logger } from './logger';
import { connectWhenReady, ensureSearchAttributes, installTemporalRuntime } from './temporal';

export const workflowsPath = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

/** The domain parts every role shares, built once per process. */
export interface ServiceParts {
  database: DatabaseHandle;
  apiKeys: ApiKeyStore;
  custody: KeyCustody;
  softwareKeys: SoftwareKeyStore;
  ca: CertificateAuthority;
  vault: SecretVault;
  templates: TemplateCatalog;
  registry: DeviceRegistry;
  adapters: ReadonlyMap<string, DeviceAdapter>;
  adapterFor: (protocol: string) => DeviceAdapter;
  close(): Promise<void>;
}

export async function createServiceParts(config: ServiceConfig, logger: Logger): Promise<ServiceParts> {
  const database = await openDatabase({ url: config.database.url, embeddedDir: config.database.embeddedDir });
  const sealer = await loadKeyEncryptionKey({ keyEncryptionKey: config.keyEncryptionKey, dataDir: config.dataDir }, logger);
  const softwareKeys = new SoftwareKeyStore({ db: database.db, sealer });
  const custody = await createKeyCustody(config.keyCustody, { db: database.db, sealer });
  const ca = new CertificateAuthority({ db: database.db, custody, softwareKeys, settings: config.ca, logger });
  const templates = new TemplateCatalog(database.db);
  await templates.ensureBuiltIns();
  const adapters = deviceAdapters();
  return {
    database,
    apiKeys: new ApiKeyStore(database.db),
    custody,
    softwareKeys,
    ca,
    vault: new SecretVault({ db: database.db, sealer }),
    templates,
    registry: new DeviceRegistry(database.db),
    adapters,
    adapterFor: (protocol) => {
      const adapter = adapters.get(protocol);
      if (!adapter) throw new NotImplementedError(`no adapter for protocol ${protocol}`);
      return adapter;
    },
    async close() {
      await custody.close();
      await database.close();
    },
  };
}

export function createProvisioningWorker(
  parts: ServiceParts,
  options: { connection: NativeConnection; namespace: string; taskQueue: string; logger: Logger; workflowBundle?: { code: string } },
): Promise<Worker> {
  return Worker.create({
    connection: options.connection,
    namespace: options.namespace,
    taskQueue: options.taskQueue,
    ...(options.workflowBundle ? { workflowBundle: options.workflowBundle } : { workflowsPath }),
    activities: createProvisioningActivities({ ...parts, logger: options.logger }),
  });
}

/** The HTTP API over the service's parts, talking to Temporal through `connection`. */
export function createServiceApi(
  parts: ServiceParts,
  options: { config: ServiceConfig; connection: Connection; logger: Logger },
): Express {
  const { config, connection, logger } = options;
  const client = new Client({ connection, namespace: config.temporal.namespace });
  const provisioning = new ProvisioningService({
    client,
    taskQueue: config.temporal.taskQueue,
    registry: parts.registry,
    vault: parts.vault,
    templates: parts.templates,
    adapters: parts.adapters,
  });
  return createApp({
    provisioning,
    protocols: [...parts.adapters.keys()],
    ca: parts.ca,
    registry: parts.registry,
    templates: parts.templates,
    apiKeys: parts.apiKeys,
    bearerTokens: config.authentication.bearerTokens ? new BearerTokenVerifier(config.authentication.bearerTokens) : undefined,
    onAuthenticationFailure: (failure) => logger.warn({ ...failure }, 'authentication failed'),
    rateLimitPerMinute: config.authentication.rateLimitPerMinute,
    logger,
    healthChecks: [
      { name: 'database', check: () => parts.database.ping() },
      { name: 'temporal', check: async () => void (await connection.workflowService.getSystemInfo({})) },
    ],
  });
}

/**
 * A fresh installation has no API keys, so nobody could create one: the first start creates an
 * administrator key for the `default` tenant and leaves it in a file only the owner can read.
 */
async function ensureBootstrapApiKey(apiKeys: ApiKeyStore, dataDir: string, logger: Logger): Promise<void> {
  if (await apiKeys.any()) return;
  const created = await apiKeys.create({ tenantId: 'default', name: 'bootstrap administrator', role: 'administrator', createdBy: 'system' });
  const file = path.join(dataDir, 'bootstrap-admin-api-key');
  await mkdir(dataDir, { recursive: true });
  await writeFile(file, `${created.key}\n`, { mode: 0o600 });
  logger.warn({ file, apiKeyId: created.id }, `created an administrator API key for tenant default in ${file}; revoke it once you have your own`);
}

export interface RunningService {
  apiUrl?: string;
  parts: ServiceParts;
  stop(): Promise<void>;
}

export async function startService(config: ServiceConfig, logger: Logger): Promise<RunningService> {
  installTemporalRuntime(logger);
  const temporalAddress = config.temporal.address ?? `127.0.0.1:${config.temporal.devServer.port}`;
  const parts = await createServiceParts(config, logger);
  logger.info({ component: 'database', kind: parts.database.kind }, `database: ${parts.database.kind === 'server' ? 'PostgreSQL server' : `embedded at ${config.database.embeddedDir}`}`);
  logger.info({ component: 'key-custody', kind: parts.custody.kind }, `key custody: ${parts.custody.kind}`);

  const connection: Connection = await connectWhenReady(temporalAddress);
  const added = await ensureSearchAttributes(connection, config.temporal.namespace);
  if (added.length > 0) logger.info({ added }, 'registered search attributes');
  const stops: Array<() => Promise<void>> = [];
  let apiUrl: string | undefined;

  if (config.roles.includes('worker')) {
    const workerConnection = await NativeConnection.connect({ address: temporalAddress });
    const worker = await createProvisioningWorker(parts, {
      connection: workerConnection,
      namespace: config.temporal.namespace,
      taskQueue: config.temporal.taskQueue,
      logger,
    });
    const running = worker.run();
    logger.info({ component: 'worker', taskQueue: config.temporal.taskQueue }, `worker: task queue ${config.temporal.taskQueue} on ${temporalAddress}`);
    stops.push(async () => {
      worker.shutdown();
      await running;
      await workerConnection.close();
    });
  }

  if (config.roles.includes('api')) {
    await ensureBootstrapApiKey(parts.apiKeys, config.dataDir, logger);
    const app = createServiceApi(parts, { config, connection, logger });
    const server = http.createServer(app);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.http.port, config.http.host, resolve);
    });
    const { address, port } = server.address() as AddressInfo;
    apiUrl = `http://${address.includes(':') ? `[${address}]` : address}:${port}`;
    logger.info({ component: 'api', url: apiUrl }, `api: ${apiUrl}`);
    stops.unshift(async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
    });
  }

  return {
    apiUrl,
    parts,
    async stop() {
      for (const stop of stops) await stop();
      await connection.close();
      await parts.close();
    },
  };
}
