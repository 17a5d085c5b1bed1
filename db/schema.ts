/**
 * The one schema, shared by the embedded database and a PostgreSQL server. Provisioning *status*
 * deliberately has no table: it lives in the workflows and is read by querying them.
 */
import { sql } from 'drizzle-orm';
import {
  boolean,
  customType,
  index,
  integer,
  jsonb,
  pgTable,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from 'drizzle-orm/pg-core';

const bytea = customType<{ data: Uint8Array; driverData: Uint8Array }>({
  dataType: () => 'bytea',
  toDriver: (value) => value,
  fromDriver: (value) => new Uint8Array(value),
});

const timestamps = {
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
};

/** The device registry: what each device is, where it is and how far it has come. */
export const devices = pgTable(
  'devices',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: text('tenant_id').notNull(),
    deviceId: text('device_id').notNull(),
    serialNumber: text('serial_number').notNull(),
    macAddress: text('mac_address').notNull(),
    /** Protocol-specific address (`host[:port]` for IP devices); each adapter parses its own. */
    address: text('address').notNull(),
    protocol: text('protocol').notNull(),
    deviceType: text('device_type').notNull(),
    site: text('site').notNull(),
    name: text('name'),
    manufacturer: text('manufacturer'),
    model: text('model'),
    firmwareVersion: text('firmware_version'),
    firmwareHash: text('firmware_hash'),
    /** Fingerprint of the certificate the device presented before we issued it one. */
    factoryCertificateFingerprint: text('factory_certificate_fingerprint'),
    lifecycleState: text('lifecycle_state', {
      enum: ['registered', 'provisioning', 'provisioned', 'active', 'failed', 'decommissioned'],
    })
      .notNull()
      .default('registered'),
    activeCertificateId: uuid('active_certificate_id'),
    /** When the active certificate expires, kept beside it so the inventory filters on it without a join. */
    certificateExpiresAt: timestamp('certificate_expires_at', { withTimezone: true }),
    configurationTemplate: text('configuration_template'),
    configurationVersion: integer('configuration_version'),
    configurationHash: text('configuration_hash'),
    activatedAt: timestamp('activated_at', { withTimezone: true }),
    /** What the provisioning request said about the device (`metadata`), kept with it. */
    metadata: jsonb('metadata').$type<Record<string, string>>().notNull().default({}),
    /** Liveness after activation, from the health sweeps: `unknown` until first probed. */
    health: text('health', { enum: ['unknown', 'online', 'offline'] }).notNull().default('unknown'),
    healthCheckedAt: timestamp('health_checked_at', { withTimezone: true }),
    /** When `health` last changed. */
    healthChangedAt: timestamp('health_changed_at', { withTimezone: true }),
    /** Probes failed in a row; reset by an answer. */
    consecutiveProbeFailures: integer('consecutive_probe_failures').notNull().default(0),
    /** The device's own uptime at the last answer, in seconds, where the protocol reports it. */
    uptimeSeconds: integer('uptime_seconds'),
    lastRebootAt: timestamp('last_reboot_at', { withTimezone: true }),
    /** The firmware verdict against the tenant's catalogue: `unchecked` until judged. */
    firmwareStatus: text('firmware_status', { enum: ['unchecked', 'approved', 'unknown', 'known_bad'] })
      .notNull()
      .default('unchecked'),
    /** How the verdict was reached (`digest` or `version` only) and why. */
    firmwareVerdict: jsonb('firmware_verdict').$type<Record<string, unknown>>(),
    credentialsRotatedAt: timestamp('credentials_rotated_at', { withTimezone: true }),
    decommissionedAt: timestamp('decommissioned_at', { withTimezone: true }),
    decommissionReason: text('decommission_reason'),
    /** The device that took this one's place (RMA), or the one this device replaced. */
    replacedBy: text('replaced_by'),
    replacementOf: text('replacement_of'),
    ...timestamps,
  },
  (table) => [
    uniqueIndex('devices_tenant_device_key').on(table.tenantId, table.deviceId),
    uniqueIndex('devices_tenant_serial_key').on(table.tenantId, table.serialNumber),
    uniqueIndex('devices_tenant_mac_key').on(table.tenantId, table.macAddress),
    // The inventory's filters, each with the device id as the keyset order's tie-breaker.
    index('devices_tenant_site_idx').on(table.tenantId, table.site, table.deviceId),
    index('devices_tenant_state_idx').on(table.tenantId, table.lifecycleState, table.deviceId),
    index('devices_tenant_health_idx').on(table.tenantId, table.health, table.deviceId),
    index('devices_tenant_firmware_idx').on(table.tenantId, table.firmwareStatus, table.deviceId),
    index('devices_tenant_protocol_idx').on(table.tenantId, table.protocol, table.deviceId),
    index('devices_tenant_certificate_expiry_idx').on(table.tenantId, table.certificateExpiresAt),
  ],
);

/**
 * Every provisioning run's final DeviceProvisioningRecord, written once by the run itself when it
 * closes, so that a run outlives the retention of its workflow history. Append-only (triggers).
 */
export const provisioningRuns = pgTable(
  'provisioning_runs',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: text('tenant_id').notNull(),
    deviceId: text('device_id').notNull(),
    workflowId: text('workflow_id').notNull(),
    runId: text('run_id').notNull(),
    provisioningMethod: text('provisioning_method').notNull(),
    outcome: text('outcome', { enum: ['completed', 'failed', 'cancelled'] }).notNull(),
    startedAt: timestamp('started_at', { withTimezone: true }).notNull(),
    finishedAt: timestamp('finished_at', { withTimezone: true }).notNull(),
    certificateSerial: text('certificate_serial'),
    /** The record as the `status` query answered it at the end. */
    record: jsonb('record').notNull(),
    archivedAt: timestamp('archived_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (table) => [
    uniqueIndex('provisioning_runs_run_key').on(table.runId),
    index('provisioning_runs_device_idx').on(table.tenantId, table.deviceId, table.finishedAt),
    index('provisioning_runs_workflow_idx').on(table.tenantId, table.workflowId, table.finishedAt),
  ],
);

/** Health transitions (online, offline, rebooted, certificate mismatch): a row per change, not per probe. */
export const deviceHealthEvents = pgTable(
  'device_health_events',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: text('tenant_id').notNull(),
    deviceId: text('device_id').notNull(),
    kind: text('kind', { enum: ['online', 'offline', 'rebooted', 'certificate_mismatch'] }).notNull(),
    details: jsonb('details').notNull(),
    occurredAt: timestamp('occurred_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (table) => [index('device_health_events_device_idx').on(table.tenantId, table.deviceId, table.occurredAt)],
);

/**
 * A tenant's fleet policy: how often active devices are probed and when one counts as offline,
 * what unknown or known-bad firmware does, and how often per-device management secrets rotate.
 * Tenants without a row get the service's defaults.
 */
export const fleetPolicies = pgTable('fleet_policies', {
  tenantId: text('tenant_id').primaryKey(),
  healthChecksEnabled: boolean('health_checks_enabled').notNull(),
  healthCheckIntervalSeconds: integer('health_check_interval_seconds').notNull(),
  offlineAfterFailures: integer('offline_after_failures').notNull(),
  healthProbeConcurrency: integer('health_probe_concurrency').notNull(),
  firmwareUnknown: text('firmware_unknown', { enum: ['block', 'approve', 'alert'] }).notNull(),
  firmwareKnownBad: text('firmware_known_bad', { enum: ['block', 'approve', 'alert'] }).notNull(),
  /** Days between rotations of per-device management secrets; null: only on request. */
  credentialRotationDays: integer('credential_rotation_days'),
  updatedBy: text('updated_by').notNull(),
  ...timestamps,
});

/** A tenant's firmware catalogue: versions approved (with image digests) or known bad (with a reason). */
export const firmwareCatalogue = pgTable(
  'firmware_catalogue',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: text('tenant_id').notNull(),
    vendor: text('vendor').notNull(),
    model: text('model').notNull(),
    version: text('version').notNull(),
    status: text('status', { enum: ['approved', 'known_bad'] }).notNull(),
    /** SHA-256 of the firmware image, lower-case hex; null where the vendor publishes none. */
    sha256: text('sha256'),
    reason: text('reason'),
    createdBy: text('created_by').notNull(),
    ...timestamps,
  },
  (table) => [uniqueIndex('firmware_catalogue_key').on(table.tenantId, table.vendor, table.model, table.version)],
);

/** The brief's DeviceCertificate, for device, intermediate and root certificates alike. */
export const certificates = pgTable(
  'certificates',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: text('tenant_id').notNull(),
    /** Null for CA certificates. */
    deviceId: text('device_id'),
    /** Site of an intermediate CA, and of the device for a device certificate. */
    site: text('site'),
    /**
     * `services-intermediate` the CA of the service's own identities: `service`, its TLS client
     * identity, `server`, its TLS server identity (EST), and `configuration-signing`, the tenant's
     * signer of device configurations (key in CA custody); `ocsp` is a CA's delegated OCSP
     * responder (id-kp-OCSPSigning), issued by that CA.
     */
    certificateType: text('certificate_type', {
      enum: ['device', 'intermediate', 'services-intermediate', 'root', 'service', 'server', 'ocsp', 'configuration-signing'],
    }).notNull(),
    serialNumber: text('serial_number').notNull(),
    /** SHA-256 of the DER certificate, lower-case hex. */
    fingerprint: text('fingerprint').notNull(),
    publicKey: text('public_key').notNull(),
    /** Key custody reference (`pkcs11:...`, `software:...`) or `device:<id>` for keys that never leave the device. */
    privateKeyLocation: text('private_key_location').notNull(),
    issuedAt: timestamp('issued_at', { withTimezone: true }).notNull(),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
    revocationReason: text('revocation_reason'),
    /**
     * A CA that no longer issues but stays valid (and keeps publishing its CRL) until the
     * certificates it issued have moved to its successor: the overlap window of a rotation.
     */
    retiredAt: timestamp('retired_at', { withTimezone: true }),
    /** The certificate this one replaced at renewal or rotation. */
    renewalOfCertificateId: uuid('renewal_of_certificate_id'),
    issuerCertificateId: uuid('issuer_certificate_id'),
    subjectDn: text('subject_dn').notNull(),
    issuerDn: text('issuer_dn').notNull(),
    subject: jsonb('subject').notNull(),
    extensions: jsonb('extensions').notNull(),
    pem: text('pem').notNull(),
    /**
     * Set for issuance on behalf of a provisioning run: a second request with the same key returns
     * the certificate already issued, so a retried activity never issues twice.
     */
    issuanceKey: text('issuance_key'),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (table) => [
    uniqueIndex('certificates_serial_key').on(table.serialNumber),
    uniqueIndex('certificates_issuance_key').on(table.issuanceKey),
    index('certificates_tenant_device_idx').on(table.tenantId, table.deviceId),
    // At most one issuing CA per tenant (root) and per tenant and site (intermediate).
    uniqueIndex('certificates_live_root_key')
      .on(table.tenantId)
      .where(sql`certificate_type = 'root' and revoked_at is null and retired_at is null`),
    uniqueIndex('certificates_live_intermediate_key')
      .on(table.tenantId, table.site)
      .where(sql`certificate_type = 'intermediate' and revoked_at is null and retired_at is null`),
    uniqueIndex('certificates_live_server_key')
      .on(table.tenantId)
      .where(sql`certificate_type = 'server' and revoked_at is null`),
    uniqueIndex('certificates_live_ocsp_key')
      .on(table.issuerCertificateId)
      .where(sql`certificate_type = 'ocsp' and revoked_at is null`),
    index('certificates_issuer_idx').on(table.issuerCertificateId),
    index('certificates_live_expiry_idx')
      .on(table.tenantId, table.expiresAt)
      .where(sql`revoked_at is null`),
    uniqueIndex('certificates_live_service_key')
      .on(table.tenantId)
      .where(sql`certificate_type = 'service' and revoked_at is null`),
  ],
);

/**
 * Every CRL a CA has signed, newest by `crl_number`: the number only grows (RFC 5280 5.2.3), so it
 * is allocated here, and the DER is served as signed.
 */
export const certificateRevocationLists = pgTable(
  'certificate_revocation_lists',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: text('tenant_id').notNull(),
    caCertificateId: uuid('ca_certificate_id').notNull(),
    crlNumber: integer('crl_number').notNull(),
    thisUpdate: timestamp('this_update', { withTimezone: true }).notNull(),
    nextUpdate: timestamp('next_update', { withTimezone: true }).notNull(),
    revokedCount: integer('revoked_count').notNull(),
    der: bytea('der').notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (table) => [uniqueIndex('certificate_revocation_lists_number_key').on(table.caCertificateId, table.crlNumber)],
);

export type CertificateRevocationListRow = typeof certificateRevocationLists.$inferSelect;

/** Private keys of the software key store, sealed with AES-256-GCM; never stored in the clear. */
export const softwareKeys = pgTable('software_keys', {
  id: uuid('id').primaryKey().defaultRandom(),
  label: text('label').notNull(),
  algorithm: text('algorithm').notNull(),
  publicKeySpki: bytea('public_key_spki').notNull(),
  sealedPrivateKey: bytea('sealed_private_key').notNull(),
  /** Identifies the key-encryption key, so keys can be re-sealed when it rotates. */
  keyEncryptionKeyId: text('key_encryption_key_id').notNull(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
});

/**
 * Data keys of envelope encryption: each seals one tenant's secrets of one kind (configuration
 * secrets) and is itself kept only wrapped by a key in key custody (the HSM), so the database and
 * the key-encryption key together still cannot open those secrets.
 */
export const dataEncryptionKeys = pgTable(
  'data_encryption_keys',
  {
    /** The data key's id, as stored next to every value it sealed. */
    id: text('id').primaryKey(),
    tenantId: text('tenant_id').notNull(),
    purpose: text('purpose').notNull(),
    wrappedKey: bytea('wrapped_key').notNull(),
    /** The custody key that wrapped it (a PKCS#11 URI or a software key location). */
    wrappingKeyLocation: text('wrapping_key_location').notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (table) => [uniqueIndex('data_encryption_keys_tenant_purpose').on(table.tenantId, table.purpose)],
);

/** Device secrets (initial credentials) sealed with AES-256-GCM; workflows only ever see a reference. */
export const deviceSecrets = pgTable(
  'device_secrets',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: text('tenant_id').notNull(),
    deviceId: text('device_id').notNull(),
    purpose: text('purpose').notNull(),
    sealedValue: bytea('sealed_value').notNull(),
    keyEncryptionKeyId: text('key_encryption_key_id').notNull(),
    ...timestamps,
  },
  (table) => [uniqueIndex('device_secrets_key').on(table.tenantId, table.deviceId, table.purpose)],
);

/** Configuration templates; `tenantId` is null for the built-in ones every tenant can use. */
export const configurationTemplates = pgTable(
  'configuration_templates',
  {
    id: text('id').primaryKey(),
    tenantId: text('tenant_id'),
    name: text('name').notNull(),
    description: text('description'),
    deviceType: text('device_type'),
    protocol: text('protocol').notNull(),
    version: integer('version').notNull().default(1),
    builtIn: boolean('built_in').notNull().default(false),
    body: jsonb('body').notNull(),
    /** The per-device parameters the body uses (`{{params.x}}`, `{{secret.y}}`): type, default, description. */
    parameters: jsonb('parameters').notNull().default({}),
    ...timestamps,
  },
  (table) => [index('configuration_templates_tenant_idx').on(table.tenantId)],
);

export type DeviceRow = typeof devices.$inferSelect;
export type CertificateRow = typeof certificates.$inferSelect;
export type NewCertificateRow = typeof certificates.$inferInsert;
export type SoftwareKeyRow = typeof softwareKeys.$inferSelect;
export type ConfigurationTemplateRow = typeof configurationTemplates.$inferSelect;

/** API keys: the secret is shown once at creation; only its SHA-256 is kept. */
export const apiKeys = pgTable(
  'api_keys',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: text('tenant_id').notNull(),
    name: text('name').notNull(),
    /** One of the roles access/ knows; read back through its store, which refuses others. */
    role: text('role').notNull(),
    /** The public part of the key (`dps_<prefix>_...`), to find the row without scanning hashes. */
    prefix: text('prefix').notNull(),
    secretHash: text('secret_hash').notNull(),
    /** Who acts when the key is used: its creator's principal, one named by the operator, or the key itself. */
    principal: text('principal').notNull(),
    createdBy: text('created_by').notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    expiresAt: timestamp('expires_at', { withTimezone: true }),
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
    lastUsedAt: timestamp('last_used_at', { withTimezone: true }),
    /** A break-glass credential: usable only with a stated reason, every use alerted and audited. */
    breakGlass: boolean('break_glass').notNull().default(false),
  },
  (table) => [uniqueIndex('api_keys_prefix_key').on(table.prefix), index('api_keys_tenant_idx').on(table.tenantId)],
);

/**
 * The audit trail, append-only and hash-chained per tenant: each event carries the hash of the one
 * before it, so a changed or removed row breaks the chain. Triggers refuse UPDATE and DELETE.
 */
export const auditEvents = pgTable(
  'audit_events',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: text('tenant_id').notNull(),
    /** 1, 2, 3... per tenant, without gaps. */
    sequence: integer('sequence').notNull(),
    occurredAt: timestamp('occurred_at', { withTimezone: true }).notNull(),
    actor: text('actor').notNull(),
    actorType: text('actor_type', { enum: ['user', 'api-key', 'system', 'workflow', 'anonymous'] }).notNull(),
    action: text('action').notNull(),
    targetType: text('target_type'),
    targetId: text('target_id'),
    outcome: text('outcome', { enum: ['success', 'failure'] }).notNull(),
    details: jsonb('details').notNull(),
    previousHash: text('previous_hash').notNull(),
    hash: text('hash').notNull(),
  },
  (table) => [
    uniqueIndex('audit_events_tenant_sequence_key').on(table.tenantId, table.sequence),
    index('audit_events_tenant_action_idx').on(table.tenantId, table.action),
  ],
);

/** Alerts raised by the rules evaluated on a schedule, de-duplicated by fingerprint while open. */
export const alerts = pgTable(
  'alerts',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: text('tenant_id').notNull(),
    kind: text('kind').notNull(),
    severity: text('severity', { enum: ['info', 'warning', 'critical'] }).notNull(),
    /** What makes two raisings the same alert (e.g. kind + certificate id). */
    fingerprint: text('fingerprint').notNull(),
    summary: text('summary').notNull(),
    details: jsonb('details').notNull(),
    firstRaisedAt: timestamp('first_raised_at', { withTimezone: true }).notNull().defaultNow(),
    lastRaisedAt: timestamp('last_raised_at', { withTimezone: true }).notNull().defaultNow(),
    resolvedAt: timestamp('resolved_at', { withTimezone: true }),
    deliveredAt: timestamp('delivered_at', { withTimezone: true }),
    deliveryAttempts: integer('delivery_attempts').notNull().default(0),
    lastDeliveryError: text('last_delivery_error'),
  },
  (table) => [
    uniqueIndex('alerts_open_fingerprint_key')
      .on(table.tenantId, table.fingerprint)
      .where(sql`resolved_at is null`),
  ],
);

/** When provisioning must wait for a person's approval, and for how long before escalating. */
export const approvalPolicies = pgTable(
  'approval_policies',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: text('tenant_id').notNull(),
    scope: text('scope', { enum: ['template', 'site', 'device_type'] }).notNull(),
    /** The template id, site or device type the policy covers. */
    scopeValue: text('scope_value').notNull(),
    timeoutSeconds: integer('timeout_seconds').notNull(),
    /** After this long without a decision the approval is escalated (alert to the escalation role). */
    escalateAfterSeconds: integer('escalate_after_seconds'),
    ...timestamps,
  },
  (table) => [uniqueIndex('approval_policies_scope_key').on(table.tenantId, table.scope, table.scopeValue)],
);

export type ApiKeyRow = typeof apiKeys.$inferSelect;
export type AuditEventRow = typeof auditEvents.$inferSelect;
export type AlertRow = typeof alerts.$inferSelect;
export type ApprovalPolicyRow = typeof approvalPolicies.$inferSelect;

/** A bulk provisioning job: the imported file's rows live here, not in workflow history. */
export const bulkJobs = pgTable(
  'bulk_jobs',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: text('tenant_id').notNull(),
    templateId: text('template_id').notNull(),
    fileName: text('file_name').notNull(),
    fileSha256: text('file_sha256').notNull(),
    rowCount: integer('row_count').notNull(),
    options: jsonb('options').notNull(),
    requestedBy: text('requested_by').notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    finishedAt: timestamp('finished_at', { withTimezone: true }),
  },
  (table) => [index('bulk_jobs_tenant_idx').on(table.tenantId, table.createdAt)],
);

/** One row of a bulk job's file and what became of it. */
export const bulkJobDevices = pgTable(
  'bulk_job_devices',
  {
    jobId: uuid('job_id').notNull(),
    /** The row's line number in the imported file (the header is line 1). */
    rowNumber: integer('row_number').notNull(),
    deviceId: text('device_id').notNull(),
    /** The validated provisioning request, without credentials (those are sealed in the vault). */
    request: jsonb('request').notNull(),
    hasCredentials: boolean('has_credentials').notNull(),
    status: text('status', { enum: ['pending', 'in_progress', 'completed', 'failed', 'cancelled'] })
      .notNull()
      .default('pending'),
    /** The dispatch that took this row, so a retried dispatch returns the same rows instead of losing them. */
    dispatchId: text('dispatch_id'),
    /** How many provisioning runs this row has had (retry-failed adds one). */
    attempts: integer('attempts').notNull().default(0),
    certificateSerial: text('certificate_serial'),
    failedStep: text('failed_step'),
    error: text('error'),
    startedAt: timestamp('started_at', { withTimezone: true }),
    finishedAt: timestamp('finished_at', { withTimezone: true }),
  },
  (table) => [
    uniqueIndex('bulk_job_devices_key').on(table.jobId, table.rowNumber),
    index('bulk_job_devices_status_idx').on(table.jobId, table.status),
  ],
);

export type BulkJobRow = typeof bulkJobs.$inferSelect;
export type BulkJobDeviceRow = typeof bulkJobDevices.$inferSelect;

/** Where and how often a site is swept for devices: the scan scope is explicit configuration. */
export const discoverySites = pgTable(
  'discovery_sites',
  {
    tenantId: text('tenant_id').notNull(),
    site: text('site').notNull(),
    /** A validated `ScanScope` (interfaces, CIDR ranges, ports, limits). */
    scope: jsonb('scope').notNull(),
    /** Scanners to run, e.g. `ws-discovery`, `mdns`, `ssdp`, `snmp`, `bacnet`. */
    scanners: jsonb('scanners').notNull(),
    intervalMinutes: integer('interval_minutes').notNull(),
    enabled: boolean('enabled').notNull().default(true),
    ...timestamps,
  },
  (table) => [uniqueIndex('discovery_sites_key').on(table.tenantId, table.site)],
);

/**
 * Where a site's device-facing work runs: on the central workers, or on an edge worker at the site
 * polling the site's own task queue. A per-site setting; a site without a row runs centrally.
 */
export const siteWorkers = pgTable(
  'site_workers',
  {
    tenantId: text('tenant_id').notNull(),
    site: text('site').notNull(),
    edgeWorker: boolean('edge_worker').notNull(),
    updatedBy: text('updated_by').notNull(),
    ...timestamps,
  },
  (table) => [uniqueIndex('site_workers_key').on(table.tenantId, table.site)],
);

export type SiteWorkerRow = typeof siteWorkers.$inferSelect;

/** Every device discovery has seen, merged across protocols and sweeps, with its evidence. */
export const discoveredDevices = pgTable(
  'discovered_devices',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: text('tenant_id').notNull(),
    site: text('site').notNull(),
    /** The strongest identity seen: `mac:...`, `serial:...`, `ip:...`; stable across sweeps. */
    identityKey: text('identity_key').notNull(),
    macAddress: text('mac_address'),
    ip: text('ip'),
    serialNumber: text('serial_number'),
    manufacturer: text('manufacturer'),
    model: text('model'),
    firmwareVersion: text('firmware_version'),
    deviceType: text('device_type'),
    /** Fingerprint with a confidence per claim and the evidence each came from. */
    fingerprint: jsonb('fingerprint').notNull(),
    endpoints: jsonb('endpoints').notNull(),
    sources: jsonb('sources').notNull(),
    /** The registered device it is, when it matches one; null for an unknown device. */
    registeredDeviceId: text('registered_device_id'),
    /** The zero-touch registration it matched, if any. */
    zeroTouchRegistrationId: uuid('zero_touch_registration_id'),
    inConflict: boolean('in_conflict').notNull().default(false),
    firstSeenAt: timestamp('first_seen_at', { withTimezone: true }).notNull(),
    lastSeenAt: timestamp('last_seen_at', { withTimezone: true }).notNull(),
  },
  (table) => [
    uniqueIndex('discovered_devices_identity_key').on(table.tenantId, table.identityKey),
    index('discovered_devices_tenant_site_idx').on(table.tenantId, table.site, table.lastSeenAt),
  ],
);

/** Conflicts and moves discovery surfaced instead of merging: two MACs claiming one serial or one IP, a device moved. */
export const discoveryEvents = pgTable(
  'discovery_events',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: text('tenant_id').notNull(),
    site: text('site').notNull(),
    kind: text('kind', { enum: ['serial-claimed-by-several-macs', 'ip-claimed-by-several-macs', 'moved'] }).notNull(),
    /** What the conflict or move is about, so a repeat in the next sweep is the same event. */
    subject: text('subject').notNull(),
    details: jsonb('details').notNull(),
    firstSeenAt: timestamp('first_seen_at', { withTimezone: true }).notNull().defaultNow(),
    lastSeenAt: timestamp('last_seen_at', { withTimezone: true }).notNull().defaultNow(),
    resolvedAt: timestamp('resolved_at', { withTimezone: true }),
  },
  (table) => [
    uniqueIndex('discovery_events_open_key').on(table.tenantId, table.kind, table.subject).where(sql`resolved_at is null`),
  ],
);

/**
 * Devices expected to appear on the network, by serial and/or MAC: each has a long-lived workflow
 * waiting for it that provisions it with no human step when discovery or DHCP sees it.
 */
export const zeroTouchRegistrations = pgTable(
  'zero_touch_registrations',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: text('tenant_id').notNull(),
    deviceId: text('device_id').notNull(),
    serialNumber: text('serial_number'),
    macAddress: text('mac_address'),
    protocol: text('protocol').notNull(),
    deviceType: text('device_type').notNull(),
    site: text('site').notNull(),
    templateId: text('template_id').notNull(),
    name: text('name'),
    /** Provisioning waits for an approver even when no policy asks for one. */
    requireApproval: boolean('require_approval').notNull().default(false),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    /** SHA-256 of the current single-use enrolment token (QR), never the token itself. */
    enrolmentTokenHash: text('enrolment_token_hash'),
    enrolmentTokenExpiresAt: timestamp('enrolment_token_expires_at', { withTimezone: true }),
    enrolmentTokenUsedAt: timestamp('enrolment_token_used_at', { withTimezone: true }),
    createdBy: text('created_by').notNull(),
    ...timestamps,
  },
  (table) => [
    uniqueIndex('zero_touch_registrations_device_key').on(table.tenantId, table.deviceId),
    index('zero_touch_registrations_serial_idx').on(table.tenantId, table.serialNumber),
    index('zero_touch_registrations_mac_idx').on(table.tenantId, table.macAddress),
    uniqueIndex('zero_touch_registrations_token_key').on(table.enrolmentTokenHash),
  ],
);

export type DiscoverySiteRow = typeof discoverySites.$inferSelect;
export type DiscoveredDeviceRow = typeof discoveredDevices.$inferSelect;
export type DiscoveryEventRow = typeof discoveryEvents.$inferSelect;
export type ZeroTouchRegistrationRow = typeof zeroTouchRegistrations.$inferSelect;

/**
 * Every version a configuration template has had, as it was saved. Rows are never changed or
 * deleted (triggers refuse it): a device's history names a version, and that version must still
 * say what the device was sent, even after the template moved on or was deleted.
 */
export const configurationTemplateVersions = pgTable(
  'configuration_template_versions',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    /** Null for versions of built-in templates. */
    tenantId: text('tenant_id'),
    templateId: text('template_id').notNull(),
    version: integer('version').notNull(),
    name: text('name').notNull(),
    description: text('description'),
    deviceType: text('device_type'),
    protocol: text('protocol').notNull(),
    body: jsonb('body').notNull(),
    parameters: jsonb('parameters').notNull(),
    /** SHA-256 of the canonical JSON of protocol, body and parameters. */
    contentHash: text('content_hash').notNull(),
    createdBy: text('created_by').notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (table) => [
    uniqueIndex('configuration_template_versions_key').on(table.templateId, table.version),
    index('configuration_template_versions_tenant_idx').on(table.tenantId, table.templateId),
  ],
);

/**
 * Per-device values for a template's parameters. Plain values are stored as they are; secret ones
 * only as the names of entries sealed in the secret vault, with the strength verdict taken when
 * they were written (the plaintext is never kept anywhere else).
 */
export const deviceConfigurationParameters = pgTable(
  'device_configuration_parameters',
  {
    tenantId: text('tenant_id').notNull(),
    deviceId: text('device_id').notNull(),
    values: jsonb('values').notNull(),
    /** Name → `{ purpose, keyEncryptionKeyId, setAt, setBy, strength }`; the values are in `device_secrets`. */
    sealedValues: jsonb('sealed_values').notNull(),
    updatedBy: text('updated_by').notNull(),
    ...timestamps,
  },
  (table) => [uniqueIndex('device_configuration_parameters_key').on(table.tenantId, table.deviceId)],
);

/** Every configuration push, blocked or attempted, with what was sent and who asked. Append-only. */
export const deviceConfigurationHistory = pgTable(
  'device_configuration_history',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: text('tenant_id').notNull(),
    deviceId: text('device_id').notNull(),
    templateId: text('template_id').notNull(),
    templateVersion: integer('template_version').notNull(),
    outcome: text('outcome', { enum: ['applied', 'failed', 'blocked'] }).notNull(),
    /** SHA-256 of the canonical JSON of the rendered settings with secrets replaced by markers. */
    settingsHash: text('settings_hash'),
    /** The hash the device reported for what it applied. */
    deviceHash: text('device_hash'),
    /** Compliance findings at the time (rule, field, severity, reason, override). */
    findings: jsonb('findings').notNull(),
    workflowId: text('workflow_id'),
    runId: text('run_id'),
    attempt: integer('attempt'),
    /** Who acted: the workflow id, or the API caller for a request refused before any run started. */
    actor: text('actor').notNull(),
    /** Who asked for the provisioning or rollout, when known. */
    requestedBy: text('requested_by'),
    error: text('error'),
    occurredAt: timestamp('occurred_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (table) => [index('device_configuration_history_device_idx').on(table.tenantId, table.deviceId, table.occurredAt)],
);

/** A tenant's choices per compliance rule; rules without a row keep their defaults. */
export const compliancePolicies = pgTable(
  'compliance_policies',
  {
    tenantId: text('tenant_id').notNull(),
    ruleId: text('rule_id').notNull(),
    enabled: boolean('enabled').notNull(),
    severity: text('severity', { enum: ['info', 'warning', 'critical'] }).notNull(),
    parameters: jsonb('parameters').notNull(),
    updatedBy: text('updated_by').notNull(),
    ...timestamps,
  },
  (table) => [uniqueIndex('compliance_policies_key').on(table.tenantId, table.ruleId)],
);

/** An approver's exception to one rule for one device or template, until it expires or is revoked. */
export const complianceOverrides = pgTable(
  'compliance_overrides',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: text('tenant_id').notNull(),
    scope: text('scope', { enum: ['device', 'template'] }).notNull(),
    /** The device id or template id the exception covers. */
    scopeValue: text('scope_value').notNull(),
    ruleId: text('rule_id').notNull(),
    reason: text('reason').notNull(),
    requestedBy: text('requested_by'),
    approvedBy: text('approved_by').notNull(),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
    revokedBy: text('revoked_by'),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (table) => [index('compliance_overrides_scope_idx').on(table.tenantId, table.scope, table.scopeValue)],
);

/**
 * A tenant's drift detection: whether its devices' running configurations are checked on a
 * schedule, how often, and whether a drifted device is only reported or also put back.
 */
export const configurationDriftPolicies = pgTable('configuration_drift_policies', {
  tenantId: text('tenant_id').primaryKey(),
  enabled: boolean('enabled').notNull(),
  action: text('action', { enum: ['alert', 'remediate'] }).notNull(),
  intervalMinutes: integer('interval_minutes').notNull(),
  updatedBy: text('updated_by').notNull(),
  ...timestamps,
});

export type ConfigurationTemplateVersionRow = typeof configurationTemplateVersions.$inferSelect;
export type DeviceConfigurationParametersRow = typeof deviceConfigurationParameters.$inferSelect;
export type DeviceConfigurationHistoryRow = typeof deviceConfigurationHistory.$inferSelect;
export type CompliancePolicyRow = typeof compliancePolicies.$inferSelect;
export type ComplianceOverrideRow = typeof complianceOverrides.$inferSelect;
export type ConfigurationDriftPolicyRow = typeof configurationDriftPolicies.$inferSelect;
export type DataEncryptionKeyRow = typeof dataEncryptionKeys.$inferSelect;
export type ProvisioningRunRow = typeof provisioningRuns.$inferSelect;
export type DeviceHealthEventRow = typeof deviceHealthEvents.$inferSelect;
export type FleetPolicyRow = typeof fleetPolicies.$inferSelect;
export type FirmwareCatalogueRow = typeof firmwareCatalogue.$inferSelect;

/**
 * The one row naming the environment (`production`, `test`, ...) this database belongs to, written
 * at the first start; a start configured for another environment refuses.
 */
export const installationEnvironment = pgTable('installation_environment', {
  /** Always `installation`: one row per database. */
  id: text('id').primaryKey(),
  environment: text('environment').notNull(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
});
