/**
 * Activities of credential rotation: the adapter replaces the device's per-device management
 * secrets (the rotation is safe to repeat after a crash at any point, see
 * `adapters/secret-rotation.ts`), and the bookkeeping around it: the registry's rotation time, the
 * audit trail, the alert of a rotation that cannot finish, and the sweep's list of devices due.
 */
import { Context } from '@temporalio/activity';
import { alertFingerprint, alertKinds, type AlertStore } from '../alerts/alert-store';
import type { AuditLog } from '../audit/audit-log';
import type { DeviceAdapter } from '../adapters/device-adapter';
import type { SecretVault } from '../custody/secret-vault';
import type { CertificateAuthorityService, ServiceIdentities } from '../pki/certificate-authority';
import type { DeviceRegistry } from '../registry/device-registry';
import type { FleetPolicies } from '../fleet/fleet-policies';
import { ConflictError, NotImplementedError } from '../foundation/errors';
import type { Logger } from '../foundation/logger';
import type { CredentialRotationInput, CredentialRotationOutcome, CredentialRotationSweepReport } from '../contracts/credential-rotation';
import { deviceSessions } from './device-sessions';
import { provisioningStep } from './step';

export interface CredentialRotationActivityDependencies {
  audit: AuditLog;
  alerts: AlertStore;
  registry: DeviceRegistry;
  ca: Pick<CertificateAuthorityService, 'getCertificate'> & Pick<ServiceIdentities, 'ensureServiceIdentity'>;
  vault: SecretVault;
  adapters: ReadonlyMap<string, DeviceAdapter>;
  adapterFor: (protocol: string) => DeviceAdapter;
  fleetPolicies: FleetPolicies;
  logger: Logger;
}

/** The protocols whose adapters have per-device management secrets to rotate. */
export function rotatableProtocols(adapters: ReadonlyMap<string, DeviceAdapter>): string[] {
  return [...adapters.values()].filter((adapter) => adapter.rotateCredentials).map((adapter) => adapter.protocol);
}

export function createCredentialRotationActivities(deps: CredentialRotationActivityDependencies) {
  const { audit, alerts, registry, fleetPolicies, logger } = deps;
  const { withDevice } = deviceSessions(deps);
  const workflowId = () => Context.current().info.workflowExecution?.workflowId ?? 'credential-rotation';
  const failingFingerprint = (deviceId: string) => alertFingerprint(alertKinds.credentialRotationFailing, deviceId);

  return {
    /** The adapter's rotation, on an active device only. */
    rotateManagementSecrets: provisioningStep(async (input: { tenantId: string; deviceId: string }) =>
      withDevice(input, async (device, adapter, session) => {
        if (device.lifecycleState !== 'active') {
          throw new ConflictError(`device ${device.deviceId} is ${device.lifecycleState}: only an active device's management secrets are rotated`);
        }
        if (!adapter.rotateCredentials) {
          throw new NotImplementedError(`${device.protocol} devices hold no per-device management secret of ours to rotate`);
        }
        return adapter.rotateCredentials(session);
      }),
    ),

    /** The registry's rotation time, the audit event, and any open alert of an earlier failure resolved. */
    async recordCredentialRotation(input: CredentialRotationInput & { rotated: string[] }): Promise<CredentialRotationOutcome> {
      const rotatedAt = new Date();
      await registry.markCredentialsRotated(input.tenantId, input.deviceId, rotatedAt);
      await audit.append({
        tenantId: input.tenantId,
        actor: workflowId(),
        actorType: 'workflow',
        action: 'device.credentials_rotated',
        targetType: 'device',
        targetId: input.deviceId,
        details: { rotated: input.rotated, reason: input.reason, requestedBy: input.requestedBy },
      });
      await alerts.resolve(input.tenantId, failingFingerprint(input.deviceId), workflowId());
      logger.info({ tenantId: input.tenantId, deviceId: input.deviceId, rotated: input.rotated }, 'device management secrets rotated');
      return { tenantId: input.tenantId, deviceId: input.deviceId, rotated: input.rotated, rotatedAt: rotatedAt.toISOString() };
    },

    /** A rotation that could not finish: audited, and alerted until a later one succeeds. */
    async recordCredentialRotationFailure(input: CredentialRotationInput & { error: string; errorType: string }): Promise<void> {
      await audit.append({
        tenantId: input.tenantId,
        actor: workflowId(),
        actorType: 'workflow',
        action: 'device.credentials_rotated',
        outcome: 'failure',
        targetType: 'device',
        targetId: input.deviceId,
        details: { error: input.error, errorType: input.errorType, reason: input.reason, requestedBy: input.requestedBy },
      });
      await alerts.raise({
        tenantId: input.tenantId,
        kind: alertKinds.credentialRotationFailing,
        severity: 'warning',
        fingerprint: failingFingerprint(input.deviceId),
        summary: `the management secrets of device ${input.deviceId} could not be rotated: ${input.error}`,
        details: { deviceId: input.deviceId, errorType: input.errorType, workflowId: workflowId() },
        raisedBy: workflowId(),
      });
    },

    /** How often the tenant rotates (null: never) and how many devices a sweep takes on at once. */
    async credentialRotationPolicy(input: { tenantId: string }): Promise<{ rotationDays: number | null; concurrency: number }> {
      const policy = await fleetPolicies.get(input.tenantId);
      return { rotationDays: policy.credentialRotationDays, concurrency: policy.healthProbeConcurrency };
    },

    /** A page of active devices, of protocols that can rotate, whose secrets were last set before `dueBefore`. */
    async listDevicesDueForCredentialRotation(input: { tenantId: string; dueBefore: string; after?: string; limit: number }): Promise<string[]> {
      return registry.listDueForCredentialRotation(input.tenantId, {
        protocols: rotatableProtocols(deps.adapters),
        dueBefore: new Date(input.dueBefore),
        ...(input.after !== undefined ? { after: input.after } : {}),
        limit: input.limit,
      });
    },

    async recordCredentialRotationSweep(input: { report: CredentialRotationSweepReport }): Promise<void> {
      const { report } = input;
      await audit.append({
        tenantId: report.tenantId,
        actor: workflowId(),
        actorType: 'workflow',
        action: 'device.credential_rotation_swept',
        outcome: report.failed === 0 ? 'success' : 'failure',
        details: { ...report, failedDevices: report.failedDevices.slice(0, 100) },
      });
      logger.info({ tenantId: report.tenantId, due: report.due, rotated: report.rotated, failed: report.failed }, 'credential rotation sweep finished');
    },
  };
}

export type CredentialRotationActivities = ReturnType<typeof createCredentialRotationActivities>;
