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
import express, { type Express } from 'express';
import { NativeConnection, Worker } from '@temporalio/worker';
import { ApiKeyStore } from '../access/api-keys';
import { BearerTokenVerifier } from '../access/bearer-tokens';
import { deviceAdapters } from '../adapters';
import type { DeviceNetworks } from '../adapters/device-networks';
import type { DeviceAdapter } from '../adapters/device-adapter';
import { createApp } from '../api/app';
import { createProvisioningActivities } from '../activities/provisioning';
import { TemplateCatalog } from '../configuration/templates';
import { CompliancePolicies } from '../configuration/compliance-policies';
import { DeviceConfigurations } from '../configuration/device-configurations';
import { dataKeyPurposeOf } from '../configuration/device-parameters';
import { configurationOperations } from '../api/routes/configuration';
import { createKeyCustody } from '../custody';
import type { KeyCustody } from '../custody/key-custody';
import { readKeyEncryptionKey, Sealer } from '../custody/sealing';
import { EncryptionCodec, loadPayloadKeyring, payloadDataConverter, type PayloadKeyring } from '../custody/payload-codec';
import { SecretVault } from '../custody/secret-vault';
import { openDatabase, type DatabaseHandle } from '../db/client';
import { CertificateAuthority } from '../pki/certificate-authority';
import { PkiPublication } from '../pki/publication';
import { IntermediateRotations } from '../pki/rotations';
import { CertificateRenewals } from '../provisioning/certificate-renewals';
import { createCertificateLifecycleActivities } from '../activities/certificate-lifecycle';
import { certificateLifecycleOperations } from '../api/routes/certificate-lifecycle';
import { createEstServer } from '../api/est-server';
import { zeroTouchOperations } from '../api/routes/zero-touch';
import { createZeroTouchActivities } from '../activities/zero-touch';
import { ZeroTouchRegistrations } from '../zero-touch/registrations';
import { ZeroTouchRegistrationStore } from '../zero-touch/registration-store';
import { ZeroTouchRunPlanner } from '../zero-touch/run-planner';
import { DiscoveryStore } from '../discovery/discovery-store';
import { createDiscoveryActivities } from '../activities/discovery';
import { discoveryOperations } from '../api/routes/discovery';
import { ensureDiscoverySchedules } from '../discovery/sweep-schedule';
import { DiscoverySweeps } from '../discovery/sweeps';
import { DriftPolicies, ensureDriftSchedules } from '../configuration/drift-policies';
import { DriftChecks } from '../configuration/drift-checks';
import { ConfigurationRollouts } from '../configuration/rollouts';
import { DataKeys } from '../custody/data-keys';
import { announceRevocation, followRevocations } from '../pki/revocation-notices';
import { CertificateAuthorityBackup } from '../pki/ca-backup';
import { applyCaBackupSchedule } from '../pki/ca-backup-schedule';
import { createCaBackupActivities } from '../activities/ca-backup';
import { createConfigurationActivities } from '../activities/configuration';
import { configurationJobOperations } from '../api/routes/configuration-jobs';
import type { CertificateInventory } from '../pki/certificate-inventory';
import { CertificateStore } from '../pki/certificate-store';
import { CrlPublisher } from '../pki/crl';
import { ensureCrlSchedule } from '../pki/crl-schedule';
import { OcspResponder } from '../pki/ocsp-responder';
import { AuditLog } from '../audit/audit-log';
import { createAlertActivities } from '../activities/alerts';
import { createBulkActivities } from '../activities/bulk';
import { BulkImporter } from '../bulk/bulk-import';
import { BulkJobs } from '../bulk/bulk-jobs';
import { BulkJobStore } from '../bulk/bulk-job-store';
import { AlertStore } from '../alerts/alert-store';
import { scheduledAlertRules, visibilityCounter } from '../alerts/rules';
import { ensureAlertSchedule } from '../alerts/schedule';
import { createMetricsRegistry, metricsHandler } from '../observability/metrics';
import { workerMetricsUrl } from '../observability/runtime-metrics';
import { ApprovalPolicies } from '../provisioning/approval-policies';
import { ProvisioningPlanner } from '../provisioning/planner';
import { ProvisioningService } from '../provisioning/provisioning-service';
import { DeviceRegistry } from '../registry/device-registry';
import type { ServiceConfig } from './config';
import { NotImplementedError } from '../foundation/errors';
import type { Logger } from '../foundation/logger';
import { connectWhenReady, ensureSearchAttributes, installTemporalRuntime } from './temporal';

/** The audit chain for events that belong to no tenant, such as logins that failed. */
export const systemAuditTenant = '_system';

export const workflowsPath = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

/** The domain parts every role shares, built once per process. */
export interface ServiceParts {
  database: DatabaseHandle;
  apiKeys: ApiKeyStore;
  approvals: ApprovalPolicies;
  audit: AuditLog;
  /** Where every part of the service raises alerts (delivered by the scheduled evaluation). */
  alerts: AlertStore;
  /** Keys of the codec that encrypts every workflow payload; clients and workers must share them. */
  payloadKeyring: PayloadKeyring;
  custody: KeyCustody;
  ca: CertificateAuthority;
  /** Where CRLs, CA certificates and OCSP are published (the URLs certificates carry). */
  publication: PkiPublication;
  inventory: CertificateInventory;
  crls: CrlPublisher;
  ocsp: OcspResponder;
  vault: SecretVault;
  templates: TemplateCatalog;
  /** The tenant's compliance policy and the exceptions approvers grant. */
  compliance: CompliancePolicies;
  /** Devices' configuration parameters, rendering, compliance findings and push history. */
  configurations: DeviceConfigurations;
  /** Each tenant's drift detection schedule and what it does with a drifted device. */
  driftPolicies: DriftPolicies;
  /** Encrypted backups of the CA (certificates, CRLs, software keys, HSM key references). */
  caBackup: CertificateAuthorityBackup;
  registry: DeviceRegistry;
  /** Discovery sites, what their sweeps found, and the conflicts and moves they surfaced. */
  discovery: DiscoveryStore;
  /** Where devices may be reached (DEVICE_NETWORKS, and loopback in development); the adapters connect nowhere else. */
  networks: DeviceNetworks;
  adapters: ReadonlyMap<string, DeviceAdapter>;
  adapterFor: (protocol: string) => DeviceAdapter;
  close(): Promise<void>;
}

export async function createServiceParts(config: ServiceConfig, logger: Logger): Promise<ServiceParts> {
  const database = await openDatabase({ url: config.database.url, embeddedDir: config.database.embeddedDir });
  const keyEncryptionKey = await readKeyEncryptionKey({ keyEncryptionKey: config.keyEncryptionKey, dataDir: config.dataDir }, logger);
  const sealer = new Sealer(keyEncryptionKey);
  const custody = await createKeyCustody(config.keyCustody, { db: database.db, sealer });
  const publication = new PkiPublication(config.ca.publicUrl);
  const networks = config.deviceNetworks;
  const adapters = deviceAdapters(networks);
  const ca = new CertificateAuthority({
    db: database.db,
    custody,
    settings: config.ca,
    publication,
    networkHost: (protocol, address) => adapters.get(protocol)?.networkHost(address),
    logger,
  });
  const crls = new CrlPublisher({ db: database.db, ca, settings: config.ca, logger });
  const ocsp = new OcspResponder({ db: database.db, ca, custody, settings: config.ca, logger });
  // Relying parties learn of a revocation at once: a new CRL from the issuer, no cached OCSP "good"
  // here or in any other process sharing the database.
  ca.onRevoked(async (revoked) => {
    ocsp.onRevoked(revoked);
    await announceRevocation(database, revoked.id);
    if (revoked.issuerCertificateId) await crls.publish(revoked.issuerCertificateId);
  });
  const stopFollowingRevocations = await followRevocations(database, ocsp, logger);
  const templates = new TemplateCatalog({ db: database.db, adapters });
  await templates.ensureBuiltIns();
  const audit = new AuditLog({ db: database.db, logger });
  // Configuration secrets are sealed under per-tenant data keys that key custody keeps wrapped.
  const vault = new SecretVault({
    db: database.db,
    sealer,
    enveloped: { keys: new DataKeys({ db: database.db, custody }), dataKeyPurpose: dataKeyPurposeOf },
  });
  const registry = new DeviceRegistry(database.db);
  const compliance = new CompliancePolicies(database.db);
  return {
    database,
    apiKeys: new ApiKeyStore(database.db),
    audit,
    alerts: new AlertStore({ db: database.db, recordAudit: (event) => audit.append(event) }),
    payloadKeyring: loadPayloadKeyring({ payloadKeys: config.payloadEncryption.keys, keyEncryptionKey }),
    approvals: new ApprovalPolicies(database.db),
    custody,
    ca,
    publication,
    inventory: new CertificateStore(database.db),
    crls,
    ocsp,
    vault,
    templates,
    compliance,
    configurations: new DeviceConfigurations({ db: database.db, vault, templates, compliance, registry }),
    driftPolicies: new DriftPolicies(database.db),
    caBackup: new CertificateAuthorityBackup({ db: database.db, sealer, custody, logger }),
    registry,
    discovery: new DiscoveryStore({ db: database.db, networks, registry }),
    networks,
    adapters,
    adapterFor: (protocol) => {
      const adapter = adapters.get(protocol);
      if (!adapter) throw new NotImplementedError(`no adapter for protocol ${protocol}`);
      return adapter;
    },
    async close() {
      await stopFollowingRevocations();
      await custody.close();
      await database.close();
    },
  };
}

/** A Temporal client that reads and writes payloads with the service's codec. */
export function serviceClient(parts: ServiceParts, connection: Connection, namespace: string): Client {
  return new Client({ connection, namespace, dataConverter: payloadDataConverter(parts.payloadKeyring) });
}

/** Renew once two thirds of a certificate's lifetime has passed, unless configured otherwise. */
const defaultRenewalFraction = 2 / 3;

export function createProvisioningWorker(
  parts: ServiceParts,
  options: {
    connection: NativeConnection;
    /** For the activities that read Temporal's visibility (alert rules). */
    client: Client;
    namespace: string;
    taskQueue: string;
    alerts: ServiceConfig['alerts'];
    capacity?: ServiceConfig['worker'];
    /** Fraction of a device certificate's lifetime after which it is renewed. */
    renewAtFraction?: number;
    /** False where the cluster has no custom search attributes (the time-skipping test server). */
    searchAttributes?: boolean;
    /** Scanner settings of discovery sweeps; the scanners' defaults when absent. */
    discovery?: ServiceConfig['discovery'];
    /** Scheduled CA backups; none when absent. */
    caBackup?: ServiceConfig['caBackup'];
    logger: Logger;
  },
): Promise<Worker> {
  const renewals = new CertificateRenewals({
    client: options.client,
    taskQueue: options.taskQueue,
    renewAtFraction: options.renewAtFraction ?? defaultRenewalFraction,
    searchAttributes: options.searchAttributes,
  });
  const planner = createProvisioningPlanner(parts);
  return Worker.create({
    connection: options.connection,
    dataConverter: payloadDataConverter(parts.payloadKeyring),
    namespace: options.namespace,
    taskQueue: options.taskQueue,
    workflowsPath,
    // A bulk job keeps up to its concurrency of device runs in flight at once; the worker must
    // hold that many workflows in cache and run activities for them side by side.
    maxCachedWorkflows: options.capacity?.cachedWorkflows ?? 2_000,
    maxConcurrentActivityTaskExecutions: options.capacity?.activities ?? 200,
    maxConcurrentWorkflowTaskExecutions: options.capacity?.workflowTasks ?? 100,
    activities: {
      ...createProvisioningActivities({ ...parts, renewals, logger: options.logger }),
      ...createCertificateLifecycleActivities({ ...parts, renewals, logger: options.logger }),
      ...createZeroTouchActivities({
        runs: new ZeroTouchRunPlanner({
          store: new ZeroTouchRegistrationStore(parts.database.db),
          vault: parts.vault,
          adapters: parts.adapters,
          planner,
        }),
        alerts: parts.alerts,
        audit: parts.audit,
        logger: options.logger,
      }),
      ...createBulkActivities({ store: new BulkJobStore(parts.database.db), planner, client: options.client }),
      ...createConfigurationActivities({ ...parts, logger: options.logger }),
      ...(options.caBackup
        ? createCaBackupActivities({ ...parts, settings: options.caBackup, systemTenant: systemAuditTenant, logger: options.logger })
        : {}),
      ...createDiscoveryActivities({
        discovery: parts.discovery,
        alerts: parts.alerts,
        audit: parts.audit,
        zeroTouch: createZeroTouchRegistrations(parts, options.client, options.taskQueue),
        networks: parts.networks,
        logger: options.logger,
        ...(options.discovery
          ? { scanTimeoutMs: options.discovery.scanTimeoutMs, scanners: { snmp: { communities: options.discovery.snmpCommunities } } }
          : {}),
      }),
      ...createAlertActivities({
        alerts: parts.alerts,
        rules: scheduledAlertRules({
          db: parts.database.db,
          devices: parts.registry,
          alerts: parts.alerts,
          count: visibilityCounter(options.client),
          settings: options.alerts.settings,
        }),
        webhook: options.alerts.webhook,
        logger: options.logger,
      }),
    },
  });
}

/** Zero-touch registrations, fed by discovery (worker) and by DHCP events and enrolment tokens (API). */
export function createZeroTouchRegistrations(parts: ServiceParts, client: Client, taskQueue: string): ZeroTouchRegistrations {
  return new ZeroTouchRegistrations({
    store: new ZeroTouchRegistrationStore(parts.database.db),
    vault: parts.vault,
    client,
    taskQueue,
    adapters: parts.adapters,
    networks: parts.networks,
    templates: parts.templates,
  });
}

/** The one path into a provisioning run: every request is checked and planned here, whoever makes it. */
export function createProvisioningPlanner(parts: ServiceParts): ProvisioningPlanner {
  return new ProvisioningPlanner({
    registry: parts.registry,
    templates: parts.templates,
    configurations: parts.configurations,
    adapters: parts.adapters,
    networks: parts.networks,
    approvals: parts.approvals,
  });
}

export function createProvisioningService(
  parts: ServiceParts,
  client: Client,
  taskQueue: string,
  planner = createProvisioningPlanner(parts),
): ProvisioningService {
  return new ProvisioningService({ client, taskQueue, planner, vault: parts.vault, configurations: parts.configurations });
}

/** The HTTP API over the service's parts, talking to Temporal through `connection`. */
export function createServiceApi(
  parts: ServiceParts,
  options: { config: ServiceConfig; connection: Connection; logger: Logger },
): Express {
  const { config, connection, logger } = options;
  const client = serviceClient(parts, connection, config.temporal.namespace);
  const planner = createProvisioningPlanner(parts);
  const provisioning = createProvisioningService(parts, client, config.temporal.taskQueue, planner);
  const bulkJobs = new BulkJobStore(parts.database.db);
  const importer = new BulkImporter({
    store: bulkJobs,
    client,
    taskQueue: config.temporal.taskQueue,
    vault: parts.vault,
    registry: parts.registry,
    adapters: parts.adapters,
    networks: parts.networks,
    planner,
  });
  const renewals = new CertificateRenewals({
    client,
    taskQueue: config.temporal.taskQueue,
    renewAtFraction: config.ca.renewalAtFraction,
  });
  return createApp({
    bulk: { importer, jobs: new BulkJobs({ store: bulkJobs, client, importer }), concurrentUploads: config.bulk.concurrentUploads },
    codec: {
      codec: new EncryptionCodec(parts.payloadKeyring),
      allowedOrigins: config.payloadEncryption.allowedOrigins,
      namespaces: [config.temporal.namespace],
      ...(config.payloadEncryption.uiDecodeTenant ? { uiDecodeTenant: config.payloadEncryption.uiDecodeTenant } : {}),
    },
    provisioning,
    pki: { crls: parts.crls, ocsp: parts.ocsp },
    protocols: [...parts.adapters.keys()],
    extraOperations: [
      ...certificateLifecycleOperations({
        renewals,
        rotations: new IntermediateRotations({ client, taskQueue: config.temporal.taskQueue, inventory: parts.inventory }),
      }),
      ...discoveryOperations({
        store: parts.discovery,
        sweeps: new DiscoverySweeps({ store: parts.discovery, client, taskQueue: config.temporal.taskQueue }),
      }),
      ...configurationOperations(parts),
      ...configurationJobOperations({
        rollouts: new ConfigurationRollouts({
          client,
          taskQueue: config.temporal.taskQueue,
          templates: parts.templates,
          configurations: parts.configurations,
          registry: parts.registry,
        }),
        driftChecks: new DriftChecks({ client, taskQueue: config.temporal.taskQueue, policies: parts.driftPolicies }),
      }),
      ...zeroTouchOperations({
        registrations: createZeroTouchRegistrations(parts, client, config.temporal.taskQueue),
        protocols: [...parts.adapters.keys()],
        failedEnrolmentTokens: config.authentication.failedEnrolmentTokens,
        publicBaseUrl: () => parts.publication.baseUrl,
      }),
    ],
    ca: parts.ca,
    inventory: parts.inventory,
    registry: parts.registry,
    templates: parts.templates,
    apiKeys: parts.apiKeys,
    approvals: parts.approvals,
    audit: parts.audit,
    alerts: parts.alerts,
    bearerTokens: config.authentication.bearerTokens ? new BearerTokenVerifier(config.authentication.bearerTokens) : undefined,
    onAuthenticationFailure: async (failure) => {
      logger.warn({ ...failure }, 'authentication failed');
      // Failed logins name no tenant we can trust, so they share the system chain.
      await parts.audit.append({
        tenantId: systemAuditTenant,
        actor: failure.address ?? 'unknown',
        actorType: 'anonymous',
        action: 'auth.login_failed',
        outcome: 'failure',
        details: { reason: failure.reason, method: failure.method, path: failure.path },
      });
    },
    recordOperation: async (entry) => {
      const [targetType, targetId] = Object.entries(entry.params)[0] ?? [];
      await parts.audit.append({
        tenantId: entry.principal.tenantId,
        actor: entry.principal.subject,
        actorType: entry.principal.kind === 'api-key' ? 'api-key' : 'user',
        action: `api.${entry.operationId.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}`,
        targetType,
        targetId,
        outcome: entry.outcome,
        details: {
          method: entry.method,
          path: entry.path,
          status: entry.status,
          // Which of the principal's credentials acted, when that is not the principal's own name.
          ...(entry.principal.credential !== entry.principal.subject ? { credential: entry.principal.credential } : {}),
          ...(entry.error ? { error: entry.error } : {}),
        },
      });
    },
    rateLimitPerMinute: config.authentication.rateLimitPerMinute,
    trustProxy: config.http.trustProxy,
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

async function listen(app: Express, host: string, port: number): Promise<{ url: string; close: () => Promise<void> }> {
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
  if (runsWorker && !config.roles.includes('api') && !config.ca.publicUrl) {
    logger.warn(
      { component: 'pki' },
      'PKI_PUBLIC_URL is not set and this process runs no API: certificates it issues will name no CRL or OCSP location',
    );
  }

  await parts.ca.completeServiceHierarchies().catch((error: unknown) => {
    // The root key may be offline; the services intermediate then comes with its first use.
    logger.warn({ err: error, component: 'pki' }, 'could not give every tenant its services intermediate yet');
  });

  const connection: Connection = await connectWhenReady(temporalAddress);
  const added = await ensureSearchAttributes(connection, config.temporal.namespace);
  if (added.length > 0) logger.info({ added }, 'registered search attributes');
  const stops: Array<() => Promise<void>> = [];
  let apiUrl: string | undefined;

  if (runsWorker) {
    const workerConnection = await NativeConnection.connect({ address: temporalAddress });
    const client = serviceClient(parts, connection, config.temporal.namespace);
    const worker = await createProvisioningWorker(parts, {
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
    });
    await ensureAlertSchedule(client, { taskQueue: config.temporal.taskQueue, every: config.alerts.evaluationInterval });
    await ensureCrlSchedule(client, { taskQueue: config.temporal.taskQueue, everyMinutes: config.ca.crlPublishIntervalMinutes });
    await ensureDiscoverySchedules(client, parts.discovery, config.temporal.taskQueue);
    await ensureDriftSchedules(client, parts.driftPolicies, config.temporal.taskQueue);
    await applyCaBackupSchedule(client, { taskQueue: config.temporal.taskQueue, everyHours: config.caBackup?.intervalHours });
    const running = worker.run();
    logger.info({ component: 'worker', taskQueue: config.temporal.taskQueue }, `worker: task queue ${config.temporal.taskQueue} on ${temporalAddress}`);
    stops.push(async () => {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running;
      await workerConnection.close();
    });
  }

  if (config.roles.includes('api')) {
    await ensureBootstrapApiKey(parts.apiKeys, config.dataDir, logger);
    const app = createServiceApi(parts, { config, connection, logger });
    const server = await listen(app, config.http.host, config.http.port);
    apiUrl = server.url;
    parts.publication.useBaseUrlIfUnset(apiUrl);
    logger.info({ component: 'api', url: apiUrl }, `api: ${apiUrl}`);
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
