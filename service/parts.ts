/**
 * The service's parts, built once per process from configuration: stores, key custody, the CA and
 * its publication, the configuration engine, the registry, and the services built on them that
 * both roles (API and worker) share.
 */
import { Client, type Connection } from '@temporalio/client';
import { ApiKeyStore } from '../access/api-keys';
import { deviceAdapters } from '../adapters';
import type { DeviceNetworks } from '../adapters/device-networks';
import type { DeviceAdapter } from '../adapters/device-adapter';
import { TemplateCatalog } from '../configuration/templates';
import { CompliancePolicies } from '../configuration/compliance-policies';
import { DeviceConfigurations } from '../configuration/device-configurations';
import { dataKeyPurposeOf } from '../configuration/device-parameters';
import { createKeyCustody } from '../custody';
import type { KeyCustody } from '../custody/key-custody';
import { readKeyEncryptionKey, Sealer } from '../custody/sealing';
import { loadPayloadKeyring, payloadDataConverter, type PayloadKeyring } from '../custody/payload-codec';
import { SecretVault } from '../custody/secret-vault';
import { openDatabase, type DatabaseHandle } from '../db/client';
import { claimDatabaseEnvironment } from '../db/installation-environment';
import { CertificateAuthority } from '../pki/certificate-authority';
import { PkiPublication } from '../pki/publication';
import { ZeroTouchRegistrations } from '../zero-touch/registrations';
import { ZeroTouchRegistrationStore } from '../zero-touch/registration-store';
import { DiscoveryStore } from '../discovery/discovery-store';
import { SiteWorkers } from '../discovery/site-workers';
import { DriftPolicies } from '../configuration/drift-policies';
import { FleetPolicies } from '../fleet/fleet-policies';
import { RunArchive } from '../registry/run-archive';
import { DeviceHealthEvents } from '../fleet/health-events';
import { CredentialRotations } from '../fleet/credential-rotations';
import { FirmwareCatalogue } from '../fleet/firmware-catalogue';
import { FirmwareVerdicts } from '../fleet/firmware-verdicts';
import { DeviceLifecycle } from '../fleet/device-lifecycle';
import { DataKeys } from '../custody/data-keys';
import { announceRevocation, followRevocations } from '../pki/revocation-notices';
import { CertificateAuthorityBackup } from '../pki/ca-backup';
import { RecordsBackup } from '../fleet/records-backup';
import type { CertificateInventory } from '../pki/certificate-inventory';
import { CertificateStore } from '../pki/certificate-store';
import { CrlPublisher } from '../pki/crl';
import { OcspResponder } from '../pki/ocsp-responder';
import { AuditLog } from '../audit/audit-log';
import { AlertStore } from '../alerts/alert-store';
import { ApprovalPolicies } from '../provisioning/approval-policies';
import { ProvisioningPlanner } from '../provisioning/planner';
import { ProvisioningService } from '../provisioning/provisioning-service';
import { DeviceRegistry } from '../registry/device-registry';
import type { ServiceConfig } from './config';
import { NotImplementedError } from '../foundation/errors';
import type { Logger } from '../foundation/logger';

/** The audit chain for events that belong to no tenant, such as logins that failed. */
export const systemAuditTenant = '_system';

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
  /** Each tenant's fleet policy: health probes, firmware verdicts, credential rotation. */
  fleetPolicies: FleetPolicies;
  /** What the health sweeps saw happen to each device: offline, back online, rebooted, a foreign certificate. */
  healthEvents: DeviceHealthEvents;
  /** Each tenant's approved and known-bad firmware, per vendor and model. */
  firmwareCatalogue: FirmwareCatalogue;
  /** Encrypted backups of the CA (certificates, CRLs, software keys, HSM key references). */
  caBackup: CertificateAuthorityBackup;
  /** The service's records and its CA in one encrypted file (`npm run backup` / `npm run restore`). */
  recordsBackup: RecordsBackup;
  registry: DeviceRegistry;
  /** Every provisioning run's final record, kept after Temporal's retention removes the run. */
  runArchive: RunArchive;
  /** Discovery sites, what their sweeps found, and the conflicts and moves they surfaced. */
  discovery: DiscoveryStore;
  /** Which sites' device-facing work runs on an edge worker at the site, and on which queue. */
  siteWorkers: SiteWorkers;
  /** Bulk and zero-touch runs try each step as a local activity first (UNATTENDED_STEPS). */
  unattendedStepsLocalFirst: boolean;
  /** Where devices may be reached (DEVICE_NETWORKS, and loopback in development); the adapters connect nowhere else. */
  networks: DeviceNetworks;
  adapters: ReadonlyMap<string, DeviceAdapter>;
  adapterFor: (protocol: string) => DeviceAdapter;
  close(): Promise<void>;
}

export async function createServiceParts(config: ServiceConfig, logger: Logger): Promise<ServiceParts> {
  const database = await openDatabase({ url: config.database.url, embeddedDir: config.database.embeddedDir });
  await claimDatabaseEnvironment(database.db, config.installationEnvironment).catch(async (error: unknown) => {
    await database.close();
    throw error;
  });
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
  // Asked for by every provisioning run, kept until a write anywhere announces a change.
  const fleetPolicies = new FleetPolicies(database.db, config.fleet, database);
  const firmwareCatalogue = new FirmwareCatalogue(database.db, database);
  const stopFollowingSettings = [await fleetPolicies.reads.follow(database), await firmwareCatalogue.reads.follow(database)];
  const caBackup = new CertificateAuthorityBackup({ db: database.db, sealer, custody, logger });
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
    fleetPolicies,
    firmwareCatalogue,
    healthEvents: new DeviceHealthEvents(database.db),
    caBackup,
    recordsBackup: new RecordsBackup({ db: database.db, vault, caBackup, keyEncryptionKeyId: sealer.keyId, logger }),
    registry,
    runArchive: new RunArchive(database.db),
    discovery: new DiscoveryStore({ db: database.db, networks, registry }),
    siteWorkers: new SiteWorkers({ db: database.db, taskQueue: config.temporal.taskQueue }),
    unattendedStepsLocalFirst: config.unattendedStepsLocalFirst,
    networks,
    adapters,
    adapterFor: (protocol) => {
      const adapter = adapters.get(protocol);
      if (!adapter) throw new NotImplementedError(`no adapter for protocol ${protocol}`);
      return adapter;
    },
    async close() {
      await stopFollowingRevocations();
      for (const stop of stopFollowingSettings) await stop();
      await custody.close();
      await database.close();
    },
  };
}

/** Judges the firmware devices report against their tenant's catalogue, under its fleet policy. */
export function createFirmwareVerdicts(parts: ServiceParts): FirmwareVerdicts {
  const { firmwareCatalogue: catalogue, fleetPolicies: policies, registry, alerts, audit } = parts;
  return new FirmwareVerdicts({ catalogue, policies, registry, alerts, audit });
}

/** A Temporal client that reads and writes payloads with the service's codec. */
export function serviceClient(parts: ServiceParts, connection: Connection, namespace: string): Client {
  return new Client({ connection, namespace, dataConverter: payloadDataConverter(parts.payloadKeyring) });
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
    sites: parts.siteWorkers,
    unattendedStepsLocalFirst: parts.unattendedStepsLocalFirst,
  });
}

export function createProvisioningService(
  parts: ServiceParts,
  client: Client,
  taskQueue: string,
  planner = createProvisioningPlanner(parts),
): ProvisioningService {
  return new ProvisioningService({
    client,
    taskQueue,
    planner,
    vault: parts.vault,
    configurations: parts.configurations,
    runArchive: parts.runArchive,
  });
}

/** Rotation of devices' management secrets: on request (API) and by each tenant's schedule (worker start). */
export function createCredentialRotations(parts: ServiceParts, client: Client, taskQueue: string): CredentialRotations {
  return new CredentialRotations({ client, taskQueue, registry: parts.registry, policies: parts.fleetPolicies, adapters: parts.adapters });
}

/** Decommissioning, replacing and re-provisioning devices, each one workflow, planned as every run is. */
export function createDeviceLifecycle(
  parts: ServiceParts,
  client: Client,
  taskQueue: string,
  planner = createProvisioningPlanner(parts),
): DeviceLifecycle {
  return new DeviceLifecycle({
    client,
    taskQueue,
    registry: parts.registry,
    planner,
    vault: parts.vault,
    configurations: parts.configurations,
    protocols: [...parts.adapters.keys()],
  });
}
