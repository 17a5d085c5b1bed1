/**
 * The profile and shape of what the CA emits: names RFC 5280 allows whatever ids the API accepted,
 * a hierarchy in which only the service's own identities chain to the anchor devices are given,
 * and a root whose key routine operation never needs.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { and, eq } from 'drizzle-orm';
import { Certificate, CertificateRevocationList } from 'pkijs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DeviceConfiguration, DeviceSession } from '../adapters/device-adapter';
import { HttpsDeviceAdapter } from '../adapters/https';
import { testDeviceNetworks } from '../test/support/device-networks';
import { certificates, softwareKeys } from '../db/schema';
import { ReferenceDevice } from '../scripts/simulators/reference-device';
import { issueDevice, pkiSettings, run, startPki, type PkiUnderTest } from '../test/support/pki-publication';
import { createLogger } from '../foundation/logger';
import { CertificateAuthority } from './certificate-authority';
import { makeCsr } from '../test/support/openssl';
import { SoftwareKeyStore } from '../custody/software-keystore';
import { ConfigurationSigner } from './configuration-signing';
import { CrlPublisher } from './crl';
import { attributeValues } from '../x509/distinguished-name';
import { readSubjectAltNames } from '../x509/extensions';
import { fromPem } from '../x509/pem';

const adapter = new HttpsDeviceAdapter({ networks: testDeviceNetworks });

let pki: PkiUnderTest;
const day = 24 * 60 * 60 * 1000;
const credentials = { username: 'admin', password: 'factory-Secret-7' };
const configuration: DeviceConfiguration = {
  templateId: 'door-default',
  version: 1,
  settings: {
    hostname: 'door-1',
    timezone: 'Europe/Berlin',
    site: 'hq',
    ntp: { servers: ['127.0.0.1'] },
    tls: { minVersion: 'TLSv1.2' },
    management: { httpEnabled: false, passwordLogin: false },
  },
};

beforeAll(async () => {
  pki = await startPki({ custody: 'software', database: 'embedded' });
});
afterAll(async () => {
  await pki?.close();
});

function parsed(pem: string): Certificate {
  return Certificate.fromBER(fromPem(pem, ['CERTIFICATE'])!);
}

/** The ASN.1 string type of each value of an attribute in the subject, e.g. `PrintableString`. */
function subjectStringTypes(pem: string, oid: string): string[] {
  return parsed(pem)
    .subject.typesAndValues.filter((attribute) => attribute.type === oid)
    .map((attribute) => attribute.value.constructor.name);
}

describe('names', () => {
  it('leaves a serial that is no PrintableString out of the subject; the device keeps its id and MAC URN', async () => {
    const device = { deviceId: 'cam-underscore', serialNumber: 'SN_0001', macAddress: '00:11:22:33:44:aa', address: '10.0.0.7:443', site: 'hq' };
    const { csrPem } = makeCsr({ key: 'P-256', subject: `/CN=${device.deviceId}` });
    const row = await pki.ca.issueDeviceCertificate({ tenantId: 'acme', device, csrPem });
    const certificate = parsed(row.pem);
    expect(attributeValues(certificate.subject, 'serialNumber')).toEqual([]);
    expect(attributeValues(certificate.subject, 'commonName')).toEqual(['cam-underscore']);
    expect(readSubjectAltNames(certificate.extensions).uri).toEqual(['urn:dev:mac:0011223344aa']);

    const printable = { ...device, deviceId: 'cam-printable', serialNumber: 'SN-0001', macAddress: '00:11:22:33:44:ab' };
    const other = await pki.ca.issueDeviceCertificate({
      tenantId: 'acme',
      device: printable,
      csrPem: makeCsr({ key: 'P-256', subject: '/CN=cam-printable' }).csrPem,
    });
    expect(subjectStringTypes(other.pem, '2.5.4.5')).toEqual(['PrintableString']);
  });

  it('keeps every common name within 64 characters for tenant and site ids of 64 characters', async () => {
    const tenantId = `t${'e'.repeat(63)}`;
    const site = `s${'i'.repeat(63)}`;
    const intermediate = await pki.ca.ensureSiteIntermediateCa(tenantId, site);
    const root = await pki.ca.ensureRootCa(tenantId);
    const signer = await pki.ca.ensureConfigurationSigner(tenantId);
    const responder = await pki.ca.ensureOcspResponder(intermediate.id);
    for (const row of [root, intermediate, signer.row, responder]) {
      const [commonName] = attributeValues(parsed(row.pem).subject, 'commonName');
      expect(Array.from(commonName!).length).toBeLessThanOrEqual(64);
    }
    expect(attributeValues(parsed(intermediate.pem).subject, 'organizationalUnit')).toEqual([site]);
    expect(attributeValues(parsed(intermediate.pem).subject, 'commonName')[0]).toMatch(/^si+ Intermediate CA$/);
  });
});

describe('hierarchy', () => {
  const devices: ReferenceDevice[] = [];
  afterEach(async () => {
    await Promise.all(devices.splice(0).map((device) => device.stop()));
  });

  it('gives a tenant that has only a root its services intermediate and issues the service identities from it', async () => {
    const tenantId = 'before-services-ca';
    const root = await pki.ca.ensureRootCa(tenantId);
    await pki.ca.completeServiceHierarchies();
    const rows = await pki.handle.db.select().from(certificates).where(eq(certificates.tenantId, tenantId));
    const services = rows.find((row) => row.certificateType === 'services-intermediate');
    expect(services).toMatchObject({ issuerCertificateId: root.id, extensions: { basicConstraints: { ca: true, pathLength: 0 } } });
    for (const type of ['service', 'configuration-signing'] as const) {
      expect(rows.find((row) => row.certificateType === type)).toMatchObject({ issuerCertificateId: services!.id });
    }
  });

  it('renews the services intermediate for the same key, so devices anchored to the earlier one keep accepting the service', async () => {
    const tenantId = 'services-renewal';
    const first = await pki.ca.ensureServicesIntermediateCa(tenantId);
    await pki.handle.db
      .update(certificates)
      .set({ issuedAt: new Date(Date.now() - 1300 * day), expiresAt: new Date(Date.now() + 500 * day) })
      .where(eq(certificates.id, first.id));
    const renewed = await pki.ca.ensureServicesIntermediateCa(tenantId);
    expect(renewed.id).not.toBe(first.id);
    expect(renewed.publicKey).toBe(first.publicKey);
    expect(renewed.subjectDn).toBe(first.subjectDn);

    const device = await enrolledDevice(tenantId, [first.pem]);
    const clientIdentity = await pki.ca.ensureServiceIdentity(tenantId);
    expect(clientIdentity.chainPem).toEqual([renewed.pem]);
    await expect(adapter.identify({ ...device.session, clientIdentity })).resolves.toMatchObject({ serialNumber: device.registered.serialNumber });
  });

  it('a device given the root as its anchor before the services intermediate existed keeps accepting the service and its configurations', async () => {
    const tenantId = 'anchored-to-root';
    const device = await enrolledDevice(tenantId, await pki.ca.trustAnchorsPem(tenantId));
    const session = { ...device.session, clientIdentity: await pki.ca.ensureServiceIdentity(tenantId) };
    const signed = await new ConfigurationSigner(pki.ca).sign({ tenantId, device: device.registered, configuration });
    await expect(adapter.pushConfiguration(session, signed)).resolves.toMatchObject({ version: 1 });
  });

  /** A reference device enrolled with a certificate from our CA and the given anchors. */
  async function enrolledDevice(tenantId: string, trustAnchorsPem: string[]) {
    const serialNumber = `RD-${devices.length + 1}-${tenantId.length}`;
    const reference = new ReferenceDevice({ serialNumber, macAddress: '02:00:5e:10:00:09', credentials });
    devices.push(reference);
    const address = await reference.start();
    const identity = await adapter.identify({ address });
    const factory: DeviceSession = { address, credentials, pinnedCertificateFingerprint: identity.presentedCertificateFingerprint };
    const registered = { deviceId: `door-${devices.length}`, serialNumber };
    const csrPem = await adapter.createCertificateSigningRequest(factory, {
      commonName: registered.deviceId,
      keyAlgorithm: 'P-256',
      subjectAltNames: { dns: [], ip: ['127.0.0.1'], uri: [] },
    });
    const certificate = await pki.ca.issueDeviceCertificate({
      tenantId,
      device: { ...registered, macAddress: '02:00:5e:10:00:09', address, site: 'hq' },
      csrPem,
    });
    await adapter.installCertificate(factory, { ...(await pki.ca.installationFor(certificate)), trustAnchorsPem });
    return { registered, session: { address, pinnedCertificateFingerprint: certificate.fingerprint } };
  }
});

describe('root key offline between ceremonies', () => {
  it('issues, renews service identities, publishes CRLs and answers OCSP without the root key; a revoked intermediate waits for it', async () => {
    const tenantId = 'offline-root';
    const root = await pki.ca.ensureRootCa(tenantId);
    const hq = await pki.ca.ensureSiteIntermediateCa(tenantId, 'hq');
    const annex = await pki.ca.ensureSiteIntermediateCa(tenantId, 'annex');
    await pki.ca.ensureServiceIdentity(tenantId);
    await pki.ca.ensureConfigurationSigner(tenantId);
    const rootCrl = await pki.crls.latest(root.id);
    expect(rootCrl.nextUpdate.getTime() - rootCrl.thisUpdate.getTime()).toBe(180 * day);
    const rootResponder = await pki.ca.ensureOcspResponder(root.id);
    expect(rootResponder.expiresAt.getTime() - rootResponder.issuedAt.getTime()).toBeGreaterThan(179 * day);

    // The ceremony is over: the root key leaves the online custody, and the service runs on.
    const rootKeyId = root.privateKeyLocation.replace(/^software:/, '');
    const [rootKey] = await pki.handle.db.delete(softwareKeys).where(eq(softwareKeys.id, rootKeyId)).returning();
    expect(rootKey).toBeDefined();
    const online = serviceProcess();

    const device = await issueDevice(online.ca, tenantId, 'hq');
    const [serviceRow] = await pki.handle.db.select().from(certificates).where(and(eq(certificates.tenantId, tenantId), eq(certificates.certificateType, 'service')));
    await pki.handle.db
      .update(certificates)
      .set({ issuedAt: new Date(Date.now() - 80 * day), expiresAt: new Date(Date.now() + 10 * day) })
      .where(eq(certificates.id, serviceRow!.id));
    expect((await online.ca.ensureServiceIdentity(tenantId)).certificatePem).not.toBe(serviceRow!.pem);
    const published = await online.crls.publishAll(tenantId);
    expect(published.find((row) => row.caCertificateId === root.id)?.id).toBe(rootCrl.id);
    expect(published.find((row) => row.caCertificateId === hq.id)).toBeDefined();
    expect(await ocspStatus(root, hq)).toBe('good');
    expect(await ocspStatus(hq, device)).toBe('good');

    // Revoking an intermediate needs a new root CRL: the scheduled run says so until the key is
    // back, and the CRL served meanwhile is the one still valid.
    await online.ca.revokeCertificate(annex.id, 'cessationOfOperation');
    await expect(online.crls.publishAll(tenantId)).rejects.toThrow(/could not be published/);
    expect((await online.crls.latest(root.id)).id).toBe(rootCrl.id);

    await pki.handle.db.insert(softwareKeys).values(rootKey!);
    const after = (await serviceProcess().crls.publishAll(tenantId)).find((row) => row.caCertificateId === root.id)!;
    const listed = CertificateRevocationList.fromBER(after.der).revokedCertificates!.map((entry) => entry.userCertificate.toBigInt());
    expect(listed).toContain(BigInt(`0x${annex.serialNumber}`));
  });

  /** The CA and CRL publisher of another service process over the same database, with nothing in memory yet. */
  function serviceProcess() {
    const keys = new SoftwareKeyStore({ db: pki.handle.db, sealer: pki.sealer });
    const logger = createLogger('silent');
    const ca = new CertificateAuthority({ db: pki.handle.db, custody: keys, settings: pkiSettings, logger });
    return { ca, crls: new CrlPublisher({ db: pki.handle.db, ca, settings: pkiSettings, logger }) };
  }

  /** What `openssl ocsp` is told about `subject` by the responder of `issuer`. */
  async function ocspStatus(issuer: { pem: string }, subject: { pem: string }): Promise<string> {
    const directory = mkdtempSync(path.join(process.env.TEST_WORK_DIR ?? os.tmpdir(), 'ocsp-'));
    try {
      writeFileSync(path.join(directory, 'issuer.pem'), issuer.pem);
      writeFileSync(path.join(directory, 'subject.pem'), subject.pem);
      const result = await run('openssl', ['ocsp', '-issuer', 'issuer.pem', '-cert', 'subject.pem', '-url', `${pki.baseUrl}/ocsp`, '-noverify'], {
        cwd: directory,
      });
      return /subject\.pem: (\w+)/.exec(result.output)?.[1] ?? result.output;
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  }
});
