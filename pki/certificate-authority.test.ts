/**
 * The CA end to end, through both key custodies and on both database kinds, with OpenSSL as the
 * independent judge of what it issues.
 */
import { pkiSettings as settings } from '../test/support/pki-publication';
import { createPrivateKey, createPublicKey, randomUUID } from 'node:crypto';
import { and, eq, isNull } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatDistinguishedName, summariseName } from '../x509/distinguished-name';
import { summariseExtensions } from '../x509/extensions';
import { parseStoredCertificate } from './issuing-cas';
import type { KeyCustody } from '../custody/key-custody';
import { Sealer } from '../custody/sealing';
import type { DatabaseHandle } from '../db/client';
import { certificates } from '../db/schema';
import { BadCsrError, ConflictError, NotFoundError, ValidationError } from '../foundation/errors';
import { createLogger } from '../foundation/logger';
import { custodyKinds, openTestCustody } from '../test/support/custody';
import { databaseKinds, openTestDatabase } from '../test/support/database';
import { certificateExtensionsText, certificateField, makeCsr, openssl, verifyChain } from '../test/support/openssl';
import { CertificateAuthority, type DeviceForCertificate } from './certificate-authority';
import { fingerprintOf, fromPem, toPem } from '../x509/pem';



const logger = createLogger('silent');
const day = 24 * 60 * 60 * 1000;

function device(overrides: Partial<DeviceForCertificate> = {}): DeviceForCertificate {
  return {
    deviceId: 'cam-1',
    serialNumber: 'SN-0001',
    macAddress: '00:11:22:AA:BB:CC',
    address: '10.0.0.5:8443',
    site: 'hq',
    ...overrides,
  };
}

function csrFor(
  deviceId = 'cam-1',
  subjectAltName = 'IP:10.0.0.5,URI:urn:dev:mac:001122aabbcc',
  key: 'P-256' | 'P-384' | 'RSA-2048' | 'RSA-1024' = 'P-256',
) {
  return makeCsr({ key, subject: `/CN=${deviceId}`, subjectAltName });
}

const combinations = custodyKinds.flatMap((custody) => databaseKinds.map((database) => [custody, database] as const));

describe.each(combinations)('CertificateAuthority with %s key custody on the %s database', (custodyKind, databaseKind) => {
  let handle: DatabaseHandle;
  let custody: KeyCustody;
  let sealer: Sealer;
  let ca: CertificateAuthority;
  /** A second CA over the same database: another process, as far as locking is concerned. */
  let otherInstance: CertificateAuthority;

  beforeAll(async () => {
    handle = await openTestDatabase(databaseKind);
    sealer = new Sealer(Buffer.alloc(32, 7));
    custody = await openTestCustody(custodyKind, { db: handle.db, sealer });
    ca = new CertificateAuthority({ db: handle.db, custody, settings, logger });
    otherInstance = new CertificateAuthority({
      db: handle.db,
      custody,
      settings,
      logger,
    });
  });
  afterAll(async () => {
    await custody?.close();
    await handle?.close();
  });

  async function liveRows(tenantId: string, certificateType: 'root' | 'intermediate' | 'service') {
    return handle.db
      .select()
      .from(certificates)
      .where(
        and(eq(certificates.tenantId, tenantId), eq(certificates.certificateType, certificateType), isNull(certificates.revokedAt)),
      );
  }

  it('creates exactly one root when many callers in several instances ask at once', async () => {
    const roots = await Promise.all([
      ...Array.from({ length: 4 }, () => ca.ensureRootCa('acme')),
      ...Array.from({ length: 4 }, () => otherInstance.ensureRootCa('acme')),
    ]);
    expect(new Set(roots.map((root) => root.id)).size).toBe(1);
    expect(await liveRows('acme', 'root')).toHaveLength(1);
    expect((await ca.ensureRootCa('acme')).id).toBe(roots[0]!.id);
  });

  it('makes the root a self-signed CA with its key in custody', async () => {
    const root = await ca.ensureRootCa('acme');
    expect(root.privateKeyLocation.startsWith(custodyKind === 'pkcs11' ? 'pkcs11:' : 'software:')).toBe(true);
    expect(root.subjectDn).toBe('CN=acme Root CA,O=acme');
    expect(root.issuerDn).toBe(root.subjectDn);
    expect(root.issuerCertificateId).toBeNull();
    expect(root.extensions).toMatchObject({ basicConstraints: { ca: true }, keyUsage: ['keyCertSign', 'cRLSign'] });
    expect(verifyChain({ rootPem: root.pem, intermediatePems: [], leafPem: root.pem })).toContain('OK');
    const text = certificateExtensionsText(root.pem, ['basicConstraints', 'keyUsage', 'subjectKeyIdentifier']);
    expect(text).toMatch(/Basic Constraints: critical\s+CA:TRUE/);
    expect(text).toMatch(/Key Usage: critical\s+Certificate Sign, CRL Sign/);
    expect(text).toMatch(/Subject Key Identifier/);
    expect(certificateField(root.pem, '-text')).toContain('Signature Algorithm: ecdsa-with-SHA384');
    expect(await ca.getChainPem(root.id)).toEqual([]);
    expect(await ca.trustAnchorsPem('acme')).toEqual([root.pem]);
  });

  it('creates one intermediate per site, signed by the root with path length 0', async () => {
    const intermediates = await Promise.all([
      ...Array.from({ length: 3 }, () => ca.ensureSiteIntermediateCa('acme', 'hq')),
      ...Array.from({ length: 3 }, () => otherInstance.ensureSiteIntermediateCa('acme', 'hq')),
    ]);
    expect(new Set(intermediates.map((row) => row.id)).size).toBe(1);
    const branch = await ca.ensureSiteIntermediateCa('acme', 'branch');
    expect(branch.id).not.toBe(intermediates[0]!.id);
    expect(await liveRows('acme', 'intermediate')).toHaveLength(2);

    const root = await ca.ensureRootCa('acme');
    const hq = intermediates[0]!;
    expect(hq.site).toBe('hq');
    expect(hq.issuerCertificateId).toBe(root.id);
    expect(hq.subjectDn).toBe('CN=hq Intermediate CA,OU=hq,O=acme');
    expect(hq.issuerDn).toBe(root.subjectDn);
    expect(verifyChain({ rootPem: root.pem, intermediatePems: [], leafPem: hq.pem })).toContain('OK');
    const text = certificateExtensionsText(hq.pem, ['basicConstraints', 'keyUsage', 'authorityKeyIdentifier', 'subjectKeyIdentifier']);
    expect(text).toMatch(/Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
    expect(text).toMatch(/Key Usage: critical\s+Certificate Sign, CRL Sign/);
    expect(keyIdentifiers(text).authority).toBe(keyIdentifiers(certificateExtensionsText(root.pem, ['subjectKeyIdentifier'])).subject);
    expect(await ca.getChainPem(hq.id)).toEqual([root.pem]);
  });

  it('issues a device certificate that OpenSSL accepts in strict mode for TLS servers and clients', async () => {
    const { csrPem } = csrFor();
    const issued = await ca.issueDeviceCertificate({ tenantId: 'acme', device: device(), csrPem });
    const root = await ca.ensureRootCa('acme');
    const intermediate = await ca.ensureSiteIntermediateCa('acme', 'hq');

    for (const purpose of [undefined, 'sslserver', 'sslclient']) {
      expect(verifyChain({ rootPem: root.pem, intermediatePems: [intermediate.pem], leafPem: issued.pem, purpose })).toMatch(
        /leaf.pem: OK/,
      );
    }
    // Without the intermediate the chain is incomplete, so it must not verify.
    expect(() => verifyChain({ rootPem: root.pem, intermediatePems: [], leafPem: issued.pem })).toThrow();

    const text = certificateExtensionsText(issued.pem, [
      'basicConstraints',
      'keyUsage',
      'extendedKeyUsage',
      'subjectAltName',
      'subjectKeyIdentifier',
      'authorityKeyIdentifier',
    ]);
    expect(text).toMatch(/Basic Constraints: critical\s+CA:FALSE/);
    expect(text).toMatch(/Key Usage: critical\s+Digital Signature\n/);
    expect(text).toMatch(/Extended Key Usage:\s+TLS Web Server Authentication, TLS Web Client Authentication/);
    expect(text).toMatch(/Subject Alternative Name:\s+IP Address:10.0.0.5, URI:urn:dev:mac:001122aabbcc/);
    expect(keyIdentifiers(text).authority).toBe(
      keyIdentifiers(certificateExtensionsText(intermediate.pem, ['subjectKeyIdentifier'])).subject,
    );
    expect(certificateField(issued.pem, '-subject').trim()).toBe(`subject=${issued.subjectDn}`);
    expect(certificateField(issued.pem, '-issuer').trim()).toBe(`issuer=${intermediate.subjectDn}`);
    expect(certificateField(issued.pem, '-text')).toContain('Signature Algorithm: ecdsa-with-SHA384');

    expect(issued).toMatchObject({
      tenantId: 'acme',
      deviceId: 'cam-1',
      site: 'hq',
      certificateType: 'device',
      privateKeyLocation: 'device:cam-1',
      issuerCertificateId: intermediate.id,
      subjectDn: 'serialNumber=SN-0001,CN=cam-1,OU=hq,O=acme',
      issuerDn: 'CN=hq Intermediate CA,OU=hq,O=acme',
      subject: {
        commonName: 'cam-1',
        organizationalUnit: 'hq',
        organization: 'acme',
        locality: null,
        state: null,
        country: null,
        serialNumber: 'SN-0001',
      },
      extensions: {
        basicConstraints: { ca: false },
        keyUsage: ['digitalSignature'],
        extendedKeyUsage: ['serverAuth', 'clientAuth'],
        subjectAltNames: ['IP:10.0.0.5', 'URI:urn:dev:mac:001122aabbcc'],
      },
      revokedAt: null,
    });
    const der = fromPem(issued.pem, ['CERTIFICATE'])!;
    expect(issued.fingerprint).toBe(fingerprintOf(der));
    expect(certificateField(issued.pem, '-serial').trim()).toBe(`serial=${issued.serialNumber.toUpperCase()}`);
    expect(issued.serialNumber).toMatch(/^[0-9a-f]{2,34}$/);
    expect(createPublicKey(issued.publicKey).export({ type: 'spki', format: 'der' })).toEqual(
      createPublicKey(openssl(['req', '-noout', '-pubkey'], { input: csrPem })).export({ type: 'spki', format: 'der' }),
    );

    const now = Date.now();
    const notBefore = new Date(certificateField(issued.pem, '-dates').match(/notBefore=(.*)/)![1]!).getTime();
    expect(now - notBefore).toBeGreaterThan(4 * 60 * 1000);
    expect(now - notBefore).toBeLessThan(6 * 60 * 1000);
    expect(Math.abs(issued.expiresAt.getTime() - (now + 365 * day))).toBeLessThan(60 * 1000);

    expect(await ca.getChainPem(issued.id)).toEqual([intermediate.pem, root.pem]);
    expect(await ca.getCertificate(issued.id)).toEqual(issued);
  });

  it('records in each row what its certificate says when its DER is read back', async () => {
    const issued = await ca.issueDeviceCertificate({ tenantId: 'acme', device: device({ serialNumber: 'SN-ROW-1' }), csrPem: csrFor().csrPem });
    for (const row of [issued, await ca.getCertificate(issued.issuerCertificateId!), await ca.ensureRootCa('acme')]) {
      const parsed = parseStoredCertificate(row);
      const spki = new Uint8Array(parsed.subjectPublicKeyInfo.toSchema().toBER());
      expect(row.serialNumber).toBe(parsed.serialNumber.toBigInt().toString(16).padStart(row.serialNumber.length, '0'));
      expect(row.publicKey).toBe(toPem(spki, 'PUBLIC KEY'));
      expect(row.expiresAt.getTime()).toBe(parsed.notAfter.value.getTime());
      expect(row.subjectDn).toBe(formatDistinguishedName(parsed.subject));
      expect(row.issuerDn).toBe(formatDistinguishedName(parsed.issuer));
      expect(row.subject).toEqual(summariseName(parsed.subject));
      expect(row.extensions).toEqual(summariseExtensions(parsed.extensions));
    }
  });

  it('issues serials that differ every time', async () => {
    const serials = new Set<string>();
    for (let index = 0; index < 3; index += 1) {
      serials.add((await ca.issueDeviceCertificate({ tenantId: 'acme', device: device(), csrPem: csrFor().csrPem })).serialNumber);
    }
    expect(serials.size).toBe(3);
  });

  it('adds keyEncipherment for RSA device keys', async () => {
    const { csrPem } = csrFor('cam-1', 'IP:10.0.0.5', 'RSA-2048');
    const issued = await ca.issueDeviceCertificate({ tenantId: 'acme', device: device(), csrPem });
    expect(issued.extensions).toMatchObject({ keyUsage: ['digitalSignature', 'keyEncipherment'] });
    expect(certificateExtensionsText(issued.pem, ['keyUsage'])).toMatch(/Digital Signature, Key Encipherment/);
  });

  it('names a device reached by host name with a DNS SAN, and IPv6 hosts by their address', async () => {
    const named = await ca.issueDeviceCertificate({
      tenantId: 'acme',
      device: device({ deviceId: 'door-7', address: 'Door-7.HQ.example.com:443' }),
      csrPem: csrFor('door-7', 'DNS:door-7.hq.example.com').csrPem,
    });
    expect(named.extensions).toMatchObject({
      subjectAltNames: ['DNS:door-7.hq.example.com', 'URI:urn:dev:mac:001122aabbcc'],
    });

    const v6 = await ca.issueDeviceCertificate({
      tenantId: 'acme',
      device: device({ deviceId: 'cam-6', address: '[fd00:0:0::5]:8443' }),
      csrPem: csrFor('cam-6', 'IP:fd00::5').csrPem,
    });
    expect(v6.extensions).toMatchObject({ subjectAltNames: ['IP:fd00::5', 'URI:urn:dev:mac:001122aabbcc'] });
  });

  it('takes the SANs from the registry even when the CSR asks for none', async () => {
    const issued = await ca.issueDeviceCertificate({
      tenantId: 'acme',
      device: device(),
      csrPem: makeCsr({ key: 'P-256', subject: '/CN=cam-1' }).csrPem,
    });
    expect(issued.extensions).toMatchObject({ subjectAltNames: ['IP:10.0.0.5', 'URI:urn:dev:mac:001122aabbcc'] });
  });

  it('never lets a device certificate outlive its issuing CA', async () => {
    const intermediate = await ca.ensureSiteIntermediateCa('acme', 'hq');
    const issued = await ca.issueDeviceCertificate({ tenantId: 'acme', device: device(), csrPem: csrFor().csrPem, validityDays: 100_000 });
    expect(issued.expiresAt).toEqual(intermediate.expiresAt);
    await expect(
      ca.issueDeviceCertificate({ tenantId: 'acme', device: device(), csrPem: csrFor().csrPem, validityDays: 0 }),
    ).rejects.toThrow(ValidationError);
  });

  describe('refuses CSRs it must not sign', () => {
    it.each([
      [
        'a CSR whose signature does not verify',
        () => {
          const der = Buffer.from(fromPem(csrFor().csrPem, ['CERTIFICATE REQUEST'])!);
          der[der.length - 3]! ^= 0x01;
          return `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
        },
        /signature does not verify/,
      ],
      ['an RSA-1024 key', () => csrFor('cam-1', 'IP:10.0.0.5', 'RSA-1024').csrPem, /RSA-1024, which is too weak/],
      ['a CN that is not the device id', () => csrFor('cam-2').csrPem, /common name is "cam-2", but it must be the device id "cam-1"/],
      ['an IP SAN the registry does not allow', () => csrFor('cam-1', 'IP:10.9.9.9').csrPem, /IP:10.9.9.9, which the device registry does not allow/],
      ['a DNS SAN the registry does not allow', () => csrFor('cam-1', 'DNS:bank.example').csrPem, /DNS:bank.example, which the device registry does not allow/],
      ['another device MAC', () => csrFor('cam-1', 'URI:urn:dev:mac:001122aabbcd').csrPem, /URI:urn:dev:mac:001122aabbcd/],
      ['an e-mail SAN', () => csrFor('cam-1', 'email:cam@example.com').csrPem, /rfc822Name names, which device certificates never carry/],
    ])('rejects %s with a BadCsrError', async (_case, makeCsrPem, reason) => {
      const before = (await handle.db.select().from(certificates)).length;
      const failure = await ca
        .issueDeviceCertificate({ tenantId: 'acme', device: device(), csrPem: makeCsrPem() })
        .catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(BadCsrError);
      expect((failure as Error).message).toMatch(reason);
      expect((await handle.db.select().from(certificates)).length).toBe(before);
    });
  });

  it('issues once per issuance key, also when asked again', async () => {
    const first = await ca.issueDeviceCertificate({
      tenantId: 'acme',
      device: device(),
      csrPem: csrFor().csrPem,
      issuanceKey: 'run-1',
    });
    const second = await ca.issueDeviceCertificate({
      tenantId: 'acme',
      device: device(),
      csrPem: csrFor().csrPem,
      issuanceKey: 'run-1',
    });
    expect(second.id).toBe(first.id);
    expect(second.serialNumber).toBe(first.serialNumber);
    expect(await handle.db.select().from(certificates).where(eq(certificates.issuanceKey, 'run-1'))).toHaveLength(1);
  });

  it('issues once per issuance key when asked in parallel', async () => {
    const { csrPem } = csrFor();
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, index) =>
        (index % 2 === 0 ? ca : otherInstance).issueDeviceCertificate({ tenantId: 'acme', device: device(), csrPem, issuanceKey: 'run-2' }),
      ),
    );
    expect(new Set(results.map((row) => row.id)).size).toBe(1);
    expect(new Set(results.map((row) => row.serialNumber)).size).toBe(1);
    expect(await handle.db.select().from(certificates).where(eq(certificates.issuanceKey, 'run-2'))).toHaveLength(1);
  });

  it('refuses an issuance key already used for another device', async () => {
    await expect(
      ca.issueDeviceCertificate({
        tenantId: 'acme',
        device: device({ deviceId: 'cam-9' }),
        csrPem: csrFor('cam-9').csrPem,
        issuanceKey: 'run-1',
      }),
    ).rejects.toThrow(ConflictError);
  });

  it('gives the service a client identity for mutual TLS, issued by the services intermediate and kept in memory', async () => {
    const identity = await ca.ensureServiceIdentity('acme');
    const root = await ca.ensureRootCa('acme');
    const services = await ca.ensureServicesIntermediateCa('acme');
    expect(services).toMatchObject({ certificateType: 'services-intermediate', issuerCertificateId: root.id, subjectDn: 'CN=acme Services CA,O=acme' });
    expect(identity.chainPem).toEqual([services.pem]);
    expect(verifyChain({ rootPem: root.pem, intermediatePems: [services.pem], leafPem: identity.certificatePem, purpose: 'sslclient' })).toMatch(
      /OK/,
    );
    expect(() =>
      verifyChain({ rootPem: root.pem, intermediatePems: [services.pem], leafPem: identity.certificatePem, purpose: 'sslserver' }),
    ).toThrow();
    const text = certificateExtensionsText(identity.certificatePem, ['extendedKeyUsage', 'basicConstraints']);
    expect(text).toMatch(/Extended Key Usage:\s+TLS Web Client Authentication\n/);
    expect(text).toMatch(/CA:FALSE/);
    expect(certificateField(identity.certificatePem, '-subject').trim()).toBe('subject=CN=provisioning-service,O=acme');

    // The private key belongs to the certificate.
    const fromKey = createPublicKey(createPrivateKey(identity.privateKeyPem)).export({ type: 'spki', format: 'der' });
    const fromCertificate = createPublicKey(identity.certificatePem).export({ type: 'spki', format: 'der' });
    expect(fromKey).toEqual(fromCertificate);

    expect(await ca.ensureServiceIdentity('acme')).toBe(identity);
    const [row] = await liveRows('acme', 'service');
    expect(row?.privateKeyLocation).toMatch(/^software:/);
    expect(row?.issuerCertificateId).toBe(services.id);
    expect(row!.expiresAt.getTime() - Date.now()).toBeGreaterThan(89 * day);
  });

  it('shares one live service identity between instances', async () => {
    const [a, b] = await Promise.all([otherInstance.ensureServiceIdentity('acme'), ca.ensureServiceIdentity('acme')]);
    expect(a.certificatePem).toBe(b.certificatePem);
    expect(a.privateKeyPem).toBe(b.privateKeyPem);
    expect(await liveRows('acme', 'service')).toHaveLength(1);

    const concurrent = await Promise.all(
      Array.from({ length: 4 }, (_, index) => (index % 2 ? ca : otherInstance).ensureServiceIdentity('globex')),
    );
    expect(new Set(concurrent.map((identity) => identity.certificatePem)).size).toBe(1);
    expect(await liveRows('globex', 'service')).toHaveLength(1);
  });

  /** The tenant's live client identity, made to look 70 days into its 90: past its renewal time, still valid. */
  async function serviceIdentityDueForRenewal(tenantId: string) {
    const [current] = await liveRows(tenantId, 'service');
    await handle.db
      .update(certificates)
      .set({ issuedAt: new Date(Date.now() - 70 * day), expiresAt: new Date(Date.now() + 20 * day) })
      .where(eq(certificates.id, current!.id));
    return current!;
  }

  it('renews the service identity once a third of its validity is left', async () => {
    const current = await serviceIdentityDueForRenewal('acme');
    const fresh = new CertificateAuthority({ db: handle.db, custody, settings, logger });
    const renewed = await fresh.ensureServiceIdentity('acme');
    expect(renewed.certificatePem).not.toBe(current.pem);
    const [old] = await handle.db.select().from(certificates).where(eq(certificates.id, current.id));
    expect(old).toMatchObject({ revocationReason: 'superseded' });
    expect(await liveRows('acme', 'service')).toHaveLength(1);
  });

  it('goes on with a client identity due for renewal where it cannot sign, while it is valid, and a process that can sign renews it', async () => {
    const current = await serviceIdentityDueForRenewal('acme');
    // An edge worker: the CA's keys are where it cannot sign with them.
    const cannotSign = new Proxy(custody, {
      get(target, property) {
        if (property === 'sign') return async () => Promise.reject(new Error('CKR_USER_NOT_LOGGED_IN'));
        const value = Reflect.get(target, property) as unknown;
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const edge = new CertificateAuthority({ db: handle.db, custody: cannotSign, settings, logger });
    expect((await edge.ensureServiceIdentity('acme')).certificatePem).toBe(current.pem);
    expect((await liveRows('acme', 'service')).map((row) => row.id)).toEqual([current.id]);

    const central = new CertificateAuthority({ db: handle.db, custody, settings, logger });
    await central.completeServiceHierarchies();
    const [renewed] = await liveRows('acme', 'service');
    expect(renewed!.id).not.toBe(current.id);
    expect(renewed!.expiresAt.getTime() - Date.now()).toBeGreaterThan(89 * day);
  });

  it('revokes once, keeping the first time and reason', async () => {
    const issued = await ca.issueDeviceCertificate({ tenantId: 'acme', device: device(), csrPem: csrFor().csrPem });
    const revoked = await ca.revokeCertificate(issued.id, 'keyCompromise');
    expect(revoked.revokedAt).toBeInstanceOf(Date);
    expect(revoked.revocationReason).toBe('keyCompromise');
    const again = await ca.revokeCertificate(issued.id, 'superseded');
    expect(again.revokedAt).toEqual(revoked.revokedAt);
    expect(again.revocationReason).toBe('keyCompromise');
  });

  it('answers NotFoundError for unknown certificates and ValidationError for unknown reasons', async () => {
    await expect(ca.revokeCertificate('00000000-0000-4000-8000-000000000000', 'unspecified')).rejects.toThrow(NotFoundError);
    await expect(ca.revokeCertificate('not-a-uuid', 'unspecified')).rejects.toThrow(NotFoundError);
    await expect(ca.getCertificate('00000000-0000-4000-8000-000000000000')).rejects.toThrow(NotFoundError);
    const issued = await ca.issueDeviceCertificate({ tenantId: 'acme', device: device(), csrPem: csrFor().csrPem });
    await expect(ca.revokeCertificate(issued.id, 'stolen')).rejects.toThrow(ValidationError);
  });

  it('issues from the site intermediate it keeps between issuances until another instance rotates, revokes it or replaces its root', async () => {
    const tenantId = `kept-${custodyKind}-${databaseKind}`;
    const issue = async () =>
      (await ca.issueDeviceCertificate({ tenantId, device: device({ site: 'depot' }), csrPem: csrFor().csrPem })).issuerCertificateId;
    const first = await ca.ensureSiteIntermediateCa(tenantId, 'depot');
    expect(await issue()).toBe(first.id);
    expect(await issue()).toBe(first.id);

    // Rotated elsewhere: the retired intermediate no longer issues here either.
    const { current: rotated } = await otherInstance.rotateSiteIntermediateCa(tenantId, 'depot', `rotation-${randomUUID()}`);
    expect(await issue()).toBe(rotated.id);

    // Revoked elsewhere: the next issuance makes and uses a new one.
    await otherInstance.revokeCertificate(rotated.id, 'cACompromise');
    const afterRevocation = await issue();
    expect(afterRevocation).not.toBe(rotated.id);
    expect((await otherInstance.ensureSiteIntermediateCa(tenantId, 'depot')).id).toBe(afterRevocation);

    // Its root revoked elsewhere: a new root and a new intermediate under it.
    const root = await otherInstance.ensureRootCa(tenantId);
    await otherInstance.revokeCertificate(root.id, 'cACompromise');
    const underNewRoot = await issue();
    expect(underNewRoot).not.toBe(afterRevocation);
    const intermediate = await otherInstance.getCertificate(underNewRoot!);
    expect(intermediate.issuerCertificateId).not.toBe(root.id);
    expect((await otherInstance.getCertificate(intermediate.issuerCertificateId!)).revokedAt).toBeNull();
  });

  it('replaces a revoked site intermediate with a new one on next use', async () => {
    const old = await ca.ensureSiteIntermediateCa('acme', 'branch');
    await ca.revokeCertificate(old.id, 'cACompromise');
    const replacement = await ca.ensureSiteIntermediateCa('acme', 'branch');
    expect(replacement.id).not.toBe(old.id);
    expect(replacement.privateKeyLocation).not.toBe(old.privateKeyLocation);
    expect(await liveRows('acme', 'intermediate')).toHaveLength(2);
  });

  it.each([
    ['RSA-3072', 'sha256WithRSAEncryption'],
    ['P-256', 'ecdsa-with-SHA256'],
  ] as const)('signs with %s CA keys as %s', async (keyAlgorithm, signatureAlgorithm) => {
    const tenantId = `tenant-${keyAlgorithm.toLowerCase()}`;
    const rsaCa = new CertificateAuthority({ db: handle.db, custody, settings: { ...settings, keyAlgorithm }, logger });
    const issued = await rsaCa.issueDeviceCertificate({ tenantId, device: device(), csrPem: csrFor().csrPem });
    const [intermediatePem, rootPem] = await rsaCa.getChainPem(issued.id);
    expect(verifyChain({ rootPem: rootPem!, intermediatePems: [intermediatePem!], leafPem: issued.pem })).toMatch(/OK/);
    for (const pem of [rootPem!, intermediatePem!, issued.pem]) {
      expect(certificateField(pem, '-text')).toContain(`Signature Algorithm: ${signatureAlgorithm}`);
    }
  });
});

function keyIdentifiers(text: string): { subject?: string; authority?: string } {
  const subject = /Subject Key Identifier:\s*\n\s*([0-9A-F:]+)/.exec(text)?.[1];
  const authority = /Authority Key Identifier:\s*\n\s*(?:keyid:)?([0-9A-F:]+)/.exec(text)?.[1];
  return { subject, authority };
}
