/**
 * The side effects of provisioning one device. Each activity is thin: it loads what it needs
 * (nothing is kept between calls, since retries may land on another worker), calls the device's
 * adapter or the certificate authority, and records the outcome in the registry.
 */
import type { CertificateInventory, CertificatePins } from '../pki/certificate-inventory';
import { deviceSessions } from './device-sessions';
import { Context } from '@temporalio/activity';
import type { DeviceAdapter } from '../adapters/device-adapter';
import { alertFingerprint, alertKinds, type AlertStore } from '../alerts/alert-store';
import type { AuditEventInput, AuditLog } from '../audit/audit-log';
import type { CertificateAuthorityService, ServiceIdentities } from '../pki/certificate-authority';
import type { CertificateRow } from '../pki/certificate-store';
import { ConfigurationSigner } from '../pki/configuration-signing';
import type { SecretVault } from '../custody/secret-vault';
import type { TemplateCatalog } from '../configuration/templates';
import type { DeviceConfigurations } from '../configuration/device-configurations';
import { configurationPushes } from './configuration-push';
import type { DeviceRegistry } from '../registry/device-registry';
import type { ArchivedRunOutcome, RunArchive } from '../registry/run-archive';
import { IdentityMismatchError, PolicyViolationError, SelfTestFailedError, ValidationError } from '../foundation/errors';
import { firmwareApprovalRequirement, type FirmwareVerdicts } from '../fleet/firmware-verdicts';
import type { Logger } from '../foundation/logger';
import type { CertificateInfo, DeviceDescriptor, DeviceProvisioningRecord } from '../contracts/provisioning';
import { provisioningStep } from './step';

export interface ProvisioningDependencies {
  audit: AuditLog;
  alerts: AlertStore;
  registry: DeviceRegistry;
  ca: CertificateAuthorityService & Pick<ServiceIdentities, 'ensureServiceIdentity' | 'ensureConfigurationSigner'>;
  inventory: CertificateInventory;
  vault: SecretVault;
  templates: TemplateCatalog;
  /** Device parameters, compliance and configuration history: the gate every push goes through. */
  configurations: DeviceConfigurations;
  adapterFor: (protocol: string) => DeviceAdapter;
  /** Where each run's final record is kept once the run closes. */
  runArchive: RunArchive;
  /** Judges the firmware a device reports against the tenant's catalogue and applies its fleet policy. */
  firmware: FirmwareVerdicts;
  /** Hands each certificate a device starts using to its renewal workflow; absent where no client is at hand. */
  renewals?: { track(certificate: CertificateRow): Promise<void> };
  /** Gives an active device's site its health sweep schedule, when it has none yet. */
  healthSchedules?: { watchSite(tenantId: string, site: string): Promise<void> };
  /** How long a configuration signature lasts; the signer's default (an hour) unless a test shortens it. */
  configurationSignatureLifetimeMs?: number;
  logger: Logger;
}

interface DeviceRef {
  tenantId: string;
  deviceId: string;
}

export function certificateInfoOf(row: CertificateRow, pins?: CertificatePins): CertificateInfo {
  return {
    certificateId: row.id,
    serialNumber: row.serialNumber,
    fingerprint: row.fingerprint,
    issuedAt: row.issuedAt.toISOString(),
    expiresAt: row.expiresAt.toISOString(),
    issuerDN: row.issuerDn,
    subjectDN: row.subjectDn,
    ...(row.revokedAt ? { revokedAt: row.revokedAt.toISOString() } : {}),
    ...(pins ? { pins } : {}),
  };
}

export function createProvisioningActivities(deps: ProvisioningDependencies) {
  const { audit, alerts, registry, ca, inventory, vault, templates, adapterFor, firmware, logger } = deps;
  const runOf = () => Context.current().info.workflowExecution?.workflowId ?? 'system';

  const { sessionFor, withDevice } = deviceSessions({ ca, vault, registry, adapterFor });
  const configurationSigner = new ConfigurationSigner(ca, { lifetimeMs: deps.configurationSignatureLifetimeMs });
  const pushes = configurationPushes(deps);

  /**
   * The firmware may have changed while the device was provisioned (an update it fetched and
   * installed itself): read its identity again where the protocol allows and judge it once more.
   * Firmware an approver must see is accepted only if it is what identification judged (and the
   * run already waited for); anything else fails the run, for good, and is asked about next time.
   */
  async function judgeFirmwareAgain(ref: DeviceRef) {
    const reread = await withDevice(ref, async (device, adapter, session) => ({ device, identity: await adapter.identify(session) })).catch(
      (error: unknown) => {
        logger.warn({ ...ref, error: error instanceof Error ? error.message : String(error) }, 'identity not readable after self-test; firmware verdict stands');
        return undefined;
      },
    );
    if (!reread) return undefined;
    const { device: before, identity } = reread;
    const { verdict, action } = await firmware.judge(before, identity, runOf(), 'self-test');
    // A run identified before firmware was judged has nothing to compare with: its verdict is recorded.
    const judgedAtIdentification = before.firmwareStatus !== 'unchecked';
    const unchanged =
      before.firmwareVersion === identity.firmwareVersion &&
      (before.firmwareHash ?? null) === (identity.firmwareHash ?? null) &&
      before.firmwareStatus === verdict.status;
    if (action === 'approve' && judgedAtIdentification && !unchanged) {
      throw new PolicyViolationError(
        `firmware changed during provisioning to ${identity.firmwareVersion} (${verdict.status.replace('_', ' ')}), which needs an approver: provision the device again to ask for one`,
      );
    }
    return verdict.status;
  }

  return {
    /** Registers the device, asks it who it is, and refuses to go on if it is not the device we expect. */
    identifyDevice: provisioningStep(async (input: { tenantId: string; device: DeviceDescriptor; metadata?: Record<string, unknown> }) => {
      const { tenantId, device } = input;
      const registered = await registry.register(tenantId, device, input.metadata);
      const adapter = adapterFor(device.protocol);
      // Before we have issued it a certificate, trust on first use: remember what it presents.
      // Devices that refuse anonymous identification get the credentials we hold; no pin yet.
      const session = await sessionFor(registered);
      const identity = await adapter.identify(
        registered.activeCertificateId
          ? session
          : { address: device.address, credentials: session.credentials, secrets: session.secrets },
      );
      const mismatches: string[] = [];
      if (identity.serialNumber !== device.serialNumber) {
        mismatches.push(`serial number ${identity.serialNumber} (expected ${device.serialNumber})`);
      }
      if (identity.macAddress !== undefined && identity.macAddress !== device.macAddress) {
        mismatches.push(`MAC address ${identity.macAddress} (expected ${device.macAddress})`);
      }
      if (mismatches.length > 0) {
        throw new IdentityMismatchError(`device at ${device.address} reports ${mismatches.join(' and ')}`);
      }
      await registry.recordIdentity(tenantId, device.deviceId, identity);
      logger.info({ tenantId, deviceId: device.deviceId, model: identity.model }, 'device identified');
      // Blocked firmware fails the step here, for good, before anything is issued.
      const { verdict, action } = await firmware.judge(registered, identity, runOf(), 'identification');
      return {
        manufacturer: identity.manufacturer,
        model: identity.model,
        firmwareVersion: identity.firmwareVersion,
        firmwareHash: identity.firmwareHash,
        presentedCertificateFingerprint: identity.presentedCertificateFingerprint,
        capabilities: identity.capabilities,
        firmware: {
          status: verdict.status,
          basis: verdict.basis,
          reason: verdict.reason,
          action,
          // The run waits for an approver of this firmware, as for an approval policy.
          ...(action === 'approve' ? { approval: firmwareApprovalRequirement(verdict) } : {}),
        },
      };
    }),

    authenticateDevice: provisioningStep(async (ref: DeviceRef) => {
      await withDevice(ref, (_device, adapter, session) => adapter.authenticate(session));
      return {};
    }),

    /** The device makes its own key pair; only the CSR comes back. */
    requestCertificateSigning: provisioningStep(async (ref: DeviceRef) => {
      const csrPem = await withDevice(ref, (device, adapter, session) =>
        adapter.createCertificateSigningRequest(session, {
          commonName: device.deviceId,
          keyAlgorithm: 'P-256',
          subjectAltNames: ca.subjectAltNamesFor(device),
        }),
      );
      return { csrPem };
    }),

    issueDeviceCertificate: provisioningStep(
      async (input: DeviceRef & { csrPem: string; validityDays?: number; issuanceKey: string; renewalOf?: string }) => {
        const device = await registry.get(input.tenantId, input.deviceId);
        const certificate = await ca.issueDeviceCertificate({
          tenantId: input.tenantId,
          device,
          csrPem: input.csrPem,
          validityDays: input.validityDays,
          issuanceKey: input.issuanceKey,
          renewalOf: input.renewalOf,
        });
        logger.info(
          { tenantId: input.tenantId, deviceId: input.deviceId, serialNumber: certificate.serialNumber },
          'device certificate issued',
        );
        // The client identity the next steps reach the device with is made (or renewed) here, where
        // key custody is: a site's worker that installs the certificate only reads it.
        await ca.ensureServiceIdentity(input.tenantId);
        // A retry after a crash may record the same issuance twice; it never records none.
        await audit.append({
          tenantId: input.tenantId,
          actor: input.issuanceKey,
          actorType: 'workflow',
          action: 'certificate.issued',
          targetType: 'certificate',
          targetId: certificate.id,
          details: { deviceId: input.deviceId, serialNumber: certificate.serialNumber, fingerprint: certificate.fingerprint },
        });
        return { certificate: certificateInfoOf(certificate, await inventory.pinsOf(certificate)) };
      },
    ),

    installDeviceCertificate: provisioningStep(async (input: DeviceRef & { certificateId: string; checkInstalledFirst?: boolean }) => {
      const device = await registry.get(input.tenantId, input.deviceId);
      const adapter = adapterFor(device.protocol);
      const certificate = await ca.getCertificate(input.certificateId);
      const clientIdentity = await ca.ensureServiceIdentity(input.tenantId);

      // A retry may follow an attempt that installed the certificate but died before recording it:
      // if the device already presents our certificate and accepts our client identity, it is done.
      // (A renewal asks for the check on every attempt: its earlier attempt may have been a whole
      // workflow retry. So does every local attempt: one run before a worker died, its marker never
      // recorded, is invisible to the attempt count.)
      const { attempt, isLocal } = Context.current().info;
      const alreadyInstalled =
        (attempt > 1 || isLocal || input.checkInstalledFirst === true) &&
        (await adapter
          .identify({ address: device.address, pinnedCertificateFingerprint: certificate.fingerprint, clientIdentity })
          .then(() => true)
          .catch(() => false));

      if (!alreadyInstalled) {
        await adapter.installCertificate(await sessionFor(device), await ca.installationFor(certificate));
      }
      await registry.useCertificate(input.tenantId, input.deviceId, certificate);
      return { fingerprint: certificate.fingerprint };
    }),

    pushDeviceConfiguration: provisioningStep(async (input: DeviceRef & { templateId: string; templateVersion?: number; requestedBy?: string }) => {
      return withDevice(input, async (device, adapter, session) => {
        // The version the run was planned with (runs planned before versions were pinned take the
        // one current now); the push validates it, judges its compliance and records it.
        const version = input.templateVersion ?? (await templates.get(input.tenantId, input.templateId)).version;
        const pushed = await pushes.push(
          { tenantId: input.tenantId, device, templateId: input.templateId, version, requestedBy: input.requestedBy },
          async (configuration) => {
            // Signed for this device just before it goes out; devices that verify refuse it otherwise.
            const signed = await configurationSigner.sign({ tenantId: input.tenantId, device, configuration });
            return adapter.pushConfiguration(session, signed);
          },
        );
        return { templateId: pushed.templateId, version: pushed.version, hash: pushed.hash };
      });
    }),

    /**
     * At the site: the push step of a device a site's worker reaches, with the configuration the
     * central `prepareDeviceConfiguration` rendered, judged and signed; the edge worker never signs.
     */
    pushPreparedDeviceConfiguration: provisioningStep(async (input: DeviceRef & { reference: string; requestedBy?: string }) => {
      return withDevice(input, async (device, adapter, session) => {
        const pushed = await pushes.deliverPrepared(
          { tenantId: input.tenantId, device, reference: input.reference, requestedBy: input.requestedBy },
          (signed) => adapter.pushConfiguration(session, signed),
        );
        return { templateId: pushed.templateId, version: pushed.version, hash: pushed.hash };
      });
    }),

    runDeviceSelfTest: provisioningStep(async (ref: DeviceRef) => {
      const report = await withDevice(ref, (_device, adapter, session) => adapter.selfTest(session));
      if (!report.passed) {
        const failed = report.checks.filter((check) => !check.passed);
        throw new SelfTestFailedError(
          `self-test failed: ${failed.map((c) => (c.detail ? `${c.name} (${c.detail})` : c.name)).join(', ')}`,
        );
      }
      const firmwareStatus = await judgeFirmwareAgain(ref);
      return { checks: report.checks.map((check) => check.name), ...(firmwareStatus ? { firmwareStatus } : {}) };
    }),

    activateDevice: provisioningStep(async (ref: DeviceRef) => {
      const device = await withDevice(ref, async (device, adapter, session) => {
        await adapter.activate(session);
        return device;
      });
      await registry.change(ref.tenantId, ref.deviceId, { lifecycleState: 'active', activatedAt: new Date() });
      // From now on the certificate is looked after until the device has none.
      if (device.activeCertificateId && deps.renewals) await deps.renewals.track(await ca.getCertificate(device.activeCertificateId));
      // And its health is watched: its site is swept on the tenant's schedule.
      await deps.healthSchedules?.watchSite(ref.tenantId, device.site);
      return {};
    }),

    /** Compensation: a certificate whose provisioning failed must not stay valid. */
    revokeDeviceCertificate: provisioningStep(async (input: { certificateId: string; reason: string }) => {
      const revoked = await ca.revokeCertificate(input.certificateId, input.reason);
      await audit.append({
        tenantId: revoked.tenantId,
        actor: Context.current().info.workflowExecution?.workflowId ?? 'system',
        actorType: 'workflow',
        action: 'certificate.revoked',
        targetType: 'certificate',
        targetId: revoked.id,
        details: { deviceId: revoked.deviceId, serialNumber: revoked.serialNumber, reason: revoked.revocationReason },
      });
      logger.warn({ certificateId: input.certificateId, reason: input.reason }, 'device certificate revoked');
      return {};
    }),

    recordAuditEvent: provisioningStep(async (event: AuditEventInput) => {
      try {
        const row = await audit.append(event);
        return { sequence: row.sequence };
      } catch (error) {
        if (!(error instanceof ValidationError)) throw error;
        // It can never be stored as given (a NUL in a comment, say): no retry would help, but what
        // happened must not vanish, so the refusal goes on record and the run is told at once.
        logger.error({ tenantId: event.tenantId, action: event.action, problems: error.fields }, 'audit event refused');
        await audit.appendRefused(event, error.fields);
        throw error;
      }
    }),

    /** Nobody decided in time: tell the people who can, and put it on record. */
    escalateApproval: provisioningStep(
      async (input: DeviceRef & { provisioningId: string; waitingSince: string }) => {
        logger.warn({ ...input }, 'provisioning approval escalated');
        await alerts.raise({
          tenantId: input.tenantId,
          kind: alertKinds.approvalEscalated,
          severity: 'warning',
          fingerprint: alertFingerprint(alertKinds.approvalEscalated, input.provisioningId),
          summary: `provisioning of ${input.deviceId} has waited for approval since ${input.waitingSince}`,
          details: { provisioningId: input.provisioningId, deviceId: input.deviceId, waitingSince: input.waitingSince },
          raisedBy: input.provisioningId,
        });
        await audit.append({
          tenantId: input.tenantId,
          actor: input.provisioningId,
          actorType: 'workflow',
          action: 'approval.escalated',
          targetType: 'device',
          targetId: input.deviceId,
          details: { provisioningId: input.provisioningId, waitingSince: input.waitingSince },
        });
        return {};
      },
    ),

    closeApprovalEscalation: provisioningStep(async (input: { tenantId: string; provisioningId: string }) => {
      await alerts.resolve(input.tenantId, alertFingerprint(alertKinds.approvalEscalated, input.provisioningId), input.provisioningId);
      return {};
    }),

    /** The run's final record, archived once as the run closes: status outlives the workflow's retention. */
    archiveProvisioningRun: provisioningStep(async (input: { runId: string; outcome: ArchivedRunOutcome; record: DeviceProvisioningRecord }) => {
      await deps.runArchive.archive(input);
      return {};
    }),

    markDeviceFailed: provisioningStep(async (input: DeviceRef & { reason: string }) => {
      // The installed certificate stays on record even when revoked: it is how we reach the device
      // (mutual TLS, pinned) to provision it again.
      if (await registry.find(input.tenantId, input.deviceId)) {
        await registry.update(input.tenantId, input.deviceId, { lifecycleState: 'failed' });
      }
      logger.warn({ tenantId: input.tenantId, deviceId: input.deviceId, reason: input.reason }, 'provisioning failed');
      return {};
    }),
  };
}

export type ProvisioningActivities = ReturnType<typeof createProvisioningActivities>;
