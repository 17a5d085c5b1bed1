/**
 * Every kind of PKI object the service emits, judged by zlint, pkilint and Go's crypto/x509 (as
 * installed by `npm test`): a finding of any of them fails the test.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../foundation/logger';
import { makeCsr } from '../test/support/openssl';
import { lintFindings, type PkiObject } from '../test/support/pki-linters';
import { pkiSettings, run, startPki, type PkiUnderTest } from '../test/support/pki-publication';
import { CertificateAuthority, type DeviceForCertificate } from './certificate-authority';
import { fromPem } from '../x509/pem';

const tenantId = 'lint';
const objects = new Map<string, PkiObject>();
const names = [
  'root CA certificate',
  'site intermediate CA certificate',
  'services intermediate CA certificate',
  'root CA certificate of a test environment',
  'site intermediate CA certificate of a test environment',
  'device certificate with an IPv4 address and MAC URN',
  'device certificate with an IPv6 address',
  'device certificate with a DNS name',
  'device certificate with only a MAC URN (serial bus)',
  'device certificate of a serial number that is no PrintableString',
  'device certificate for an RSA key',
  'EST server certificate',
  'service client certificate',
  'configuration signer certificate',
  "root's OCSP responder certificate",
  "site intermediate's OCSP responder certificate",
  "services intermediate's OCSP responder certificate",
  'root CRL listing a revoked intermediate',
  'site intermediate CRL with revoked devices',
  'services intermediate CRL, empty',
  'OCSP response: good',
  'OCSP response: revoked, with reason',
  'OCSP response: unknown',
  'OCSP response with a nonce',
];

let pki: PkiUnderTest;
let directory: string;

const der = (pem: string) => fromPem(pem, ['CERTIFICATE'])!;
const certificate = (pem: string): PkiObject => ({ kind: 'certificate', der: der(pem) });

beforeAll(async () => {
  pki = await startPki({ custody: 'software', database: 'embedded' });
  directory = mkdtempSync(path.join(process.env.TEST_WORK_DIR ?? os.tmpdir(), 'pki-lint-'));
  const { ca } = pki;
  // A CA that reads hosts through the protocol adapters, as the service's does: a device on a serial bus has none.
  const withAdapters = new CertificateAuthority({
    db: pki.handle.db,
    custody: pki.custody,
    settings: pkiSettings,
    networkHost: () => undefined,
    logger: createLogger('silent'),
  });

  const root = await ca.ensureRootCa(tenantId);
  const hq = await ca.ensureSiteIntermediateCa(tenantId, 'hq');
  const services = await ca.ensureServicesIntermediateCa(tenantId);
  objects.set('root CA certificate', certificate(root.pem));
  objects.set('site intermediate CA certificate', certificate(hq.pem));
  objects.set('services intermediate CA certificate', certificate(services.pem));
  // Outside production the CA names carry the environment.
  const testEnvironment = new CertificateAuthority({ db: pki.handle.db, custody: pki.custody, settings: { ...pkiSettings, environment: 'test' }, logger: createLogger('silent') });
  objects.set('root CA certificate of a test environment', certificate((await testEnvironment.ensureRootCa('lint-test')).pem));
  objects.set('site intermediate CA certificate of a test environment', certificate((await testEnvironment.ensureSiteIntermediateCa('lint-test', 'hq')).pem));

  let counter = 0;
  const issue = async (overrides: Partial<DeviceForCertificate>, options: { key?: 'P-256' | 'RSA-2048'; issuer?: CertificateAuthority } = {}) => {
    counter += 1;
    const device: DeviceForCertificate = {
      deviceId: `dev-${counter}`,
      serialNumber: `SN-${counter}`,
      macAddress: `02:00:00:00:00:${counter.toString(16).padStart(2, '0')}`,
      address: `10.0.0.${counter}:443`,
      site: 'hq',
      ...overrides,
    };
    const { csrPem } = makeCsr({ key: options.key ?? 'P-256', subject: `/CN=${device.deviceId}` });
    return (options.issuer ?? ca).issueDeviceCertificate({ tenantId, device, csrPem });
  };
  const good = await issue({});
  objects.set('device certificate with an IPv4 address and MAC URN', certificate(good.pem));
  objects.set('device certificate with an IPv6 address', certificate((await issue({ address: '[fd00::5]:443' })).pem));
  objects.set('device certificate with a DNS name', certificate((await issue({ address: 'door-3.hq.example:443' })).pem));
  objects.set(
    'device certificate with only a MAC URN (serial bus)',
    certificate((await issue({ address: '/dev/ttyUSB0@0x65', protocol: 'osdp' }, { issuer: withAdapters })).pem),
  );
  objects.set('device certificate of a serial number that is no PrintableString', certificate((await issue({ serialNumber: 'SN_0001' })).pem));
  objects.set('device certificate for an RSA key', certificate((await issue({}, { key: 'RSA-2048' })).pem));

  objects.set('EST server certificate', certificate((await ca.ensureEstServerIdentity(tenantId, { dns: ['est.example'], ip: ['192.0.2.7'] })).certificatePem));
  objects.set('service client certificate', certificate((await ca.ensureServiceIdentity(tenantId)).certificatePem));
  objects.set('configuration signer certificate', certificate((await ca.ensureConfigurationSigner(tenantId)).row.pem));
  objects.set("root's OCSP responder certificate", certificate((await ca.ensureOcspResponder(root.id)).pem));
  objects.set("site intermediate's OCSP responder certificate", certificate((await ca.ensureOcspResponder(hq.id)).pem));
  objects.set("services intermediate's OCSP responder certificate", certificate((await ca.ensureOcspResponder(services.id)).pem));

  const revoked = await issue({});
  await ca.revokeCertificate(revoked.id, 'keyCompromise');
  await ca.revokeCertificate((await issue({})).id, 'unspecified');
  const retired = await ca.ensureSiteIntermediateCa(tenantId, 'annex');
  await ca.revokeCertificate(retired.id, 'cessationOfOperation');
  objects.set('root CRL listing a revoked intermediate', { kind: 'crl', der: (await pki.crls.publish(root.id)).der, authority: true });
  objects.set('site intermediate CRL with revoked devices', { kind: 'crl', der: (await pki.crls.publish(hq.id)).der, authority: false });
  objects.set('services intermediate CRL, empty', { kind: 'crl', der: (await pki.crls.publish(services.id)).der, authority: false });

  writeFileSync(path.join(directory, 'hq.pem'), hq.pem);
  /** The response to an `openssl ocsp` request about `serialNumber` (hex) under hq. */
  const ocsp = async (serialNumber: string, extra: string[] = []) => {
    const name = `request-${objects.size}.der`;
    const made = await run('openssl', ['ocsp', '-issuer', 'hq.pem', '-serial', `0x${serialNumber}`, ...extra, '-reqout', name], { cwd: directory });
    expect(made.status, made.output).toBe(0);
    const answer = await pki.ocsp.respond(new Uint8Array(readFileSync(path.join(directory, name))));
    expect(answer.status).toBe('successful');
    return { kind: 'ocsp-response', der: answer.der } as const;
  };
  objects.set('OCSP response: good', await ocsp(good.serialNumber, ['-no_nonce']));
  objects.set('OCSP response: revoked, with reason', await ocsp(revoked.serialNumber, ['-no_nonce']));
  objects.set('OCSP response: unknown', await ocsp('0123456789abcdef', ['-no_nonce']));
  objects.set('OCSP response with a nonce', await ocsp(good.serialNumber));
});

afterAll(async () => {
  await pki?.close();
  if (directory) rmSync(directory, { recursive: true, force: true });
});

describe('linters', () => {
  it.each(names)('zlint, pkilint and Go accept the %s', async (name) => {
    const object = objects.get(name);
    expect(object, `no ${name} was made`).toBeDefined();
    const findings = await lintFindings(object!);
    expect(findings, findings.join('\n')).toEqual([]);
  });
});
