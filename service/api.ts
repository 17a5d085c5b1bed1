/** The HTTP API over the service's parts, with the workflow client it starts and queries runs through. */
import { deviceOperations } from '../api/routes/devices';
import { FleetInventory } from '../fleet/inventory';
import { type Connection } from '@temporalio/client';
import { type Express } from 'express';
import { BearerTokenVerifier } from '../access/bearer-tokens';
import { createApp } from '../api/app';
import { configurationOperations } from '../api/routes/configuration';
import { firmwareOperations } from '../api/routes/firmware';
import { FirmwareReports } from '../fleet/firmware-report';
import { EncryptionCodec } from '../custody/payload-codec';
import { IntermediateRotations } from '../pki/rotations';
import { CertificateRenewals } from '../provisioning/certificate-renewals';
import { certificateLifecycleOperations } from '../api/routes/certificate-lifecycle';
import { zeroTouchOperations } from '../api/routes/zero-touch';
import { fleetCredentialOperations } from '../api/routes/fleet-credentials';
import { discoveryOperations } from '../api/routes/discovery';
import { siteOperations } from '../api/routes/sites';
import { DiscoverySweeps } from '../discovery/sweeps';
import { DriftChecks } from '../configuration/drift-checks';
import { ConfigurationRollouts } from '../configuration/rollouts';
import { configurationJobOperations } from '../api/routes/configuration-jobs';
import { fleetHealthOperations } from '../api/routes/fleet-health';
import { FleetHealth } from '../fleet/fleet-health';
import { BulkImporter } from '../bulk/bulk-import';
import { BulkJobs } from '../bulk/bulk-jobs';
import { BulkJobStore } from '../bulk/bulk-job-store';
import { recordBreakGlassUse } from '../fleet/emergency-access';
import type { ServiceConfig } from './config';
import type { Logger } from '../foundation/logger';
import { deviceLifecycleOperations } from '../api/routes/device-lifecycle';
import {
  createCredentialRotations,
  createDeviceLifecycle,
  createProvisioningPlanner,
  createProvisioningService,
  createZeroTouchRegistrations,
  serviceClient,
  systemAuditTenant,
  type ServiceParts,
} from './parts';

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
  const credentialRotations = createCredentialRotations(parts, client, config.temporal.taskQueue);
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
      ...siteOperations(parts),
      ...discoveryOperations({
        store: parts.discovery,
        sweeps: new DiscoverySweeps({ store: parts.discovery, client, taskQueue: config.temporal.taskQueue }),
      }),
      ...configurationOperations(parts),
      ...deviceOperations(
        new FleetInventory({
          registry: parts.registry,
          runArchive: parts.runArchive,
          ca: parts.ca,
          certificates: parts.inventory,
          alerts: parts.alerts,
        }),
      ),
      ...firmwareOperations({ ...parts, firmwareReports: new FirmwareReports(parts.registry) }),
      ...deviceLifecycleOperations({
        lifecycle: createDeviceLifecycle(parts, client, config.temporal.taskQueue, planner),
        protocols: [...parts.adapters.keys()],
      }),
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
      ...fleetHealthOperations(
        new FleetHealth({
          client,
          taskQueue: config.temporal.taskQueue,
          policies: parts.fleetPolicies,
          registry: parts.registry,
          events: parts.healthEvents,
          credentialRotations,
        }),
      ),
      ...fleetCredentialOperations({ rotations: credentialRotations }),
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
    onBreakGlassUse: (use) => recordBreakGlassUse({ alerts: parts.alerts, audit: parts.audit }, use),
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
          ...(entry.principal.breakGlassReason ? { breakGlassReason: entry.principal.breakGlassReason } : {}),
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
