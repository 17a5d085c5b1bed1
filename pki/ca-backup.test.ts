/**
 * Backup of one install's CA and its restore into a fresh install with another key-encryption key,
 * through both key custodies and across both database kinds, with OpenSSL as the judge of what the
 * restored install issues.
 */
import { pkiSettings as settings } from '../test/support/pki-publication';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { eq } from 'drizzle-orm';
import * as asn1js from 'asn1js';
import { CertificateRevocationList, Extension, Extensions, RevokedCertificate, Time, TimeType, Certificate } from 'pkijs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SoftwareKeyStore } from '../custody/software-keystore';
import type { KeyCustody } from '../custody/key-custody';
import { Sealer } from '../custody/sealing';
import type { DatabaseHandle } from '../db/client';
import { certificateRevocationLists, certificates, softwareKeys, type CertificateRow } from '../db/schema';
import { ConflictError, NotFoundError } from '../foundation/errors';
import { createLogger } from '../foundation/logger';
import { openTestCustody, type CustodyKind } from '../test/support/custody';
import { openTestDatabase, type DatabaseKind } from '../test/support/database';
import { certificateExtensionsText, makeCsr, verifyChain, withTemporaryDirectory } from '../test/support/openssl';
import {
  BackupIntegrityError,
  BackupPassphraseError,
  caBackupFormatVersion,
  caBackupMagic,
  CertificateAuthorityBackup,
  readBackupHeader,
  type ScryptParameters,
} from './ca-backup';
import { CertificateAuthority, type DeviceForCertificate } from './certificate-authority';
import { signatureAlgorithmFor, wholeSeconds } from './certificate-builder';
import { oids } from '../x509/oids';
import { fromPem, toPem } from '../x509/pem';
import { PkiPublication } from './publication';
import { keyAlgorithmOf } from '../x509/public-key';

const logger = createLogger('silent');
const passphrase = 'correct horse battery staple';
/** The lowest cost the format accepts: the tests exercise the format, not the work factor. */
const testScrypt: ScryptParameters = { N: 2 ** 14, r: 8, p: 1 };
const publicUrl = 'http://127.0.0.1:8443';

/** One install: its own database, key-encryption key, key custody and CA, composed as the service does. */
interface Install {
  handle: DatabaseHandle;
  sealer: Sealer;
  softwareKeys: SoftwareKeyStore;
  custody: KeyCustody;
  ca: CertificateAuthority;
  backup: CertificateAuthorityBackup;
  close(): Promise<void>;
}

async function openInstall(databaseKind: DatabaseKind, custodyKind: CustodyKind): Promise<Install> {
  const handle = await openTestDatabase(databaseKind);
  const sealer = new Sealer(randomBytes(32));
  const softwareKeys = new SoftwareKeyStore({ db: handle.db, sealer });
  const custody = await openTestCustody(custodyKind, { db: handle.db, sealer });
  const publication = new PkiPublication(publicUrl);
  return {
    handle,
    sealer,
    softwareKeys,
    custody,
    ca: new CertificateAuthority({ db: handle.db, custody, settings, publication, logger }),
    backup: new CertificateAuthorityBackup({ db: handle.db, sealer, custody, logger }),
    async close() {
      await custody.close();
      await handle.close();
    },
  };
}

function device(deviceId: string, site = 'hq', address = '10.0.0.5:8443'): DeviceForCertificate {
  const suffix = Buffer.from(deviceId).toString('hex').padEnd(12, '0').slice(-12);
  const mac = suffix.match(/../g)!.join(':');
  return { deviceId, serialNumber: `SN-${deviceId}`, macAddress: mac, address, site };
}

async function issue(install: Install, tenantId: string, target: DeviceForCertificate): Promise<CertificateRow> {
  const host = target.address.split(':')[0]!;
  const mac = target.macAddress.replace(/:/g, '').toLowerCase();
  const { csrPem } = makeCsr({ key: 'P-256', subject: `/CN=${target.deviceId}`, subjectAltName: `IP:${host},URI:urn:dev:mac:${mac}` });
  return install.ca.issueDeviceCertificate({ tenantId, device: target, csrPem });
}

/** A v2 CRL signed by `issuer`'s key wherever it lives, as the CRL publisher stores them. */
async function signCrl(install: Install, issuer: CertificateRow, revoked: CertificateRow[], crlNumber: number): Promise<Uint8Array> {
  const issuerCertificate = Certificate.fromBER(fromPem(issuer.pem, ['CERTIFICATE'])!);
  const spki = new Uint8Array(issuerCertificate.subjectPublicKeyInfo.toSchema().toBER());
  const { hash, identifier } = signatureAlgorithmFor(keyAlgorithmOf(spki));
  const thisUpdate = wholeSeconds(new Date());
  const crl = new CertificateRevocationList({
    version: 1,
    signature: identifier,
    issuer: issuerCertificate.subject,
    thisUpdate: new Time({ type: TimeType.UTCTime, value: thisUpdate }),
    nextUpdate: new Time({ type: TimeType.UTCTime, value: new Date(thisUpdate.getTime() + 86_400_000) }),
    revokedCertificates: revoked.map(
      (row) =>
        new RevokedCertificate({
          userCertificate: asn1js.Integer.fromBigInt(BigInt(`0x${row.serialNumber}`)),
          revocationDate: new Time({ type: TimeType.UTCTime, value: wholeSeconds(row.revokedAt!) }),
        }),
    ),
    crlExtensions: new Extensions({
      extensions: [new Extension({ extnID: oids.cRLNumber, extnValue: new asn1js.Integer({ value: crlNumber }).toBER() })],
    }),
    signatureAlgorithm: identifier,
  });
  const tbs = (crl.toSchema(true) as asn1js.Sequence).valueBlock.value[0]!;
  const tbsDer = new Uint8Array(tbs.toBER());
  const custody = issuer.privateKeyLocation.startsWith('software:') ? install.softwareKeys : install.custody;
  const signature = await custody.sign(issuer.privateKeyLocation, hash, tbsDer);
  return new Uint8Array(
    new asn1js.Sequence({ value: [tbs, identifier.toSchema(), new asn1js.BitString({ valueHex: signature })] }).toBER(),
  );
}

async function countRows(handle: DatabaseHandle) {
  return {
    certificates: (await handle.db.select().from(certificates)).length,
    crls: (await handle.db.select().from(certificateRevocationLists)).length,
    softwareKeys: (await handle.db.select().from(softwareKeys)).length,
  };
}

/** Rows without the columns the database fills in on insert, ordered by id, for comparing two installs. */
async function certificateRows(handle: DatabaseHandle, tenantId?: string) {
  const rows = await handle.db.select().from(certificates).where(tenantId ? eq(certificates.tenantId, tenantId) : undefined);
  return rows.sort((a, b) => a.id.localeCompare(b.id));
}

// Each custody restores across database kinds, so both kinds serve as source and as destination.
const scenarios = [
  { custodyKind: 'software', source: 'server', destination: 'embedded' },
  { custodyKind: 'pkcs11', source: 'embedded', destination: 'server' },
] as const;

describe.each(scenarios)('CA backup with $custodyKind custody from a $source to a $destination database', ({ custodyKind, source, destination }) => {
  let a: Install;
  let b: Install;
  let file: Buffer;
  const fixture = {} as {
    root: CertificateRow;
    retiredIntermediate: CertificateRow;
    intermediate: CertificateRow;
    branch: CertificateRow;
    revokedDevice: CertificateRow;
    liveDevice: CertificateRow;
    serviceKeyPem: string;
    crlDer: Uint8Array;
  };

  beforeAll(async () => {
    a = await openInstall(source, custodyKind);
    b = await openInstall(destination, custodyKind);

    // Install A's history: a rotated (retired) site intermediate, a revoked device, a CRL, the
    // service identity (a software key whatever the custody), a second site and a second tenant.
    fixture.root = await a.ca.ensureRootCa('acme');
    fixture.retiredIntermediate = await a.ca.ensureSiteIntermediateCa('acme', 'hq');
    fixture.revokedDevice = await issue(a, 'acme', device('cam-1'));
    fixture.revokedDevice = await a.ca.revokeCertificate(fixture.revokedDevice.id, 'keyCompromise');
    fixture.crlDer = await signCrl(a, fixture.retiredIntermediate, [fixture.revokedDevice], 7);
    await a.handle.db.insert(certificateRevocationLists).values({
      tenantId: 'acme',
      caCertificateId: fixture.retiredIntermediate.id,
      crlNumber: 7,
      thisUpdate: new Date(),
      nextUpdate: new Date(Date.now() + 86_400_000),
      revokedCount: 1,
      der: fixture.crlDer,
    });
    await a.handle.db.update(certificates).set({ retiredAt: new Date() }).where(eq(certificates.id, fixture.retiredIntermediate.id));
    fixture.intermediate = await a.ca.ensureSiteIntermediateCa('acme', 'hq');
    fixture.liveDevice = await issue(a, 'acme', device('cam-2', 'hq', '10.0.0.6:8443'));
    fixture.branch = await a.ca.ensureSiteIntermediateCa('acme', 'branch');
    fixture.serviceKeyPem = (await a.ca.ensureServiceIdentity('acme')).privateKeyPem;
    await issue(a, 'globex', device('door-1', 'plant', '10.1.0.9:443'));

    file = (await a.backup.createBackup({ passphrase, scrypt: testScrypt })).file;
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
  });

  it('writes a readable header naming the format, tenants, counts and scrypt parameters', () => {
    expect(file.subarray(0, caBackupMagic.length + 1).toString()).toBe(`${caBackupMagic}\n`);
    const header = readBackupHeader(file);
    expect(header.formatVersion).toBe(caBackupFormatVersion);
    expect(Date.now() - Date.parse(header.createdAt)).toBeLessThan(120_000);
    expect(header.tenants).toEqual(['acme', 'globex']);
    expect(header.counts).toEqual({
      certificates: { root: 2, intermediate: 4, 'services-intermediate': 1, ocsp: 0, service: 1, server: 0, 'configuration-signing': 0, device: 3 },
      revokedCertificates: 1,
      certificateRevocationLists: 1,
      // The service identity's key is in software whatever the custody; CA keys follow the custody.
      softwareKeys: custodyKind === 'software' ? 8 : 1,
      hsmKeyReferences: custodyKind === 'pkcs11' ? 7 : 0,
    });
    expect(header.sourceKeyEncryptionKeyId).toBe(a.sealer.keyId);
    expect(header.kdf).toMatchObject({ name: 'scrypt', N: testScrypt.N, r: 8, p: 1 });
    expect(Buffer.from(header.kdf.salt, 'base64')).toHaveLength(16);
    expect(header).toMatchObject({ cipher: 'aes-256-gcm', compression: 'gzip' });
  });

  it('carries no key material, certificate or CA name in the clear', () => {
    const serviceKeyDer = Buffer.from(fromPem(fixture.serviceKeyPem, ['PRIVATE KEY'])!);
    expect(file.includes(serviceKeyDer)).toBe(false);
    expect(file.includes(serviceKeyDer.subarray(serviceKeyDer.length - 32))).toBe(false);
    expect(file.includes(Buffer.from('PRIVATE KEY'))).toBe(false);
    expect(file.includes(Buffer.from(fromPem(fixture.root.pem, ['CERTIFICATE'])!))).toBe(false);
    expect(file.includes(Buffer.from('Root CA'))).toBe(false);
  });

  it('refuses a wrong passphrase with a clear error and writes nothing', async () => {
    const c = await openInstall(destination, custodyKind);
    try {
      const attempt = c.backup.restoreBackup(file, { passphrase: 'not the right passphrase' });
      await expect(attempt).rejects.toBeInstanceOf(BackupPassphraseError);
      await expect(attempt).rejects.toThrow(/passphrase does not open this backup/);
      expect(await countRows(c.handle)).toEqual({ certificates: 0, crls: 0, softwareKeys: 0 });
    } finally {
      await c.close();
    }
  });

  it('refuses a file altered in its payload, its header, its key-derivation salt or its length, and writes nothing', async () => {
    const c = await openInstall(destination, custodyKind);
    try {
      const payloadFlipped = Buffer.from(file);
      payloadFlipped[payloadFlipped.length - 5]! ^= 0x01;
      const tagFlipped = Buffer.from(file);
      const bodyStart = file.indexOf(0x0a, caBackupMagic.length + 1) + 1;
      tagFlipped[bodyStart + 12]! ^= 0x80;
      const tenantRenamed = Buffer.from(file.toString('latin1').replace('"tenants":["acme","globex"]', '"tenants":["acme","globey"]'), 'latin1');
      const countChanged = Buffer.from(file.toString('latin1').replace('"revokedCertificates":1', '"revokedCertificates":0'), 'latin1');
      const header = readBackupHeader(file);
      const otherSalt = randomBytes(16).toString('base64');
      const saltChanged = Buffer.from(file.toString('latin1').replace(header.kdf.salt, otherSalt), 'latin1');
      const truncated = file.subarray(0, file.length - 100);

      for (const altered of [payloadFlipped, tagFlipped, tenantRenamed, countChanged, truncated]) {
        expect(altered.equals(file)).toBe(false);
        const attempt = c.backup.restoreBackup(altered, { passphrase });
        await expect(attempt).rejects.toBeInstanceOf(BackupIntegrityError);
        await expect(attempt).rejects.toThrow(/altered or truncated/);
      }
      // A changed salt derives another key, which the passphrase check reports.
      await expect(c.backup.restoreBackup(saltChanged, { passphrase })).rejects.toBeInstanceOf(BackupPassphraseError);
      await expect(c.backup.restoreBackup(Buffer.from('not a backup at all'), { passphrase })).rejects.toThrow(/not a CA backup file/);
      expect(await countRows(c.handle)).toEqual({ certificates: 0, crls: 0, softwareKeys: 0 });
    } finally {
      await c.close();
    }
  });

  it('restores every row with its id into an empty install with another key-encryption key', async () => {
    expect(b.sealer.keyId).not.toBe(a.sealer.keyId);
    const result = await b.backup.restoreBackup(file, { passphrase });
    expect(result.tenants).toEqual([
      { tenantId: 'acme', outcome: 'restored' },
      { tenantId: 'globex', outcome: 'restored' },
    ]);
    expect(result.inserted).toEqual({ certificates: 11, certificateRevocationLists: 1, softwareKeys: custodyKind === 'software' ? 8 : 1 });

    // Same rows field by field, ids, issuer links, revocation and retirement included.
    expect(await certificateRows(b.handle)).toEqual(await certificateRows(a.handle));
    const [crl] = await b.handle.db.select().from(certificateRevocationLists);
    const [original] = await a.handle.db.select().from(certificateRevocationLists);
    expect(crl).toEqual(original);
    expect(crl!.crlNumber).toBe(7);

    // Software keys are the same keys, sealed anew under B's key-encryption key.
    const keysA = await a.handle.db.select().from(softwareKeys);
    const keysB = await b.handle.db.select().from(softwareKeys);
    expect(keysB.map((key) => key.id).sort()).toEqual(keysA.map((key) => key.id).sort());
    for (const key of keysB) {
      const before = keysA.find((candidate) => candidate.id === key.id)!;
      expect(key.keyEncryptionKeyId).toBe(b.sealer.keyId);
      expect(Buffer.from(key.sealedPrivateKey).equals(Buffer.from(before.sealedPrivateKey))).toBe(false);
      expect({ ...key, sealedPrivateKey: undefined, keyEncryptionKeyId: undefined }).toEqual({
        ...before,
        sealedPrivateKey: undefined,
        keyEncryptionKeyId: undefined,
      });
    }
  });

  it("issues again from A's root and live intermediate, which OpenSSL verifies, without creating a CA", async () => {
    const before = await countRows(b.handle);
    const issued = await issue(b, 'acme', device('cam-9', 'hq', '10.0.0.9:8443'));
    expect(issued.issuerCertificateId).toBe(fixture.intermediate.id);
    expect((await b.ca.ensureRootCa('acme')).id).toBe(fixture.root.id);
    expect((await b.ca.ensureSiteIntermediateCa('acme', 'hq')).id).toBe(fixture.intermediate.id);
    expect((await b.ca.ensureSiteIntermediateCa('acme', 'branch')).id).toBe(fixture.branch.id);
    expect(await countRows(b.handle)).toEqual({ ...before, certificates: before.certificates + 1 });

    // Verified against A's certificates as A stored them: the trust anchors relying parties hold.
    for (const purpose of [undefined, 'sslserver', 'sslclient']) {
      expect(verifyChain({ rootPem: fixture.root.pem, intermediatePems: [fixture.intermediate.pem], leafPem: issued.pem, purpose })).toMatch(
        /leaf.pem: OK/,
      );
    }
    // The published URLs still name A's CA ids.
    const text = certificateExtensionsText(issued.pem, ['crlDistributionPoints', 'authorityInfoAccess']);
    expect(text).toContain(`URI:${publicUrl}/pki/crl/${fixture.intermediate.id}.crl`);
    expect(text).toContain(`CA Issuers - URI:${publicUrl}/pki/ca/${fixture.intermediate.id}.cer`);
    expect(text).toContain(`OCSP - URI:${publicUrl}/pki/ocsp`);
  });

  it("keeps the service identity and its exportable key, now opened with B's key-encryption key", async () => {
    const identity = await b.ca.ensureServiceIdentity('acme');
    expect(identity.privateKeyPem).toBe(fixture.serviceKeyPem);
    const [services] = await a.handle.db.select().from(certificates).where(eq(certificates.certificateType, 'services-intermediate'));
    expect(identity.chainPem).toEqual([services!.pem]);
    const [serviceRow] = await a.handle.db.select().from(certificates).where(eq(certificates.certificateType, 'service'));
    expect(identity.certificatePem).toBe(serviceRow!.pem);
  });

  it('keeps revocations made in A revoked in B, with their time and reason', async () => {
    const revoked = await b.ca.getCertificate(fixture.revokedDevice.id);
    expect(revoked.revokedAt).toEqual(fixture.revokedDevice.revokedAt);
    expect(revoked.revocationReason).toBe('keyCompromise');
    expect((await b.ca.getCertificate(fixture.liveDevice.id)).revokedAt).toBeNull();
    const retired = await b.ca.getCertificate(fixture.retiredIntermediate.id);
    expect(retired.retiredAt).not.toBeNull();
    expect(retired.revokedAt).toBeNull();
  });

  it("keeps A's CRL byte for byte: OpenSSL verifies it against the retired intermediate and reads its number and entry", async () => {
    const [row] = await b.handle.db.select().from(certificateRevocationLists);
    const crlPem = toPem(row!.der, 'X509 CRL');
    const verified = verifyCrl(crlPem, fixture.retiredIntermediate.pem);
    expect(verified.status).toBe(0);
    expect(verified.stderr).toContain('verify OK');
    // Negative control: the intermediate that replaced it did not sign this CRL.
    expect(verifyCrl(crlPem, fixture.intermediate.pem).stderr).toContain('verify failure');
    const text = verified.stdout;
    expect(text).toMatch(/X509v3 CRL Number:\s+7/);
    expect(text).toContain(`Serial Number: ${fixture.revokedDevice.serialNumber.toUpperCase()}`);
    const parsed = CertificateRevocationList.fromBER(row!.der);
    expect(parsed.crlExtensions?.extensions[0]?.extnID).toBe(oids.cRLNumber);
    expect(parsed.revokedCertificates?.map((entry) => entry.userCertificate.toBigInt().toString(16))).toEqual([
      BigInt(`0x${fixture.revokedDevice.serialNumber}`).toString(16),
    ]);
  });

  it('treats restoring the same file again as a no-op', async () => {
    const c = await openInstall(destination, custodyKind);
    try {
      await c.backup.restoreBackup(file, { passphrase });
      const before = await countRows(c.handle);
      const rowsBefore = await certificateRows(c.handle);
      const again = await c.backup.restoreBackup(file, { passphrase });
      expect(again.tenants).toEqual([
        { tenantId: 'acme', outcome: 'already-present' },
        { tenantId: 'globex', outcome: 'already-present' },
      ]);
      expect(again.inserted).toEqual({ certificates: 0, certificateRevocationLists: 0, softwareKeys: 0 });
      expect(await countRows(c.handle)).toEqual(before);
      expect(await certificateRows(c.handle)).toEqual(rowsBefore);
    } finally {
      await c.close();
    }
  });

  it('refuses to restore again over a tenant that has issued since, but skips a tenant that has not changed', async () => {
    const before = await countRows(b.handle);
    // acme has issued cam-9 in B since the restore; globex is still exactly the backup's.
    const attempt = b.backup.restoreBackup(file, { passphrase });
    await expect(attempt).rejects.toBeInstanceOf(ConflictError);
    await expect(attempt).rejects.toThrow(/tenant acme that differ from the backup \(9 certificates there, 8 in the backup\)/);
    const globexOnly = (await a.backup.createBackup({ passphrase, tenantId: 'globex', scrypt: testScrypt })).file;
    const result = await b.backup.restoreBackup(globexOnly, { passphrase });
    expect(result.tenants).toEqual([{ tenantId: 'globex', outcome: 'already-present' }]);
    expect(await countRows(b.handle)).toEqual(before);
  });

  it('refuses a restore into a database that already holds other certificates of a tenant in the backup, and writes nothing', async () => {
    const c = await openInstall(destination, custodyKind);
    try {
      const ownRoot = await c.ca.ensureRootCa('acme');
      const before = await countRows(c.handle);
      const attempt = c.backup.restoreBackup(file, { passphrase });
      await expect(attempt).rejects.toBeInstanceOf(ConflictError);
      await expect(attempt).rejects.toThrow(/already holds certificates of tenant acme that differ from the backup/);
      expect(await countRows(c.handle)).toEqual(before);
      expect((await certificateRows(c.handle)).map((row) => row.id)).toEqual([ownRoot.id]);
    } finally {
      await c.close();
    }
  });

  it('backs up one tenant only when asked, and that restores on its own', async () => {
    const { file: globexFile, summary } = await a.backup.createBackup({ passphrase, tenantId: 'globex', scrypt: testScrypt });
    expect(summary.header.tenants).toEqual(['globex']);
    expect(summary.header.counts.certificates).toEqual({ root: 1, intermediate: 1, 'services-intermediate': 0, ocsp: 0, service: 0, server: 0, 'configuration-signing': 0, device: 1 });
    expect(summary.caCertificates.map((ca) => [ca.certificateType, ca.site, ca.state])).toEqual([
      ['root', null, 'live'],
      ['intermediate', 'plant', 'live'],
    ]);
    const globexRoot = (await certificateRows(a.handle, 'globex')).find((row) => row.certificateType === 'root')!;
    expect(summary.caCertificates[0]!.fingerprint).toBe(globexRoot.fingerprint);

    const c = await openInstall(destination, custodyKind);
    try {
      await c.backup.restoreBackup(globexFile, { passphrase });
      expect(await certificateRows(c.handle)).toEqual(await certificateRows(a.handle, 'globex'));
      const issued = await issue(c, 'globex', device('door-2', 'plant', '10.1.0.10:443'));
      const intermediate = await c.ca.ensureSiteIntermediateCa('globex', 'plant');
      expect(verifyChain({ rootPem: globexRoot.pem, intermediatePems: [intermediate.pem], leafPem: issued.pem })).toMatch(/leaf.pem: OK/);
    } finally {
      await c.close();
    }
  });

  it.runIf(custodyKind === 'pkcs11')('names every HSM reference that does not resolve in the destination, and writes nothing', async () => {
    const c = await openInstall(destination, 'software');
    try {
      const attempt = c.backup.restoreBackup(file, { passphrase });
      await expect(attempt).rejects.toBeInstanceOf(NotFoundError);
      const message = await attempt.catch((error: Error) => error.message);
      expect(message).toMatch(/HSM key references in the backup do not resolve/);
      for (const ca of [fixture.root, fixture.retiredIntermediate, fixture.intermediate, fixture.branch]) {
        expect(message).toContain(ca.privateKeyLocation);
      }
      expect(await countRows(c.handle)).toEqual({ certificates: 0, crls: 0, softwareKeys: 0 });
    } finally {
      await c.close();
    }
  });
});

/** `openssl crl` checking a CRL's signature against an issuer certificate; OpenSSL reports on stderr. */
function verifyCrl(crlPem: string, issuerPem: string) {
  return withTemporaryDirectory((directory) => {
    writeFileSync(path.join(directory, 'crl.pem'), crlPem);
    writeFileSync(path.join(directory, 'ca.pem'), issuerPem);
    return spawnSync('openssl', ['crl', '-in', 'crl.pem', '-CAfile', 'ca.pem', '-noout', '-text'], { cwd: directory, encoding: 'utf8' });
  });
}
