/** The worker: every workflow and activity of the service, over the parts it is given. */
import { fileURLToPath } from 'node:url';
import { Client } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createProvisioningActivities } from '../activities/provisioning';
import { payloadDataConverter } from '../custody/payload-codec';
import { CertificateRenewals } from '../provisioning/certificate-renewals';
import { createCertificateLifecycleActivities } from '../activities/certificate-lifecycle';
import { createZeroTouchActivities } from '../activities/zero-touch';
import { createDeviceLifecycleActivities } from '../activities/device-lifecycle';
import { DeviceWorkflows } from '../fleet/device-workflows';
import { ZeroTouchRegistrationStore } from '../zero-touch/registration-store';
import { ZeroTouchRunPlanner } from '../zero-touch/run-planner';
import { createDiscoveryActivities } from '../activities/discovery';
import { createCaBackupActivities } from '../activities/ca-backup';
import { createConfigurationActivities } from '../activities/configuration';
import { createAlertActivities } from '../activities/alerts';
import { createBulkActivities } from '../activities/bulk';
import { createFleetHealthActivities } from '../activities/fleet-health';
import { siteHealthSchedules } from '../fleet/health-schedules';
import { createCredentialRotationActivities } from '../activities/credential-rotation';
import { BulkJobStore } from '../bulk/bulk-job-store';
import { scheduledAlertRules, visibilityCounter } from '../alerts/rules';
import { activityPollers } from '../alerts/site-worker-rule';
import { createSiteRoutingActivities } from '../activities/site-routing';
import { siteTaskQueue, siteWorkerActivities, type WorkerSite } from '../contracts/site-workers';
import type { ServiceConfig } from './config';
import type { Logger } from '../foundation/logger';
import { createFirmwareVerdicts, createProvisioningPlanner, createZeroTouchRegistrations, systemAuditTenant, type ServiceParts } from './parts';

export const workflowsPath = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

/** Renew once two thirds of a certificate's lifetime has passed, unless configured otherwise. */
const defaultRenewalFraction = 2 / 3;

export interface ProvisioningWorkerOptions {
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
  /** How long configuration signatures last; the signer's default (an hour) unless a test shortens it. */
  configurationSignatureLifetimeMs?: number;
  logger: Logger;
}

export function createProvisioningWorker(parts: ServiceParts, options: ProvisioningWorkerOptions): Promise<Worker> {
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
    // Unattended runs try each step here first (local activities). Fewer side by side than regular
    // activities: each shares this process's CPU, and one that waits too long falls back to a task.
    maxConcurrentLocalActivityExecutions: options.capacity?.localActivities ?? 100,
    maxConcurrentWorkflowTaskExecutions: options.capacity?.workflowTasks ?? 100,
    activities: serviceActivities(parts, options),
  });
}

/**
 * An edge worker's share for one site: the device-facing activities only, on the site's own task
 * queue (`siteTaskQueue`). The central queue's workflows schedule them there when the site is set
 * to an edge worker; the CA, key custody and bookkeeping stay on the central workers (configurations
 * it pushes are signed there, by `prepareDeviceConfiguration`).
 */
export function createSiteWorker(parts: ServiceParts, options: ProvisioningWorkerOptions & { site: WorkerSite }): Promise<Worker> {
  const activities = serviceActivities(parts, options);
  return Worker.create({
    connection: options.connection,
    dataConverter: payloadDataConverter(parts.payloadKeyring),
    namespace: options.namespace,
    taskQueue: siteTaskQueue(options.taskQueue, options.site.tenantId, options.site.site),
    maxConcurrentActivityTaskExecutions: options.capacity?.activities ?? 200,
    activities: Object.fromEntries(siteWorkerActivities.map((name) => [name, activities[name]])),
  });
}

/** Every activity of the service, over the parts it is given. */
function serviceActivities(parts: ServiceParts, options: ProvisioningWorkerOptions) {
  const renewals = new CertificateRenewals({
    client: options.client,
    taskQueue: options.taskQueue,
    renewAtFraction: options.renewAtFraction ?? defaultRenewalFraction,
    searchAttributes: options.searchAttributes,
  });
  const planner = createProvisioningPlanner(parts);
  const { logger, configurationSignatureLifetimeMs } = options;
  const { audit, alerts, registry, ca, vault, adapterFor, configurations, templates, inventory } = parts;
  // What every activity that talks to a device needs: the device, its secrets, the CA, the records.
  const deviceWork = { audit, alerts, registry, ca, vault, adapterFor };
  return {
    ...createProvisioningActivities({
      ...deviceWork,
      configurations,
      templates,
      inventory,
      renewals,
      runArchive: parts.runArchive,
      firmware: createFirmwareVerdicts(parts),
      healthSchedules: siteHealthSchedules(options.client, parts.fleetPolicies, options.taskQueue, logger),
      configurationSignatureLifetimeMs,
      logger,
    }),
    ...createCertificateLifecycleActivities({ ...deviceWork, inventory, crls: parts.crls, renewals, logger }),
    ...createDeviceLifecycleActivities({ ...deviceWork, inventory, workflows: new DeviceWorkflows({ client: options.client }), logger }),
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
    ...createConfigurationActivities({ ...deviceWork, configurations, templates, configurationSignatureLifetimeMs, logger }),
    ...createFleetHealthActivities({ ...deviceWork, events: parts.healthEvents, policies: parts.fleetPolicies, logger }),
    ...createCredentialRotationActivities({ ...deviceWork, adapters: parts.adapters, fleetPolicies: parts.fleetPolicies, logger }),
    ...(options.caBackup
      ? createCaBackupActivities({ caBackup: parts.caBackup, alerts, audit, settings: options.caBackup, systemTenant: systemAuditTenant, logger })
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
        edgeSites: { sites: parts.siteWorkers, pollers: activityPollers(options.client) },
      }),
      webhook: options.alerts.webhook,
      logger: options.logger,
    }),
    ...createSiteRoutingActivities({ sites: parts.siteWorkers, registry: parts.registry }),
  };
}
