/**
 * Activities of zero-touch provisioning: turning a sighting into a provisioning run's input
 * (planned by the registration's domain code), and the alerts and audit of what became of a
 * registration.
 */
import { alertFingerprint, alertKinds, type AlertStore } from '../alerts/alert-store';
import type { AuditLog } from '../audit/audit-log';
import type { Logger } from '../foundation/logger';
import type { ProvisionDeviceInput } from '../contracts/provisioning';
import type { DeviceSighting, ZeroTouchState } from '../contracts/zero-touch';
import { provisioningStep } from './step';

/** Plans the run of a registered device where it was seen (zero-touch/run-planner.ts). */
export interface ZeroTouchRunPlans {
  plan(input: { registrationId: string; sighting: DeviceSighting }): Promise<ProvisionDeviceInput>;
}

export interface ZeroTouchDependencies {
  runs: ZeroTouchRunPlans;
  alerts: AlertStore;
  audit: AuditLog;
  logger: Logger;
}

export function createZeroTouchActivities(deps: ZeroTouchDependencies) {
  const { runs, alerts, audit, logger } = deps;

  return {
    /** The run that provisions the registration's device where it was seen, or why it may not be. */
    prepareZeroTouchProvisioning: provisioningStep(async (input: { tenantId: string; registrationId: string; sighting: DeviceSighting }) => ({
      input: await runs.plan(input),
    })),

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
