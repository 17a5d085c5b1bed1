/**
 * The application metrics against an embedded database, and the endpoint's handling of the worker
 * runtime's exporter; the metrics a real worker emits are covered in test/integration/metrics.test.ts.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { Counter, Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AlertStore, alertFingerprint, alertKinds } from '../alerts/alert-store';
import { deviceAdapters } from '../adapters';
import { httpsBuiltInTemplates } from '../adapters/https/settings';
import { TemplateCatalog } from '../configuration/templates';
import type { DatabaseHandle } from '../db/client';
import { certificates, devices, type CertificateRow, type DeviceRow } from '../db/schema';
import { createLogger } from '../foundation/logger';
import { databaseKinds, openTestDatabase } from '../test/support/database';
import { testDeviceNetworks } from '../test/support/device-networks';
import { DeviceRegistry } from '../registry/device-registry';
import { parseSamples, samplesOf, total } from '../test/support/prometheus';
import { createMetricsRegistry, expiryBucket, expiryBuckets, metricsHandler } from './metrics';

const day = 86_400_000;
const now = new Date('2030-06-01T12:00:00Z');
const at = (offsetMs: number) => new Date(now.getTime() + offsetMs);
const logger = createLogger('silent');

describe('expiryBucket', () => {
  it('counts a certificate expiring now or earlier as expired', () => {
    expect(expiryBucket(now, now)).toBe('expired');
    expect(expiryBucket(at(-day), now)).toBe('expired');
  });

  it('puts a certificate in the first bucket whose limit its remaining days do not exceed', () => {
    expect(expiryBucket(at(1), now)).toBe('7');
    expect(expiryBucket(at(7 * day), now)).toBe('7');
    expect(expiryBucket(at(7 * day + 1), now)).toBe('30');
    expect(expiryBucket(at(30 * day), now)).toBe('30');
    expect(expiryBucket(at(89 * day), now)).toBe('90');
    expect(expiryBucket(at(365 * day), now)).toBe('365');
    expect(expiryBucket(at(365 * day + 1), now)).toBe('later');
  });
});

describe.each(databaseKinds)('application metrics on the %s database', (kind) => {
  let database: DatabaseHandle;
  let registry: Registry;

  beforeAll(async () => {
    database = await openTestDatabase(kind);
    registry = createMetricsRegistry({
      db: database.db,
      devices: new DeviceRegistry(database.db),
      templates: new TemplateCatalog({ db: database.db, adapters: deviceAdapters(testDeviceNetworks) }),
      alerts: new AlertStore({ db: database.db }),
      logger,
      now: () => now,
    });
  });
  afterAll(async () => {
    await database?.close();
  });

  async function scrape() {
    return parseSamples(await registry.metrics());
  }

  function certificate(tenantId: string, expiresAt: Date, changes: Partial<CertificateRow> = {}) {
    return {
      tenantId,
      certificateType: 'device' as const,
      deviceId: `device-${randomUUID()}`,
      serialNumber: randomBytes(8).toString('hex'),
      fingerprint: randomBytes(32).toString('hex'),
      publicKey: 'test',
      privateKeyLocation: 'device:test',
      issuedAt: at(-day),
      expiresAt,
      subjectDn: 'CN=test',
      issuerDn: 'CN=test CA',
      subject: {},
      extensions: {},
      pem: 'test',
      ...changes,
    };
  }

  function device(tenantId: string, changes: Partial<DeviceRow> = {}) {
    const id = randomBytes(4).toString('hex');
    return {
      tenantId,
      deviceId: `RD-${id}`,
      serialNumber: `RD-${id}`,
      macAddress: `02:00:${id.match(/../g)!.join(':')}`,
      address: '192.0.2.1:443',
      protocol: 'https',
      deviceType: 'camera',
      site: 'hq',
      ...changes,
    };
  }

  it('counts live certificates per type in the same expiry bucket as expiryBucket, leaving revoked ones out', async () => {
    const tenant = 'expiry';
    const expiries = [at(-1), at(0), at(1), at(7 * day), at(7 * day + 1), at(30 * day), at(200 * day), at(365 * day + 1)];
    await database.db.insert(certificates).values([
      ...expiries.map((expiresAt) => certificate(tenant, expiresAt)),
      certificate(tenant, at(3 * day), { revokedAt: at(-day), revocationReason: 'keyCompromise' }),
      certificate(tenant, at(20 * 365 * day), { certificateType: 'root', deviceId: null }),
      certificate(tenant, at(5 * 365 * day), { certificateType: 'intermediate', deviceId: null, site: 'hq' }),
    ]);

    const samples = samplesOf(await scrape(), 'certificates_expiring', { tenant });
    const byBucket = (type: string) =>
      Object.fromEntries(samplesOf(samples, 'certificates_expiring', { type }).map((s) => [s.labels.within_days, s.value]));
    const expected = Object.fromEntries(expiryBuckets.map((bucket) => [bucket, 0]));
    for (const expiresAt of expiries) expected[expiryBucket(expiresAt, now)] += 1;

    expect(byBucket('device')).toEqual(expected);
    expect(byBucket('device')).toEqual({ expired: 2, '7': 2, '30': 2, '90': 0, '365': 1, later: 1 });
    expect(byBucket('root')).toMatchObject({ later: 1, '365': 0 });
    expect(byBucket('intermediate')).toMatchObject({ later: 1, '7': 0 });
  });

  it('counts registered devices per tenant in every lifecycle state, zero included', async () => {
    const tenant = 'lifecycle';
    await database.db
      .insert(devices)
      .values([device(tenant, { lifecycleState: 'active' }), device(tenant, { lifecycleState: 'active' }), device(tenant, { lifecycleState: 'failed' })]);

    const samples = samplesOf(await scrape(), 'registered_devices', { tenant });
    expect(Object.fromEntries(samples.map((s) => [s.labels.lifecycle_state, s.value]))).toEqual({
      registered: 0,
      provisioning: 0,
      provisioned: 0,
      active: 2,
      failed: 1,
      decommissioned: 0,
    });
  });

  it('counts active devices online and offline per tenant, leaving out devices not yet probed and devices not active', async () => {
    const tenant = 'health';
    await database.db.insert(devices).values([
      device(tenant, { lifecycleState: 'active', health: 'online' }),
      device(tenant, { lifecycleState: 'active', health: 'online' }),
      device(tenant, { lifecycleState: 'active', health: 'offline' }),
      device(tenant, { lifecycleState: 'active', health: 'unknown' }),
      device(tenant, { lifecycleState: 'failed', health: 'offline' }),
    ]);
    const samples = await scrape();
    expect(total(samples, 'devices_online', { tenant })).toBe(2);
    expect(total(samples, 'devices_offline', { tenant })).toBe(1);
    expect(samplesOf(samples, 'devices_offline', { tenant: 'lifecycle' }).map((s) => s.value)).toEqual([0]);
  });

  it('counts a device as outdated once its template has a newer version than the one it was configured from', async () => {
    const tenant = 'drift';
    const templates = new TemplateCatalog({ db: database.db, adapters: deviceAdapters(testDeviceNetworks) });
    const body = { ...httpsBuiltInTemplates[0].body };
    const template = await templates.create(tenant, { id: 'drift-cameras', name: 'Cameras', protocol: 'https', body });
    await database.db.insert(devices).values([
      device(tenant, { configurationTemplate: template.id, configurationVersion: template.version }),
      device(tenant),
    ]);
    expect(total(await scrape(), 'configuration_outdated_devices', { tenant })).toBe(0);
    expect(samplesOf(await scrape(), 'configuration_outdated_devices', { tenant })).toHaveLength(1);

    await templates.update(tenant, template.id, { name: 'Cameras', protocol: 'https', body: { ...body, timezone: 'Europe/Paris' } });
    expect(total(await scrape(), 'configuration_outdated_devices', { tenant })).toBe(1);
  });

  it('counts a device as drifted while its drift alert is open, and no longer once it is resolved', async () => {
    const tenant = 'running-drift';
    const store = new AlertStore({ db: database.db });
    const [drifted] = await database.db.insert(devices).values([device(tenant), device(tenant)]).returning();
    expect(total(await scrape(), 'configuration_drift_devices', { tenant })).toBe(0);
    const fingerprint = alertFingerprint(alertKinds.configurationDrift, drifted!.deviceId);
    await store.raise({ tenantId: tenant, kind: alertKinds.configurationDrift, severity: 'warning', fingerprint, summary: 'drifted', details: {}, raisedBy: 'test' });
    // Another kind of alert about the same device is not drift.
    await store.raise({ tenantId: tenant, kind: alertKinds.complianceViolation, severity: 'critical', fingerprint: alertFingerprint(alertKinds.complianceViolation, drifted!.deviceId), summary: 'blocked', details: {}, raisedBy: 'test' });
    expect(total(await scrape(), 'configuration_drift_devices', { tenant })).toBe(1);
    await store.resolve(tenant, fingerprint, 'test');
    expect(total(await scrape(), 'configuration_drift_devices', { tenant })).toBe(0);
  });

  it('counts open alerts by kind and severity, a resolved one no longer, and a tenant with none as zero', async () => {
    const tenant = 'alerting';
    const store = new AlertStore({ db: database.db });
    await database.db.insert(devices).values([device(tenant)]);
    expect(total(await scrape(), 'alerts_open', { tenant })).toBe(0);
    const offline = (id: string) => ({ tenantId: tenant, kind: alertKinds.deviceOffline, severity: 'warning' as const, fingerprint: alertFingerprint(alertKinds.deviceOffline, id), summary: 'offline', details: { deviceId: id }, raisedBy: 'test' });
    await store.raise(offline('a'));
    await store.raise(offline('b'));
    await store.raise({ ...offline('c'), kind: alertKinds.deviceCertificateMismatch, severity: 'critical', fingerprint: alertFingerprint(alertKinds.deviceCertificateMismatch, 'c') });
    let samples = await scrape();
    expect(total(samples, 'alerts_open', { tenant, kind: alertKinds.deviceOffline, severity: 'warning' })).toBe(2);
    expect(total(samples, 'alerts_open', { tenant, kind: alertKinds.deviceCertificateMismatch, severity: 'critical' })).toBe(1);
    await store.resolve(tenant, alertFingerprint(alertKinds.deviceOffline, 'a'), 'test');
    samples = await scrape();
    expect(total(samples, 'alerts_open', { tenant, kind: alertKinds.deviceOffline })).toBe(1);
  });
});

describe('metricsHandler', () => {
  const servers: http.Server[] = [];
  afterAll(() => {
    for (const server of servers) server.close();
  });

  async function listen(handler: http.RequestListener): Promise<string> {
    const server = http.createServer(handler);
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  function registryWithOneMetric() {
    const registry = new Registry();
    new Counter({ name: 'application_things_total', help: 'things', registers: [registry] }).inc(3);
    return registry;
  }

  async function endpoint(temporalMetricsUrl?: string) {
    const app = express();
    app.get('/metrics', metricsHandler({ registry: registryWithOneMetric(), temporalMetricsUrl, logger, timeoutMs: 500 }));
    return `${await listen(app)}/metrics`;
  }

  it("serves the application metrics followed by the worker runtime's, in the Prometheus text format", async () => {
    const runtime = await listen((_req, res) => {
      res.setHeader('content-type', 'text/plain; version=0.0.4');
      res.end('# TYPE temporal_workflow_completed counter\ntemporal_workflow_completed{task_queue="q"} 4\n');
    });
    const response = await fetch(await endpoint(`${runtime}/metrics`));
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    const text = await response.text();
    const samples = parseSamples(text);
    expect(total(samples, 'application_things_total')).toBe(3);
    expect(total(samples, 'temporal_metrics_scrape_up')).toBe(1);
    expect(total(samples, 'temporal_workflow_completed', { task_queue: 'q' })).toBe(4);
    expect(text.indexOf('application_things_total')).toBeLessThan(text.indexOf('temporal_workflow_completed'));
  });

  it("still serves the application metrics, with temporal_metrics_scrape_up 0, when the runtime's exporter does not answer", async () => {
    const closed = await listen(() => {});
    servers.pop()!.close();
    const response = await fetch(await endpoint(`${closed}/metrics`));
    expect(response.status).toBe(200);
    const samples = parseSamples(await response.text());
    expect(total(samples, 'application_things_total')).toBe(3);
    expect(samplesOf(samples, 'temporal_metrics_scrape_up')).toEqual([{ name: 'temporal_metrics_scrape_up', labels: {}, value: 0 }]);
  });

  it('reports no scrape status when the process runs no worker', async () => {
    const samples = parseSamples(await (await fetch(await endpoint())).text());
    expect(total(samples, 'application_things_total')).toBe(3);
    expect(samplesOf(samples, 'temporal_metrics_scrape_up')).toEqual([]);
  });
});
