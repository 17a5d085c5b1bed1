import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DatabaseHandle } from '../db/client';
import { alerts } from '../db/schema';
import { ValidationError } from '../foundation/errors';
import { databaseKinds, openTestDatabase } from '../test/support/database';
import { AlertStore, alertFingerprint, alertKinds, type AlertAuditEvent, type RaiseAlertInput } from './alert-store';

let tenantCounter = 0;
const newTenant = () => `tenant-${++tenantCounter}`;

function unauthorizedDevice(tenantId: string, mac = '02:00:00:00:00:01'): RaiseAlertInput {
  return {
    tenantId,
    kind: alertKinds.deviceUnauthorized,
    severity: 'critical',
    fingerprint: alertFingerprint(alertKinds.deviceUnauthorized, mac),
    summary: `unknown device ${mac}`,
    details: { macAddress: mac },
    raisedBy: 'discovery',
  };
}

/**
 * `offsetMs` after a time read back from the database, rounded up to the next millisecond: the
 * database keeps microseconds that a Date drops.
 */
function after(time: Date, offsetMs: number): Date {
  return new Date(time.getTime() + offsetMs + 1);
}

describe.each(databaseKinds)('alert store on the %s database', (kind) => {
  let handle: DatabaseHandle;
  let store: AlertStore;
  const audited: AlertAuditEvent[] = [];
  const auditOf = (tenantId: string, action?: string) =>
    audited.filter((event) => event.tenantId === tenantId && (action === undefined || event.action === action));

  beforeAll(async () => {
    handle = await openTestDatabase(kind);
    store = new AlertStore({ db: handle.db, recordAudit: async (event) => void audited.push(event) });
  });
  afterAll(() => handle?.close());

  it('opens an alert on the first raise and audits it as raised by its producer', async () => {
    const tenant = newTenant();
    const { alert, created } = await store.raise(unauthorizedDevice(tenant));

    expect(created).toBe(true);
    expect(alert).toMatchObject({
      tenantId: tenant,
      kind: 'device.unauthorized',
      severity: 'critical',
      fingerprint: 'device.unauthorized:02:00:00:00:00:01',
      details: { macAddress: '02:00:00:00:00:01' },
      resolvedAt: null,
      deliveredAt: null,
      deliveryAttempts: 0,
    });
    expect(auditOf(tenant)).toEqual([
      {
        tenantId: tenant,
        actor: 'discovery',
        actorType: 'system',
        action: 'alert.raised',
        targetType: 'alert',
        targetId: alert.id,
        outcome: 'success',
        details: { kind: 'device.unauthorized', severity: 'critical', fingerprint: alert.fingerprint, summary: alert.summary },
      },
    ]);
  });

  it('raising an open alert again only moves its last-raised time and neither audits nor re-queues it', async () => {
    const tenant = newTenant();
    const first = await store.raise(unauthorizedDevice(tenant));
    await store.markDelivered(first.alert.id, 'firing');
    await new Promise((resolve) => setTimeout(resolve, 20));

    const again = await store.raise({ ...unauthorizedDevice(tenant), summary: 'a different wording', severity: 'warning' });

    expect(again.created).toBe(false);
    expect(again.alert.id).toBe(first.alert.id);
    expect(again.alert.summary).toBe(first.alert.summary);
    expect(again.alert.severity).toBe('critical');
    expect(again.alert.lastRaisedAt.getTime()).toBeGreaterThan(first.alert.lastRaisedAt.getTime());
    expect(again.alert.deliveredAt).not.toBeNull();
    expect(auditOf(tenant, 'alert.raised')).toHaveLength(1);
    expect(await store.list(tenant)).toHaveLength(1);
  });

  it('creates exactly one alert when many processes raise the same fingerprint at once', async () => {
    const tenant = newTenant();
    const raised = await Promise.all(Array.from({ length: 12 }, () => store.raise(unauthorizedDevice(tenant))));

    expect(raised.filter((r) => r.created)).toHaveLength(1);
    expect(new Set(raised.map((r) => r.alert.id)).size).toBe(1);
    expect(auditOf(tenant, 'alert.raised')).toHaveLength(1);
  });

  it('keeps the same fingerprint of different tenants apart', async () => {
    const [a, b] = [newTenant(), newTenant()];
    const first = await store.raise(unauthorizedDevice(a));
    const second = await store.raise(unauthorizedDevice(b));
    expect(second.created).toBe(true);
    expect(second.alert.id).not.toBe(first.alert.id);
  });

  it('resolving closes the open alert, audits it and queues its resolved delivery; a later raise opens a new alert', async () => {
    const tenant = newTenant();
    const { alert } = await store.raise(unauthorizedDevice(tenant));
    await store.markDelivered(alert.id, 'firing');

    const resolved = await store.resolve(tenant, alert.fingerprint, 'discovery');
    expect(resolved?.id).toBe(alert.id);
    expect(resolved?.resolvedAt).toBeInstanceOf(Date);
    expect(resolved?.deliveredAt).toBeNull();
    expect(auditOf(tenant, 'alert.resolved')).toMatchObject([{ actor: 'discovery', targetId: alert.id }]);
    expect((await store.pendingDelivery({ retry: { initialIntervalMs: 0, maximumIntervalMs: 0 } })).map((a) => a.id)).toContain(alert.id);

    expect(await store.resolve(tenant, alert.fingerprint)).toBeUndefined();
    const reopened = await store.raise(unauthorizedDevice(tenant));
    expect(reopened.created).toBe(true);
    expect(reopened.alert.id).not.toBe(alert.id);
  });

  it('resolveMissing resolves the open alerts of one kind that are no longer reported, and nothing else', async () => {
    const tenant = newTenant();
    const kept = await store.raise(unauthorizedDevice(tenant, '02:00:00:00:00:0a'));
    const cleared = await store.raise(unauthorizedDevice(tenant, '02:00:00:00:00:0b'));
    const otherKind = await store.raise({
      tenantId: tenant,
      kind: alertKinds.complianceViolation,
      severity: 'warning',
      fingerprint: alertFingerprint(alertKinds.complianceViolation, 'cam-1', 'telnet'),
      summary: 'telnet enabled on cam-1',
    });

    const resolved = await store.resolveMissing(tenant, alertKinds.deviceUnauthorized, [kept.alert.fingerprint]);

    expect(resolved.map((a) => a.id)).toEqual([cleared.alert.id]);
    expect((await store.list(tenant, { open: true })).map((a) => a.id).sort()).toEqual(
      [kept.alert.id, otherKind.alert.id].sort(),
    );
    expect((await store.list(tenant, { open: false })).map((a) => a.id)).toEqual([cleared.alert.id]);
  });

  it('resolveMissing with nothing still firing resolves every open alert of the kind', async () => {
    const tenant = newTenant();
    await store.raise(unauthorizedDevice(tenant, '02:00:00:00:00:0c'));
    await store.raise(unauthorizedDevice(tenant, '02:00:00:00:00:0d'));
    expect(await store.resolveMissing(tenant, alertKinds.deviceUnauthorized, [])).toHaveLength(2);
    expect(await store.list(tenant, { open: true })).toEqual([]);
  });

  it('a delivered alert leaves the pending list and its delivery is audited; a stale state is not marked', async () => {
    const tenant = newTenant();
    const { alert } = await store.raise(unauthorizedDevice(tenant));
    const immediately = { retry: { initialIntervalMs: 0, maximumIntervalMs: 0 }, limit: 500 };
    expect((await store.pendingDelivery(immediately)).map((a) => a.id)).toContain(alert.id);

    // The alert is firing, so a delivery of a resolution cannot be what reached the receiver.
    expect(await store.markDelivered(alert.id, 'resolved')).toBeUndefined();
    const delivered = await store.markDelivered(alert.id, 'firing', { status: 204 });

    expect(delivered?.deliveredAt).toBeInstanceOf(Date);
    expect(delivered?.deliveryAttempts).toBe(1);
    expect((await store.pendingDelivery(immediately)).map((a) => a.id)).not.toContain(alert.id);
    expect(auditOf(tenant, 'alert.delivered')).toMatchObject([
      { targetId: alert.id, outcome: 'success', details: { state: 'firing', attempts: 1, status: 204 } },
    ]);
  });

  it('retries a failed delivery only once its backoff has passed, doubling the wait after each failure', async () => {
    const tenant = newTenant();
    const { alert } = await store.raise(unauthorizedDevice(tenant));
    const retry = { initialIntervalMs: 60_000, maximumIntervalMs: 3_600_000 };
    const dueAt = async (offsetMs: number) =>
      (await store.pendingDelivery({ retry, limit: 500, now: after(alert.firstRaisedAt, offsetMs) })).some(
        (pending) => pending.id === alert.id,
      );

    expect(await dueAt(0)).toBe(true);
    const failed = await store.markDeliveryFailed(alert.id, 'firing', 'webhook answered 500: oops', { status: 500 });
    expect(failed).toMatchObject({ deliveryAttempts: 1, lastDeliveryError: 'webhook answered 500: oops', deliveredAt: null });
    expect(await dueAt(58_000)).toBe(false);
    expect(await dueAt(60_000)).toBe(true);

    await store.markDeliveryFailed(alert.id, 'firing', 'webhook answered 500: oops');
    // 1 min, then 2 min more.
    expect(await dueAt(178_000)).toBe(false);
    expect(await dueAt(180_000)).toBe(true);
    expect(auditOf(tenant, 'alert.delivery_failed')).toMatchObject([
      { outcome: 'failure', details: { state: 'firing', attempts: 1, status: 500, error: 'webhook answered 500: oops' } },
      { outcome: 'failure', details: { state: 'firing', attempts: 2 } },
    ]);
  });

  it('caps each wait between delivery attempts at the maximum interval', async () => {
    const tenant = newTenant();
    const { alert } = await store.raise(unauthorizedDevice(tenant));
    for (let attempt = 0; attempt < 5; attempt++) await store.markDeliveryFailed(alert.id, 'firing', 'down');
    const retry = { initialIntervalMs: 60_000, maximumIntervalMs: 120_000 };
    // Waits of 1, 2, 2, 2 and 2 minutes: due 9 minutes after it fired.
    const dueAt = async (minutes: number) =>
      (await store.pendingDelivery({ retry, limit: 500, now: after(alert.firstRaisedAt, minutes * 60_000) })).some(
        (pending) => pending.id === alert.id,
      );
    expect(await dueAt(8.9)).toBe(false);
    expect(await dueAt(9)).toBe(true);
  });

  it('resolving an alert whose deliveries kept failing starts its delivery afresh', async () => {
    const tenant = newTenant();
    const { alert } = await store.raise(unauthorizedDevice(tenant));
    await store.markDeliveryFailed(alert.id, 'firing', 'down');
    const resolved = await store.resolve(tenant, alert.fingerprint);
    expect(resolved).toMatchObject({ deliveryAttempts: 0, lastDeliveryError: null, deliveredAt: null });
    expect(
      (await store.pendingDelivery({ limit: 500, now: after(resolved!.resolvedAt!, 0) })).some((pending) => pending.id === alert.id),
    ).toBe(true);
  });

  it('lists a tenant’s alerts most recently raised first, limited', async () => {
    const tenant = newTenant();
    for (const mac of ['02:00:00:00:01:01', '02:00:00:00:01:02', '02:00:00:00:01:03']) {
      await store.raise(unauthorizedDevice(tenant, mac));
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const listed = await store.list(tenant, { limit: 2 });
    expect(listed.map((a) => a.details)).toEqual([{ macAddress: '02:00:00:00:01:03' }, { macAddress: '02:00:00:00:01:02' }]);
    expect(await store.list(newTenant())).toEqual([]);
  });

  it('refuses an alert of an unknown kind or without a fingerprint', async () => {
    const tenant = newTenant();
    await expect(store.raise({ ...unauthorizedDevice(tenant), kind: 'device.exploded' as never })).rejects.toThrow(ValidationError);
    await expect(store.raise({ ...unauthorizedDevice(tenant), fingerprint: '' })).rejects.toThrow(/fingerprint/);
    expect(await handle.db.select().from(alerts).where(eq(alerts.tenantId, tenant))).toEqual([]);
  });
});
