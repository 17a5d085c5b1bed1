/**
 * The Prometheus endpoint: application metrics read from the database at scrape time (certificate
 * expiry, device lifecycle and health, configuration drift and outdated versions), followed by the worker runtime's metrics as its
 * exporter serves them (Temporal's own, and the provisioning outcomes and durations the workflow
 * emits; see workflows/metrics.ts for the PromQL of success rate, average and p95).
 *
 * Read at scrape time rather than kept in memory: every API replica then reports the same numbers,
 * and nothing drifts from the database after a restart.
 */
import { alertKinds, type AlertStore } from '../alerts/alert-store';
import type { RequestHandler } from 'express';
import { Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { TemplateCatalog } from '../configuration/templates';
import type { Database } from '../db/client';
import { CertificateStore } from '../pki/certificate-store';
import type { Logger } from '../foundation/logger';
import { lifecycleStates, type DeviceRegistry } from '../registry/device-registry';

const dayMs = 86_400_000;

/** Upper bounds, in days to expiry, of the buckets a live certificate is counted in (the first that holds it). */
export const expiryBucketDays = [7, 30, 90, 365] as const;
export type ExpiryBucket = 'expired' | `${(typeof expiryBucketDays)[number]}` | 'later';
export const expiryBuckets: readonly ExpiryBucket[] = ['expired', ...expiryBucketDays.map((days) => `${days}` as const), 'later'];

/** Each certificate falls in exactly one bucket, so the buckets of a type add up to its live certificates. */
export function expiryBucket(expiresAt: Date, now: Date): ExpiryBucket {
  const remaining = expiresAt.getTime() - now.getTime();
  if (remaining <= 0) return 'expired';
  const days = expiryBucketDays.find((limit) => remaining <= limit * dayMs);
  return days === undefined ? 'later' : `${days}`;
}

export interface MetricsRegistryOptions {
  db: Database;
  devices: DeviceRegistry;
  templates: TemplateCatalog;
  alerts: AlertStore;
  logger: Logger;
  /** The clock expiry is measured against; tests fix it. */
  now?: () => Date;
}

export function createMetricsRegistry({ db, devices, templates, alerts, logger, now = () => new Date() }: MetricsRegistryOptions): Registry {
  const registry = new Registry();
  const certificates = new CertificateStore(db);
  collectDefaultMetrics({ register: registry });
  const log = logger.child({ component: 'metrics' });

  // A failed query fails the scrape, which Prometheus records as the target being down.
  async function read<T>(what: string, query: () => Promise<T>): Promise<T> {
    try {
      return await query();
    } catch (error) {
      log.error({ err: error, metric: what }, 'could not read a metric from the database');
      throw error;
    }
  }

  new Gauge({
    name: 'certificates_expiring',
    help: 'Live (unrevoked) certificates by the days left before they expire; each counted once, in the first bucket that holds it',
    labelNames: ['tenant', 'type', 'within_days'] as const,
    registers: [registry],
    async collect() {
      const at = now();
      // Bucketed in the database like `expiryBucket`.
      const rows = await read('certificates_expiring', () => certificates.countLiveByExpiry(at, expiryBucketDays));
      this.reset();
      const kinds = new Map(rows.map(({ tenantId, certificateType }) => [`${tenantId}/${certificateType}`, { tenant: tenantId, type: certificateType }]));
      for (const { tenant, type } of kinds.values()) {
        for (const bucket of expiryBuckets) this.set({ tenant, type, within_days: bucket }, 0);
      }
      for (const row of rows) this.set({ tenant: row.tenantId, type: row.certificateType, within_days: row.bucket }, row.count);
    },
  });

  new Gauge({
    name: 'registered_devices',
    help: 'Devices in the registry by lifecycle state',
    labelNames: ['tenant', 'lifecycle_state'] as const,
    registers: [registry],
    async collect() {
      const rows = await read('registered_devices', () => devices.countByLifecycleState());
      this.reset();
      for (const tenant of new Set(rows.map((row) => row.tenantId))) {
        for (const state of lifecycleStates) this.set({ tenant, lifecycle_state: state }, 0);
      }
      for (const row of rows) this.set({ tenant: row.tenantId, lifecycle_state: row.lifecycleState }, row.count);
    },
  });

  // Active devices by what their last health probes found; `unknown` (not yet probed) is in neither.
  for (const [name, health] of [
    ['devices_online', 'online'],
    ['devices_offline', 'offline'],
  ] as const) {
    new Gauge({
      name,
      help: `Active devices whose health sweeps last found them ${health}`,
      labelNames: ['tenant'] as const,
      registers: [registry],
      async collect() {
        const [tenants, rows] = await read(name, () => Promise.all([devices.tenants(), devices.countActiveByHealth()]));
        this.reset();
        for (const tenant of tenants) this.set({ tenant }, 0);
        for (const row of rows) if (row.health === health) this.set({ tenant: row.tenantId }, row.count);
      },
    });
  }

  new Gauge({
    name: 'configuration_drift_devices',
    help: 'Devices whose running configuration differed from the one they should run at their last drift check',
    labelNames: ['tenant'] as const,
    registers: [registry],
    async collect() {
      // An open drift alert per device is the record of its drift: raised when found, resolved once
      // back in sync. Devices never leave the registry, so every such alert is about one of them.
      const [tenants, drifted] = await read('configuration_drift_devices', () =>
        Promise.all([devices.tenants(), alerts.countOpen(alertKinds.configurationDrift)]),
      );
      this.reset();
      for (const tenant of tenants) this.set({ tenant }, drifted.get(tenant) ?? 0);
    },
  });

  new Gauge({
    name: 'alerts_open',
    help: 'Open (unresolved) alerts by kind and severity',
    labelNames: ['tenant', 'kind', 'severity'] as const,
    registers: [registry],
    async collect() {
      const [tenants, rows] = await read('alerts_open', () => Promise.all([devices.tenants(), alerts.countAllOpen()]));
      this.reset();
      // Every tenant appears, with nothing open as a zero, so a panel shows it rather than no data.
      for (const tenant of tenants) this.set({ tenant, kind: 'none', severity: 'info' }, 0);
      for (const row of rows) this.set({ tenant: row.tenantId, kind: row.kind, severity: row.severity }, row.count);
    },
  });

  new Gauge({
    name: 'configuration_outdated_devices',
    help: 'Devices whose configuration was rendered from an older version of their template than the current one',
    labelNames: ['tenant'] as const,
    registers: [registry],
    async collect() {
      const [configured, current] = await read('configuration_outdated_devices', () =>
        Promise.all([devices.countByConfiguration(), templates.currentVersions()]),
      );
      const outdated = new Map<string, number>();
      for (const { tenantId, templateId, version, count } of configured) {
        const latest = templateId === null ? undefined : current.get(templateId);
        const behind = version !== null && latest !== undefined && version < latest;
        outdated.set(tenantId, (outdated.get(tenantId) ?? 0) + (behind ? count : 0));
      }
      this.reset();
      for (const [tenant, count] of outdated) this.set({ tenant }, count);
    },
  });

  return registry;
}

export interface MetricsHandlerOptions {
  registry: Registry;
  /** The worker runtime's exporter (see runtime-metrics.ts); absent when this process runs no worker. */
  temporalMetricsUrl?: string;
  logger?: Logger;
  timeoutMs?: number;
}

const exposition = 'text/plain; version=0.0.4; charset=utf-8';

/** Serves the application metrics, then the worker runtime's, in the Prometheus text format. */
export function metricsHandler({ registry, temporalMetricsUrl, logger, timeoutMs = 2_000 }: MetricsHandlerOptions): RequestHandler {
  const scrape = new Registry();
  const up = new Gauge({
    name: 'temporal_metrics_scrape_up',
    help: "1 when the worker runtime's metrics were read for this scrape, 0 when its exporter did not answer",
    registers: [scrape],
  });
  const log = logger?.child({ component: 'metrics' });
  let wasUp: boolean | undefined;

  return async (_req, res, next) => {
    try {
      const [application, runtime] = await Promise.all([
        registry.metrics(),
        temporalMetricsUrl ? readRuntimeMetrics(temporalMetricsUrl, timeoutMs) : undefined,
      ]);
      const parts = [application];
      if (temporalMetricsUrl) {
        const reached = typeof runtime === 'string';
        up.set(reached ? 1 : 0);
        parts.push(await scrape.metrics());
        if (reached) parts.push(runtime);
        // Only the changes are worth a log line; Prometheus scrapes every few seconds.
        if (reached !== wasUp) {
          if (reached) log?.info({ url: temporalMetricsUrl }, 'worker runtime metrics readable');
          else log?.warn({ url: temporalMetricsUrl, err: runtime }, 'worker runtime metrics unreachable');
          wasUp = reached;
        }
      }
      res.set('Content-Type', exposition).send(parts.map((part) => (part.endsWith('\n') ? part : `${part}\n`)).join(''));
    } catch (error) {
      next(error);
    }
  };
}

/** The exporter's text, or the reason it could not be read. */
async function readRuntimeMetrics(url: string, timeoutMs: number): Promise<string | Error> {
  try {
    const response = await fetch(url, { headers: { accept: 'text/plain;version=0.0.4' }, signal: AbortSignal.timeout(timeoutMs) });
    if (!response.ok) return new Error(`${url} answered ${response.status}`);
    return await response.text();
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  }
}
