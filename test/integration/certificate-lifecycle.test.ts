/**
 * The certificate lifecycle through the API against the real dev server, database, CA and
 * reference devices: revocation with RFC 5280 reasons, listing what expires soon, the pins a
 * device's record carries, the renewal workflow activation starts, and rotating a site's
 * intermediate CA as one tracked job.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { certificateRevocationLists, certificates } from '../../db/schema';
import { renewalStatusQuery, renewalWorkflowId } from '../../contracts/certificates';
import { provisioningWorkflowId, type DeviceProvisioningRecord } from '../../contracts/provisioning';
import { startTestApi, type TestApi } from '../support/api';
import { TestDevices, waitFor } from '../support/devices';
import { startTestService, type TestService } from '../support/service';

const run = promisify(execFile);
let service: TestService;
let api: TestApi;
const devices = new TestDevices();

beforeAll(async () => {
  service = await startTestService();
  api = await startTestApi(service, { defaultTenant: 'acme' });
});
afterAll(async () => {
  await devices.stopAll();
  await api?.close();
  await service?.stop();
});

async function provision(site = 'hq') {
  const { device, request } = await devices.start({ site });
  await service.provisioning.start('acme', { devices: [request] });
  const record: DeviceProvisioningRecord = await service.env.client.workflow.getHandle(provisioningWorkflowId('acme', request.serialNumber)).result();
  expect(record.status).toBe('completed');
  return { device, deviceId: request.serialNumber, record };
}

async function row(id: string) {
  const [found] = await service.parts.database.db.select().from(certificates).where(eq(certificates.id, id));
  return found!;
}

describe('certificate lifecycle', () => {
  it("records the pins a client should use in the device's record and hands the certificate to a waiting renewal workflow", async () => {
    const { deviceId, record } = await provision();
    const info = record.certificateInfo!;
    const intermediate = await row((await row(info.certificateId)).issuerCertificateId!);
    const root = await row(intermediate.issuerCertificateId!);
    expect(info.pins).toEqual({
      certificateSha256: info.fingerprint,
      publicKeySha256: expect.stringMatching(/^[A-Za-z0-9+/]{43}=$/),
      issuerCertificateSha256: [intermediate.fingerprint, root.fingerprint],
    });
    const fromApi = await api.call('GET', `/api/v1/provisioning/certificates/${info.certificateId}`);
    expect(fromApi.body.pins).toEqual(info.pins);

    const renewal = await waitFor(
      () => service.env.client.workflow.getHandle(renewalWorkflowId('acme', deviceId)).query(renewalStatusQuery),
      'the renewal workflow',
    );
    expect(renewal).toMatchObject({ state: 'waiting', certificate: { certificateId: info.certificateId } });
    const viaApi = await api.call('GET', `/api/v1/provisioning/devices/${deviceId}/certificate-renewal`);
    expect(viaApi.status).toBe(200);
    expect(viaApi.body.certificate.certificateId).toBe(info.certificateId);
  });

  it('revokes a device certificate with an RFC 5280 reason, audits it, and refuses to revoke it again', async () => {
    const { record } = await provision();
    const id = record.certificateInfo!.certificateId;
    const operator = await api.keyFor('acme', 'operator');

    const refused = await api.call('POST', `/api/v1/provisioning/certificates/${id}/revoke`, { body: { reason: 'certificateHold' }, key: operator });
    expect(refused.status).toBe(400);
    expect(refused.body.errors).toEqual([expect.objectContaining({ field: 'reason' })]);

    const revoked = await api.call('POST', `/api/v1/provisioning/certificates/${id}/revoke`, { body: { reason: 'keyCompromise' }, key: operator });
    expect(revoked.status).toBe(200);
    expect(revoked.body).toMatchObject({ id, revocationReason: 'keyCompromise', revokedAt: expect.any(String) });
    const stored = await row(id);
    expect(stored.revocationReason).toBe('keyCompromise');

    // Relying parties see it at the URLs the certificate names: its issuer's CRL and the OCSP responder.
    const dir = mkdtempSync(path.join(process.env.TEST_WORK_DIR ?? '/tmp', 'revoked-'));
    const [intermediatePem, rootPem] = await service.parts.ca.getChainPem(id);
    writeFileSync(path.join(dir, 'device.pem'), stored.pem);
    writeFileSync(path.join(dir, 'intermediate.pem'), intermediatePem!);
    writeFileSync(path.join(dir, 'root.pem'), rootPem!);
    const certificateText = (await run('openssl', ['x509', '-in', path.join(dir, 'device.pem'), '-noout', '-ext', 'crlDistributionPoints,authorityInfoAccess'])).stdout;
    const crlUrl = /URI:(\S+\.crl)/.exec(certificateText)![1]!;
    const ocspUrl = /OCSP - URI:(\S+)/.exec(certificateText)![1]!;
    expect(crlUrl.startsWith(api.baseUrl)).toBe(true);
    const crl = await fetch(crlUrl);
    expect(crl.headers.get('content-type')).toBe('application/pkix-crl');
    writeFileSync(path.join(dir, 'intermediate.crl'), Buffer.from(await crl.arrayBuffer()));
    await run('openssl', ['crl', '-inform', 'DER', '-in', path.join(dir, 'intermediate.crl'), '-out', path.join(dir, 'intermediate.crl.pem')]);
    const verdict = await run('openssl', [
      'verify', '-crl_check', '-CAfile', path.join(dir, 'root.pem'), '-untrusted', path.join(dir, 'intermediate.pem'),
      '-CRLfile', path.join(dir, 'intermediate.crl.pem'), path.join(dir, 'device.pem'),
    ]).catch((error: { stdout: string; stderr: string }) => error);
    expect(`${verdict.stdout}${verdict.stderr}`).toContain('certificate revoked');
    const ocsp = await run('openssl', [
      'ocsp', '-issuer', path.join(dir, 'intermediate.pem'), '-cert', path.join(dir, 'device.pem'), '-url', ocspUrl,
      '-CAfile', path.join(dir, 'root.pem'), '-verify_other', path.join(dir, 'intermediate.pem'),
    ]);
    expect(ocsp.stderr).toContain('Response verify OK');
    expect(ocsp.stdout).toContain('device.pem: revoked');
    expect(ocsp.stdout).toContain('Reason: keyCompromise');

    const again = await api.call('POST', `/api/v1/provisioning/certificates/${id}/revoke`, { body: { reason: 'superseded' }, key: operator });
    expect(again.status).toBe(409);
    expect((await row(id)).revocationReason).toBe('keyCompromise');

    const events = await api.call('GET', `/api/v1/audit/events?action=certificate.revoked&targetId=${id}`);
    expect(events.body.events).toEqual([
      expect.objectContaining({ actorType: 'user', details: expect.objectContaining({ reason: 'keyCompromise', revokedAt: stored.revokedAt!.toISOString() }) }),
    ]);
  });

  it("republishes every CA's CRL on the schedule's workflow, each with a higher CRL number", async () => {
    await provision();
    const latestNumbers = async () => {
      const latest = new Map<string, number>();
      for (const crl of await service.parts.database.db.select().from(certificateRevocationLists)) {
        latest.set(crl.caCertificateId, Math.max(latest.get(crl.caCertificateId) ?? 0, crl.crlNumber));
      }
      return latest;
    };
    const before = await latestNumbers();
    const result = await service.env.client.workflow.execute('publishCrls', { taskQueue: service.config.temporal.taskQueue, workflowId: `crl-test-${Date.now()}`, args: [] });
    expect((result as { published: number }).published).toBeGreaterThanOrEqual(2);
    const after = await latestNumbers();
    for (const [ca, number] of before) expect(after.get(ca)).toBeGreaterThan(number);
  });

  it('lets an operator revoke device certificates but not a CA', async () => {
    const { record } = await provision('annex');
    const intermediateId = (await row(record.certificateInfo!.certificateId)).issuerCertificateId!;
    const response = await api.call('POST', `/api/v1/provisioning/certificates/${intermediateId}/revoke`, {
      body: { reason: 'cACompromise' },
      key: await api.keyFor('acme', 'operator'),
    });
    expect(response.status).toBe(403);
    expect((await row(intermediateId)).revokedAt).toBeNull();
  });

  it('lists live certificates expiring within N days, soonest first, a page at a time', async () => {
    const first = await api.call('GET', '/api/v1/provisioning/certificates?expiringWithinDays=400&certificateType=device&limit=1');
    expect(first.status).toBe(200);
    expect(first.body.certificates).toHaveLength(1);
    expect(first.body.next).toEqual(expect.any(String));
    const second = await api.call('GET', `/api/v1/provisioning/certificates?expiringWithinDays=400&certificateType=device&limit=1&cursor=${first.body.next}`);
    expect(second.body.certificates).toHaveLength(1);
    expect(Date.parse(second.body.certificates[0].expiresAt)).toBeGreaterThanOrEqual(Date.parse(first.body.certificates[0].expiresAt));
    expect(second.body.certificates[0].id).not.toBe(first.body.certificates[0].id);
    for (const certificate of [...first.body.certificates, ...second.body.certificates]) expect(certificate.revokedAt).toBeUndefined();

    const none = await api.call('GET', '/api/v1/provisioning/certificates?expiringWithinDays=30&certificateType=device');
    expect(none.body.certificates).toEqual([]);
    const bad = await api.call('GET', '/api/v1/provisioning/certificates?cursor=bm9wZQ');
    expect(bad.status).toBe(400);
    expect(bad.body.errors).toEqual([expect.objectContaining({ field: 'query:cursor' })]);
  });

  it("rotates a site's intermediate: every device there is re-issued by the new CA, and the old one is revoked when none is left", async () => {
    const site = 'rotation-site';
    const provisioned = [await provision(site), await provision(site)];
    const oldIntermediate = (await row(provisioned[0]!.record.certificateInfo!.certificateId)).issuerCertificateId!;

    const started = await api.call('POST', `/api/v1/provisioning/ca/sites/${site}/intermediate/rotate`, {
      body: { overlapDays: 7, progressCheckSeconds: 1 },
      key: await api.keyFor('acme', 'administrator'),
    });
    expect(started.status).toBe(202);
    const done = await waitFor(async () => {
      const progress = await api.call('GET', `/api/v1/provisioning/ca/rotations/${started.body.rotationId}`);
      return progress.body.state === 'completed' ? progress.body : undefined;
    }, 'the rotation to complete', 60_000);

    expect(done).toMatchObject({ previousCertificateId: oldIntermediate, devicesTotal: 2, devicesRemaining: 0, notRenewable: [] });
    const retired = await row(oldIntermediate);
    expect(retired.retiredAt).not.toBeNull();
    expect(retired.revocationReason).toBe('superseded');
    for (const { device, deviceId } of provisioned) {
      const registry = await service.parts.registry.get('acme', deviceId);
      const current = await row(registry.activeCertificateId!);
      expect(current.issuerCertificateId).toBe(done.currentCertificateId);
      expect(device.certificateFingerprint).toBe(current.fingerprint);
    }
  });
});
