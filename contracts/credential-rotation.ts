/**
 * Ids, inputs and outcomes of the rotation of devices' per-device management secrets (the ONVIF
 * management password, SNMPv3 keys, an OSDP reader's SCBK): one workflow per device, and a sweep
 * per tenant run by its schedule, shared by the workflows, their activities, the service and the API.
 */

/** One rotation of a device at a time: a second request while one runs finds that one. */
export function credentialRotationWorkflowId(tenantId: string, deviceId: string): string {
  return `rotate-credentials:${tenantId}:${deviceId}`;
}

/** The tenant's schedule of sweeps, kept while its fleet policy sets `credentialRotationDays`. */
export function credentialRotationScheduleId(tenantId: string): string {
  return `credential-rotation:${tenantId}`;
}

export interface CredentialRotationInput {
  tenantId: string;
  deviceId: string;
  /** Why, in the operator's words, or the sweep that found the secrets due. */
  reason: string;
  requestedBy: string;
  /** How long an unreachable device is retried before the rotation fails and alerts. */
  retryWindowSeconds?: number;
}

export interface CredentialRotationOutcome {
  tenantId: string;
  deviceId: string;
  /** What was rotated, in the operator's words. */
  rotated: string[];
  rotatedAt: string;
}

export interface CredentialRotationSweepInput {
  tenantId: string;
  /** Rotations started side by side; the tenant's probe concurrency when absent. */
  concurrency?: number;
}

/** What a sweep did; the counts are complete, the device lists capped. */
export interface CredentialRotationSweepReport {
  tenantId: string;
  /** Devices whose secrets were older than the policy allows. */
  due: number;
  rotated: number;
  failed: number;
  /** Due devices with a rotation already under way (asked for by an operator, say). */
  alreadyRotating: number;
  failedDevices: string[];
}
