/**
 * `npm run bench:issue -- [--devices N] [--seconds S] [--concurrency C] [--custody software,pkcs11] [--database embedded|server]`
 *
 * Device certificates issued per second through the CA (CSR checks, signing in custody, the
 * database write) beside the raw signing rate of the same custody in the same run: the site
 * intermediate's key signing a TBSCertificate-sized message, nothing else. Both run with the same
 * number of operations in flight (raw signing for S seconds, issuance of N certificates), for each custody kind: the sealed software store and a SoftHSM2
 * token made for the run. Prints both rates, their ratio (target: issuance at least half the raw
 * rate), where an issuance's time goes, measured one step at a time, and an EST simpleenroll
 * round trip over a new TLS connection beside its TLS handshake alone.
 * With `--database server`, DATABASE_URL names an empty PostgreSQL database to use.
 */
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { once } from 'node:events';
import type http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { createEstServer } from '../api/est-server';
import { AuditLog } from '../audit/audit-log';
import { SecretVault } from '../custody/secret-vault';
import { CertificateStore } from '../pki/certificate-store';
import { estPathPrefix } from '../pki/est';
import { DeviceRegistry } from '../registry/device-registry';
import { initialCredentialsPurpose } from '../registry/initial-credentials';
import { createKeyCustody, type KeyCustody, type KeyCustodySettings } from '../custody';
import { Sealer } from '../custody/sealing';
import { openDatabase, type DatabaseHandle } from '../db/client';
import { createLogger } from '../foundation/logger';
import { signatureAlgorithmFor } from '../pki/certificate-builder';
import { CertificateAuthority } from '../pki/certificate-authority';
import { parseCertificateSigningRequest } from '../pki/csr';
import { loadConfig } from '../service/config';
import { fromPem } from '../x509/pem';
import { benchDevice, csrFor } from './bench-requests';
import { keyAlgorithmOf } from '../x509/public-key';

type CustodyName = 'software' | 'pkcs11';

interface Figures {
  custody: CustodyName;
  rawPerSecond: number;
  issuedPerSecond: number;
  /** CPU this process spent per certificate issued in flight (user + system). */
  cpuMsPerIssuance: number;
  steps: { name: string; msEach: number }[];
  est: { name: string; msEach: number }[];
}

const softHsmModule = '/usr/lib/softhsm/libsofthsm2.so';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    devices: { type: 'string', default: '2000' },
    concurrency: { type: 'string', default: '8' },
    custody: { type: 'string', default: 'software,pkcs11' },
    database: { type: 'string', default: 'embedded' },
  },
});
const durationMs = Number(values.seconds) * 1000;
const concurrency = Number(values.concurrency);
const deviceCount = Number(values.devices);
const kinds = values.custody.split(',').map((kind) => kind.trim());
if (!(durationMs > 0)) throw new Error('--seconds must be positive');
if (!Number.isInteger(concurrency) || concurrency < 1) throw new Error('--concurrency must be a positive integer');
if (!Number.isInteger(deviceCount) || deviceCount < 1) throw new Error('--devices must be a positive integer');
for (const kind of kinds) if (kind !== 'software' && kind !== 'pkcs11') throw new Error('--custody takes software and/or pkcs11');

const say = (message: string) => process.stderr.write(`bench: ${message}\n`);
const workDir = mkdtempSync(path.join(os.tmpdir(), 'bench-issue-'));
const logger = createLogger(process.env.LOG_LEVEL ?? 'warn');
async function main() {
  const results: Figures[] = [];
  try {
    for (const kind of kinds as CustodyName[]) {
      const handle =
        values.database === 'server'
          ? await openDatabase({ url: requiredDatabaseUrl() })
          : await openDatabase({ embeddedDir: path.join(workDir, `db-${kind}`) });
      try {
        results.push(await measure(kind, handle));
      } finally {
        await handle.close();
      }
    }
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }

  process.stdout.write(`\nDevice certificate issuance, ${concurrency} in flight, ${deviceCount} certificates, raw signing for ${values.seconds} s, load ${os.loadavg()[0]!.toFixed(2)}\n`);
  for (const result of results) {
    const ratio = result.issuedPerSecond / result.rawPerSecond;
    process.stdout.write(
      `  ${result.custody.padEnd(8)} raw signing ${result.rawPerSecond.toFixed(0).padStart(6)}/s  ` +
        `issued ${result.issuedPerSecond.toFixed(0).padStart(6)}/s  ratio ${ratio.toFixed(2)}  ` +
        `(${ratio >= 0.5 ? 'meets' : 'MISSES'} the 0.5 target), CPU ${result.cpuMsPerIssuance.toFixed(2)} ms per issuance\n`,
    );
    process.stdout.write(`           one at a time: ${describeSteps(result.steps)}\n`);
    process.stdout.write(`           EST simpleenroll (new TLS connection each, HTTP Basic): ${describeSteps(result.est)}\n`);
  }
}

async function measure(kind: CustodyName, handle: DatabaseHandle): Promise<Figures> {
  const custody = await openCustody(kind, handle);
  try {
    const settings = loadConfig({ DATA_DIR: workDir }).ca;
    const ca = new CertificateAuthority({ db: handle.db, custody, settings, logger });
    const tenantId = 'bench';
    const intermediate = await ca.ensureSiteIntermediateCa(tenantId, 'hq');
    const algorithm = keyAlgorithmOf(fromPem(intermediate.publicKey, ['PUBLIC KEY'])!);
    const { hash } = signatureAlgorithmFor(algorithm);
    say(`${kind}: site intermediate ${algorithm} at ${intermediate.privateKeyLocation.split(';')[0]}`);

    // A message the size of a device certificate's TBSCertificate.
    const tbs = randomBytes(fromPem(intermediate.pem, ['CERTIFICATE'])!.byteLength);
    const rawPerSecond = await rate(() => custody.sign(intermediate.privateKeyLocation, hash, tbs).then(() => {}));
    say(`${kind}: raw signing ${rawPerSecond.toFixed(0)}/s`);

    const devices = new DeviceRequests();
    const warmUp = devices.make(tenantId, 50);
    const requests = devices.make(tenantId, deviceCount);
    const timed = devices.make(tenantId, 100);
    await inFlight(warmUp.length, (index) => ca.issueDeviceCertificate(warmUp[index]!));
    const cpuAtStart = process.cpuUsage();
    const issuedPerSecond = await inFlight(requests.length, (index) => ca.issueDeviceCertificate(requests[index]!));
    const cpu = process.cpuUsage(cpuAtStart);
    const cpuMsPerIssuance = (cpu.user + cpu.system) / 1000 / requests.length;
    say(`${kind}: issued ${issuedPerSecond.toFixed(0)}/s (${deviceCount} certificates)`);

    // Where one issuance's time goes, each step alone and one at a time.
    const certificates = new CertificateStore(handle.db);
    const samples = timed.length;
    const csrPem = timed[0]!.csrPem;
    const steps = [
      { name: 'CSR parse+check', msEach: await timeEach(samples, async () => void parseCertificateSigningRequest(csrPem)) },
      { name: 'intermediate lookup', msEach: await timeEach(samples, async () => void (await ca.ensureSiteIntermediateCa(tenantId, 'hq'))) },
      // What an issuance asks of the database about the intermediate it keeps between issuances.
      { name: 'kept intermediate check', msEach: await timeEach(samples, async () => void (await certificates.issuesWithLiveIssuer(intermediate.id))) },
      { name: 'raw sign', msEach: await timeEach(samples, async () => void (await custody.sign(intermediate.privateKeyLocation, hash, tbs))) },
      { name: 'whole issuance', msEach: await timeEach(samples, async (index) => void (await ca.issueDeviceCertificate(timed[index]!))) },
    ];
    const est = await measureEst(handle, custody, ca, tenantId, devices);
    return { custody: kind, rawPerSecond, issuedPerSecond, cpuMsPerIssuance, steps, est };
  } finally {
    await custody.close();
  }
}

function describeSteps(steps: { name: string; msEach: number }[]): string {
  return steps.map((step) => `${step.name} ${step.msEach.toFixed(2)} ms`).join(', ');
}

/**
 * EST simpleenroll as a device does it: a new TLS connection, HTTP Basic with its initial
 * credential, its CSR. Timed whole, and the TLS handshake alone, beside the issuance measured above.
 */
async function measureEst(handle: DatabaseHandle, custody: KeyCustody, ca: CertificateAuthority, tenantId: string, devices: DeviceRequests) {
  const sealer = new Sealer(randomBytes(32));
  const registry = new DeviceRegistry(handle.db);
  const vault = new SecretVault({ db: handle.db, sealer });
  const audit = new AuditLog({ db: handle.db, logger });
  const hostName = 'est.bench';
  const server = await createEstServer({ db: handle.db, ca, registry, vault, audit, logger }, { host: '127.0.0.1', port: 0, hostNames: [hostName], defaultTenantId: tenantId });
  try {
    const rootPem = (await ca.ensureRootCa(tenantId)).pem;
    const samples = 40;
    const enrolments = devices.make(tenantId, samples);
    const password = 'bench-initial-credential';
    for (const { device } of enrolments) {
      await registry.register(tenantId, { ...device, protocol: 'https', deviceType: 'camera' });
      await vault.store(tenantId, device.deviceId, initialCredentialsPurpose, { username: 'admin', password });
    }
    const tlsOptions = { host: '127.0.0.1', port: server.port, servername: hostName, ca: rootPem };
    const handshake = await timeEach(samples, async () => {
      const socket = tls.connect(tlsOptions);
      await once(socket, 'secureConnect');
      socket.destroy();
    });
    const enrol = await timeEach(samples, async (index) => {
      const { device, csrPem } = enrolments[index]!;
      const body = csrPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
      const request = https.request({
        ...tlsOptions,
        agent: false,
        method: 'POST',
        path: `${estPathPrefix}/simpleenroll`,
        headers: {
          'content-type': 'application/pkcs10',
          'content-length': Buffer.byteLength(body),
          authorization: `Basic ${Buffer.from(`${device.deviceId}:${password}`).toString('base64')}`,
        },
      });
      request.end(body);
      const [response] = (await once(request, 'response')) as [http.IncomingMessage];
      for await (const _chunk of response);
      if (response.statusCode !== 200) throw new Error(`EST simpleenroll answered ${response.statusCode}`);
    });
    return [
      { name: 'TLS handshake', msEach: handshake },
      { name: 'whole round trip', msEach: enrol },
    ];
  } finally {
    await server.close();
  }
}

async function openCustody(kind: CustodyName, handle: DatabaseHandle): Promise<KeyCustody> {
  const deps = { db: handle.db, sealer: new Sealer(randomBytes(32)), logger };
  if (kind === 'software') return createKeyCustody({ kind: 'software' }, deps);
  // A token of the run's own, made as the tests make theirs.
  const tokenDir = path.join(workDir, 'tokens');
  const conf = path.join(workDir, 'softhsm2.conf');
  mkdirSync(tokenDir, { recursive: true });
  writeFileSync(conf, `directories.tokendir = ${tokenDir}\nobjectstore.backend = file\nlog.level = ERROR\n`);
  process.env.SOFTHSM2_CONF = conf;
  const settings: KeyCustodySettings = { kind: 'pkcs11', module: softHsmModule, tokenLabel: 'bench-issue', pin: '1234' };
  execFileSync('softhsm2-util', ['--init-token', '--free', '--label', settings.tokenLabel!, '--pin', settings.pin, '--so-pin', '12345678'], {
    env: { ...process.env, SOFTHSM2_CONF: conf },
    stdio: 'ignore',
  });
  return createKeyCustody(settings, deps);
}

/** Operations per second with `concurrency` in flight for the run's duration, after a short warm-up. */
async function rate(operation: () => Promise<unknown>): Promise<number> {
  const run = async (until: number) => {
    let count = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (Date.now() < until) {
          await operation();
          count += 1;
        }
      }),
    );
    return count;
  };
  await run(Date.now() + Math.min(1000, durationMs / 5));
  const start = Date.now();
  const count = await run(start + durationMs);
  return count / ((Date.now() - start) / 1000);
}

/** Operations per second doing `count` of them with `concurrency` in flight. */
async function inFlight(count: number, operation: (index: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const start = Date.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) await operation(next++);
    }),
  );
  return count / ((Date.now() - start) / 1000);
}

async function timeEach(samples: number, operation: (index: number) => Promise<void>): Promise<number> {
  const start = process.hrtime.bigint();
  for (let index = 0; index < samples; index++) await operation(index);
  return Number(process.hrtime.bigint() - start) / 1e6 / samples;
}

/** Issuance requests from CSRs made here with a few device keys, all made before anything is timed. */
class DeviceRequests {
  readonly #keys = Array.from({ length: 4 }, () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    return { privateKey, spki: publicKey.export({ type: 'spki', format: 'der' }) };
  });
  #next = 0;

  /** `count` requests for devices not asked for before. */
  make(tenantId: string, count: number) {
    return Array.from({ length: count }, () => {
      const index = this.#next++;
      const device = benchDevice(index);
      return { tenantId, device, csrPem: csrFor(device.deviceId, this.#keys[index % this.#keys.length]!) };
    });
  }
}

function requiredDatabaseUrl(): string {
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error('--database server needs DATABASE_URL naming an empty database');
  return url;
}

await main();
