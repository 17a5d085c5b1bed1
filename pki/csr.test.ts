import { describe, expect, it } from 'vitest';
import { BadCsrError } from '../foundation/errors';
import { makeCsr } from '../test/support/openssl';
import { parseCertificateSigningRequest } from './csr';
import { fromPem, toPem } from '../x509/pem';

function flipByteNearEnd(csrPem: string): string {
  const der = Buffer.from(fromPem(csrPem, ['CERTIFICATE REQUEST'])!);
  // The signature is the last element of the CSR, so its final bytes are signature bytes.
  der[der.length - 3]! ^= 0x01;
  return toPem(der, 'CERTIFICATE REQUEST');
}

function rejection(csrPem: string): BadCsrError {
  try {
    parseCertificateSigningRequest(csrPem);
  } catch (error) {
    expect(error).toBeInstanceOf(BadCsrError);
    return error as BadCsrError;
  }
  throw new Error('the CSR was accepted');
}

describe('parseCertificateSigningRequest', () => {
  it('reads subject, key and requested names of an OpenSSL P-256 CSR', () => {
    const { csrPem } = makeCsr({
      key: 'P-256',
      subject: '/O=acme/CN=cam-1',
      subjectAltName: 'IP:10.0.0.5,IP:fd00::0:1,DNS:cam-1.local,URI:urn:dev:mac:0011223344ab',
    });
    const csr = parseCertificateSigningRequest(csrPem);
    expect(csr.commonName).toBe('cam-1');
    expect(csr.subjectDn).toBe('CN=cam-1,O=acme');
    expect(csr.subject).toMatchObject({ commonName: 'cam-1', organization: 'acme', organizationalUnit: null });
    expect(csr.publicKey).toEqual({ kind: 'ec', curve: 'P-256' });
    expect(csr.requestedSubjectAltNames).toEqual({
      dns: ['cam-1.local'],
      ip: ['10.0.0.5', 'fd00::1'],
      uri: ['urn:dev:mac:0011223344ab'],
      other: [],
    });
  });

  it.each([
    ['P-384', { kind: 'ec', curve: 'P-384' }],
    ['RSA-2048', { kind: 'rsa', modulusBits: 2048 }],
  ] as const)('accepts a %s key', (key, description) => {
    const { csrPem } = makeCsr({ key, subject: '/CN=cam-1' });
    const csr = parseCertificateSigningRequest(csrPem);
    expect(csr.publicKey).toEqual(description);
    expect(csr.requestedSubjectAltNames).toEqual({ dns: [], ip: [], uri: [], other: [] });
  });

  it('rejects a CSR whose signature does not verify', () => {
    const { csrPem } = makeCsr({ key: 'P-256', subject: '/CN=cam-1' });
    expect(rejection(flipByteNearEnd(csrPem)).message).toMatch(/signature does not verify.*possession/);
  });

  it('rejects a CSR whose content was changed after signing', () => {
    const { csrPem } = makeCsr({ key: 'P-256', subject: '/CN=cam-1' });
    const der = Buffer.from(fromPem(csrPem, ['CERTIFICATE REQUEST'])!);
    const at = der.indexOf(Buffer.from('cam-1'));
    der[at + 4] = '2'.charCodeAt(0);
    expect(rejection(toPem(der, 'CERTIFICATE REQUEST')).message).toMatch(/signature does not verify/);
  });

  it('rejects an RSA-1024 key as too weak', () => {
    const { csrPem } = makeCsr({ key: 'RSA-1024', subject: '/CN=cam-1' });
    expect(rejection(csrPem).message).toMatch(/RSA-1024, which is too weak: RSA keys need at least 2048 bits/);
  });

  it('rejects key types outside the policy', () => {
    const { csrPem } = makeCsr({ key: 'Ed25519', subject: '/CN=cam-1' });
    expect(rejection(csrPem).message).toMatch(/ed25519, which is not accepted: use EC P-256, EC P-384 or RSA/);
  });

  it('rejects a CSR signed with SHA-1', () => {
    const { csrPem } = makeCsr({ key: 'RSA-2048', subject: '/CN=cam-1', digest: 'sha1' });
    expect(rejection(csrPem).message).toMatch(/signed with .*not accepted/);
  });

  it('lists SAN kinds it never issues so the caller can refuse them', () => {
    const { csrPem } = makeCsr({ key: 'P-256', subject: '/CN=cam-1', subjectAltName: 'email:ops@example.com,DNS:cam-1' });
    expect(parseCertificateSigningRequest(csrPem).requestedSubjectAltNames.other).toEqual(['rfc822Name']);
  });

  it('rejects a subject with two common names', () => {
    const { csrPem } = makeCsr({ key: 'P-256', subject: '/CN=cam-1/CN=cam-2' });
    expect(rejection(csrPem).message).toMatch(/more than one common name/);
  });

  it.each([
    ['an empty string', ''],
    ['a certificate instead of a CSR', '-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n'],
    ['garbage inside the PEM armour', '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n'],
    ['an oversized body', `-----BEGIN CERTIFICATE REQUEST-----\n${'A'.repeat(70_000)}\n-----END CERTIFICATE REQUEST-----\n`],
  ])('rejects %s', (_case, pem) => {
    expect(rejection(pem).message).toMatch(/CSR/);
  });
});
