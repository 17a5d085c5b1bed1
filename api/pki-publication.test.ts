/**
 * The public publication routes on a bare express app on loopback: CRLs and CA certificates as DER
 * with caching headers, problem+json for anything that names nothing, and the OCSP routes' limits.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CertificateRow } from '../db/schema';
import { fromPem } from '../x509/pem';
import { pkiPaths } from '../pki/publication';
import { issueDevice, pkiSettings, run, startPki, type PkiUnderTest } from '../test/support/pki-publication';
import { pkiOpenApiPaths } from './pki-publication';

const tenantId = `publication-${randomBytes(3).toString('hex')}`;
let pki: PkiUnderTest;
let directory: string;
let root: CertificateRow;
let intermediate: CertificateRow;
let device: CertificateRow;
let origin: string;

beforeAll(async () => {
  pki = await startPki({ custody: 'software', maxRequestBytes: 1024 });
  origin = pki.baseUrl.replace(/\/pki$/, '');
  directory = mkdtempSync(path.join(process.env.TEST_WORK_DIR ?? os.tmpdir(), 'publication-'));
  intermediate = await pki.ca.ensureSiteIntermediateCa(tenantId, 'hq');
  root = await pki.ca.ensureRootCa(tenantId);
  device = await issueDevice(pki.ca, tenantId);
});
afterAll(async () => {
  await pki?.close();
  if (directory) rmSync(directory, { recursive: true, force: true });
});

function plainGet(url: string, headers: Record<string, string>): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers }, (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => resolve({ status: response.statusCode!, headers: response.headers, body: Buffer.concat(chunks) }));
      })
      .on('error', reject);
  });
}

async function expectProblem(response: Response, status: number) {
  expect(response.status).toBe(status);
  expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  const problem = (await response.json()) as { status: number; title: string; type: string };
  expect(problem.status).toBe(status);
  return problem;
}

describe('PKI publication routes', () => {
  it('serves the CA CRL as DER application/pkix-crl, cacheable until its nextUpdate, at the URL certificates carry', async () => {
    const crlUrl = `${origin}${pkiPaths.crl(intermediate.id)}`;
    const result = await run('curl', ['-s', '-D', 'crl-headers.txt', '-o', 'served.crl', crlUrl], { cwd: directory });
    expect(result.status).toBe(0);
    const headers = readFileSync(path.join(directory, 'crl-headers.txt'), 'utf8');
    expect(headers).toMatch(/^HTTP\/1\.1 200/);
    expect(headers).toMatch(/content-type: application\/pkix-crl\r/i);
    const latest = await pki.crls.latest(intermediate.id);
    expect(Buffer.from(readFileSync(path.join(directory, 'served.crl'))).equals(Buffer.from(latest.der))).toBe(true);
    const maxAge = Number(headers.match(/cache-control: public, no-transform, max-age=(\d+)/i)![1]);
    expect(Math.abs(maxAge - pkiSettings.crlValidityHours * 3600)).toBeLessThan(60);
    expect(new Date(headers.match(/expires: (.+)\r/i)![1]!).getTime()).toBe(latest.nextUpdate.getTime());
    expect(new Date(headers.match(/last-modified: (.+)\r/i)![1]!).getTime()).toBe(latest.thisUpdate.getTime());
    expect(headers).toMatch(new RegExp(`etag: "${intermediate.id}-${latest.crlNumber}"`, 'i'));
    const parsed = await run('openssl', ['crl', '-inform', 'DER', '-in', 'served.crl', '-noout', '-crlnumber'], { cwd: directory });
    expect(parsed.stdout.trim()).toMatch(/^crlNumber=0x[0-9A-F]+$/);
  });

  it('serves the CRL signed after a revocation once one is published', async () => {
    const before = await pki.crls.latest(intermediate.id);
    await pki.ca.revokeCertificate(device.id, 'cessationOfOperation');
    const after = await pki.crls.publish(intermediate.id);
    const response = await fetch(`${origin}${pkiPaths.crl(intermediate.id)}`);
    expect(response.headers.get('etag')).toBe(`"${intermediate.id}-${after.crlNumber}"`);
    expect(after.crlNumber).toBeGreaterThan(before.crlNumber);
    expect(Buffer.from(await response.arrayBuffer()).equals(Buffer.from(after.der))).toBe(true);
  });

  it('serves root and intermediate certificates as DER application/pkix-cert at their caIssuers URL', async () => {
    for (const ca of [root, intermediate]) {
      const response = await fetch(`${origin}${pkiPaths.caCertificate(ca.id)}`);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toBe('application/pkix-cert');
      expect(response.headers.get('cache-control')).toMatch(/^public, no-transform, max-age=\d+$/);
      expect(response.headers.get('etag')).toBe(`"${ca.fingerprint}"`);
      expect(Buffer.from(await response.arrayBuffer()).equals(Buffer.from(fromPem(ca.pem, ['CERTIFICATE'])!))).toBe(true);
    }
    writeFileSync(path.join(directory, 'root.cer'), Buffer.from(fromPem(root.pem, ['CERTIFICATE'])!));
    const parsed = await run('openssl', ['x509', '-inform', 'DER', '-in', 'root.cer', '-noout', '-subject'], { cwd: directory });
    expect(parsed.status).toBe(0);
  });

  it('answers 404 problem+json for unknown CA ids, ids that are not CAs, and names that are not ids', async () => {
    await expectProblem(await fetch(`${origin}${pkiPaths.crl(randomUUID())}`), 404);
    await expectProblem(await fetch(`${origin}${pkiPaths.caCertificate(randomUUID())}`), 404);
    await expectProblem(await fetch(`${origin}${pkiPaths.crl(device.id)}`), 404);
    await expectProblem(await fetch(`${origin}${pkiPaths.caCertificate(device.id)}`), 404);
    for (const name of ['nonsense.crl', `${root.id}.pem`, `${root.id}`, '%27%3B%20drop%20table.crl', `${'a'.repeat(5000)}.crl`]) {
      await expectProblem(await fetch(`${origin}/pki/crl/${name}`), 404);
    }
    await expectProblem(await fetch(`${origin}/pki/ca/..%2F..%2Fetc%2Fpasswd.cer`), 404);
  });

  it('limits OCSP requests: 413 beyond the size cap, 415 for other media types, 405 for other methods', async () => {
    const big = await fetch(`${pki.baseUrl}/ocsp`, {
      method: 'POST',
      headers: { 'content-type': 'application/ocsp-request' },
      body: new Uint8Array(2048),
    });
    await expectProblem(big, 413);
    await expectProblem(await fetch(`${pki.baseUrl}/ocsp/${'A'.repeat(4096)}`), 413);
    const json = await fetch(`${pki.baseUrl}/ocsp`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    await expectProblem(json, 415);
    const put = await fetch(`${pki.baseUrl}/ocsp`, { method: 'PUT', body: 'x' });
    await expectProblem(put, 405);
    expect(put.headers.get('allow')).toBe('GET, POST');
    await expectProblem(await fetch(`${origin}${pkiPaths.crl(root.id)}`, { method: 'DELETE' }), 405);
  });

  it('answers a cached OCSP GET with 304 for its ETag or a Last-Modified not older, 200 otherwise, and HEAD with headers only', async () => {
    writeFileSync(path.join(directory, 'ocsp-intermediate.pem'), intermediate.pem);
    writeFileSync(path.join(directory, 'ocsp-device.pem'), device.pem);
    const made = await run('openssl', ['ocsp', '-issuer', 'ocsp-intermediate.pem', '-cert', 'ocsp-device.pem', '-no_nonce', '-reqout', 'get.req'], {
      cwd: directory,
    });
    expect(made.status, made.output).toBe(0);
    const url = `${pki.baseUrl}/ocsp/${encodeURIComponent(readFileSync(path.join(directory, 'get.req')).toString('base64'))}`;

    const first = await fetch(url);
    expect(first.status).toBe(200);
    const body = Buffer.from(await first.arrayBuffer());
    expect(first.headers.get('content-length')).toBe(String(body.length));
    const etag = first.headers.get('etag')!;
    const lastModified = first.headers.get('last-modified')!;

    // Node's http client, not fetch: fetch marks every conditional request no-cache.
    const byTag = await plainGet(url, { 'if-none-match': etag });
    expect(byTag.status).toBe(304);
    expect(byTag.headers['content-type']).toBeUndefined();
    expect(byTag.body.length).toBe(0);
    expect((await plainGet(url, { 'if-modified-since': lastModified })).status).toBe(304);
    const otherTag = await plainGet(url, { 'if-none-match': '"another"' });
    expect(otherTag.status).toBe(200);
    expect(otherTag.body).toEqual(body);
    // A client asking past every cache gets the answer whatever it holds.
    expect((await plainGet(url, { 'if-none-match': etag, 'cache-control': 'no-cache' })).status).toBe(200);

    const head = await fetch(url, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('etag')).toBe(etag);
    expect(head.headers.get('content-type')).toBe('application/ocsp-response');
    expect((await head.arrayBuffer()).byteLength).toBe(0);
  });

  it('answers a repeated OCSP GET from memory before routing, with the first answer\'s body and RFC 5019 headers, until a revocation', async () => {
    const fresh = await issueDevice(pki.ca, tenantId);
    writeFileSync(path.join(directory, 'fast-intermediate.pem'), intermediate.pem);
    writeFileSync(path.join(directory, 'fast-device.pem'), fresh.pem);
    const made = await run('openssl', ['ocsp', '-issuer', 'fast-intermediate.pem', '-cert', 'fast-device.pem', '-no_nonce', '-reqout', 'fast.req'], {
      cwd: directory,
    });
    expect(made.status, made.output).toBe(0);
    const requestPath = `/pki/ocsp/${encodeURIComponent(readFileSync(path.join(directory, 'fast.req')).toString('base64'))}`;
    expect(pki.ocsp.cachedAnswer(requestPath)).toBeUndefined();

    const first = await plainGet(`${origin}${requestPath}`, {});
    expect(first.status).toBe(200);
    // Known by its path now: the next GET never reaches the router.
    expect(pki.ocsp.cachedAnswer(requestPath)).toBeDefined();
    const again = await plainGet(`${origin}${requestPath}`, {});
    expect(again.status).toBe(200);
    expect(again.body.equals(first.body)).toBe(true);
    for (const header of ['content-type', 'content-length', 'etag', 'last-modified', 'expires']) {
      expect(again.headers[header], header).toBe(first.headers[header]);
    }
    expect(again.headers['cache-control']).toMatch(/^max-age=\d+, public, no-transform, must-revalidate$/);
    expect(again.headers['x-content-type-options']).toBe('nosniff');
    expect(again.headers.date).toBeDefined();
    writeFileSync(path.join(directory, 'fast.der'), again.body);
    const good = await run('openssl', ['ocsp', '-respin', 'fast.der', '-issuer', 'fast-intermediate.pem', '-cert', 'fast-device.pem', '-noverify'], { cwd: directory });
    expect(good.stdout).toMatch(/fast-device\.pem: good/);

    await pki.ca.revokeCertificate(fresh.id, 'keyCompromise');
    await pki.ocsp.invalidate(fresh.id);
    expect(pki.ocsp.cachedAnswer(requestPath)).toBeUndefined();
    const revoked = await plainGet(`${origin}${requestPath}`, {});
    expect(revoked.headers.etag).not.toBe(first.headers.etag);
    writeFileSync(path.join(directory, 'fast-revoked.der'), revoked.body);
    const said = await run('openssl', ['ocsp', '-respin', 'fast-revoked.der', '-issuer', 'fast-intermediate.pem', '-cert', 'fast-device.pem', '-noverify'], { cwd: directory });
    expect(said.stdout).toMatch(/fast-device\.pem: revoked/);
  });

  it('describes the four public routes for the OpenAPI document, without security requirements', () => {
    expect(Object.keys(pkiOpenApiPaths).sort()).toEqual(
      ['/pki/ca/{caCertificateId}.cer', '/pki/crl/{caCertificateId}.crl', '/pki/ocsp', '/pki/ocsp/{request}'].sort(),
    );
    const operations = Object.values(pkiOpenApiPaths).flatMap((item) => Object.values(item));
    expect(operations.every((operation) => Array.isArray(operation.security) && operation.security.length === 0)).toBe(true);
    expect(pkiOpenApiPaths['/pki/ocsp'].post.requestBody.content).toHaveProperty('application/ocsp-request');
  });
});
