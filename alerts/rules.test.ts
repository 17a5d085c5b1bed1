import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DatabaseHandle } from '../db/client';
import { certificates, devices, type NewCertificateRow } from '../db/schema';
import { databaseKinds, openTestDatabase } from '../test/support/database';
import { AlertStore, alertKinds } from './alert-store';
import {
  certificateExpiryRule,
  closedProvisioningRunsQuery,
  provisioningFailureRateRule,
  tenantsToEvaluate,
  alertRules,
  type WorkflowCounter,
} from './rules';
import { DeviceRegistry } from '../registry/device-registry';
import { certificateRowFixture } from '../test/support/certificates';

const dayMs = 86_400_000;
const now = new Date('2030-06-01T12:00:00.000Z');
const inDays = (days: number) => new Date(now.getTime() + days * dayMs);
let tenantCounter = 0;
const newTenant = () => `rules-${++tenantCounter}`;

/** A certificate row as the CA stores it, issued a year before the fixed `now`. */
function certificate(tenantId: string, overrides: Partial<NewCertificateRow> = {}): NewCertificateRow {
  return certificateRowFixture(tenantId, { issuedAt: new Date(now.getTime() - 365 * dayMs), expiresAt: inDays(365), ...overrides });
}

describe.each(databaseKinds)('alert rules on the %s database', (kind) => {
  let handle: DatabaseHandle;
  const settings = { warningDays: 30, criticalDays: 7 };

  beforeAll(async () => {
    handle = await openTestDatabase(kind);
  });
  afterAll(() => handle?.close());

  async function insert(...rows: NewCertificateRow[]) {
    return handle.db.insert(certificates).values(rows).returning();
  }

  describe('certificate expiry', () => {
    it('warns within the warning window, is critical within the critical window and reports expired ones apart', async () => {
      const tenant = newTenant();
      const [warning, critical, expired] = await insert(
        certificate(tenant, { expiresAt: inDays(20) }),
        certificate(tenant, { certificateType: 'intermediate', deviceId: null, subjectDn: 'CN=hq intermediate', expiresAt: inDays(3) }),
        certificate(tenant, { expiresAt: inDays(-1) }),
        certificate(tenant, { expiresAt: inDays(31) }),
      );

      const conditions = await certificateExpiryRule(handle.db, settings).evaluate(tenant, now);

      expect(conditions).toEqual([
        {
          kind: 'certificate.expired',
          severity: 'critical',
          fingerprint: `certificate.expired:${expired.id}`,
          summary: `Device certificate ${expired.subjectDn} expired on ${expired.expiresAt.toISOString()}`,
          details: expect.objectContaining({ certificateId: expired.id, deviceId: expired.deviceId }),
        },
        {
          kind: 'certificate.expiring',
          severity: 'critical',
          fingerprint: `certificate.expiring:${critical.id}:critical`,
          summary: `Intermediate CA certificate CN=hq intermediate expires on ${critical.expiresAt.toISOString()} (within 3 days)`,
          details: {
            certificateId: critical.id,
            certificateType: 'intermediate',
            serialNumber: critical.serialNumber,
            subjectDn: 'CN=hq intermediate',
            site: 'hq',
            expiresAt: critical.expiresAt.toISOString(),
          },
        },
        expect.objectContaining({
          kind: 'certificate.expiring',
          severity: 'warning',
          fingerprint: `certificate.expiring:${warning.id}:warning`,
        }),
      ]);
    });

    it('leaves out revoked certificates, other tenants’ and the self-renewing service identity', async () => {
      const tenant = newTenant();
      await insert(
        certificate(tenant, { expiresAt: inDays(2), revokedAt: inDays(-1), revocationReason: 'superseded' }),
        certificate(tenant, { certificateType: 'service', deviceId: null, expiresAt: inDays(2) }),
        certificate(newTenant(), { expiresAt: inDays(2) }),
      );
      expect(await certificateExpiryRule(handle.db, settings).evaluate(tenant, now)).toEqual([]);
    });

    it('ignores a device certificate the device has replaced, but not the one it uses', async () => {
      const tenant = newTenant();
      const [old, current] = await insert(
        certificate(tenant, { deviceId: 'cam-renewed', expiresAt: inDays(5) }),
        certificate(tenant, { deviceId: 'cam-renewed', expiresAt: inDays(6) }),
      );
      await handle.db.insert(devices).values({
        tenantId: tenant,
        deviceId: 'cam-renewed',
        serialNumber: 'SN-RENEWED',
        macAddress: '02:00:00:00:aa:01',
        address: '127.0.0.1:1',
        protocol: 'https',
        deviceType: 'camera',
        site: 'hq',
        activeCertificateId: current.id,
      });
      const conditions = await certificateExpiryRule(handle.db, settings).evaluate(tenant, now);
      expect(conditions.map((c) => c.details?.certificateId)).toEqual([current.id]);
      expect(conditions.map((c) => c.details?.certificateId)).not.toContain(old.id);
    });
  });

  it('evaluates the tenants with certificates, with devices, and with open alerts of the rules’ kinds only', async () => {
    const [withCertificate, withDevice, withAlert, withOtherAlert] = [newTenant(), newTenant(), newTenant(), newTenant()];
    await insert(certificate(withCertificate));
    await handle.db.insert(devices).values({
      tenantId: withDevice,
      deviceId: 'cam-1',
      serialNumber: `SN-${randomUUID()}`,
      macAddress: '02:00:00:00:bb:01',
      address: '127.0.0.1:1',
      protocol: 'https',
      deviceType: 'camera',
      site: 'hq',
    });
    const store = new AlertStore({ db: handle.db });
    await store.raise({
      tenantId: withAlert,
      kind: alertKinds.provisioningFailureRate,
      severity: 'warning',
      fingerprint: alertKinds.provisioningFailureRate,
      summary: 'many failures',
    });
    await store.raise({
      tenantId: withOtherAlert,
      kind: alertKinds.deviceUnauthorized,
      severity: 'critical',
      fingerprint: 'device.unauthorized:x',
      summary: 'stranger',
    });

    const rules = alertRules({ db: handle.db, count: async () => 0, settings: { certificateExpiry: settings, provisioningFailureRate: { windowMinutes: 60, threshold: 0.5, minimumRuns: 1 } } });
    const tenants = await tenantsToEvaluate({ db: handle.db, devices: new DeviceRegistry(handle.db), alerts: store }, rules);

    expect(tenants).toEqual(expect.arrayContaining([withCertificate, withDevice, withAlert]));
    expect(tenants).not.toContain(withOtherAlert);
  });
});

describe('provisioning failure rate', () => {
  const settings = { windowMinutes: 60, threshold: 0.5, minimumRuns: 4 };

  /** Answers counts as Temporal visibility would, and remembers the queries asked. */
  function counter(failed: number, completed: number): WorkflowCounter & { queries: string[] } {
    const queries: string[] = [];
    const count = async (query: string) => {
      queries.push(query);
      return query.includes(`ProvisioningStatus = 'failed'`) ? failed : completed;
    };
    return Object.assign(count, { queries });
  }

  it('raises one alert for the tenant when the share of failed runs is above the threshold', async () => {
    const count = counter(3, 1);
    const conditions = await provisioningFailureRateRule(count, settings).evaluate('acme', now);
    expect(conditions).toEqual([
      {
        kind: 'provisioning.failure_rate',
        severity: 'warning',
        fingerprint: 'provisioning.failure_rate',
        summary: '3 of 4 provisioning runs failed in the last 60 minutes (75%, threshold 50%)',
        details: {
          failed: 3,
          completed: 1,
          failureRate: 0.75,
          threshold: 0.5,
          windowMinutes: 60,
          since: '2030-06-01T11:00:00.000Z',
        },
      },
    ]);
    expect(count.queries.sort()).toEqual([
      "WorkflowType = 'provisionDevice' AND TenantId = 'acme' AND ProvisioningStatus = 'completed' AND ExecutionStatus = 'Completed' AND CloseTime >= '2030-06-01T11:00:00.000Z'",
      "WorkflowType = 'provisionDevice' AND TenantId = 'acme' AND ProvisioningStatus = 'failed' AND ExecutionStatus = 'Failed' AND CloseTime >= '2030-06-01T11:00:00.000Z'",
    ]);
  });

  it('stays quiet at the threshold and below the minimum number of runs', async () => {
    expect(await provisioningFailureRateRule(counter(2, 2), settings).evaluate('acme', now)).toEqual([]);
    expect(await provisioningFailureRateRule(counter(3, 0), settings).evaluate('acme', now)).toEqual([]);
    expect(await provisioningFailureRateRule(counter(0, 0), settings).evaluate('acme', now)).toEqual([]);
  });

  it('never puts a tenant id that could break out of the query into it', () => {
    expect(() => closedProvisioningRunsQuery("acme' OR TenantId != '", 'failed', now)).toThrow(/cannot be used/);
  });
});
