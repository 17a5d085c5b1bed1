/**
 * The EST message formats and rules that need no server: certs-only CMS, CsrAttrs, labels, CSR
 * bodies and the failed-authentication throttle, with openssl and pkijs reading what is produced.
 */
import { ContentInfo, SignedData } from 'pkijs';
import { describe, expect, it } from 'vitest';
import { BadCsrError } from '../foundation/errors';
import { makeCsr, openssl, withTemporaryDirectory } from '../test/support/openssl';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { base64Lines, certsOnly, csrAttributes, csrPemOfBody, parseEstLabel } from './est';
import { fromPem } from '../x509/pem';

function selfSigned(subject: string): Uint8Array {
  return withTemporaryDirectory((directory) => {
    openssl(
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'k.pem', '-subj', subject, '-days', '1', '-out', 'c.pem'],
      { cwd: directory },
    );
    return fromPem(openssl(['x509', '-in', path.join(directory, 'c.pem')]), ['CERTIFICATE'])!;
  });
}

describe('EST messages', () => {
  it('builds a certs-only CMS that pkijs reads field by field and openssl prints in order', () => {
    const first = selfSigned('/CN=first');
    const second = selfSigned('/CN=second');
    const der = certsOnly([first, second]);

    const contentInfo = ContentInfo.fromBER(der);
    expect(contentInfo.contentType).toBe(ContentInfo.SIGNED_DATA);
    const signedData = new SignedData({ schema: contentInfo.content });
    expect(signedData.version).toBe(1);
    expect(signedData.digestAlgorithms).toEqual([]);
    expect(signedData.encapContentInfo.eContentType).toBe(ContentInfo.DATA);
    expect(signedData.encapContentInfo.eContent).toBeUndefined();
    expect(signedData.signerInfos).toEqual([]);
    expect(signedData.crls).toBeUndefined();
    expect(signedData.certificates!.map((certificate) => Buffer.from((certificate as { toSchema(): { toBER(): ArrayBuffer } }).toSchema().toBER()))).toEqual([
      Buffer.from(first),
      Buffer.from(second),
    ]);

    const printed = withTemporaryDirectory((directory) => {
      writeFileSync(path.join(directory, 'p7.der'), der);
      return openssl(['pkcs7', '-inform', 'DER', '-in', 'p7.der', '-print_certs', '-noout'], { cwd: directory });
    });
    expect(printed.match(/subject=.*/g)).toEqual(['subject=CN = first', 'subject=CN = second']);
  });

  it('builds CsrAttrs as a SEQUENCE of the ecdsa-with-SHA256 OID and an id-ecPublicKey attribute naming P-256', () => {
    const parsed = withTemporaryDirectory((directory) => {
      writeFileSync(path.join(directory, 'attrs.der'), csrAttributes());
      return openssl(['asn1parse', '-inform', 'DER', '-in', 'attrs.der'], { cwd: directory });
    });
    expect(parsed).toMatch(/OBJECT\s+:ecdsa-with-SHA256/);
    expect(parsed).toMatch(/OBJECT\s+:id-ecPublicKey/);
    expect(parsed).toMatch(/OBJECT\s+:prime256v1/);
  });

  it('wraps base64 in lines of 64 characters ended by LF, which base64 -d accepts', () => {
    const text = base64Lines(new Uint8Array(200));
    const lines = text.split('\n');
    expect(lines.at(-1)).toBe('');
    expect(lines.slice(0, -1).every((line) => line.length <= 64 && !line.includes('\r'))).toBe(true);
    expect(Buffer.from(text.replace(/\s+/g, ''), 'base64')).toEqual(Buffer.alloc(200));
  });

  it('reads labels as <tenant> or <tenant>~<site> and nothing else', () => {
    expect(parseEstLabel('acme')).toEqual({ tenantId: 'acme' });
    expect(parseEstLabel('acme~plant-7')).toEqual({ tenantId: 'acme', site: 'plant-7' });
    expect(parseEstLabel('acme~')).toBeUndefined();
    expect(parseEstLabel('a~b~c')).toBeUndefined();
    expect(parseEstLabel('../etc')).toBeUndefined();
  });

  it('accepts a base64 DER or PEM CSR body and refuses anything else as a bad CSR', () => {
    const { csrPem } = makeCsr({ key: 'P-256', subject: '/CN=cam-1' });
    const der = fromPem(csrPem, ['CERTIFICATE REQUEST'])!;
    const wrapped = Buffer.from(base64Lines(der));
    expect(fromPem(csrPemOfBody(wrapped), ['CERTIFICATE REQUEST'])).toEqual(der);
    expect(fromPem(csrPemOfBody(Buffer.from(csrPem)), ['CERTIFICATE REQUEST'])).toEqual(der);
    expect(() => csrPemOfBody(Buffer.from('not base64 at all!'))).toThrow(BadCsrError);
    expect(() => csrPemOfBody(Buffer.alloc(0))).toThrow(BadCsrError);
  });
});
