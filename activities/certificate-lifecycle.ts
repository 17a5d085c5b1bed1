/**
 * Activities of the certificate lifecycle workflows: deciding whether a certificate still needs
 * looking after, proving a device presents the certificate it was given, the alerts of a renewal
 * that keeps failing, and the CA side of rotating a site's intermediate.
 */
import { alertFingerprint, alertKinds, type AlertStore } from '../alerts/alert-store';
import type { AuditLog } from '../audit/audit-log';
import type { DeviceAdapter } from '../adapters/device-adapter';
import type { CaHierarchy, CertificateAuthorityService, ServiceIdentities } from '../pki/certificate-authority';
import type { CertificateInventory } from '../pki/certificate-inventory';
import type { CrlPublisher } from '../pki/crl';
import { renewableCertificateOf, type CertificateRenewals } from '../provisioning/certificate-renewals';
import type { DeviceRegistry } from '../registry/device-registry';
import { SelfTestFailedError } from '../foundation/errors';
import type { Logger } from '../foundation/logger';
import type { RenewableCertificate } from '../contracts/certificates';
import type { SecretVault } from '../custody/secret-vault';
import { deviceSessions } from './device-sessions';
import { provisioningStep } from './step';

export interface CertificateLifecycleDependencies {
  ca: CertificateAuthorityService & Pick<CaHierarchy, 'rotateSiteIntermediateCa'> & Pick<ServiceIdentities, 'ensureServiceIdentity' | 'completeServiceHierarchies'>;
  inventory: CertificateInventory;
  registry: DeviceRegistry;
  audit: AuditLog;
  alerts: AlertStore;
  vault: SecretVault;
  adapterFor: (protocol: string) => DeviceAdapter;
  /** Signs every CA's CRL (the CRL schedule). */
  crls: Pick<CrlPublisher, 'publishAll'>;
  /** The devices' renewal workflows (rotation asks them to renew now). */
  renewals?: Pick<CertificateRenewals, 'track' | 'renewNow'>;
  logger: Logger;
}

interface CertificateRef {
  tenantId: string;
  deviceId: string;
  certificateId: string;
}

export type RenewalCheck =
  | { state: 'current' }
  | { state: 'replaced'; current: RenewableCertificate }
  | { state: 'stopped'; reason: string };

export function createCertificateLifecycleActivities(deps: CertificateLifecycleDependencies) {
  const { ca, inventory, registry, audit, alerts, logger } = deps;
  const { withDevice } = deviceSessions(deps);
  const renewalAlert = (certificateId: string, windowClosed: boolean) =>
    alertFingerprint(alertKinds.certificateRenewalFailing, certificateId, windowClosed ? 'expired' : 'overdue');

  return {
    /**
     * Whether the certificate is still the device's to renew: not revoked, the device still
     * registered, and no newer certificate in use (a renewal of this very certificate, installed
     * but not yet verified, still counts as this certificate's renewal in progress).
     */
    certificateForRenewal: provisioningStep(async (ref: CertificateRef): Promise<{ state: RenewalCheck['state']; current?: RenewableCertificate; reason?: string }> => {
      const certificate = await ca.getCertificate(ref.certificateId);
      if (certificate.revokedAt && certificate.revocationReason !== 'superseded') {
        return { state: 'stopped', reason: `certificate revoked (${certificate.revocationReason})` };
      }
      const device = await registry.find(ref.tenantId, ref.deviceId);
      if (!device) return { state: 'stopped', reason: 'device no longer registered' };
      const activeId = device.activeCertificateId;
      if (!activeId || activeId === certificate.id) {
        return certificate.revokedAt ? { state: 'stopped', reason: 'certificate superseded' } : { state: 'current' };
      }
      const active = await ca.getCertificate(activeId);
      if (active.renewalOfCertificateId === certificate.id && !certificate.revokedAt) return { state: 'current' };
      if (!active.revokedAt && active.issuedAt >= certificate.issuedAt) return { state: 'replaced', current: renewableCertificateOf(active) };
      return certificate.revokedAt ? { state: 'stopped', reason: 'certificate superseded' } : { state: 'current' };
    }),

    /**
     * A real handshake with the device must show the new certificate. Devices without a TLS
     * endpoint prove it in their self-test instead (e.g. the certificate file a BACnet/SC device holds).
     */
    verifyPresentedCertificate: provisioningStep(async (ref: CertificateRef) => {
      const certificate = await ca.getCertificate(ref.certificateId);
      await withDevice(ref, async (_device, adapter, session) => {
        const identity = await adapter.identify({ ...session, pinnedCertificateFingerprint: certificate.fingerprint });
        if (identity.presentedCertificateFingerprint !== undefined) {
          if (identity.presentedCertificateFingerprint !== certificate.fingerprint) {
            throw new SelfTestFailedError(`device presents certificate ${identity.presentedCertificateFingerprint}, not the renewed ${certificate.fingerprint}`);
          }
          return;
        }
        const report = await adapter.selfTest(session);
        if (!report.passed) {
          throw new SelfTestFailedError(`self-test after renewal failed: ${report.checks.filter((c) => !c.passed).map((c) => c.name).join(', ')}`);
        }
      });
      logger.info({ tenantId: ref.tenantId, deviceId: ref.deviceId, serialNumber: certificate.serialNumber }, 'device presents its renewed certificate');
      return { serialNumber: certificate.serialNumber };
    }),

    /** A renewal attempt's certificate that the device never took: revoke it unless it is in use after all. */
    revokeUnusedRenewal: provisioningStep(async (ref: CertificateRef) => {
      const device = await registry.find(ref.tenantId, ref.deviceId);
      if (device?.activeCertificateId === ref.certificateId) return { revoked: false };
      const revoked = await ca.revokeCertificate(ref.certificateId, 'superseded');
      await audit.append({
        tenantId: ref.tenantId,
        actor: 'certificate-renewal',
        actorType: 'workflow',
        action: 'certificate.revoked',
        targetType: 'certificate',
        targetId: revoked.id,
        details: { deviceId: ref.deviceId, serialNumber: revoked.serialNumber, reason: 'superseded', why: 'issued for a renewal attempt the device did not complete' },
      });
      return { revoked: true };
    }),

    raiseRenewalAlert: provisioningStep(
      async (input: CertificateRef & { expiresAt: string; windowClosed: boolean; failedAttempts: number; lastError: string }) => {
        await alerts.raise({
          tenantId: input.tenantId,
          kind: alertKinds.certificateRenewalFailing,
          severity: input.windowClosed ? 'critical' : 'warning',
          fingerprint: renewalAlert(input.certificateId, input.windowClosed),
          summary: input.windowClosed
            ? `certificate of device ${input.deviceId} expired on ${input.expiresAt} before it could be renewed`
            : `renewing the certificate of device ${input.deviceId} (expires ${input.expiresAt}) has failed ${input.failedAttempts} time(s)`,
          details: { deviceId: input.deviceId, certificateId: input.certificateId, failedAttempts: input.failedAttempts, lastError: input.lastError },
          raisedBy: 'certificate-renewal',
        });
        return {};
      },
    ),

    resolveRenewalAlert: provisioningStep(async (ref: CertificateRef) => {
      for (const windowClosed of [false, true]) {
        await alerts.resolve(ref.tenantId, renewalAlert(ref.certificateId, windowClosed), 'certificate-renewal');
      }
      return {};
    }),

    /** Retires the site's intermediate and makes a new one; a retry returns the first rotation's result. */
    rotateSiteIntermediate: provisioningStep(async (input: { tenantId: string; site: string; rotationKey: string; requestedBy: string }) => {
      const { previous, current } = await ca.rotateSiteIntermediateCa(input.tenantId, input.site, input.rotationKey);
      await audit.append({
        tenantId: input.tenantId,
        actor: input.requestedBy,
        actorType: 'user',
        action: 'ca.intermediate_rotated',
        targetType: 'certificate',
        targetId: current.id,
        details: { site: input.site, previousCertificateId: previous.id, serialNumber: current.serialNumber },
      });
      return { previousCertificateId: previous.id, currentCertificateId: current.id };
    }),

    /** Devices still holding a live certificate from the CA, a page at a time. */
    devicesOnCa: provisioningStep(async (input: { caCertificateId: string; limit: number; after?: string }) => {
      const rows = await inventory.liveDeviceCertificatesIssuedBy(input.caCertificateId, input.limit, input.after);
      return { devices: rows.map((row) => ({ deviceId: row.deviceId!, certificateId: row.id })) };
    }),

    countDevicesOnCa: provisioningStep(async (input: { caCertificateId: string }) => {
      return { remaining: await inventory.countLiveDeviceCertificatesIssuedBy(input.caCertificateId) };
    }),

    /** Asks each device's renewal workflow to renew now, starting one for certificates that had none. */
    requestRenewals: provisioningStep(
      async (input: { tenantId: string; devices: { deviceId: string; certificateId: string }[]; reason: string }) => {
        const failed: string[] = [];
        for (const { deviceId, certificateId } of input.devices) {
          try {
            if (!deps.renewals) throw new Error('renewal workflows are not reachable from this worker');
            await deps.renewals.track(await ca.getCertificate(certificateId));
            await deps.renewals.renewNow(input.tenantId, deviceId, input.reason);
          } catch (error) {
            logger.warn({ tenantId: input.tenantId, deviceId, err: error }, 'could not ask the device renewal workflow to renew');
            failed.push(deviceId);
          }
        }
        return { failed };
      },
    ),

    /**
     * The CA's periodic round, on a central worker: every CA's CRL, and the certificates the service
     * holds itself (each tenant's client identity and configuration signer) renewed when due, so an
     * edge worker that cannot sign finds them current.
     */
    publishAllCrls: provisioningStep(async () => {
      const published = (await deps.crls.publishAll()).length;
      await ca.completeServiceHierarchies();
      return { published };
    }),

    revokeRetiredCa: provisioningStep(async (input: { tenantId: string; certificateId: string; requestedBy: string }) => {
      const revoked = await ca.revokeCertificate(input.certificateId, 'superseded');
      await audit.append({
        tenantId: input.tenantId,
        actor: input.requestedBy,
        actorType: 'user',
        action: 'certificate.revoked',
        targetType: 'certificate',
        targetId: revoked.id,
        details: { certificateType: revoked.certificateType, site: revoked.site, reason: 'superseded' },
      });
      return {};
    }),
  };
}

export type CertificateLifecycleActivities = ReturnType<typeof createCertificateLifecycleActivities>;
