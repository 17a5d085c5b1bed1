/**
 * Judging the firmware a device reports against its tenant's catalogue, and what the tenant's fleet
 * policy makes of the verdict.
 *
 * - `approved`: the version is listed approved and, where the device reports an image digest, the
 *   digest is the approved image's.
 * - `known_bad`: the version is listed known bad, the digest is a known-bad image's, or the digest
 *   differs from the approved image's (a tampered or mislabelled image is worse than an unknown one).
 * - `unknown`: neither listed nor matching anything listed.
 *
 * Only the HTTPS reference protocol reports an image digest; ONVIF, SNMP, OSDP and BACnet devices
 * report a version alone and are judged by version only (`basis: 'version'`), as are approved
 * versions whose vendor publishes no digest.
 */
import type { AlertStore } from '../alerts/alert-store';
import { alertFingerprint, alertKinds } from '../alerts/alert-store';
import type { AuditLog } from '../audit/audit-log';
import type { ApprovalRequirement } from '../contracts/provisioning';
import { PolicyViolationError } from '../foundation/errors';
import type { DeviceRegistry, RegisteredDevice } from '../registry/device-registry';
import { catalogueName, type FirmwareCatalogue, type FirmwareCatalogueEntry } from './firmware-catalogue';
import type { FleetPolicies } from './fleet-policies';

export type FirmwareStatus = 'approved' | 'unknown' | 'known_bad';

/** What a device says it runs. */
export interface ReportedFirmware {
  manufacturer: string;
  model: string;
  firmwareVersion: string;
  /** SHA-256 of the running image, where the protocol reports one. */
  firmwareHash?: string | null;
}

export interface FirmwareVerdict {
  status: FirmwareStatus;
  /** `digest` when the image digest was compared; `version` when only the version could be. */
  basis: 'digest' | 'version';
  reason: string;
  vendor: string;
  model: string;
  version: string;
  digest?: string;
  /** The catalogue entry the verdict rests on. */
  catalogueEntryId?: string;
  judgedAt: string;
}

/** What the tenant's policy does with a verdict: nothing for approved firmware. */
export type FirmwareAction = 'none' | 'block' | 'approve' | 'alert';

/** The catalogue's word on the firmware: pure, so it is the same wherever it is asked. */
export function judgeFirmware(reported: ReportedFirmware, entries: readonly FirmwareCatalogueEntry[], now = new Date()): FirmwareVerdict {
  const digest = reported.firmwareHash ? reported.firmwareHash.toLowerCase() : undefined;
  const base = {
    vendor: reported.manufacturer,
    model: reported.model,
    version: reported.firmwareVersion,
    ...(digest ? { digest } : {}),
    judgedAt: now.toISOString(),
  };
  const ofModel = entries.filter(
    (entry) => catalogueName(entry.vendor) === catalogueName(reported.manufacturer) && catalogueName(entry.model) === catalogueName(reported.model),
  );
  const listed = ofModel.find((entry) => entry.version === reported.firmwareVersion);
  const badImage = digest ? ofModel.find((entry) => entry.status === 'known_bad' && entry.sha256 === digest) : undefined;

  if (listed?.status === 'known_bad' || badImage) {
    const entry = listed?.status === 'known_bad' ? listed : badImage!;
    return {
      ...base,
      status: 'known_bad',
      basis: badImage ? 'digest' : 'version',
      reason: `version ${entry.version} is known bad: ${entry.reason ?? 'no reason given'}`,
      catalogueEntryId: entry.id,
    };
  }
  if (listed?.status === 'approved') {
    if (!digest) {
      return { ...base, status: 'approved', basis: 'version', reason: 'the device reports no image digest: approved by version only', catalogueEntryId: listed.id };
    }
    if (listed.sha256 === null) {
      return { ...base, status: 'approved', basis: 'version', reason: 'the vendor publishes no image digest: approved by version only', catalogueEntryId: listed.id };
    }
    if (listed.sha256 !== digest) {
      return { ...base, status: 'known_bad', basis: 'digest', reason: 'image digest does not match the approved image', catalogueEntryId: listed.id };
    }
    return { ...base, status: 'approved', basis: 'digest', reason: 'version and image digest approved', catalogueEntryId: listed.id };
  }
  return {
    ...base,
    status: 'unknown',
    basis: digest ? 'digest' : 'version',
    reason: `${reported.manufacturer} ${reported.model} firmware ${reported.firmwareVersion} is not in the catalogue`,
  };
}

/** How long a run waits for an approver of its firmware, and when nobody deciding is escalated. */
export const firmwareApprovalTimeoutSeconds = 72 * 3600;
export const firmwareApprovalEscalateAfterSeconds = 4 * 3600;

/** The approval a run waits for when its firmware needs one (its policy id names the verdict). */
export function firmwareApprovalRequirement(verdict: FirmwareVerdict): ApprovalRequirement {
  return {
    policyIds: [`firmware:${verdict.status}`],
    timeoutSeconds: firmwareApprovalTimeoutSeconds,
    escalateAfterSeconds: firmwareApprovalEscalateAfterSeconds,
  };
}

export interface FirmwareJudgement {
  verdict: FirmwareVerdict;
  action: FirmwareAction;
}

export class FirmwareVerdicts {
  constructor(
    private readonly deps: {
      catalogue: FirmwareCatalogue;
      policies: FleetPolicies;
      registry: DeviceRegistry;
      alerts: AlertStore;
      audit: AuditLog;
    },
  ) {}

  /**
   * Judges what the device reports, records the verdict with the device and applies the tenant's
   * policy: `block` raises a critical alert and throws (non-retryable), `alert` raises a warning,
   * `approve` is left to the caller, who makes the run wait for an approver. `actor` names the run.
   */
  async judge(device: Pick<RegisteredDevice, 'tenantId' | 'deviceId' | 'protocol'>, reported: ReportedFirmware, actor: string, stage: 'identification' | 'self-test'): Promise<FirmwareJudgement> {
    const { tenantId, deviceId } = device;
    const { catalogue, policies, registry, alerts, audit } = this.deps;
    const verdict = judgeFirmware(reported, await catalogue.entriesFor(tenantId, reported.manufacturer, reported.model));
    await registry.recordFirmwareVerdict(tenantId, deviceId, {
      firmwareVersion: reported.firmwareVersion,
      firmwareHash: reported.firmwareHash ?? null,
      status: verdict.status,
      verdict: { ...verdict, protocol: device.protocol, stage },
    });
    const policy = await policies.get(tenantId);
    const action: FirmwareAction =
      verdict.status === 'approved' ? 'none' : verdict.status === 'unknown' ? policy.firmwareUnknown : policy.firmwareKnownBad;
    await audit.append({
      tenantId,
      actor,
      actorType: 'workflow',
      action: action === 'block' ? 'firmware.blocked' : 'firmware.judged',
      outcome: action === 'block' ? 'failure' : 'success',
      targetType: 'device',
      targetId: deviceId,
      details: { ...verdict, stage, action },
    });
    const what = `${deviceId} runs ${verdict.vendor} ${verdict.model} firmware ${verdict.version}`;
    if (action === 'block') {
      await alerts.raise({
        tenantId,
        kind: alertKinds.firmwareBlocked,
        severity: 'critical',
        fingerprint: alertFingerprint(alertKinds.firmwareBlocked, deviceId),
        summary: `${what} (${verdict.status.replace('_', ' ')}): provisioning stopped, nothing issued`,
        details: { deviceId, stage, verdict },
        raisedBy: actor,
      });
      throw new PolicyViolationError(`firmware ${verdict.version} is ${verdict.status.replace('_', ' ')} (${verdict.reason}); the tenant's policy blocks it`);
    }
    if (action === 'alert') {
      await alerts.raise({
        tenantId,
        kind: alertKinds.firmwareUnapproved,
        severity: 'warning',
        fingerprint: alertFingerprint(alertKinds.firmwareUnapproved, deviceId),
        summary: `${what} (${verdict.status.replace('_', ' ')}): ${verdict.reason}`,
        details: { deviceId, stage, verdict },
        raisedBy: actor,
      });
    }
    if (action === 'none') {
      // Approved now: whatever was said about this device's firmware before no longer holds.
      await alerts.resolve(tenantId, alertFingerprint(alertKinds.firmwareUnapproved, deviceId), actor);
      await alerts.resolve(tenantId, alertFingerprint(alertKinds.firmwareBlocked, deviceId), actor);
    }
    return { verdict, action };
  }
}
