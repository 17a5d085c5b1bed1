/**
 * The OCSP responder through its HTTP routes, with `openssl ocsp` and curl as the clients and
 * pkijs reading every field of what comes back (RFC 6960, RFC 5019).
 */
import { createPublicKey, randomBytes, verify } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as asn1js from 'asn1js';
import { BasicOCSPResponse, Certificate, OCSPResponse } from 'pkijs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CertificateRow } from '../db/schema';
import { createLogger } from '../foundation/logger';
import { issueDevice, pkiSettings, run, startPki, type CustodyKind, type PkiUnderTest } from '../test/support/pki-publication';
import { OcspResponder } from './ocsp-responder';
import { oids } from '../x509/oids';
import { fromPem } from '../x509/pem';
import { keyIdentifier } from '../x509/public-key';

const custodyKinds: CustodyKind[] = ['software', 'pkcs11'];

interface ParsedOcsp {
  status: number;
  basic?: BasicOCSPResponse;
}

function parseOcspResponse(der: Uint8Array): ParsedOcsp {
  const response = OCSPResponse.fromBER(der);
  const status = response.responseStatus.valueBlock.valueDec;
  if (!response.responseBytes) return { status };
  expect(response.responseBytes.responseType).toBe(oids.ocspBasic);
  return { status, basic: BasicOCSPResponse.fromBER(response.responseBytes.response.valueBlock.valueHexView) };
}

/** certStatus CHOICE tag: 0 good, 1 revoked, 2 unknown. */
function certStatusTag(basic: BasicOCSPResponse, index = 0): number {
  return (basic.tbsResponseData.responses[index]!.certStatus as asn1js.BaseBlock).idBlock.tagNumber;
}

describe.each(custodyKinds)('OCSP responder with CA keys in %s custody', (custodyKind) => {
  const tenantId = `ocsp-${custodyKind}-${randomBytes(3).toString('hex')}`;
  let pki: PkiUnderTest;
  let directory: string;
  let root: CertificateRow;
  let intermediate: CertificateRow;
  let good: CertificateRow;
  let revoked: CertificateRow;
  let ocspUrl: string;

  const file = (name: string) => path.join(directory, name);

  beforeAll(async () => {
    pki = await startPki({ custody: custodyKind, ocsp: { maxCertIdsPerRequest: 3 } });
    ocspUrl = `${pki.baseUrl}/ocsp`;
    directory = mkdtempSync(path.join(process.env.TEST_WORK_DIR ?? os.tmpdir(), 'ocsp-'));
    intermediate = await pki.ca.ensureSiteIntermediateCa(tenantId, 'hq');
    root = await pki.ca.ensureRootCa(tenantId);
    good = await issueDevice(pki.ca, tenantId);
    revoked = await issueDevice(pki.ca, tenantId);
    await pki.ca.revokeCertificate(revoked.id, 'keyCompromise');
    revoked = await pki.ca.getCertificate(revoked.id);
    writeFileSync(file('root.pem'), root.pem);
    writeFileSync(file('intermediate.pem'), intermediate.pem);
    writeFileSync(file('good.pem'), good.pem);
    writeFileSync(file('revoked.pem'), revoked.pem);
  });
  afterAll(async () => {
    await pki?.close();
    if (directory) rmSync(directory, { recursive: true, force: true });
  });

  async function opensslOcsp(args: string[]) {
    return await run('openssl', ['ocsp', '-issuer', 'intermediate.pem', '-url', ocspUrl, '-CAfile', 'root.pem', '-resp_text', ...args], {
      cwd: directory,
    });
  }

  /** An OCSPRequest made by openssl, DER. */
  async function opensslRequest(args: string[]): Promise<Uint8Array> {
    const out = `request-${randomBytes(4).toString('hex')}.der`;
    const result = await run('openssl', ['ocsp', '-issuer', 'intermediate.pem', '-reqout', out, ...args], { cwd: directory });
    expect(result.status, result.output).toBe(0);
    return new Uint8Array(readFileSync(file(out)));
  }

  async function post(body: Uint8Array): Promise<ParsedOcsp & { der: Uint8Array }> {
    const response = await fetch(ocspUrl, { method: 'POST', headers: { 'content-type': 'application/ocsp-request' }, body });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/ocsp-response');
    const der = new Uint8Array(await response.arrayBuffer());
    return { ...parseOcspResponse(der), der };
  }

  it('answers good for an issued, unrevoked certificate, signed so that openssl verifies it against the root', async () => {
    const result = await opensslOcsp(['-cert', 'good.pem']);
    expect(result.status, result.output).toBe(0);
    expect(result.output).toContain('Response verify OK');
    expect(result.output).toContain('good.pem: good');
    expect(result.output).toContain('OCSP Response Status: successful (0x0)');
    expect(result.output).toContain('Response Type: Basic OCSP Response');
  });

  it('answers revoked with the revocation time and the keyCompromise reason', async () => {
    const result = await opensslOcsp(['-cert', 'revoked.pem']);
    expect(result.status, result.output).toBe(0);
    expect(result.output).toContain('revoked.pem: revoked');
    expect(result.output).toContain('Reason: keyCompromise');
    const time = result.output.match(/Revocation Time: (.+)/)![1]!;
    expect(new Date(time).getTime()).toBe(Math.floor(revoked.revokedAt!.getTime() / 1000) * 1000);
  });

  it('answers unknown for a serial the CA never issued', async () => {
    const result = await opensslOcsp(['-serial', '0x0123456789abcdef']);
    expect(result.status, result.output).toBe(0);
    expect(result.output).toContain('0x0123456789abcdef: unknown');
  });

  it('answers SHA-256 CertIDs as well as SHA-1 ones, echoing the CertID as asked', async () => {
    const result = await opensslOcsp(['-sha256', '-cert', 'good.pem']);
    expect(result.status, result.output).toBe(0);
    expect(result.output).toContain('good.pem: good');
    expect(result.output).toMatch(/Hash Algorithm: sha256/);
    const { basic } = await post(await opensslRequest(['-sha256', '-cert', 'good.pem', '-no_nonce']));
    expect(basic!.tbsResponseData.responses[0]!.certID.hashAlgorithm.algorithmId).toBe(oids.sha256);
  });

  it('fills every field of the basic response: byKey responder id, times, nextUpdate after the configured validity, certs', async () => {
    const before = Math.floor(Date.now() / 1000) * 1000;
    const { status, basic } = await post(await opensslRequest(['-cert', 'good.pem', '-no_nonce']));
    expect(status).toBe(0);
    const data = basic!.tbsResponseData;
    // version v1 is the DEFAULT and therefore absent from the DER.
    expect(data.version).toBeUndefined();
    const responderCertificate = basic!.certs![0]!;
    const responderSpki = new Uint8Array(responderCertificate.subjectPublicKeyInfo.toSchema().toBER());
    expect(data.responderID).toBeInstanceOf(asn1js.OctetString);
    expect(Buffer.from((data.responderID as asn1js.OctetString).valueBlock.valueHexView)).toEqual(
      Buffer.from(keyIdentifier(responderSpki)),
    );
    expect(data.producedAt.getTime()).toBeGreaterThanOrEqual(before);
    expect(data.responses).toHaveLength(1);
    const single = data.responses[0]!;
    expect(certStatusTag(basic!)).toBe(0);
    expect(single.thisUpdate.getTime()).toBe(data.producedAt.getTime());
    expect(single.nextUpdate!.getTime() - single.thisUpdate.getTime()).toBe(60 * 60 * 1000);
    expect(single.certID.hashAlgorithm.algorithmId).toBe(oids.sha1);
    expect(single.certID.serialNumber.toBigInt().toString(16)).toBe(good.serialNumber.replace(/^0+/, ''));
    expect(data.responseExtensions).toBeUndefined();
    expect(basic!.signatureAlgorithm.algorithmId).toBe(oids.ecdsaWithSha256);
    // The signature over tbsResponseData verifies with the responder certificate's key.
    const key = createPublicKey({ key: Buffer.from(responderSpki), format: 'der', type: 'spki' });
    const signed = verify('sha256', data.tbsView, { key, dsaEncoding: 'der' }, basic!.signature.valueBlock.valueHexView);
    expect(signed).toBe(true);
  });

  it('signs with a delegated responder certificate issued by the CA: OCSP signing only, nocheck, short-lived', async () => {
    const { basic } = await post(await opensslRequest(['-cert', 'good.pem', '-no_nonce']));
    expect(basic!.certs).toHaveLength(1);
    const responder = basic!.certs![0]!;
    const responderPem = `-----BEGIN CERTIFICATE-----\n${Buffer.from(responder.toSchema().toBER()).toString('base64')}\n-----END CERTIFICATE-----\n`;
    writeFileSync(file('responder.pem'), responderPem);
    const text = (await run('openssl', ['x509', '-in', 'responder.pem', '-noout', '-text'], { cwd: directory })).stdout;
    expect(text).toMatch(/X509v3 Extended Key Usage:\s*\n\s*OCSP Signing\s*\n/);
    expect(text).toMatch(/OCSP No Check:/);
    expect(text).toMatch(/X509v3 Key Usage: critical\s*\n\s*Digital Signature\s*\n/);
    expect(text).toMatch(/CA:FALSE/);
    const chain = await run('openssl', ['verify', '-CAfile', 'root.pem', '-untrusted', 'intermediate.pem', '-purpose', 'ocsphelper', 'responder.pem'], {
      cwd: directory,
    });
    expect(chain.output).toContain('responder.pem: OK');
    const intermediateCertificate = Certificate.fromBER(fromPem(intermediate.pem, ['CERTIFICATE'])!);
    expect(responder.issuer.isEqual(intermediateCertificate.subject)).toBe(true);
    const lifetimeDays = (responder.notAfter.value.getTime() - responder.notBefore.value.getTime()) / 86_400_000;
    expect(lifetimeDays).toBeGreaterThan(29);
    expect(lifetimeDays).toBeLessThanOrEqual(30.01);
    // The row is stored as the CA's one live responder.
    const row = await pki.ca.ensureOcspResponder(intermediate.id);
    expect(row.certificateType).toBe('ocsp');
    expect(row.issuerCertificateId).toBe(intermediate.id);
    expect(row.privateKeyLocation).toMatch(/^software:/);
  });

  it('echoes the request nonce and signs afresh for each nonce', async () => {
    const result = await opensslOcsp(['-cert', 'good.pem']);
    expect(result.output).toContain('Response verify OK');
    expect(result.output).not.toContain('WARNING: no nonce in response');
    expect(result.output).toMatch(/OCSP Nonce:\s*\n\s*0410[0-9A-F]{32}/);

    const request = await opensslRequest(['-cert', 'good.pem']);
    const nonceRequested = Buffer.from(request).toString('hex');
    const first = await post(request);
    const nonce = first.basic!.tbsResponseData.responseExtensions!.find((extension) => extension.extnID === oids.ocspNonce)!;
    expect(nonce.critical).toBe(false);
    expect(nonceRequested).toContain(Buffer.from(nonce.extnValue.valueBlock.valueHexView).toString('hex'));
    const second = await post(await opensslRequest(['-cert', 'good.pem']));
    expect(Buffer.from(second.der).equals(Buffer.from(first.der))).toBe(false);
  });

  it('serves the same pre-produced response for repeated requests without a nonce until the certificate is revoked', async () => {
    const target = await issueDevice(pki.ca, tenantId);
    writeFileSync(file('target.pem'), target.pem);
    const request = await opensslRequest(['-cert', 'target.pem', '-no_nonce']);
    const first = await post(request);
    const second = await post(request);
    expect(certStatusTag(first.basic!)).toBe(0);
    expect(Buffer.from(second.der).equals(Buffer.from(first.der))).toBe(true);

    await pki.ca.revokeCertificate(target.id, 'superseded');
    await pki.ocsp.invalidate(target.id);
    const third = await post(request);
    expect(certStatusTag(third.basic!)).toBe(1);
    expect(third.basic!.tbsResponseData.responses[0]!.certStatus.valueBlock.value).toHaveLength(2);
    // A fresh (nonce) answer after the revocation says revoked too.
    const withNonce = await post(await opensslRequest(['-cert', 'target.pem']));
    expect(certStatusTag(withNonce.basic!)).toBe(1);
  });

  it('reads the statuses of concurrent fresh requests together from the database, each answered with its own status, the first burst included', async () => {
    const reading = new OcspResponder({ db: pki.handle.db, ca: pki.ca, custody: pki.custody, settings: pkiSettings, logger: createLogger('silent'), statusCacheMs: 0 });
    const later = await issueDevice(pki.ca, tenantId);
    writeFileSync(file('later.pem'), later.pem);
    const requests = [
      await opensslRequest(['-cert', 'good.pem']),
      await opensslRequest(['-cert', 'revoked.pem']),
      await opensslRequest(['-serial', '0x0123456789abcdef']),
      await opensslRequest(['-cert', 'later.pem']),
    ];
    const statuses = async () =>
      (await Promise.all(requests.map((request) => reading.respond(request)))).map((answer) => certStatusTag(parseOcspResponse(answer.der).basic!));
    expect(await statuses()).toEqual([0, 1, 2, 0]);
    // Nothing kept: a revocation is in the very next answer, no invalidation needed.
    await pki.ca.revokeCertificate(later.id, 'cessationOfOperation');
    expect(await statuses()).toEqual([0, 1, 2, 1]);
  });

  it('re-issues the delegated responder certificate when the current one is revoked, and signs with the new one', async () => {
    const request = await opensslRequest(['-cert', 'good.pem', '-no_nonce']);
    const before = await post(request);
    const oldResponder = await pki.ca.ensureOcspResponder(intermediate.id);
    await pki.ca.revokeCertificate(oldResponder.id, 'superseded');
    await pki.ocsp.invalidate(oldResponder.id);
    const after = await post(await opensslRequest(['-cert', 'good.pem']));
    const newResponder = await pki.ca.ensureOcspResponder(intermediate.id);
    expect(newResponder.id).not.toBe(oldResponder.id);
    const servedSerial = after.basic!.certs![0]!.serialNumber.toBigInt().toString(16);
    expect(servedSerial).toBe(BigInt(`0x${newResponder.serialNumber}`).toString(16));
    expect(before.basic!.certs![0]!.serialNumber.toBigInt().toString(16)).toBe(BigInt(`0x${oldResponder.serialNumber}`).toString(16));
    const verified = await opensslOcsp(['-cert', 'good.pem']);
    expect(verified.output).toContain('Response verify OK');
  });

  it('answers several CertIDs of one CA in one response, and refuses more than the configured number as malformed', async () => {
    const both = await opensslOcsp(['-cert', 'good.pem', '-cert', 'revoked.pem']);
    expect(both.output).toContain('good.pem: good');
    expect(both.output).toContain('revoked.pem: revoked');
    const tooMany = await post(await opensslRequest(['-serial', '1', '-serial', '2', '-serial', '3', '-serial', '4', '-no_nonce']));
    expect(tooMany.status).toBe(1);
    expect(tooMany.basic).toBeUndefined();
  });

  it('answers malformedRequest to bytes that are not an OCSPRequest, by POST and by GET', async () => {
    for (const body of [new Uint8Array(randomBytes(40)), new Uint8Array([0x30, 0x03, 0x02, 0x01]), new Uint8Array()]) {
      const { status, basic } = await post(body);
      expect(status).toBe(1);
      expect(basic).toBeUndefined();
    }
    const response = await fetch(`${ocspUrl}/not*base64!`);
    expect(response.status).toBe(200);
    expect(parseOcspResponse(new Uint8Array(await response.arrayBuffer())).status).toBe(1);
    expect(response.headers.get('cache-control')).toBe('no-store');
    // The same through openssl's own reading of the answer.
    writeFileSync(file('garbage.der'), randomBytes(20));
    const curl = await run('curl', ['-s', '-o', 'malformed.der', '--data-binary', '@garbage.der', '-H', 'Content-Type: application/ocsp-request', ocspUrl], {
      cwd: directory,
    });
    expect(curl.status).toBe(0);
    const text = (await run('openssl', ['ocsp', '-respin', 'malformed.der', '-resp_text', '-noverify'], { cwd: directory })).output;
    expect(text).toContain('Responder Error: malformedrequest (1)');
  });

  it('answers unauthorized to a CertID of an issuer it does not serve', async () => {
    const stranger = await run(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'stranger.key', '-out', 'stranger.pem', '-subj', '/CN=Stranger CA', '-days', '1'],
      { cwd: directory },
    );
    expect(stranger.status, stranger.output).toBe(0);
    const result = await run('openssl', ['ocsp', '-issuer', 'stranger.pem', '-serial', '1', '-url', ocspUrl, '-resp_text'], { cwd: directory });
    expect(result.output).toContain('Responder Error: unauthorized (6)');
  });

  it('answers GET requests (url-encoded base64 path) with RFC 5019 caching headers and honours If-None-Match', async () => {
    const request = await opensslRequest(['-cert', 'good.pem', '-no_nonce']);
    const encoded = encodeURIComponent(Buffer.from(request).toString('base64'));
    const url = `${ocspUrl}/${encoded}`;
    const curl = await run('curl', ['-s', '-D', 'get-headers.txt', '-o', 'get.der', url], { cwd: directory });
    expect(curl.status).toBe(0);
    const headers = readFileSync(file('get-headers.txt'), 'utf8');
    expect(headers).toMatch(/^HTTP\/1\.1 200/);
    expect(headers).toMatch(/content-type: application\/ocsp-response/i);
    const maxAge = Number(headers.match(/cache-control: max-age=(\d+), public, no-transform, must-revalidate/i)![1]);
    const { basic } = parseOcspResponse(new Uint8Array(readFileSync(file('get.der'))));
    const single = basic!.tbsResponseData.responses[0]!;
    const untilNextUpdate = (single.nextUpdate!.getTime() - Date.now()) / 1000;
    expect(maxAge).toBeGreaterThan(0);
    expect(maxAge).toBeLessThan(untilNextUpdate);
    expect(new Date(headers.match(/expires: (.+)\r/i)![1]!).getTime()).toBe(single.nextUpdate!.getTime());
    expect(new Date(headers.match(/last-modified: (.+)\r/i)![1]!).getTime()).toBe(basic!.tbsResponseData.producedAt.getTime());
    const etag = headers.match(/etag: (.+)\r/i)![1]!;
    expect(certStatusTag(basic!)).toBe(0);

    // openssl reads the GET answer as a valid, verified response too.
    const check = await run('openssl', ['ocsp', '-respin', 'get.der', '-issuer', 'intermediate.pem', '-cert', 'good.pem', '-CAfile', 'root.pem'], {
      cwd: directory,
    });
    expect(check.output).toContain('Response verify OK');
    expect(check.output).toContain('good.pem: good');

    // A revalidating cache asks with the ETag and gets 304 (curl: fetch would add no-cache).
    const conditional = await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-H', `If-None-Match: ${etag}`, url]);
    expect(conditional.stdout).toBe('304');
    // An unencoded base64 path (slashes and plus signs left as they are) is read the same.
    const raw = await fetch(`${ocspUrl}/${Buffer.from(request).toString('base64')}`);
    expect(raw.headers.get('etag')).toBe(etag);
  });
});
