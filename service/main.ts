/**
 * The composition root: builds the service's parts from configuration and runs the roles asked
 * for (API, worker, or both in one process).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { type Connection } from '@temporalio/client';
import express from 'express';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { ApiKeyStore } from '../access/api-keys';
import { CertificateRenewals } from '../provisioning/certificate-renewals';
import { createEstServer } from '../api/est-server';
import { withCachedOcspAnswers } from '../api/pki-publication';
import { ensureDiscoverySchedules } from '../discovery/sweep-schedule';
import { ensureDriftSchedules } from '../configuration/drift-policies';
import { ensureHealthSchedules } from '../fleet/health-schedules';
import { applyCaBackupSchedule } from '../pki/ca-backup-schedule';
import { ensureCrlSchedule } from '../pki/crl-schedule';
import { ensureAlertSchedule } from '../alerts/schedule';
import { createMetricsRegistry, metricsHandler } from '../observability/metrics';
import { workerMetricsUrl } from '../observability/runtime-metrics';
import type { ServiceConfig } from './config';
import type { Logger } from '../foundation/logger';
import { claimNamespaceEnvironment, connectWhenReady, ensureNamespaceRetention, ensureSearchAttributes, installTemporalRuntime } from './temporal';
import { createCredentialRotations, createServiceParts, serviceClient, systemAuditTenant, type ServiceParts } from './parts';
import { createProvisioningWorker, createSiteWorker } from './worker';
import { createServiceApi } from './api';

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

async function listen(app: http.RequestListener, host: string, port: number): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer(app);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  const address = server.address() as AddressInfo;
  return {
    url: `http://${address.address.includes(':') ? `[${address.address}]` : address.address}:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}

export interface RunningService {
  apiUrl?: string;
  parts: ServiceParts;
  stop(): Promise<void>;
}

export async function startService(config: ServiceConfig, logger: Logger): Promise<RunningService> {
  const runsWorker = config.roles.includes('worker');
  const workerMetricsAddress = runsWorker ? config.metrics.workerAddress : undefined;
  installTemporalRuntime(logger, { metricsBindAddress: workerMetricsAddress });
  const temporalAddress = config.temporal.address ?? `127.0.0.1:${config.temporal.devServer.port}`;
  const parts = await createServiceParts(config, logger);
  logger.info({ component: 'database', kind: parts.database.kind }, `database: ${parts.database.kind === 'server' ? 'PostgreSQL server' : `embedded at ${config.database.embeddedDir}`}`);
  logger.info({ component: 'key-custody', kind: parts.custody.kind }, `key custody: ${parts.custody.kind}`);
  logger.info(
    { component: 'environment', environment: config.installationEnvironment, namespace: config.temporal.namespace },
    `environment: ${config.installationEnvironment} (Temporal namespace ${config.temporal.namespace})`,
  );
  if (runsWorker && !config.roles.includes('api') && !config.ca.publicUrl) {
    logger.warn(
      { component: 'pki' },
      'PKI_PUBLIC_URL is not set and this process runs no API: certificates it issues will name no CRL or OCSP location',
    );
  }

  // An edge worker alone (the site-worker role) leaves the CA and key custody to the central service.
  const edgeWorkerOnly = config.roles.every((role) => role === 'site-worker');
  if (!edgeWorkerOnly) {
    await parts.ca.completeServiceHierarchies().catch((error: unknown) => {
      // The root key may be offline; the services intermediate then comes with its first use.
      logger.warn({ err: error, component: 'pki' }, 'could not give every tenant its services intermediate yet');
    });
  }

  const connection: Connection = await connectWhenReady(temporalAddress);
  try {
    if (await claimNamespaceEnvironment(connection, config.temporal.namespace, config.installationEnvironment)) {
      logger.info({ namespace: config.temporal.namespace, environment: config.installationEnvironment }, 'recorded the environment in the namespace');
    }
  } catch (error) {
    await connection.close();
    await parts.close();
    throw error;
  }
  const added = await ensureSearchAttributes(connection, config.temporal.namespace);
  if (added.length > 0) logger.info({ added }, 'registered search attributes');
  await ensureNamespaceRetention(connection, config.temporal.namespace, config.temporal.retentionDays).then(
    (before) => {
      if (before !== config.temporal.retentionDays) logger.info({ before, days: config.temporal.retentionDays }, 'set the namespace retention');
    },
    // A cluster may not let the service change its namespace; its operators set retention then.
    (error: unknown) => logger.warn({ err: error, days: config.temporal.retentionDays }, 'could not set the namespace retention'),
  );
  const stops: Array<() => Promise<void>> = [];
  let apiUrl: string | undefined;

  const runsSiteWorkers = config.worker.sites.length > 0 && (runsWorker || config.roles.includes('site-worker'));
  if (runsWorker || runsSiteWorkers) {
    const workerConnection = await NativeConnection.connect({ address: temporalAddress });
    const client = serviceClient(parts, connection, config.temporal.namespace);
    const workerOptions = {
      connection: workerConnection,
      client,
      namespace: config.temporal.namespace,
      taskQueue: config.temporal.taskQueue,
      alerts: config.alerts,
      capacity: config.worker,
      renewAtFraction: config.ca.renewalAtFraction,
      discovery: config.discovery,
      caBackup: config.caBackup,
      logger,
    };
    const workers: Worker[] = [];
    if (runsWorker) {
      workers.push(await createProvisioningWorker(parts, workerOptions));
      await ensureAlertSchedule(client, { taskQueue: config.temporal.taskQueue, every: config.alerts.evaluationInterval });
      await ensureCrlSchedule(client, { taskQueue: config.temporal.taskQueue, everyMinutes: config.ca.crlPublishIntervalMinutes });
      await ensureDiscoverySchedules(client, parts.discovery, config.temporal.taskQueue);
      await ensureDriftSchedules(client, parts.driftPolicies, config.temporal.taskQueue);
      await ensureHealthSchedules(client, { registry: parts.registry, policies: parts.fleetPolicies }, config.temporal.taskQueue);
      await createCredentialRotations(parts, client, config.temporal.taskQueue).ensureSchedules();
      await applyCaBackupSchedule(client, { taskQueue: config.temporal.taskQueue, everyHours: config.caBackup?.intervalHours });
      logger.info({ component: 'worker', taskQueue: config.temporal.taskQueue }, `worker: task queue ${config.temporal.taskQueue} on ${temporalAddress}`);
    }
    // An edge worker: the device-facing activities of its sites, each site on its own queue.
    for (const site of runsSiteWorkers ? config.worker.sites : []) {
      const siteWorker = await createSiteWorker(parts, { ...workerOptions, site });
      workers.push(siteWorker);
      logger.info({ component: 'worker', taskQueue: siteWorker.options.taskQueue, ...site }, `site worker: ${site.tenantId}/${site.site} on task queue ${siteWorker.options.taskQueue}`);
    }
    const running = Promise.all(workers.map((worker) => worker.run()));
    stops.push(async () => {
      for (const worker of workers) if (worker.getState() === 'RUNNING') worker.shutdown();
      await running;
      await workerConnection.close();
    });
  }

  if (config.roles.includes('api')) {
    await ensureBootstrapApiKey(parts.apiKeys, config.dataDir, logger);
    const app = createServiceApi(parts, { config, connection, logger });
    // Repeated OCSP GETs are answered from memory before Express routes them.
    const server = await listen(withCachedOcspAnswers(app, parts.ocsp), config.http.host, config.http.port);
    apiUrl = server.url;
    parts.publication.useBaseUrlIfUnset(apiUrl);
    logger.info({ component: 'api', url: apiUrl }, `api: ${apiUrl}`);
    logger.info({ component: 'fleet', url: `${apiUrl}/api/v1/devices` }, `fleet inventory: ${apiUrl}/api/v1/devices (health, firmware, lifecycle, runs)`);
    stops.unshift(server.close);

    if (config.est.port !== 0) {
      const renewals = new CertificateRenewals({
        client: serviceClient(parts, connection, config.temporal.namespace),
        taskQueue: config.temporal.taskQueue,
        renewAtFraction: config.ca.renewalAtFraction,
      });
      const est = await createEstServer(
        { db: parts.database.db, ca: parts.ca, registry: parts.registry, vault: parts.vault, audit: parts.audit, renewals, logger },
        { ...config.est, systemAuditTenant },
      );
      logger.info({ component: 'est', url: est.url }, `est: ${est.url}/.well-known/est`);
      stops.unshift(est.close);
    }
  }

  if (config.metrics.port !== 0) {
    const metrics = express();
    metrics.get(
      '/metrics',
      metricsHandler({
        registry: createMetricsRegistry({
          db: parts.database.db,
          devices: parts.registry,
          templates: parts.templates,
          alerts: parts.alerts,
          logger,
        }),
        temporalMetricsUrl: workerMetricsAddress ? workerMetricsUrl(workerMetricsAddress) : undefined,
        logger,
      }),
    );
    const server = await listen(metrics, config.metrics.host, config.metrics.port);
    logger.info({ component: 'metrics', url: `${server.url}/metrics` }, `metrics: ${server.url}/metrics`);
    stops.unshift(server.close);
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
