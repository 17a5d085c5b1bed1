/**
 * Activities of zero-touch provisioning: turning a sighting into a provisioning run's input
 * (where to reach the device, what it must prove it is), and the alerts and audit of what became
 * of a registration.
 */
import { eq } from 'drizzle-orm';
import type { DeviceAdapter, DeviceCredentials } from '../adapters/device-adapter';
import { alertFingerprint, alertKinds, type AlertStore } from '../alerts/alert-store';
import type { AuditLog } from '../audit/audit-log';
import type { SecretVault } from '../custody/secret-vault';
import type { Database } from '../db/client';
import { zeroTouchRegistrations } from '../db/schema';
import type { ProvisioningService } from '../provisioning/provisioning-service';
import { IdentityMismatchError, NotFoundError, ValidationError } from '../foundation/errors';
import type { Logger } from '../foundation/logger';
import type { DeviceSighting, ZeroTouchState } from '../workflows/zero-touch-definitions';
import { initialCredentialsPurpose } from '../registry/initial-credentials';
import { provisioningStep } from './step';

export interface ZeroTouchDependencies {
  db: Database;
  vault: SecretVault;
  alerts: AlertStore;
  audit: AuditLog;
  adapterFor: (protocol: string) => DeviceAdapter;
  /** Validates the run as the API would (template, addresses, registry conflicts, approval policies). */
  provisioning: Pick<ProvisioningService, 'validate' | 'runInput'>;
  logger: Logger;
}

export function createZeroTouchActivities(deps: ZeroTouchDependencies) {
  const { db, vault, alerts, audit, adapterFor, provisioning, logger } = deps;

  async function registration(registrationId: string) {
    const [row] = await db.select().from(zeroTouchRegistrations).where(eq(zeroTouchRegistrations.id, registrationId));
    if (!row) throw new NotFoundError(`zero-touch registration ${registrationId} no longer exists`);
    return row;
  }

  return {
    /**
     * Where to reach the device and who it must prove to be. What the registration does not say
     * (a serial when only the MAC was registered, or the reverse) is read from the device itself,
     * and must not contradict the registration; the run's identify step then checks both again.
     */
    prepareZeroTouchProvisioning: provisioningStep(
      async (input: { tenantId: string; registrationId: string; sighting: DeviceSighting }) => {
        const row = await registration(input.registrationId);
        const adapter = adapterFor(row.protocol);
        const address = input.sighting.endpoints.find((endpoint) => endpoint.protocol === row.protocol)?.address ?? input.sighting.ip;
        if (!address) throw new ValidationError(`the device was seen without a ${row.protocol} address to reach it at`);
        adapter.validateAddress(address);

        let serialNumber = row.serialNumber ?? input.sighting.serialNumber;
        let macAddress = row.macAddress ?? input.sighting.macAddress;
        if (!serialNumber || !macAddress) {
          const credentials = await vault.read<DeviceCredentials>(row.tenantId, row.deviceId, initialCredentialsPurpose);
          const identity = await adapter.identify({ address, credentials });
          const contradictions = [
            row.serialNumber && identity.serialNumber !== row.serialNumber ? `serial number ${identity.serialNumber} (registered ${row.serialNumber})` : undefined,
            row.macAddress && identity.macAddress && identity.macAddress !== row.macAddress ? `MAC address ${identity.macAddress} (registered ${row.macAddress})` : undefined,
          ].filter(Boolean);
          if (contradictions.length > 0) throw new IdentityMismatchError(`device at ${address} reports ${contradictions.join(' and ')}`);
          serialNumber ??= identity.serialNumber;
          macAddress ??= identity.macAddress;
        }
        if (!macAddress) throw new ValidationError(`device at ${address} reports no MAC address and none was registered`);

        const credentials = await vault.read<DeviceCredentials>(row.tenantId, row.deviceId, initialCredentialsPurpose);
        const { request, devices } = await provisioning.validate(row.tenantId, {
          templateId: row.templateId,
          devices: [
            {
              deviceId: row.deviceId,
              serialNumber,
              macAddress,
              address,
              protocol: row.protocol,
              deviceType: row.deviceType,
              site: row.site,
              ...(row.name ? { name: row.name } : {}),
            },
          ],
        });
        const runInput = await provisioning.runInput(row.tenantId, { ...request, provisioningMethod: 'api' }, devices[0]!, {
          hasInitialCredentials: credentials !== undefined,
          requestedBy: `zero-touch:${row.id}`,
          approvalRequired: row.requireApproval,
        });
        return { input: { ...runInput, provisioningMethod: 'automatic' as const } };
      },
    ),

    reportZeroTouchMismatch: provisioningStep(
      async (input: { tenantId: string; registrationId: string; deviceId: string; sighting: DeviceSighting; reason: string }) => {
        await alerts.raise({
          tenantId: input.tenantId,
          kind: alertKinds.zeroTouchMismatch,
          severity: 'warning',
          fingerprint: alertFingerprint(alertKinds.zeroTouchMismatch, input.deviceId, input.sighting.macAddress ?? input.sighting.ip ?? input.sighting.via),
          summary: `a device seen for zero-touch registration ${input.deviceId} was not provisioned: ${input.reason}`,
          details: { deviceId: input.deviceId, registrationId: input.registrationId, sighting: input.sighting, reason: input.reason },
          raisedBy: 'zero-touch',
        });
        await audit.append({
          tenantId: input.tenantId,
          actor: `zero-touch:${input.registrationId}`,
          actorType: 'workflow',
          action: 'zero_touch.identity_mismatch',
          outcome: 'failure',
          targetType: 'device',
          targetId: input.deviceId,
          details: { sighting: input.sighting, reason: input.reason },
        });
        logger.warn({ tenantId: input.tenantId, deviceId: input.deviceId, via: input.sighting.via }, 'zero-touch sighting did not match its registration');
        return {};
      },
    ),

    recordZeroTouchOutcome: provisioningStep(
      async (input: { tenantId: string; registrationId: string; deviceId: string; state: ZeroTouchState; error?: string }) => {
        await audit.append({
          tenantId: input.tenantId,
          actor: `zero-touch:${input.registrationId}`,
          actorType: 'workflow',
          action: `zero_touch.${input.state}`,
          outcome: input.state === 'provisioned' ? 'success' : 'failure',
          targetType: 'device',
          targetId: input.deviceId,
          details: { ...(input.error ? { error: input.error } : {}) },
        });
        return {};
      },
    ),
  };
}

export type ZeroTouchActivities = ReturnType<typeof createZeroTouchActivities>;
