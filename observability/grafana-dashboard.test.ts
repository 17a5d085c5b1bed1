/**
 * The Grafana dashboard shipped with the service asks only for what the service exports: every
 * metric a panel's query names is one of the application gauges or the provisioning metrics the
 * workflows emit, and every label it filters or groups by is one that metric carries.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { AlertStore } from '../alerts/alert-store';
import type { TemplateCatalog } from '../configuration/templates';
import { provisioningMetricNames } from '../contracts/metrics';
import type { Database } from '../db/client';
import { createLogger } from '../foundation/logger';
import type { DeviceRegistry } from '../registry/device-registry';
import { createMetricsRegistry } from './metrics';

interface Panel {
  title: string;
  targets?: { expr: string }[];
}

const dashboard = JSON.parse(readFileSync(path.join(import.meta.dirname, 'grafana-dashboard.json'), 'utf8')) as {
  panels: Panel[];
  templating: { list: { name: string; query?: string }[] };
};

/** Labels the worker runtime's exporter adds to every metric a workflow emits. */
const runtimeLabels = ['namespace', 'taskQueue', 'workflowType', 'service_name'];
const runLabels = ['tenant', 'method', 'protocol', 'outcome', ...runtimeLabels];

/** Every exported series name with the labels it carries. */
function exportedMetrics(): Map<string, Set<string>> {
  // Only the names and label names are read: nothing is collected, so no database is needed.
  const registry = createMetricsRegistry({
    db: {} as Database,
    devices: {} as DeviceRegistry,
    templates: {} as TemplateCatalog,
    alerts: {} as AlertStore,
    logger: createLogger('silent'),
  });
  const metrics = new Map<string, Set<string>>();
  for (const metric of registry.getMetricsAsArray()) {
    metrics.set(metric.name, new Set((metric as unknown as { labelNames: string[] }).labelNames));
  }
  metrics.set(provisioningMetricNames.runs, new Set(runLabels));
  metrics.set(provisioningMetricNames.stepAttempts, new Set([...runLabels, 'step']));
  for (const suffix of ['_bucket', '_sum', '_count']) {
    metrics.set(`${provisioningMetricNames.duration}${suffix}`, new Set([...runLabels, ...(suffix === '_bucket' ? ['le'] : [])]));
  }
  return metrics;
}

const promqlWords = new Set([
  'sum', 'avg', 'min', 'max', 'count', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless',
  'rate', 'irate', 'increase', 'delta', 'histogram_quantile', 'label_values', 'topk', 'bottomk', 'abs', 'clamp_min', 'vector', 'bool',
]);

/** The metrics an expression reads, each with the labels it matches on or groups by. */
function metricsOf(expr: string): { metric: string; labels: string[] }[] {
  const grouped = [...expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)].flatMap((m) => m[1]!.split(',').map((l) => l.trim()).filter(Boolean));
  const found: { metric: string; labels: string[] }[] = [];
  const stripped = expr.replace(/"[^"]*"/g, '""').replace(/\[[^\]]*\]/g, '').replace(/\b(?:by|without)\s*\([^)]*\)/g, '');
  for (const match of stripped.matchAll(/([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{[^}]*\})?/g)) {
    const [, name, selector] = match;
    if (promqlWords.has(name!) || /^\d/.test(name!)) continue;
    const after = stripped.slice(match.index! + match[0].length).trimStart();
    if (!selector && after.startsWith('(')) continue; // a function
    const matched = selector ? [...selector.matchAll(/([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)/g)].map((m) => m[1]!) : [];
    found.push({ metric: name!, labels: [...matched, ...grouped] });
  }
  return found;
}

describe('the Grafana dashboard', () => {
  const metrics = exportedMetrics();
  const queries = dashboard.panels.flatMap((panel) => (panel.targets ?? []).map((target) => ({ panel: panel.title, expr: target.expr })));

  it('has a query in every panel, and panels for what operators watch', () => {
    expect(dashboard.panels.every((panel) => (panel.targets ?? []).length > 0)).toBe(true);
    const read = new Set(queries.flatMap(({ expr }) => metricsOf(expr).map(({ metric }) => metric)));
    for (const metric of [
      'provisioning_runs_total',
      'provisioning_duration_seconds_bucket',
      'provisioning_step_attempts_total',
      'certificates_expiring',
      'devices_online',
      'devices_offline',
      'configuration_drift_devices',
      'alerts_open',
    ]) {
      expect(read, metric).toContain(metric);
    }
  });

  it('names only metrics the service exports, with labels those metrics carry', () => {
    const problems: string[] = [];
    for (const { panel, expr } of queries) {
      for (const { metric, labels } of metricsOf(expr)) {
        const known = metrics.get(metric);
        if (!known) {
          problems.push(`${panel}: ${metric} is not exported`);
          continue;
        }
        for (const label of labels) if (label !== 'le' && !known.has(label)) problems.push(`${panel}: ${metric} has no label ${label}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('offers the tenants the service reports as a variable', () => {
    const tenant = dashboard.templating.list.find((variable) => variable.name === 'tenant');
    expect(tenant?.query).toBe('label_values(registered_devices, tenant)');
    expect(metrics.get('registered_devices')).toContain('tenant');
  });
});
