/**
 * CRLs signed through both key custodies, read field by field by `openssl crl` and by pkijs, and
 * used by `openssl verify -crl_check` as a relying party would.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as asn1js from 'asn1js';
import { eq } from 'drizzle-orm';
import { AuthorityKeyIdentifier, Certificate, CertificateRevocationList } from 'pkijs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { certificates, type CertificateRow } from '../db/schema';
import { createLogger } from '../foundation/logger';
import { NotFoundError } from '../foundation/errors';
import { issueDevice, pkiSettings, run, startPki, type CustodyKind, type PkiUnderTest } from '../test/support/pki-publication';
import { CrlPublisher } from './crl';
import { readSubjectKeyIdentifier } from '../x509/extensions';
import { oids } from '../x509/oids';
import { fromPem, toPem } from '../x509/pem';

const custodyKinds: CustodyKind[] = ['software', 'pkcs11'];
const hour = 60 * 60 * 1000;

function certificateOf(row: CertificateRow): Certificate {
  return Certificate.fromBER(fromPem(row.pem, ['CERTIFICATE'])!);
}

function extensionValue(crl: CertificateRevocationList, oid: string) {
  const extension = crl.crlExtensions?.extensions.find((candidate) => candidate.extnID === oid);
  return extension && { critical: extension.critical, value: asn1js.fromBER(extension.extnValue.valueBlock.valueHexView).result };
}

describe.each(custodyKinds)('CRLs signed with CA keys in %s custody', (custodyKind) => {
  const tenantId = `crl-${custodyKind}-${randomBytes(3).toString('hex')}`;
  let pki: PkiUnderTest;
  let directory: string;
  let root: CertificateRow;
  let intermediate: CertificateRow;
  let good: CertificateRow;
  let compromised: CertificateRow;
  let unspecified: CertificateRow;

  const file = (name: string) => path.join(directory, name);

  beforeAll(async () => {
    pki = await startPki({ custody: custodyKind });
    directory = mkdtempSync(path.join(process.env.TEST_WORK_DIR ?? os.tmpdir(), 'crl-'));
    intermediate = await pki.ca.ensureSiteIntermediateCa(tenantId, 'hq');
    root = await pki.ca.ensureRootCa(tenantId);
    good = await issueDevice(pki.ca, tenantId);
    compromised = await issueDevice(pki.ca, tenantId);
    unspecified = await issueDevice(pki.ca, tenantId);
    compromised = await pki.ca.revokeCertificate(compromised.id, 'keyCompromise');
    unspecified = await pki.ca.revokeCertificate(unspecified.id, 'unspecified');
    writeFileSync(file('root.pem'), root.pem);
    writeFileSync(file('intermediate.pem'), intermediate.pem);
    writeFileSync(file('good.pem'), good.pem);
    writeFileSync(file('compromised.pem'), compromised.pem);
  });
  afterAll(async () => {
    await pki?.close();
    if (directory) rmSync(directory, { recursive: true, force: true });
  });

  it('signs a v2 CRL that openssl reads with issuer, update times, AKI, CRL number and each revoked serial', async () => {
    const row = await pki.crls.publish(intermediate.id);
    writeFileSync(file('text.crl'), row.der);
    const result = await run('openssl', ['crl', '-inform', 'DER', '-in', 'text.crl', '-text', '-noout', '-nameopt', 'RFC2253'], {
      cwd: directory,
    });
    expect(result.status, result.output).toBe(0);
    const text = result.stdout;
    expect(text).toContain('Version 2 (0x1)');
    expect(text).toContain('Signature Algorithm: ecdsa-with-SHA384');
    expect(text).toContain(`Issuer: ${intermediate.subjectDn}`);
    const lastUpdate = new Date(text.match(/Last Update: (.+)/)![1]!);
    const nextUpdate = new Date(text.match(/Next Update: (.+)/)![1]!);
    expect(lastUpdate.getTime()).toBe(row.thisUpdate.getTime());
    expect(nextUpdate.getTime() - lastUpdate.getTime()).toBe(pkiSettings.crlValidityHours * hour);
    const keyId = Buffer.from(readSubjectKeyIdentifier(certificateOf(intermediate).extensions)!).toString('hex').toUpperCase();
    expect(text.replace(/:/g, '')).toContain(keyId);
    expect(text).toMatch(/X509v3 Authority Key Identifier:/);
    expect(text).toMatch(new RegExp(`X509v3 CRL Number:\\s*\\n\\s*${row.crlNumber}\\s*\\n`));
    expect(text.toLowerCase()).toContain(`serial number: ${compromised.serialNumber}`);
    expect(text.toLowerCase()).toContain(`serial number: ${unspecified.serialNumber}`);
    expect(text.toLowerCase()).not.toContain(`serial number: ${good.serialNumber}`);
    // The reason is stated for keyCompromise and left out for unspecified (RFC 5280 5.3.1).
    expect(text.match(/X509v3 CRL Reason Code:\s*\n\s*Key Compromise/g)).toHaveLength(1);
    expect(text).not.toContain('Unspecified');
    expect(row.revokedCount).toBe(2);
  });

  it('encodes every field as RFC 5280 asks, as pkijs reads it, and the signature verifies with the CA key', async () => {
    const row = await pki.crls.publish(intermediate.id);
    const crl = CertificateRevocationList.fromBER(row.der);
    const issuer = certificateOf(intermediate);
    expect(crl.version).toBe(1);
    expect(crl.signature.algorithmId).toBe(oids.ecdsaWithSha384);
    expect(crl.signatureAlgorithm.algorithmId).toBe(oids.ecdsaWithSha384);
    expect(crl.issuer.isEqual(issuer.subject)).toBe(true);
    expect(crl.thisUpdate.value.getTime()).toBe(row.thisUpdate.getTime());
    expect(crl.nextUpdate!.value.getTime()).toBe(row.nextUpdate.getTime());
    expect(await crl.verify({ issuerCertificate: issuer })).toBe(true);

    const number = extensionValue(crl, oids.cRLNumber)!;
    expect(number.critical).toBe(false);
    expect((number.value as asn1js.Integer).toBigInt()).toBe(BigInt(row.crlNumber));
    const aki = crl.crlExtensions!.extensions.find((extension) => extension.extnID === oids.authorityKeyIdentifier)!;
    expect(aki.critical).toBe(false);
    const akiValue = AuthorityKeyIdentifier.fromBER(aki.extnValue.valueBlock.valueHexView);
    expect(Buffer.from(akiValue.keyIdentifier!.valueBlock.valueHexView)).toEqual(Buffer.from(readSubjectKeyIdentifier(issuer.extensions)!));

    const entries = new Map(crl.revokedCertificates!.map((entry) => [entry.userCertificate.toBigInt().toString(16), entry]));
    const compromisedEntry = entries.get(BigInt(`0x${compromised.serialNumber}`).toString(16))!;
    expect(compromisedEntry.revocationDate.value.getTime()).toBe(Math.floor(compromised.revokedAt!.getTime() / 1000) * 1000);
    const [reason] = compromisedEntry.crlEntryExtensions!.extensions;
    expect(reason!.extnID).toBe(oids.cRLReason);
    expect(reason!.critical).toBe(false);
    const reasonValue = asn1js.fromBER(reason!.extnValue.valueBlock.valueHexView).result;
    expect(reasonValue).toBeInstanceOf(asn1js.Enumerated);
    expect((reasonValue as asn1js.Enumerated).valueBlock.valueDec).toBe(1);
    const unspecifiedEntry = entries.get(BigInt(`0x${unspecified.serialNumber}`).toString(16))!;
    expect(unspecifiedEntry.crlEntryExtensions).toBeUndefined();
  });

  it('makes openssl verify -crl_check reject the revoked device certificate and accept the good one', async () => {
    const row = await pki.crls.publish(intermediate.id);
    writeFileSync(file('intermediate.crl.pem'), toPem(row.der, 'X509 CRL'));
    const verifyWithCrl = (leaf: string) =>
      run(
        'openssl',
        ['verify', '-crl_check', '-CAfile', 'root.pem', '-untrusted', 'intermediate.pem', '-CRLfile', 'intermediate.crl.pem', leaf],
        { cwd: directory },
      );
    const revoked = await verifyWithCrl('compromised.pem');
    expect(revoked.status).not.toBe(0);
    expect(revoked.output).toContain('certificate revoked');
    const accepted = await verifyWithCrl('good.pem');
    expect(accepted.status, accepted.output).toBe(0);
    expect(accepted.output).toContain('good.pem: OK');
  });

  it('gives each new CRL a higher number, also when two publishers (as in two processes) race', async () => {
    const before = await pki.crls.publish(intermediate.id);
    const otherProcess = new CrlPublisher({ db: pki.handle.db, ca: pki.ca, settings: pkiSettings, logger: createLogger('silent') });
    const raced = await Promise.all([
      ...Array.from({ length: 4 }, () => pki.crls.publish(intermediate.id)),
      ...Array.from({ length: 4 }, () => otherProcess.publish(intermediate.id)),
    ]);
    const numbers = raced.map((row) => row.crlNumber).sort((a, b) => a - b);
    expect(new Set(numbers).size).toBe(8);
    expect(numbers[0]).toBeGreaterThan(before.crlNumber);
    const after = await pki.crls.publish(intermediate.id);
    expect(after.crlNumber).toBeGreaterThan(numbers.at(-1)!);
  });

  it('serves the stored CRL from latest until nextUpdate is near, then signs a new one', async () => {
    const current = await pki.crls.publish(intermediate.id);
    expect((await pki.crls.latest(intermediate.id)).id).toBe(current.id);
    // A margin longer than the validity makes every stored CRL "near its nextUpdate".
    const eager = new CrlPublisher({
      db: pki.handle.db,
      ca: pki.ca,
      settings: pkiSettings,
      logger: createLogger('silent'),
      refreshMarginMs: 25 * hour,
    });
    const renewed = await eager.latest(intermediate.id);
    expect(renewed.crlNumber).toBe(current.crlNumber + 1);
  });

  it('publishes a first CRL on demand for a CA that has none, and refuses ids that are not CAs', async () => {
    const site = `site-${randomBytes(2).toString('hex')}`;
    const fresh = await pki.ca.ensureSiteIntermediateCa(tenantId, site);
    const first = await pki.crls.latest(fresh.id);
    expect(first.crlNumber).toBe(1);
    expect(first.revokedCount).toBe(0);
    // No revokedCertificates field at all when nothing is revoked (RFC 5280 5.1.2.6).
    expect(CertificateRevocationList.fromBER(first.der).revokedCertificates).toBeUndefined();
    await expect(pki.crls.latest(good.id)).rejects.toBeInstanceOf(NotFoundError);
  });

  it('lists a revoked intermediate on the root CRL and drops revoked certificates once they expire', async () => {
    const site = `old-${randomBytes(2).toString('hex')}`;
    const retiring = await pki.ca.ensureSiteIntermediateCa(tenantId, site);
    await pki.ca.revokeCertificate(retiring.id, 'cACompromise');
    const rootCrl = CertificateRevocationList.fromBER((await pki.crls.publish(root.id)).der);
    const listed = rootCrl.revokedCertificates!.map((entry) => entry.userCertificate.toBigInt());
    expect(listed).toContain(BigInt(`0x${retiring.serialNumber}`));

    const expired = await issueDevice(pki.ca, tenantId);
    await pki.ca.revokeCertificate(expired.id, 'superseded');
    await pki.handle.db.update(certificates).set({ expiresAt: new Date(Date.now() - hour) }).where(eq(certificates.id, expired.id));
    const intermediateCrl = CertificateRevocationList.fromBER((await pki.crls.publish(intermediate.id)).der);
    const serials = intermediateCrl.revokedCertificates!.map((entry) => entry.userCertificate.toBigInt());
    expect(serials).not.toContain(BigInt(`0x${expired.serialNumber}`));
    expect(serials).toContain(BigInt(`0x${compromised.serialNumber}`));
  });

  it('publishAll covers live CAs and recently revoked ones, not those revoked longer ago than a CRL lives', async () => {
    const recentSite = `recent-${randomBytes(2).toString('hex')}`;
    const longAgoSite = `long-ago-${randomBytes(2).toString('hex')}`;
    const recent = await pki.ca.ensureSiteIntermediateCa(tenantId, recentSite);
    const longAgo = await pki.ca.ensureSiteIntermediateCa(tenantId, longAgoSite);
    await pki.ca.revokeCertificate(recent.id, 'superseded');
    await pki.handle.db
      .update(certificates)
      .set({ revokedAt: new Date(Date.now() - 2 * pkiSettings.crlValidityHours * hour), revocationReason: 'superseded' })
      .where(eq(certificates.id, longAgo.id));
    const published = await pki.crls.publishAll(tenantId);
    const covered = new Set(published.map((row) => row.caCertificateId));
    expect(covered.has(root.id)).toBe(true);
    expect(covered.has(intermediate.id)).toBe(true);
    expect(covered.has(recent.id)).toBe(true);
    expect(covered.has(longAgo.id)).toBe(false);
    expect(published.every((row) => row.tenantId === tenantId)).toBe(true);
  });
});
