/**
 * The alert rules evaluated on a schedule. Each reports every alert that should be open for a
 * tenant right now; whatever it reported before and no longer does has cleared and is resolved.
 *
 * Unauthorized devices and compliance violations have no rule here: discovery and the
 * configuration engine see them as they happen and raise them through `AlertStore.raise`.
 */
import type { Client } from '@temporalio/client';
import type { Database } from '../db/client';
import { CertificateStore } from '../pki/certificate-store';
import { DeviceRegistry } from '../registry/device-registry';
import { provisioningSearchAttributes, tenantVisibilityFilter } from '../contracts/provisioning';
import type { SiteWorkers } from '../discovery/site-workers';
import { alertFingerprint, alertKinds, type AlertKind, type AlertStore, type RaiseAlertInput } from './alert-store';
import { siteWorkerMissingRule, type ActivityPollers } from './site-worker-rule';

export interface AlertSettings {
  certificateExpiry: {
    /** A live certificate expiring within this many days raises a warning. */
    warningDays: number;
    /** ...and within this many, a critical alert (instead of the warning). */
    criticalDays: number;
  };
  provisioningFailureRate: {
    /** Runs that closed within this window are counted. */
    windowMinutes: number;
    /** Alert when failed / (completed + failed) is above this (0 to 1). */
    threshold: number;
    /** Fewer closed runs than this say nothing about a rate, so no alert. */
    minimumRuns: number;
  };
  /** Default `defaultAlertSettings.siteWorkers`. */
  siteWorkers?: {
    /** A poller of a site's queue not seen for this long is gone (a live one polls about once a minute). */
    pollerStaleSeconds: number;
  };
}

export const defaultAlertSettings: AlertSettings = {
  certificateExpiry: { warningDays: 30, criticalDays: 7 },
  provisioningFailureRate: { windowMinutes: 60, threshold: 0.25, minimumRuns: 5 },
  siteWorkers: { pollerStaleSeconds: 150 },
};

/** An alert a rule says should be open; `tenantId` is the one evaluated. */
export type AlertCondition = Omit<RaiseAlertInput, 'tenantId' | 'raisedBy'>;

export interface AlertRule {
  name: string;
  /** The kinds this rule alone decides; their open alerts it no longer reports are resolved. */
  kinds: readonly AlertKind[];
  evaluate(tenantId: string, now: Date): Promise<AlertCondition[]>;
}

const dayMs = 86_400_000;

/** Certificate types whose expiry needs a person; the service's own TLS identity renews itself. */
const watchedCertificateTypes = ['device', 'intermediate', 'services-intermediate', 'root'] as const;

const certificateTypeNames: Record<(typeof watchedCertificateTypes)[number], string> = {
  device: 'Device certificate',
  intermediate: 'Intermediate CA certificate',
  'services-intermediate': 'Services intermediate CA certificate',
  root: 'Root CA certificate',
};

/**
 * Live certificates expiring within the warning window (warning), the critical window (critical),
 * or already expired (critical, its own kind). A device certificate replaced by a newer one on the
 * device no longer matters and is left out.
 */
export function certificateExpiryRule(db: Database, settings: AlertSettings['certificateExpiry']): AlertRule {
  const certificates = new CertificateStore(db);
  const devices = new DeviceRegistry(db);
  return {
    name: 'certificate expiry',
    kinds: [alertKinds.certificateExpiring, alertKinds.certificateExpired],
    async evaluate(tenantId, now) {
      const horizon = new Date(now.getTime() + settings.warningDays * dayMs);
      const criticalFrom = new Date(now.getTime() + settings.criticalDays * dayMs);
      const expiring = await certificates.liveExpiringBy(tenantId, watchedCertificateTypes, horizon);
      const replaced = await replacedOnTheirDevices(devices, tenantId, expiring);
      const rows = expiring.filter((row) => !replaced.has(row.id));

      return rows.map((row): AlertCondition => {
        const what = `${certificateTypeNames[row.certificateType as keyof typeof certificateTypeNames]} ${row.subjectDn}`;
        const details = {
          certificateId: row.id,
          certificateType: row.certificateType,
          serialNumber: row.serialNumber,
          subjectDn: row.subjectDn,
          ...(row.deviceId ? { deviceId: row.deviceId } : {}),
          ...(row.site ? { site: row.site } : {}),
          expiresAt: row.expiresAt.toISOString(),
        };
        if (row.expiresAt <= now) {
          return {
            kind: alertKinds.certificateExpired,
            severity: 'critical',
            fingerprint: alertFingerprint(alertKinds.certificateExpired, row.id),
            summary: `${what} expired on ${row.expiresAt.toISOString()}`,
            details,
          };
        }
        // Severity is part of the fingerprint: a warning that turns critical is a new alert (and
        // the warning resolves), so receivers that route by severity page on the critical one.
        const severity = row.expiresAt <= criticalFrom ? 'critical' : 'warning';
        const days = Math.ceil((row.expiresAt.getTime() - now.getTime()) / dayMs);
        return {
          kind: alertKinds.certificateExpiring,
          severity,
          fingerprint: alertFingerprint(alertKinds.certificateExpiring, row.id, severity),
          summary: `${what} expires on ${row.expiresAt.toISOString()} (within ${days} day${days === 1 ? '' : 's'})`,
          details,
        };
      });
    },
  };
}

/** Counts closed workflow runs matching a visibility query. */
export type WorkflowCounter = (query: string) => Promise<number>;

/** Counts through Temporal visibility (`CountWorkflowExecutions`), which the dev server's SQLite store supports too. */
export function visibilityCounter(client: Client): WorkflowCounter {
  return async (query) => (await client.workflow.count(query)).count;
}

/** Tenant ids are restricted to these characters elsewhere; anything else is never put in a query. */

/**
 * The visibility query for a tenant's provisioning runs that closed since `since` with the given
 * status. The workflow sets `ProvisioningStatus` as it ends; the execution status is matched too so
 * that runs cancelled through Temporal (also marked `failed`) are left out, as in the metrics. A run
 * stopped by the `cancel` signal ends as Failed and cannot be told apart here, so it counts.
 */
export function closedProvisioningRunsQuery(tenantId: string, status: 'completed' | 'failed', since: Date): string {
  return [
    `WorkflowType = 'provisionDevice'`,
    tenantVisibilityFilter(tenantId),
    `${provisioningSearchAttributes.status.name} = '${status}'`,
    `ExecutionStatus = '${status === 'completed' ? 'Completed' : 'Failed'}'`,
    `CloseTime >= '${since.toISOString()}'`,
  ].join(' AND ');
}

/** One alert per tenant while the share of failed provisioning runs over the window is above the threshold. */
export function provisioningFailureRateRule(count: WorkflowCounter, settings: AlertSettings['provisioningFailureRate']): AlertRule {
  return {
    name: 'provisioning failure rate',
    kinds: [alertKinds.provisioningFailureRate],
    async evaluate(tenantId, now) {
      const since = new Date(now.getTime() - settings.windowMinutes * 60_000);
      const [failed, completed] = await Promise.all([
        count(closedProvisioningRunsQuery(tenantId, 'failed', since)),
        count(closedProvisioningRunsQuery(tenantId, 'completed', since)),
      ]);
      const runs = failed + completed;
      if (runs < settings.minimumRuns || failed / runs <= settings.threshold) return [];
      const rate = failed / runs;
      return [
        {
          kind: alertKinds.provisioningFailureRate,
          severity: 'warning',
          fingerprint: alertFingerprint(alertKinds.provisioningFailureRate),
          summary: `${failed} of ${runs} provisioning runs failed in the last ${settings.windowMinutes} minutes (${Math.round(
            rate * 100,
          )}%, threshold ${Math.round(settings.threshold * 100)}%)`,
          details: {
            failed,
            completed,
            failureRate: rate,
            threshold: settings.threshold,
            windowMinutes: settings.windowMinutes,
            since: since.toISOString(),
          },
        },
      ];
    },
  };
}

export function alertRules(deps: { db: Database; count: WorkflowCounter; settings: AlertSettings }): AlertRule[] {
  return [
    certificateExpiryRule(deps.db, deps.settings.certificateExpiry),
    provisioningFailureRateRule(deps.count, deps.settings.provisioningFailureRate),
  ];
}

/** Where the tenants to evaluate are found. */
export interface AlertedRecords {
  db: Database;
  devices: DeviceRegistry;
  alerts: AlertStore;
}

/**
 * Tenants worth evaluating: those with certificates or devices, and those with open alerts of the
 * rules' kinds (so an alert still clears when its tenant has nothing left).
 */
export async function tenantsToEvaluate(records: AlertedRecords, rules: readonly AlertRule[]): Promise<string[]> {
  const withCertificates = await new CertificateStore(records.db).tenantIds();
  const withDevices = await records.devices.tenants();
  const withAlerts = await records.alerts.tenantsWithOpenAlerts(rules.flatMap((rule) => rule.kinds));
  return [...new Set([...withCertificates, ...withDevices, ...withAlerts])].sort();
}

/** Of these device certificates, those whose device now uses another certificate: ids. */
async function replacedOnTheirDevices(devices: DeviceRegistry, tenantId: string, certificates: { id: string; deviceId: string | null }[]): Promise<Set<string>> {
  const deviceIds = [...new Set(certificates.flatMap((row) => (row.deviceId ? [row.deviceId] : [])))];
  const active = new Map((await devices.findMany(tenantId, deviceIds)).flatMap((device) => (device.activeCertificateId ? [[device.deviceId, device.activeCertificateId] as const] : [])));
  return new Set(certificates.filter((row) => row.deviceId && active.has(row.deviceId) && active.get(row.deviceId) !== row.id).map((row) => row.id));
}

/** The rules the scheduled evaluation runs, and the tenants it runs them for. */
export interface ScheduledAlertRules {
  rules: readonly AlertRule[];
  tenants(): Promise<string[]>;
}

/** Sites set to edge workers, and who polls their queues: the `site.worker_missing` rule runs when given. */
export interface EdgeSites {
  sites: SiteWorkers;
  pollers: ActivityPollers;
}

export function scheduledAlertRules(deps: AlertedRecords & { count: WorkflowCounter; settings?: AlertSettings; edgeSites?: EdgeSites }): ScheduledAlertRules {
  const settings = deps.settings ?? defaultAlertSettings;
  const rules = alertRules({ db: deps.db, count: deps.count, settings });
  const { edgeSites } = deps;
  if (!edgeSites) return { rules, tenants: () => tenantsToEvaluate(deps, rules) };
  const withSites = [...rules, siteWorkerMissingRule(edgeSites.sites, edgeSites.pollers, settings.siteWorkers ?? defaultAlertSettings.siteWorkers!)];
  return {
    rules: withSites,
    tenants: async () => [...new Set([...(await tenantsToEvaluate(deps, withSites)), ...(await edgeSites.sites.tenants())])].sort(),
  };
}
