/**
 * The profile of what the CA emits: names RFC 5280 allows whatever ids the API accepted, and the
 * key purposes relying parties expect.
 */
import { Certificate } from 'pkijs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPki, type PkiUnderTest } from '../test/support/pki-publication';
import { makeCsr } from '../test/support/openssl';
import { attributeValues } from './distinguished-name';
import { readSubjectAltNames } from './extensions';
import { fromPem } from './pem';

let pki: PkiUnderTest;

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
