/**
 * The side effects of a device leaving the fleet or being replaced: ending its workflows, removing
 * what provisioning created on the device, revoking its certificates, forgetting its secrets and
 * marking it decommissioned. Each is safe to repeat: a retry, or a decommissioning resumed after a
 * worker died, finds what was already done and does nothing twice.
 */
import type { DeviceAdapter } from '../adapters/device-adapter';
import type { AuditLog } from '../audit/audit-log';
import type { SecretVault } from '../custody/secret-vault';
import type { DeviceWorkflows } from '../fleet/device-workflows';
import type { Logger } from '../foundation/logger';
import type { CertificateAuthorityService, ServiceIdentities } from '../pki/certificate-authority';
import type { CertificateInventory } from '../pki/certificate-inventory';
import type { DeviceRegistry } from '../registry/device-registry';
import { deviceSessions } from './device-sessions';
import { provisioningStep } from './step';

export interface DeviceLifecycleDependencies {
  registry: DeviceRegistry;
  ca: CertificateAuthorityService & Pick<ServiceIdentities, 'ensureServiceIdentity'>;
  inventory: Pick<CertificateInventory, 'list'>;
  vault: SecretVault;
  audit: AuditLog;
  adapterFor: (protocol: string) => DeviceAdapter;
  workflows: Pick<DeviceWorkflows, 'end'>;
  logger: Logger;
}

interface DeviceRef {
  tenantId: string;
  deviceId: string;
}

/** How long the device's workflows get to stop their own way before they are terminated. */
const workflowStopWaitMs = 60_000;
/** Live certificates revoked per query; a device rarely holds more than two. */
const certificatePage = 100;

export function createDeviceLifecycleActivities(deps: DeviceLifecycleDependencies) {
  const { registry, ca, inventory, vault, audit, adapterFor, workflows, logger } = deps;
  const { withDevice } = deviceSessions({ ca, vault, registry, adapterFor });

  /** Revokes one of the device's certificates and puts it on the audit trail, as the workflow `actor`. */
  async function revokeOnRecord(by: DeviceRef & { actor: string }, certificateId: string, reason: 'cessationOfOperation' | 'superseded', why?: string) {
    const revoked = await ca.revokeCertificate(certificateId, reason);
    await audit.append({
      tenantId: by.tenantId,
      actor: by.actor,
      actorType: 'workflow',
      action: 'certificate.revoked',
      targetType: 'certificate',
      targetId: revoked.id,
      details: { deviceId: by.deviceId, serialNumber: revoked.serialNumber, reason, ...(why ? { why } : {}) },
    });
    return revoked;
  }

  return {
    /** Ends the device's provisioning run, zero-touch registration and certificate renewal. */
    endDeviceWorkflows: provisioningStep(async (input: DeviceRef & { reason: string; since: string }) => {
      const ended = await workflows.end(input.tenantId, input.deviceId, input.reason, { waitMs: workflowStopWaitMs, since: new Date(input.since) });
      return { ended };
    }),

    /**
     * Removes the per-device user or keys provisioning created on the device, where its protocol
     * allows it; `supported: false` where the adapter has no way to. Throws when the device cannot
     * be reached, for the workflow's bounded retries.
     */
    removeDeviceManagementAccess: provisioningStep(async (input: DeviceRef & { resetToInstallKey?: boolean }) => {
      return withDevice(input, async (device, adapter, session) => {
        if (!adapter.removeManagementAccess) return { supported: false, removed: [] as string[] };
        const { removed } = await adapter.removeManagementAccess(session, { resetToInstallKey: input.resetToInstallKey === true });
        logger.info({ tenantId: device.tenantId, deviceId: device.deviceId, removed }, 'management access removed from the device');
        return { supported: true, removed };
      });
    }),

    /** Revokes every certificate of the device that is not revoked yet; returns their serial numbers. */
    revokeAllDeviceCertificates: provisioningStep(async (input: DeviceRef & { reason: 'cessationOfOperation'; actor: string }) => {
      const serials: string[] = [];
      for (;;) {
        const { items } = await inventory.list(input.tenantId, { certificateType: 'device', deviceId: input.deviceId, liveOnly: true, limit: certificatePage });
        if (items.length === 0) break;
        for (const certificate of items) serials.push((await revokeOnRecord(input, certificate.id, input.reason)).serialNumber);
      }
      return { serials };
    }),

    /** Forgets every secret the service holds for the device (initial credentials, adapter keys, configuration secrets). */
    removeDeviceSecrets: provisioningStep(async (input: DeviceRef) => {
      return { removed: await vault.removeAllOf(input.tenantId, input.deviceId) };
    }),

    markDeviceDecommissioned: provisioningStep(async (input: DeviceRef & { reason: string }) => {
      const device = await registry.markDecommissioned(input.tenantId, input.deviceId, input.reason);
      return { decommissionedAt: device.decommissionedAt!.toISOString() };
    }),

    /**
     * Revokes (`superseded`) the certificate a device held before it was provisioned again, unless
     * the device still uses it (the new run failed before installing its own).
     */
    revokeSupersededCertificate: provisioningStep(async (input: DeviceRef & { certificateId: string; actor: string }) => {
      const device = await registry.get(input.tenantId, input.deviceId);
      if (device.activeCertificateId === input.certificateId) return { revoked: false };
      await revokeOnRecord(input, input.certificateId, 'superseded', 'the device was provisioned again');
      return { revoked: true };
    }),

    recordDeviceReplacement: provisioningStep(async (input: { tenantId: string; oldDeviceId: string; newDeviceId: string }) => {
      await registry.recordReplacement(input.tenantId, input.oldDeviceId, input.newDeviceId);
      return {};
    }),
  };
}

export type DeviceLifecycleActivities = ReturnType<typeof createDeviceLifecycleActivities>;
