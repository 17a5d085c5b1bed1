import { randomBytes } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAlertActivities, type AlertActivities } from '../activities/alerts';
import type { DatabaseHandle } from '../db/client';
import { certificates } from '../db/schema';
import { createLogger } from '../foundation/logger';
import { openTestDatabase } from '../test/support/database';
import { DeviceRegistry } from '../registry/device-registry';
import { AlertStore, alertKinds, type AlertAuditEvent } from './alert-store';
import { scheduledAlertRules, visibilityCounter } from './rules';

const logger = createLogger('silent');
/** The activity context's own logger reports the failure the test provokes; keep it quiet. */
const activityEnvironment = () => new MockActivityEnvironment({}, { logger: new DefaultLogger('ERROR', () => undefined) });

/** A Temporal client whose visibility is down. */
const unreachableTemporal = {
  workflow: {
    count: async () => {
      throw new Error('Temporal is unreachable');
    },
  },
} as unknown as Client;

describe('alert evaluation activities', () => {
  let handle: DatabaseHandle;
  let activities: AlertActivities;
  const audited: AlertAuditEvent[] = [];

  beforeAll(async () => {
    handle = await openTestDatabase('embedded');
    const alerts = new AlertStore({ db: handle.db, recordAudit: async (event) => void audited.push(event) });
    activities = createAlertActivities({
      alerts,
      rules: scheduledAlertRules({ db: handle.db, devices: new DeviceRegistry(handle.db), alerts, count: visibilityCounter(unreachableTemporal) }),
      logger,
    });
  });
  afterAll(() => handle?.close());

  it('a rule that cannot be evaluated resolves none of its alerts, the other rules still run, and the activity fails to be retried', async () => {
    const tenant = 'evaluation-partial';
    const store = new AlertStore({ db: handle.db });
    const { alert: failureRate } = await store.raise({
      tenantId: tenant,
      kind: alertKinds.provisioningFailureRate,
      severity: 'warning',
      fingerprint: alertKinds.provisioningFailureRate,
      summary: 'raised by an earlier evaluation',
    });
    const serial = randomBytes(8).toString('hex');
    await handle.db.insert(certificates).values({
      tenantId: tenant,
      certificateType: 'device',
      deviceId: 'cam-1',
      serialNumber: serial,
      fingerprint: randomBytes(32).toString('hex'),
      publicKey: 'unused',
      privateKeyLocation: 'device:unused',
      issuedAt: new Date(),
      expiresAt: new Date(Date.now() + 2 * 86_400_000),
      subjectDn: 'CN=cam-1',
      issuerDn: 'CN=hq intermediate',
      subject: {},
      extensions: {},
      pem: 'unused',
    });

    await expect(activityEnvironment().run(activities.evaluateAlertRules, { tenantIds: [tenant] })).rejects.toThrow(
      /provisioning failure rate for tenant evaluation-partial: Temporal is unreachable/,
    );

    const open = await store.list(tenant, { open: true });
    expect(open.map((alert) => alert.kind).sort()).toEqual(['certificate.expiring', 'provisioning.failure_rate']);
    expect(open.find((alert) => alert.kind === alertKinds.provisioningFailureRate)?.id).toBe(failureRate.id);
    expect(audited.filter((event) => event.action === 'alert.resolved')).toEqual([]);
    expect(audited.filter((event) => event.action === 'alert.raised')).toHaveLength(1);
  });

  it('without a webhook configured, delivers nothing and leaves alerts pending', async () => {
    const result = await activityEnvironment().run(activities.deliverPendingAlerts);
    expect(result).toEqual({ webhookConfigured: false, delivered: 0, failed: 0 });
    const pending = await new AlertStore({ db: handle.db }).pendingDelivery({ limit: 500 });
    expect(pending.length).toBeGreaterThan(0);
  });
});
