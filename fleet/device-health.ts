/**
 * What one probe of an active device means, and recording it: the device's health in the registry,
 * an event for each transition (online, offline, rebooted, certificate mismatch), and the alerts
 * an operator acts on. A device counts as offline only after the tenant's number of failed probes
 * in a row, so one lost packet pages nobody; its first answer after that resolves the alert.
 */
import { alertFingerprint, alertKinds, type AlertStore } from '../alerts/alert-store';
import type { ProbeReport } from '../adapters/device-adapter';
import type { DeviceRegistry, RegisteredDevice } from '../registry/device-registry';
import type { DeviceHealthEvents, NewHealthEvent } from './health-events';

export type ProbeOutcome = { answered: true; report: ProbeReport } | { answered: false; error: string };

/** The registry's view of a device's health before the probe. */
export type DeviceHealthState = Pick<
  RegisteredDevice,
  'tenantId' | 'deviceId' | 'health' | 'consecutiveProbeFailures' | 'uptimeSeconds' | 'healthChangedAt' | 'lastRebootAt'
>;

export interface HealthJudgement {
  health: RegisteredDevice['health'];
  consecutiveProbeFailures: number;
  healthChanged: boolean;
  uptimeSeconds?: number;
  /** When the device last started, when this probe found it rebooted (or first learnt its uptime). */
  lastRebootAt?: Date;
  rebooted: boolean;
  /** The device presented a certificate other than the one we issued it. */
  certificateMismatch?: { presented: string; expected: string };
  /** It presented ours: any open mismatch alert is over. */
  certificateMatches: boolean;
}

export function judgeProbe(
  device: DeviceHealthState,
  outcome: ProbeOutcome,
  options: { offlineAfterFailures: number; expectedCertificateFingerprint?: string; now: Date },
): HealthJudgement {
  const { now } = options;
  if (!outcome.answered) {
    const failures = device.consecutiveProbeFailures + 1;
    const goesOffline = failures >= options.offlineAfterFailures && device.health !== 'offline';
    return {
      health: goesOffline ? 'offline' : device.health,
      consecutiveProbeFailures: failures,
      healthChanged: goesOffline,
      rebooted: false,
      certificateMatches: false,
    };
  }
  const { report } = outcome;
  const uptime = report.uptimeSeconds;
  // Uptime that went down means the device started again since the last answer.
  const rebooted = uptime !== undefined && device.uptimeSeconds !== null && uptime < device.uptimeSeconds;
  const startedAt = uptime === undefined ? undefined : new Date(now.getTime() - uptime * 1000);
  const expected = options.expectedCertificateFingerprint?.toLowerCase();
  const presented = report.presentedCertificateFingerprint?.toLowerCase();
  return {
    health: 'online',
    consecutiveProbeFailures: 0,
    healthChanged: device.health !== 'online',
    ...(uptime !== undefined ? { uptimeSeconds: uptime } : {}),
    ...(startedAt && (rebooted || device.lastRebootAt === null) ? { lastRebootAt: startedAt } : {}),
    rebooted,
    ...(expected && presented && presented !== expected ? { certificateMismatch: { presented, expected } } : {}),
    certificateMatches: expected !== undefined && presented === expected,
  };
}

export interface HealthRecordingDependencies {
  registry: Pick<DeviceRegistry, 'recordHealth'>;
  alerts: Pick<AlertStore, 'raise' | 'resolve'>;
  events: Pick<DeviceHealthEvents, 'record'>;
}

/** Writes what a probe meant: registry columns always, events and alerts on transitions only. */
export async function recordProbe(
  deps: HealthRecordingDependencies,
  device: DeviceHealthState,
  judgement: HealthJudgement,
  context: { at: Date; raisedBy: string; offlineAfterFailures: number; error?: string },
): Promise<void> {
  const { tenantId, deviceId } = device;
  const { at, raisedBy } = context;
  await deps.registry.recordHealth(tenantId, deviceId, {
    health: judgement.health,
    healthCheckedAt: at,
    consecutiveProbeFailures: judgement.consecutiveProbeFailures,
    ...(judgement.healthChanged ? { healthChangedAt: at } : {}),
    ...(judgement.uptimeSeconds !== undefined ? { uptimeSeconds: judgement.uptimeSeconds } : {}),
    ...(judgement.lastRebootAt ? { lastRebootAt: judgement.lastRebootAt } : {}),
  });

  const events: NewHealthEvent[] = [];
  const offlineAlert = alertFingerprint(alertKinds.deviceOffline, deviceId);
  if (judgement.healthChanged && judgement.health === 'offline') {
    events.push({ tenantId, deviceId, kind: 'offline', occurredAt: at, details: { failedProbes: judgement.consecutiveProbeFailures, ...(context.error ? { error: context.error } : {}) } });
    await deps.alerts.raise({
      tenantId,
      kind: alertKinds.deviceOffline,
      severity: 'warning',
      fingerprint: offlineAlert,
      summary: `${deviceId} has not answered ${judgement.consecutiveProbeFailures} health probes in a row`,
      details: { deviceId, failedProbes: judgement.consecutiveProbeFailures, offlineAfterFailures: context.offlineAfterFailures, ...(context.error ? { error: context.error } : {}) },
      raisedBy,
    });
  }
  if (judgement.healthChanged && judgement.health === 'online') {
    const wasOffline = device.health === 'offline';
    events.push({
      tenantId,
      deviceId,
      kind: 'online',
      occurredAt: at,
      details: { previously: device.health, ...(wasOffline && device.healthChangedAt ? { offlineSince: device.healthChangedAt.toISOString() } : {}) },
    });
    if (wasOffline) await deps.alerts.resolve(tenantId, offlineAlert, raisedBy);
  }
  if (judgement.rebooted) {
    events.push({
      tenantId,
      deviceId,
      kind: 'rebooted',
      occurredAt: at,
      details: { uptimeSeconds: judgement.uptimeSeconds, previousUptimeSeconds: device.uptimeSeconds, ...(judgement.lastRebootAt ? { startedAt: judgement.lastRebootAt.toISOString() } : {}) },
    });
  }
  const mismatchAlert = alertFingerprint(alertKinds.deviceCertificateMismatch, deviceId);
  if (judgement.certificateMismatch) {
    const { presented, expected } = judgement.certificateMismatch;
    const raised = await deps.alerts.raise({
      tenantId,
      kind: alertKinds.deviceCertificateMismatch,
      severity: 'critical',
      fingerprint: mismatchAlert,
      summary: `${deviceId} presents certificate ${presented}, not the one we issued it: the unit may have been swapped or someone is in the middle`,
      details: { deviceId, presentedFingerprint: presented, issuedFingerprint: expected },
      raisedBy,
    });
    // One event when the mismatch is first seen, not one per probe while it lasts.
    if (raised.created) events.push({ tenantId, deviceId, kind: 'certificate_mismatch', occurredAt: at, details: { presentedFingerprint: presented, issuedFingerprint: expected } });
  } else if (judgement.certificateMatches) {
    await deps.alerts.resolve(tenantId, mismatchAlert, raisedBy);
  }
  await deps.events.record(events);
}
