/**
 * The Prometheus endpoint against a real Temporal dev server and worker: what provisioning runs
 * emit from the workflow, what the database says, and the worker runtime's own metrics, in one scrape.
 */
import http from 'node:http';
import net from 'node:net';
import { isNull } from 'drizzle-orm';
import express from 'express';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { httpsBuiltInTemplates } from '../../adapters/https/settings';
import { certificates } from '../../db/schema';
import { createMetricsRegistry, expiryBucket, metricsHandler } from '../../observability/metrics';
import { workerMetricsUrl, workerRuntimeTelemetry } from '../../observability/runtime-metrics';
import { provisioningWorkflowId } from '../../contracts/provisioning';
import { TestDevices, waitFor, type TestDevice, type TestDeviceOptions } from '../support/devices';
import { freeLoopbackPort } from '../support/network';
import { parseSamples, samplesOf, total, type Sample } from '../support/prometheus';
import { startTestService, testLogger, type TestService } from '../support/service';

let service: TestService;
let server: http.Server;
let metricsUrl: string;
let scrapedAt = new Date();
const devices = new TestDevices();

beforeAll(async () => {
  // The runtime is installed once per process, before anything creates the default one; the
  // service's own install then finds it in place and keeps it.
  const bindAddress = `127.0.0.1:${await freeLoopbackPort()}`;
  Runtime.install({
    logger: new DefaultLogger('WARN', ({ message, meta }) => testLogger.warn(meta ?? {}, message)),
    telemetryOptions: workerRuntimeTelemetry(bindAddress),
  });
  service = await startTestService();

  const registry = createMetricsRegistry({
    db: service.parts.database.db,
    devices: service.parts.registry,
    templates: service.parts.templates,
    alerts: service.parts.alerts,
    logger: testLogger,
    now: () => scrapedAt,
  });
  const app = express();
  app.get('/metrics', metricsHandler({ registry, temporalMetricsUrl: workerMetricsUrl(bindAddress), logger: testLogger }));
  server = await new Promise<http.Server>((resolve) => {
    const listening = app.listen(0, '127.0.0.1', () => resolve(listening));
  });
  metricsUrl = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/metrics`;
});
afterAll(async () => {
  server?.close();
  await service?.stop();
});
afterEach(async () => {
  await devices.stopAll();
});

const device = (options: TestDeviceOptions = {}) => devices.start(options);

async function scrape(): Promise<Sample[]> {
  scrapedAt = new Date();
  const response = await fetch(metricsUrl);
  expect(response.status).toBe(200);
  return parseSamples(await response.text());
}

/** Scrapes until `ready` holds: the workflow's metrics reach the exporter as its last activation completes. */
function scrapeUntil(ready: (samples: Sample[]) => boolean, what: string): Promise<Sample[]> {
  return waitFor(async () => {
    const samples = await scrape();
    return ready(samples) ? samples : undefined;
  }, what);
}

async function templateFor(tenantId: string, id: string) {
  const body = { ...httpsBuiltInTemplates[0].body };
  await service.parts.templates.create(tenantId, { id, name: 'Cameras', protocol: 'https', body });
  return { id, body };
}

/** Runs one provisioning to its end, whichever way it ends. */
async function provision(tenantId: string, templateId: string, request: TestDevice['request']) {
  await service.provisioning.start(tenantId, { devices: [request], templateId });
  await service.env.client.workflow
    .getHandle(provisioningWorkflowId(tenantId, request.serialNumber))
    .result()
    .catch(() => undefined);
}

describe('the metrics endpoint', () => {
  it('counts one completed and one failed run, their durations and the failed configuration attempts, next to the worker runtime metrics', async () => {
    const tenant = 'metrics-runs';
    const template = await templateFor(tenant, `${tenant}-cameras`);
    // One refused configuration and retried for the run that completes, one refusal for good for the other.
    const flaky = await device({ faults: { failNext: { '/api/v1/configuration': { count: 1, status: 503 } } } });
    const refusing = await device({ faults: { refuseConfiguration: true } });
    await Promise.all([provision(tenant, template.id, flaky.request), provision(tenant, template.id, refusing.request)]);

    const ours = { namespace: service.config.temporal.namespace, taskQueue: service.config.temporal.taskQueue, tenant };
    const samples = await scrapeUntil(
      (s) => total(s, 'provisioning_runs_total', ours) === 2,
      'both runs to be counted',
    );

    expect(total(samples, 'provisioning_runs_total', { ...ours, outcome: 'completed' })).toBe(1);
    expect(total(samples, 'provisioning_runs_total', { ...ours, outcome: 'failed' })).toBe(1);
    expect(total(samples, 'provisioning_duration_seconds_count', ours)).toBe(2);
    expect(total(samples, 'provisioning_duration_seconds_sum', ours)).toBeGreaterThan(0);
    // The buckets are the ones the runtime was told to use for provisioning times (0.1 s to 1 h).
    const bounds = samplesOf(samples, 'provisioning_duration_seconds_bucket', { ...ours, outcome: 'completed' }).map((s) => s.labels.le);
    expect(bounds).toEqual(expect.arrayContaining(['0.1', '60', '3600', '+Inf']));

    const configuration = { ...ours, step: 'pushConfiguration' };
    expect(total(samples, 'provisioning_step_attempts_total', { ...configuration, outcome: 'failed' })).toBe(2);
    expect(total(samples, 'provisioning_step_attempts_total', { ...configuration, outcome: 'completed' })).toBe(1);
    expect(total(samples, 'provisioning_step_attempts_total', { ...ours, step: 'identify', outcome: 'completed' })).toBe(2);

    const worker = { namespace: ours.namespace, task_queue: ours.taskQueue };
    expect(total(samples, 'temporal_workflow_completed', worker)).toBeGreaterThanOrEqual(1);
    expect(total(samples, 'temporal_workflow_failed', worker)).toBeGreaterThanOrEqual(1);
    expect(samplesOf(samples, 'temporal_request').length).toBeGreaterThan(0);
    expect(total(samples, 'temporal_metrics_scrape_up')).toBe(1);

    expect(total(samples, 'registered_devices', { tenant, lifecycle_state: 'active' })).toBe(1);
    expect(total(samples, 'registered_devices', { tenant, lifecycle_state: 'failed' })).toBe(1);
  });

  it('reports as many live certificates in each expiry bucket as the database holds', async () => {
    const samples = await scrape();
    const live = await service.parts.database.db.select().from(certificates).where(isNull(certificates.revokedAt));
    expect(live.length).toBeGreaterThan(0);
    const expected = new Map<string, number>();
    for (const row of live) {
      const key = `${row.tenantId}/${row.certificateType}/${expiryBucket(row.expiresAt, scrapedAt)}`;
      expected.set(key, (expected.get(key) ?? 0) + 1);
    }
    const reported = new Map(
      samplesOf(samples, 'certificates_expiring')
        .filter((s) => s.value > 0)
        .map((s) => [`${s.labels.tenant}/${s.labels.type}/${s.labels.within_days}`, s.value]),
    );
    expect(reported).toEqual(expected);
    // The certificate revoked when its device refused the configuration is not among them.
    expect(total(samples, 'certificates_expiring', { tenant: 'metrics-runs', type: 'device' })).toBe(1);
  });

  it('counts a provisioned device as outdated once its configuration template gets a new version', async () => {
    const tenant = 'metrics-drift';
    const template = await templateFor(tenant, `${tenant}-cameras`);
    const { request } = await device();
    await provision(tenant, template.id, request);

    expect(samplesOf(await scrape(), 'configuration_outdated_devices', { tenant }).map((s) => s.value)).toEqual([0]);
    await service.parts.templates.update(tenant, template.id, {
      name: 'Cameras',
      protocol: 'https',
      body: { ...template.body, timezone: 'Europe/Paris' },
    });
    expect(samplesOf(await scrape(), 'configuration_outdated_devices', { tenant }).map((s) => s.value)).toEqual([1]);
  });
});
