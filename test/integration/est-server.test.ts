/**
 * The EST server (RFC 7030) over real TLS on loopback, with curl and openssl as the device: CA keys
 * in the SoftHSM token, a PostgreSQL server database, and openssl judging everything returned.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ContentInfo, SignedData } from 'pkijs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initialCredentialsPurpose } from '../../registry/initial-credentials';
import { createEstServer, type EstServer } from '../../api/est-server';
import { AuditLog } from '../../audit/audit-log';
import type { KeyCustody } from '../../custody/key-custody';
import { Sealer } from '../../custody/sealing';
import { SecretVault } from '../../custody/secret-vault';
import type { DatabaseHandle } from '../../db/client';
import { CertificateAuthority } from '../../pki/certificate-authority';
import { fingerprintOf, fromPem } from '../../x509/pem';
import { DeviceRegistry } from '../../registry/device-registry';
import type { ServiceConfig } from '../../service/config';
import { createLogger } from '../../foundation/logger';
import { openTestCustody } from '../support/custody';
import { openTestDatabase } from '../support/database';
import { openssl } from '../support/openssl';

const settings: ServiceConfig['ca'] = {
  rootValidityDays: 3650,
  intermediateValidityDays: 1825,
  deviceValidityDays: 365,
  keyAlgorithm: 'P-256',
  crlValidityHours: 24,
  rootCrlValidityDays: 180,
  crlPublishIntervalMinutes: 360,
  ocspResponseValidityMinutes: 60,
  renewalAtFraction: 2 / 3,
};
const logger = createLogger('silent');
const hostName = 'est.test';
/** Asynchronous on purpose: the server under test runs in this process and must keep answering. */
const run = promisify(execFile);

interface CurlAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

describe('EST server (RFC 7030) with curl and openssl as the client', () => {
  let handle: DatabaseHandle;
  let custody: KeyCustody;
  let ca: CertificateAuthority;
  let registry: DeviceRegistry;
  let vault: SecretVault;
  let audit: AuditLog;
  let server: EstServer;
  let dir: string;
  const passwords = new Map<string, string>();

  beforeAll(async () => {
    handle = await openTestDatabase('server');
    const sealer = new Sealer(randomBytes(32));
    custody = await openTestCustody('pkcs11', { db: handle.db, sealer });
    ca = new CertificateAuthority({ db: handle.db, custody, settings, logger });
    registry = new DeviceRegistry(handle.db);
    vault = new SecretVault({ db: handle.db, sealer });
    audit = new AuditLog({ db: handle.db, logger });
    await ca.ensureSiteIntermediateCa('acme', 'hq');
    await ca.ensureSiteIntermediateCa('acme', 'annex');
    await ca.ensureSiteIntermediateCa('globex', 'plant');
    server = await createEstServer(
      { db: handle.db, ca, registry, vault, audit, logger },
      { host: '127.0.0.1', port: 0, hostNames: [hostName], defaultTenantId: 'acme' },
    );
    dir = mkdtempSync(path.join(process.env.TEST_WORK_DIR ?? '/tmp', 'est-'));
    writeFileSync(path.join(dir, 'acme-root.pem'), (await ca.ensureRootCa('acme')).pem);
    writeFileSync(path.join(dir, 'globex-root.pem'), (await ca.ensureRootCa('globex')).pem);
  });
  afterAll(async () => {
    await server?.close();
    await custody?.close();
    await handle?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function registerDevice(tenantId: string, deviceId: string, site = 'hq') {
    const password = randomBytes(12).toString('base64url');
    const mac = ['02', ...randomBytes(5).toString('hex').match(/../g)!].join(':');
    await registry.register(tenantId, {
      deviceId,
      serialNumber: `SN-${deviceId}`,
      macAddress: mac,
      address: '10.0.0.5:443',
      protocol: 'https',
      deviceType: 'camera',
      site,
    });
    await vault.store(tenantId, deviceId, initialCredentialsPurpose, { username: 'admin', password });
    passwords.set(`${tenantId}/${deviceId}`, password);
    return password;
  }

  async function sh(script: string): Promise<string> {
    const { stdout } = await run('bash', ['-euo', 'pipefail', '-c', script], { cwd: dir, encoding: 'utf8' });
    return stdout;
  }

  /** The CSR exactly as a device script makes it: a fresh P-256 key, DER, base64. */
  async function makeCsr(name: string, subject: string, key?: string) {
    const keyArgs = key ? `-key ${key}` : `-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ${name}.key`;
    await sh(`openssl req -new ${keyArgs} -subj '${subject}' -outform DER | base64 > ${name}.b64`);
    return `${name}.b64`;
  }

  async function curl(pathAndQuery: string, args: string[] = [], options: { resolve?: string; cacert?: string; baseUrl?: string } = {}): Promise<CurlAnswer> {
    const base = options.baseUrl ?? (options.resolve ? `https://${options.resolve}:${server.port}` : server.url);
    const result = await run(
      'curl',
      [
        '-sS',
        '--noproxy',
        '*',
        '--max-time',
        '30',
        '--cacert',
        options.cacert ?? 'acme-root.pem',
        ...(options.resolve ? ['--resolve', `${options.resolve}:${server.port}:127.0.0.1`] : []),
        '-o',
        'body.out',
        '-D',
        'headers.out',
        '-w',
        '%{http_code}',
        ...args,
        `${base}${pathAndQuery}`,
      ],
      { cwd: dir, encoding: 'utf8' },
    );
    const headers: Record<string, string> = {};
    for (const line of readFileSync(path.join(dir, 'headers.out'), 'utf8').split('\r\n').slice(1)) {
      const colon = line.indexOf(':');
      if (colon > 0) headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
    }
    return { status: Number(result.stdout), headers, body: readFileSync(path.join(dir, 'body.out'), 'latin1') };
  }

  async function enrol(operation: 'simpleenroll' | 'simplereenroll', csrFile: string | Promise<string>, auth: string[], label = ''): Promise<CurlAnswer> {
    return curl(`/.well-known/est${label ? `/${label}` : ''}/${operation}`, [
      ...auth,
      '-H',
      'Content-Type: application/pkcs10',
      '--data-binary',
      `@${await csrFile}`,
    ]);
  }

  const basic = (tenantId: string, deviceId: string, password = passwords.get(`${tenantId}/${deviceId}`)!) => [
    '--user',
    `${deviceId}:${password}`,
  ];

  /** `base64 -d | openssl pkcs7 -inform DER -print_certs` of the last answer, split into PEMs. */
  async function printedCertificates(): Promise<string[]> {
    const printed = await sh('base64 -d body.out | openssl pkcs7 -inform DER -print_certs');
    return printed.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g) ?? [];
  }

  function subjectOf(pem: string): string {
    return openssl(['x509', '-noout', '-subject', '-nameopt', 'RFC2253'], { input: pem }).trim();
  }

  function parseCertsOnly(body: string) {
    const contentInfo = ContentInfo.fromBER(Buffer.from(body.replace(/\s+/g, ''), 'base64'));
    return { contentInfo, signedData: new SignedData({ schema: contentInfo.content }) };
  }

  it('serves cacerts as a base64 certs-only CMS of the site intermediates and the root, over a server certificate the root verifies', async () => {
    const answer = await curl('/.well-known/est/cacerts');
    expect(answer.status).toBe(200);
    expect(answer.headers['content-type']).toBe('application/pkcs7-mime; smime-type=certs-only');
    expect(answer.headers['content-transfer-encoding']).toBe('base64');
    expect(answer.body.split('\n').every((line) => line.length <= 76)).toBe(true);

    const subjects = (await printedCertificates()).map(subjectOf);
    expect(subjects).toEqual(
      expect.arrayContaining(['subject=CN=hq Intermediate CA,OU=hq,O=acme', 'subject=CN=annex Intermediate CA,OU=annex,O=acme', 'subject=CN=acme Root CA,O=acme']),
    );
    expect(subjects).toHaveLength(3);

    const { contentInfo, signedData } = parseCertsOnly(answer.body);
    expect(contentInfo.contentType).toBe(ContentInfo.SIGNED_DATA);
    expect(signedData.version).toBe(1);
    expect(signedData.digestAlgorithms).toHaveLength(0);
    expect(signedData.encapContentInfo.eContentType).toBe(ContentInfo.DATA);
    expect(signedData.encapContentInfo.eContent).toBeUndefined();
    expect(signedData.signerInfos).toHaveLength(0);
    expect(signedData.certificates).toHaveLength(3);
  });

  it('gives the EST server a serverAuth certificate from the services intermediate, served with it so the tenant root verifies it', async () => {
    const output = await sh(
      `openssl s_client -connect 127.0.0.1:${server.port} -CAfile acme-root.pem -verify_return_error -verify_ip 127.0.0.1 </dev/null 2>&1 | openssl x509 -noout -ext subjectAltName,extendedKeyUsage -issuer -nameopt RFC2253`,
    );
    expect(output).toContain('issuer=CN=acme Services CA,O=acme');
    expect(output).toContain('DNS:est.test');
    expect(output).toContain('DNS:acme.est.test');
    expect(output).toContain('IP Address:127.0.0.1');
    expect(output).toContain('TLS Web Server Authentication');
  });

  it('selects the tenant by TLS server name: <tenant>.<host name> gets that tenant\'s certificate and CA certificates', async () => {
    const answer = await curl('/.well-known/est/cacerts', [], { resolve: `globex.${hostName}`, cacert: 'globex-root.pem' });
    expect(answer.status).toBe(200);
    expect((await printedCertificates()).map(subjectOf).sort()).toEqual(['subject=CN=globex Root CA,O=globex', 'subject=CN=plant Intermediate CA,OU=plant,O=globex']);

    const labelled = await curl('/.well-known/est/globex/cacerts', [], { resolve: `globex.${hostName}`, cacert: 'globex-root.pem' });
    expect(labelled.status).toBe(200);
    const mismatched = await curl('/.well-known/est/acme/cacerts', [], { resolve: `globex.${hostName}`, cacert: 'globex-root.pem' });
    expect(mismatched.status).toBe(403);
    expect(JSON.parse(mismatched.body).detail).toContain('path names tenant acme');
  });

  it('limits cacerts to one site with the <tenant>~<site> label, and answers 404 for a tenant without a CA', async () => {
    const answer = await curl('/.well-known/est/acme~annex/cacerts');
    expect(answer.status).toBe(200);
    expect((await printedCertificates()).map(subjectOf).sort()).toEqual(['subject=CN=acme Root CA,O=acme', 'subject=CN=annex Intermediate CA,OU=annex,O=acme']);
    const unknown = await curl('/.well-known/est/initech/cacerts');
    expect(unknown.status).toBe(404);
    expect(unknown.headers['content-type']).toContain('application/problem+json');
  });

  it('answers alike for an unknown tenant and for an unknown site of a known tenant, so cacerts and csrattrs tell no one which tenants exist', async () => {
    const refusal = async (label: string) => {
      const answer = await curl(`/.well-known/est/${label}/cacerts`);
      const problem = JSON.parse(answer.body) as Record<string, unknown>;
      return { status: answer.status, type: answer.headers['content-type'], problem: { ...problem, instance: undefined } };
    };
    const unknownTenant = await refusal('initech');
    expect(unknownTenant.status).toBe(404);
    expect(await refusal('acme~no-such-site')).toEqual(unknownTenant);
    expect(await refusal('initech~hq')).toEqual(unknownTenant);
    expect(JSON.stringify(unknownTenant)).not.toMatch(/initech|acme|site|tenant/);

    const attributes = await curl('/.well-known/est/acme/csrattrs');
    const ofUnknown = await curl('/.well-known/est/initech/csrattrs');
    expect([attributes.status, ofUnknown.status]).toEqual([200, 200]);
    expect(ofUnknown.body).toBe(attributes.body);
  });

  it('answers csrattrs with a CsrAttrs asking for ecdsa-with-SHA256 and an EC P-256 key', async () => {
    const answer = await curl('/.well-known/est/csrattrs');
    expect(answer.status).toBe(200);
    expect(answer.headers['content-type']).toBe('application/csrattrs');
    expect(answer.headers['content-transfer-encoding']).toBe('base64');
    const parsed = await sh('base64 -d body.out | openssl asn1parse -inform DER');
    const lines = parsed.trim().split('\n');
    expect(lines[0]).toMatch(/d=0 .*cons: SEQUENCE/);
    expect(lines[1]).toMatch(/d=1 .*prim: OBJECT\s+:ecdsa-with-SHA256/);
    expect(lines[2]).toMatch(/d=1 .*cons: SEQUENCE/);
    expect(lines[3]).toMatch(/d=2 .*prim: OBJECT\s+:id-ecPublicKey/);
    expect(lines[4]).toMatch(/d=2 .*cons: SET/);
    expect(lines[5]).toMatch(/d=3 .*prim: OBJECT\s+:prime256v1/);
  });

  it('enrols a registered device with HTTP Basic, issues from the site intermediate, pins it in the registry and audits it', async () => {
    await registerDevice('acme', 'cam-est-1');
    const csr = await makeCsr('cam-est-1', '/CN=cam-est-1');
    const started = performance.now();
    const answer = await enrol('simpleenroll', csr, basic('acme', 'cam-est-1'));
    const elapsedMs = performance.now() - started;
    expect(answer.status).toBe(200);
    expect(answer.headers['content-type']).toBe('application/pkcs7-mime; smime-type=certs-only');
    expect(answer.headers['content-transfer-encoding']).toBe('base64');
    const [leaf, ...others] = await printedCertificates();
    expect(others).toHaveLength(0); // RFC 7030 4.2.3: only the issued certificate
    writeFileSync(path.join(dir, 'cam-est-1.pem'), leaf!);
    expect(subjectOf(leaf!)).toBe('subject=serialNumber=SN-cam-est-1,CN=cam-est-1,OU=hq,O=acme');

    await curl('/.well-known/est/cacerts');
    await sh('base64 -d body.out | openssl pkcs7 -inform DER -print_certs > acme-chain.pem');
    expect(await sh('openssl verify -x509_strict -purpose sslclient -CAfile acme-root.pem -untrusted acme-chain.pem cam-est-1.pem')).toContain('cam-est-1.pem: OK');
    // The certificate is for the key in the CSR.
    expect(await sh('openssl x509 -in cam-est-1.pem -noout -pubkey')).toBe(await sh('openssl pkey -in cam-est-1.key -pubout'));

    const device = await registry.get('acme', 'cam-est-1');
    const row = await ca.getCertificate(device.activeCertificateId!);
    expect(row.fingerprint).toBe(fingerprintOf(fromPem(leaf!, ['CERTIFICATE'])!));
    expect(row.issuerDn).toBe('CN=hq Intermediate CA,OU=hq,O=acme');
    const [event] = await audit.list('acme', { action: 'certificate.issued', targetId: row.id });
    expect(event).toMatchObject({ outcome: 'success', actor: 'cam-est-1', details: { via: 'est', operation: 'simpleenroll', authentication: 'basic' } });
    console.info(`EST simpleenroll round trip (curl, P-256 CSR, HSM-held intermediate): ${elapsedMs.toFixed(0)} ms`);

    // The same request again (a retry after a lost answer) gets the same certificate.
    const retried = await enrol('simpleenroll', csr, basic('acme', 'cam-est-1'));
    expect(retried.status).toBe(200);
    expect((await printedCertificates())[0]).toBe(leaf);
    expect(await audit.list('acme', { action: 'certificate.issued', targetId: row.id })).toHaveLength(1);

    // A new CSR with the initial credential is refused once the device holds a valid certificate.
    const again = await enrol('simpleenroll', await makeCsr('cam-est-1b', '/CN=cam-est-1'), basic('acme', 'cam-est-1'));
    expect(again.status).toBe(403);
    expect(JSON.parse(again.body).detail).toContain('simplereenroll');
  });

  it('re-enrols with the current certificate as TLS client certificate, for a CSR with the same subject', async () => {
    const subject = '/O=acme/OU=hq/CN=cam-est-1/serialNumber=SN-cam-est-1';
    const cnOnly = await enrol('simplereenroll', await makeCsr('renew-cn', '/CN=cam-est-1'), ['--cert', 'cam-est-1.pem', '--key', 'cam-est-1.key']);
    expect(cnOnly.status).toBe(400);
    expect(JSON.parse(cnOnly.body).detail).toContain('must be the subject of the certificate being renewed');

    const before = await registry.get('acme', 'cam-est-1');
    const answer = await enrol('simplereenroll', await makeCsr('cam-est-1-renewed', subject), ['--cert', 'cam-est-1.pem', '--key', 'cam-est-1.key']);
    expect(answer.status).toBe(200);
    const [renewed] = await printedCertificates();
    writeFileSync(path.join(dir, 'cam-est-1-renewed.pem'), renewed!);
    expect(await sh('openssl verify -CAfile acme-root.pem -untrusted acme-chain.pem cam-est-1-renewed.pem')).toContain('OK');
    expect(await sh('openssl x509 -in cam-est-1-renewed.pem -noout -serial')).not.toBe(await sh('openssl x509 -in cam-est-1.pem -noout -serial'));

    const after = await registry.get('acme', 'cam-est-1');
    expect(after.activeCertificateId).not.toBe(before.activeCertificateId);
    const [event] = await audit.list('acme', { action: 'certificate.issued', targetId: after.activeCertificateId! });
    expect(event!.details).toMatchObject({ via: 'est', operation: 'simplereenroll', authentication: 'certificate', renewalOfCertificateId: before.activeCertificateId });
    expect(await ca.getCertificate(after.activeCertificateId!)).toMatchObject({ renewalOfCertificateId: before.activeCertificateId, revokedAt: null });
    // The renewed certificate stays valid: the device may still be using it until it installs the new one.
    expect(await ca.getCertificate(before.activeCertificateId!)).toMatchObject({ revokedAt: null });

    // The superseded certificate is no longer the device's current one.
    const stale = await enrol('simplereenroll', await makeCsr('stale', subject), ['--cert', 'cam-est-1.pem', '--key', 'cam-est-1.key']);
    expect(stale.status).toBe(403);
    expect(JSON.parse(stale.body).detail).toContain('not the current certificate');
  });

  it('refuses a wrong initial credential with 401 and WWW-Authenticate Basic, and audits the failure', async () => {
    await registerDevice('acme', 'cam-est-2');
    const answer = await enrol('simpleenroll', await makeCsr('cam-est-2', '/CN=cam-est-2'), basic('acme', 'cam-est-2', 'not-the-password'));
    expect(answer.status).toBe(401);
    expect(answer.headers['www-authenticate']).toBe('Basic realm="EST acme", charset="UTF-8"');
    expect(answer.headers['content-type']).toContain('application/problem+json');
    expect(JSON.parse(answer.body).detail).toBe('the device id or initial credential is not valid');
    const events = await audit.list('acme', { action: 'est.authentication_failed', targetId: 'cam-est-2' });
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ outcome: 'failure', actorType: 'anonymous', actor: '127.0.0.1' });
    expect(events[0]!.details).toMatchObject({ method: 'basic', reason: 'wrong initial credential', operation: 'simpleenroll' });
    expect(JSON.stringify(events[0])).not.toContain('not-the-password');
  });

  it('refuses an unregistered device with the same 401 as a wrong password', async () => {
    const answer = await enrol('simpleenroll', await makeCsr('ghost', '/CN=ghost-cam'), ['--user', 'ghost-cam:whatever']);
    expect(answer.status).toBe(401);
    expect(JSON.parse(answer.body).detail).toBe('the device id or initial credential is not valid');
    const [event] = await audit.list('acme', { action: 'est.authentication_failed', targetId: 'ghost-cam' });
    expect(event!.details).toMatchObject({ reason: 'the device is not registered' });
  });

  it('refuses a CSR that names another device with 400', async () => {
    await registerDevice('acme', 'cam-est-3');
    const answer = await enrol('simpleenroll', await makeCsr('other', '/CN=cam-est-1'), basic('acme', 'cam-est-3'));
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.body).detail).toContain('must be the device id "cam-est-3"');
  });

  it('refuses a body that is not a base64 DER CSR with 400', async () => {
    writeFileSync(path.join(dir, 'garbage.b64'), 'this is not a certificate request!\n');
    const text = await enrol('simpleenroll', 'garbage.b64', basic('acme', 'cam-est-3'));
    expect(text.status).toBe(400);
    expect(JSON.parse(text.body).detail).toContain('not a base64-encoded DER PKCS#10');
    writeFileSync(path.join(dir, 'garbage2.b64'), randomBytes(300).toString('base64'));
    const bytes = await enrol('simpleenroll', 'garbage2.b64', basic('acme', 'cam-est-3'));
    expect(bytes.status).toBe(400);
    expect(JSON.parse(bytes.body).detail).toContain('not a well-formed PKCS#10');
  });

  it('answers a request without client authentication with 401 and a Basic challenge', async () => {
    const answer = await enrol('simpleenroll', await makeCsr('anon', '/CN=cam-est-3'), []);
    expect(answer.status).toBe(401);
    expect(answer.headers['www-authenticate']).toBe('Basic realm="EST acme", charset="UTF-8"');
    const reenrol = await enrol('simplereenroll', await makeCsr('anon2', '/CN=cam-est-3'), []);
    expect(reenrol.status).toBe(401);
    expect(JSON.parse(reenrol.body).detail).toContain('TLS client certificate');
  });

  it('refuses re-enrolment with a revoked client certificate with 403 and audits it', async () => {
    await registerDevice('acme', 'cam-est-4');
    const first = await enrol('simpleenroll', await makeCsr('cam-est-4', '/CN=cam-est-4'), basic('acme', 'cam-est-4'));
    expect(first.status).toBe(200);
    writeFileSync(path.join(dir, 'cam-est-4.pem'), (await printedCertificates())[0]!);
    const device = await registry.get('acme', 'cam-est-4');
    await ca.revokeCertificate(device.activeCertificateId!, 'keyCompromise');

    const answer = await enrol('simplereenroll', await makeCsr('cam-est-4-renew', '/O=acme/OU=hq/CN=cam-est-4/serialNumber=SN-cam-est-4'), [
      '--cert',
      'cam-est-4.pem',
      '--key',
      'cam-est-4.key',
    ]);
    expect(answer.status).toBe(403);
    expect(JSON.parse(answer.body).detail).toBe('client certificate refused: it was revoked (keyCompromise)');
    const events = await audit.list('acme', { action: 'est.authentication_failed' });
    expect(events.at(-1)!.details).toMatchObject({ method: 'certificate', operation: 'simplereenroll', reason: 'it was revoked (keyCompromise)' });
  });

  it('refuses a client certificate issued by another tenant\'s CA with 403', async () => {
    await registerDevice('globex', 'cam-globex-1', 'plant');
    const csr = await makeCsr('cam-globex-1', '/CN=cam-globex-1');
    const issued = await curl(
      '/.well-known/est/globex/simpleenroll',
      ['--user', `cam-globex-1:${passwords.get('globex/cam-globex-1')}`, '-H', 'Content-Type: application/pkcs10', '--data-binary', `@${csr}`],
      { resolve: `globex.${hostName}`, cacert: 'globex-root.pem' },
    );
    expect(issued.status).toBe(200);
    writeFileSync(path.join(dir, 'cam-globex-1.pem'), (await printedCertificates())[0]!);

    const answer = await enrol('simplereenroll', await makeCsr('cross', '/CN=cam-globex-1'), ['--cert', 'cam-globex-1.pem', '--key', 'cam-globex-1.key'], 'acme');
    expect(answer.status).toBe(403);
    expect(JSON.parse(answer.body).detail).toBe("client certificate refused: it was issued by another tenant's CA, not tenant acme's");
  });

  it('refuses a device of another site on a <tenant>~<site> label with 403', async () => {
    await registerDevice('acme', 'cam-est-5', 'annex');
    const answer = await enrol('simpleenroll', await makeCsr('cam-est-5', '/CN=cam-est-5'), basic('acme', 'cam-est-5'), 'acme~hq');
    expect(answer.status).toBe(403);
    const right = await enrol('simpleenroll', await makeCsr('cam-est-5', '/CN=cam-est-5'), basic('acme', 'cam-est-5'), 'acme~annex');
    expect(right.status).toBe(200);
    expect(subjectOf((await printedCertificates())[0]!)).toContain('OU=annex');
  });

  it('rate limits failed authentications per client address, refusing even the right password with 429 and Retry-After', async () => {
    const limited = await createEstServer(
      { db: handle.db, ca, registry, vault, audit, logger },
      { host: '127.0.0.1', port: 0, hostNames: [hostName], defaultTenantId: 'acme', failedAuthentications: { burst: 2, perMinute: 1 } },
    );
    try {
      const password = await registerDevice('acme', 'cam-est-6');
      const csr = await makeCsr('cam-est-6', '/CN=cam-est-6');
      const post = (secret: string) =>
        curl('/.well-known/est/simpleenroll', ['--user', `cam-est-6:${secret}`, '-H', 'Content-Type: application/pkcs10', '--data-binary', `@${csr}`], {
          baseUrl: limited.url,
        });
      expect((await post('wrong-1')).status).toBe(401);
      expect((await post('wrong-2')).status).toBe(401);
      const blocked = await post(password);
      expect(blocked.status).toBe(429);
      expect(Number(blocked.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    } finally {
      await limited.close();
    }
  });

  it('keeps one EST server certificate per tenant beside the service client identity, reissuing it when the names change', async () => {
    const identity = await ca.ensureServiceIdentity('acme');
    const names = { dns: [hostName, `acme.${hostName}`], ip: ['127.0.0.1'] };
    const first = await ca.ensureEstServerIdentity('acme', names);
    expect((await ca.ensureEstServerIdentity('acme', { dns: [...names.dns].reverse(), ip: names.ip })).certificateId).toBe(first.certificateId);
    const renamed = await ca.ensureEstServerIdentity('acme', { dns: ['est2.test'], ip: [] });
    expect(renamed.certificateId).not.toBe(first.certificateId);
    expect(await ca.getCertificate(first.certificateId)).toMatchObject({ revocationReason: 'superseded' });
    expect(await sh(`echo '${renamed.certificatePem}' | openssl x509 -noout -ext subjectAltName`)).toContain('DNS:est2.test');
    // The client identity is untouched: still the tenant's live service certificate.
    expect((await ca.ensureServiceIdentity('acme')).certificatePem).toBe(identity.certificatePem);
    // Put the listener's names back for any later test.
    await ca.ensureEstServerIdentity('acme', names);
  });

  it('answers an unknown operation with 404 and a wrong method with 405', async () => {
    expect((await curl('/.well-known/est/serverkeygen', ['-X', 'POST'])).status).toBe(404);
    const wrongMethod = await curl('/.well-known/est/simpleenroll');
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.allow).toBe('POST');
  });
});
