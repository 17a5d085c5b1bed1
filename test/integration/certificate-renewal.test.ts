/**
 * Certificate renewal over months of workflow time, on the time-skipping test server: the renewal
 * workflow sleeps until two thirds of the certificate's lifetime, renews against a real reference
 * device over mutual TLS, and keeps at it through an outage. Activities run in real time against
 * the real database, CA and device.
 */
import { X509Certificate } from 'node:crypto';
import { and, eq } from 'drizzle-orm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { alerts, certificates } from '../../db/schema';
import { renewalStatusQuery, renewalWorkflowId, type RenewalStatus } from '../../contracts/certificates';
import { HttpsDeviceAdapter } from '../../adapters/https';
import { testDeviceNetworks } from '../support/device-networks';
import { initialCredentialsPurpose } from '../../registry/initial-credentials';
import { EstEnrolment } from '../../pki/est';
import { CertificateRenewals } from '../../provisioning/certificate-renewals';
import { TestDevices, waitFor } from '../support/devices';
import { makeCsr } from '../support/openssl';
import { startTestService, testLogger, type TestService } from '../support/service';

const httpsDeviceAdapter = new HttpsDeviceAdapter({ networks: testDeviceNetworks });

let service: TestService;
const devices = new TestDevices();
const day = 24 * 60 * 60 * 1000;

// Certificates are issued at real time while the server's clock runs ahead: each test gets a
// server whose clock starts now.
beforeEach(async () => {
  service = await startTestService({ temporal: 'time-skipping' });
});
afterEach(async () => {
  await devices.stopAll();
  await service?.stop();
});

/**
 * A reference device enrolled with a 30-day certificate, its renewal then due after 20 days. The
 * enrolment is done step by step here because the test server has no search attributes for the
 * provisioning workflow; the renewal workflow is started the way activation starts it.
 */
async function provisionedDevice() {
  const { device, request } = await devices.start();
  const { credentials, ...descriptor } = request;
  const deviceId = request.serialNumber;
  const { registry, vault, ca } = service.parts;
  await registry.register('acme', { ...descriptor, deviceId });
  await vault.store('acme', deviceId, initialCredentialsPurpose, credentials);
  const identity = await httpsDeviceAdapter.identify({ address: request.address });
  await registry.recordIdentity('acme', deviceId, identity);
  const session = { address: request.address, credentials, pinnedCertificateFingerprint: identity.presentedCertificateFingerprint };
  const registered = await registry.get('acme', deviceId);
  const csrPem = await httpsDeviceAdapter.createCertificateSigningRequest(session, {
    commonName: deviceId,
    keyAlgorithm: 'P-256',
    subjectAltNames: ca.subjectAltNamesFor(registered),
  });
  const row = await ca.issueDeviceCertificate({ tenantId: 'acme', device: registered, csrPem, validityDays: 30 });
  await httpsDeviceAdapter.installCertificate(session, {
    certificatePem: row.pem,
    chainPem: await ca.getChainPem(row.id),
    trustAnchorsPem: await ca.trustAnchorsPem('acme'),
  });
  await registry.update('acme', deviceId, { activeCertificateId: row.id, lifecycleState: 'active' });
  await renewals().track(row);
  return { device, deviceId, first: { certificateId: row.id, fingerprint: row.fingerprint, issuedAt: row.issuedAt.toISOString(), expiresAt: row.expiresAt.toISOString() } };
}

function renewals() {
  return new CertificateRenewals({ client: service.env.client, taskQueue: service.config.temporal.taskQueue, renewAtFraction: 2 / 3, searchAttributes: false });
}

function renewalOf(deviceId: string) {
  return service.env.client.workflow.getHandle(renewalWorkflowId('acme', deviceId));
}

async function renewalStatus(deviceId: string): Promise<RenewalStatus> {
  return renewalOf(deviceId).query(renewalStatusQuery);
}

async function certificateRow(id: string) {
  const [row] = await service.parts.database.db.select().from(certificates).where(eq(certificates.id, id));
  return row!;
}

async function openAlerts(deviceId: string) {
  const rows = await service.parts.database.db
    .select()
    .from(alerts)
    .where(and(eq(alerts.tenantId, 'acme'), eq(alerts.kind, 'certificate.renewal_failing')));
  return rows.filter((row) => row.resolvedAt === null && (row.details as { deviceId?: string }).deviceId === deviceId);
}

describe('renewDeviceCertificate', () => {
  it('waits until two thirds of the lifetime, then renews: the device presents the new serial before the old certificate is revoked', async () => {
    const { device, deviceId, first } = await provisionedDevice();
    const waiting = await renewalStatus(deviceId);
    expect(waiting.state).toBe('waiting');
    expect(waiting.certificate.certificateId).toBe(first.certificateId);
    const lifetime = Date.parse(first.expiresAt) - Date.parse(first.issuedAt);
    expect(Math.abs(Date.parse(waiting.renewAt) - (Date.parse(first.issuedAt) + (lifetime * 2) / 3))).toBeLessThan(1);

    // Nineteen days on, nothing has happened.
    await service.env.sleep(19 * day);
    expect((await renewalStatus(deviceId)).completedRenewals).toBe(0);
    expect(device.certificateFingerprint).toBe(first.fingerprint);

    await service.env.sleep(2 * day);
    const renewed = await waitFor(async () => {
      const status = await renewalStatus(deviceId);
      return status.completedRenewals === 1 ? status : undefined;
    }, 'the renewal to complete');

    const next = await certificateRow(renewed.certificate.certificateId);
    expect(next.id).not.toBe(first.certificateId);
    expect(next.renewalOfCertificateId).toBe(first.certificateId);
    expect(device.certificateFingerprint).toBe(next.fingerprint);
    const old = await certificateRow(first.certificateId);
    expect(old.revocationReason).toBe('superseded');
    // Revoked only after the device was seen presenting its new certificate.
    expect(old.revokedAt!.getTime()).toBeGreaterThanOrEqual(next.issuedAt.getTime());
    expect((await service.parts.registry.get('acme', deviceId)).activeCertificateId).toBe(next.id);
    // The next renewal is scheduled for the new certificate.
    expect(renewed.state).toBe('waiting');
  });

  it('follows a certificate the device renewed itself over EST, waiting for that one instead', async () => {
    const { deviceId, first } = await provisionedDevice();
    const { ca, registry, vault, audit } = service.parts;
    const enrolment = new EstEnrolment({ db: service.parts.database.db, ca, registry, vault, audit, logger: testLogger, renewals: renewals() });
    const device = await registry.get('acme', deviceId);
    const current = await certificateRow(first.certificateId);
    // A new key under the same subject, as a device renewing over EST would make it.
    const subject = `/${new X509Certificate(current.pem).subject.split('\n').join('/')}`;
    const { csrPem } = makeCsr({ key: 'P-256', subject });
    const { certificate } = await enrolment.enroll({
      label: { tenantId: 'acme' },
      operation: 'simplereenroll',
      client: { method: 'certificate', device, certificate: current },
      csrPem,
    });

    const following = await waitFor(async () => {
      const status = await renewalStatus(deviceId);
      return status.certificate.certificateId === certificate.id ? status : undefined;
    }, 'the renewal workflow to follow the EST certificate');
    expect(following).toMatchObject({ state: 'waiting', completedRenewals: 0 });
    expect(Date.parse(following.renewAt)).toBeGreaterThan(Date.parse(first.expiresAt) - 30 * day + 20 * day);
  });

  it('keeps retrying a device that is offline for weeks, turns the alert critical when the certificate expires, and renews once it is back', async () => {
    const { device, deviceId, first } = await provisionedDevice();
    await device.stop();

    await service.env.sleep(21 * day);
    const failing = await waitFor(async () => {
      const status = await renewalStatus(deviceId);
      return status.state === 'retrying' ? status : undefined;
    }, 'a failed renewal attempt');
    expect(failing.failedAttempts).toBeGreaterThanOrEqual(1);
    expect((await openAlerts(deviceId)).map((alert) => alert.severity)).toEqual(['warning']);

    // Past the old certificate's expiry (30 days) with the device still away: the window has closed.
    await service.env.sleep(10 * day);
    await waitFor(async () => ((await openAlerts(deviceId)).some((alert) => alert.severity === 'critical') ? true : undefined), 'the critical alert');
    expect((await renewalStatus(deviceId)).completedRenewals).toBe(0);
    expect((await certificateRow(first.certificateId)).revokedAt).toBeNull();

    await device.start();
    await service.env.sleep(2 * day);
    const renewed = await waitFor(async () => {
      const status = await renewalStatus(deviceId);
      return status.completedRenewals === 1 ? status : undefined;
    }, 'the renewal after the outage');
    expect(device.certificateFingerprint).toBe((await certificateRow(renewed.certificate.certificateId)).fingerprint);
    expect(await openAlerts(deviceId)).toEqual([]);
    // Attempts that never reached the device issued nothing; at most the finishing one did.
    const issued = await service.parts.database.db.select().from(certificates).where(eq(certificates.deviceId, deviceId));
    expect(issued.filter((row) => row.revokedAt === null).map((row) => row.id)).toEqual([renewed.certificate.certificateId]);
  });
});
