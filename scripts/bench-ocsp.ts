/**
 * `npm run bench:ocsp -- [--devices N] [--revoked-percent P] [--seconds S] [--connections C] [--database embedded|server]`
 *
 * Measures the OCSP responder as relying parties load it: a tenant's root and site intermediate,
 * N device certificates issued through the CA (P percent revoked), the publication router on
 * loopback, and a keep-alive HTTP load generator in its own process (so it does not share the
 * server's event loop) driving
 *   (a) cached answers: GET requests without a nonce for certificates already answered, and
 *   (b) freshly signed answers: POST requests each carrying a new nonce, statuses already known, and
 *   (c) the same with every status read from the database (a responder with its status cache off).
 * Prints responses per second and p50/p99 latency of each, against the targets (5,000 and 1,000/s),
 * and the CPU each process spent per response: on a busy machine the rates vary, the CPU less so.
 * With `--database server`, DATABASE_URL names an empty PostgreSQL database to use.
 */
import { fork } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as asn1js from 'asn1js';
import express from 'express';
import {
  AlgorithmIdentifier,
  Certificate,
  CertID,
  Extension,
  OCSPRequest,
  Request as OcspSingleRequest,
  TBSRequest,
} from 'pkijs';
import { SoftwareKeyStore } from '../custody/software-keystore';
import { pkiMountPath, pkiPublicationRouter, withCachedOcspAnswers } from '../api/pki-publication';
import { Sealer } from '../custody/sealing';
import { openDatabase } from '../db/client';
import { CertificateAuthority } from '../pki/certificate-authority';
import { CrlPublisher } from '../pki/crl';
import { issuerHashes } from '../pki/ocsp-messages';
import { OcspResponder } from '../pki/ocsp-responder';
import { oids } from '../x509/oids';
import { fromPem } from '../x509/pem';
import { benchDevice, csrFor } from './bench-requests';
import { createLogger } from '../foundation/logger';
import { loadConfig } from '../service/config';

/** What the load generator process is asked to do, and what it reports. */
interface LoadPlan {
  mode: 'cached' | 'fresh' | 'fresh-database';
  url: string;
  connections: number;
  durationMs: number;
  /** cached: GET paths; fresh: base64 request templates whose nonce octets start at `nonceOffset`. */
  requests: string[];
  nonceOffset?: number;
}

interface LoadResult {
  mode: LoadPlan['mode'];
  completed: number;
  failed: number;
  elapsedMs: number;
  p50Ms: number;
  p99Ms: number;
  /** CPU the load generator spent in the measured window (user + system, microseconds). */
  generatorCpuUs: number;
  /** CPU the responder's process spent in the same window. */
  responderCpuUs?: number;
}

const nonceLength = 16;
const targets = { cached: 5000, fresh: 1000, 'fresh-database': 1000 } as const;
const labels = {
  cached: 'cached (GET, no nonce)          ',
  fresh: 'fresh (POST, nonce)             ',
  'fresh-database': 'fresh, status read from database',
} as const;

if (process.argv[2] === '--load-generator') {
  process.once('message', (plan: LoadPlan) => {
    generateLoad(plan).then(
      (result) => process.send!(result, () => process.exit(0)),
      (error: unknown) => {
        process.stderr.write(`load generator failed: ${String(error)}\n`);
        process.exit(1);
      },
    );
  });
} else {
  await main();
}

async function main() {
  const { values } = parseArgs({
    options: {
      devices: { type: 'string', default: '10000' },
      'revoked-percent': { type: 'string', default: '5' },
      seconds: { type: 'string', default: '10' },
      connections: { type: 'string', default: '16' },
      database: { type: 'string', default: 'embedded' },
    },
  });
  const deviceCount = Number(values.devices);
  const revokedPercent = Number(values['revoked-percent']);
  const durationMs = Number(values.seconds) * 1000;
  const connections = Number(values.connections);
  if (!Number.isInteger(deviceCount) || deviceCount < 1) throw new Error('--devices must be a positive integer');
  if (!(revokedPercent >= 0 && revokedPercent <= 100)) throw new Error('--revoked-percent must be 0..100');
  if (!(durationMs > 0)) throw new Error('--seconds must be positive');
  if (!Number.isInteger(connections) || connections < 1) throw new Error('--connections must be a positive integer');

  const say = (message: string) => process.stderr.write(`bench: ${message}\n`);
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'bench-ocsp-'));
  const handle =
    values.database === 'server'
      ? await openDatabase({ url: requiredDatabaseUrl() })
      : await openDatabase({ embeddedDir: path.join(workDir, 'db') });
  const logger = createLogger(process.env.LOG_LEVEL ?? 'warn');
  // The service's own defaults, as an install without CA settings would run.
  const settings = loadConfig({ DATA_DIR: workDir }).ca;
  const softwareKeys = new SoftwareKeyStore({ db: handle.db, sealer: new Sealer(randomBytes(32)) });
  const ca = new CertificateAuthority({ db: handle.db, custody: softwareKeys, settings, logger });
  const crls = new CrlPublisher({ db: handle.db, ca, settings, logger });
  const ocsp = new OcspResponder({ db: handle.db, ca, custody: softwareKeys, settings, logger });
  // The same responder reading every status from the database: the cost of a cold status.
  const ocspReadingDatabase = new OcspResponder({ db: handle.db, ca, custody: softwareKeys, settings, logger, statusCacheMs: 0 });

  let server: http.Server | undefined;
  try {
    const tenantId = 'bench';
    const intermediate = await ca.ensureSiteIntermediateCa(tenantId, 'hq');
    const issuer = Certificate.fromBER(fromPem(intermediate.pem, ['CERTIFICATE'])!);

    say(`issuing ${deviceCount} device certificates through the CA (${handle.kind} database)`);
    const issuing = Date.now();
    const serials = await issueDevices(ca, tenantId, deviceCount, revokedPercent);
    const revokedCount = Math.round((deviceCount * revokedPercent) / 100);
    say(`issued ${deviceCount} (${revokedCount} revoked) in ${((Date.now() - issuing) / 1000).toFixed(1)} s`);

    const app = express();
    app.use(pkiMountPath, pkiPublicationRouter({ ca, crls, ocsp, logger }));
    app.use(`/database${pkiMountPath}`, pkiPublicationRouter({ ca, crls, ocsp: ocspReadingDatabase, logger }));
    // As the service listens: repeated GETs answered from memory before Express routes them.
    server = await new Promise<http.Server>((resolve) => {
      const listening = http.createServer(withCachedOcspAnswers(app, ocsp)).listen(0, '127.0.0.1', () => resolve(listening));
    });
    server.keepAliveTimeout = 60_000;
    const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const ocspUrl = `${origin}${pkiMountPath}/ocsp`;

    // One request per certificate; answering each once, as its first GET would, pre-produces the cached responses.
    const plain = serials.map((serial) => ocspRequest(issuer, serial));
    const getPaths = plain.map((request) => `/${encodeURIComponent(Buffer.from(request).toString('base64'))}`);
    const warming = Date.now();
    for (const [index, request] of plain.entries()) {
      const answer = await ocsp.respond(request, `${pkiMountPath}/ocsp${getPaths[index]}`);
      if (answer.status !== 'successful') throw new Error(`warming: the responder answered ${answer.status}`);
    }
    say(`pre-produced ${plain.length} responses in ${((Date.now() - warming) / 1000).toFixed(1)} s`);

    const cached = await runLoad({
      mode: 'cached',
      url: ocspUrl,
      connections,
      durationMs,
      requests: getPaths,
    });

    const placeholder = Buffer.alloc(nonceLength, 0xa5);
    const withNonce = serials.map((serial) => ocspRequest(issuer, serial, placeholder));
    const nonceOffset = Buffer.from(withNonce[0]!).indexOf(placeholder);
    const fresh = await runLoad({
      mode: 'fresh',
      url: ocspUrl,
      connections,
      durationMs,
      requests: withNonce.map((request) => Buffer.from(request).toString('base64')),
      nonceOffset,
    });
    const freshFromDatabase = await runLoad({
      mode: 'fresh-database',
      url: `${origin}/database${pkiMountPath}/ocsp`,
      connections,
      durationMs,
      requests: withNonce.map((request) => Buffer.from(request).toString('base64')),
      nonceOffset,
    });

    process.stdout.write(`\nOCSP responder, ${deviceCount} certificates, ${connections} keep-alive connections, ${values.seconds} s per run\n`);
    for (const result of [cached, fresh, freshFromDatabase]) {
      const perSecond = result.completed / (result.elapsedMs / 1000);
      const verdict = perSecond >= targets[result.mode] ? 'meets' : 'MISSES';
      process.stdout.write(
        `  ${labels[result.mode]} ` +
          `${perSecond.toFixed(0).padStart(7)} responses/s  p50 ${result.p50Ms.toFixed(2)} ms  p99 ${result.p99Ms.toFixed(2)} ms` +
          `  failures ${result.failed}  (${verdict} the ${targets[result.mode]}/s target)\n`,
      );
      const perResponse = (cpuUs: number) => (cpuUs / Math.max(1, result.completed)).toFixed(0).padStart(4);
      const responderUs = result.responderCpuUs ?? 0;
      process.stdout.write(
        `  ${' '.repeat(labels[result.mode].length)} CPU per response: responder ${perResponse(responderUs)} µs, load generator ` +
          `${perResponse(result.generatorCpuUs)} µs (${responderUs >= result.generatorCpuUs ? 'the responder' : 'the load generator'} is the limit)\n`,
      );
    }
  } finally {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await softwareKeys.close();
    await handle.close();
    rmSync(workDir, { recursive: true, force: true });
  }
}

function requiredDatabaseUrl(): string {
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error('--database server needs DATABASE_URL naming an empty database');
  return url;
}

/** Issues `count` device certificates from CSRs made here; revokes every so many. Returns their serials. */
async function issueDevices(ca: CertificateAuthority, tenantId: string, count: number, revokedPercent: number): Promise<bigint[]> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const revokeEvery = revokedPercent > 0 ? Math.max(1, Math.round(100 / revokedPercent)) : 0;
  const serials: bigint[] = new Array(count);
  let next = 0;
  // A few issuances in flight overlap CSR checks, signing and database writes.
  const issueNext = async () => {
    while (next < count) {
      const index = next++;
      const device = benchDevice(index);
      const row = await ca.issueDeviceCertificate({ tenantId, device, csrPem: csrFor(device.deviceId, { spki, privateKey }) });
      if (revokeEvery && index % revokeEvery === 0) await ca.revokeCertificate(row.id, 'keyCompromise');
      serials[index] = BigInt(`0x${row.serialNumber}`);
    }
  };
  await Promise.all(Array.from({ length: 8 }, issueNext));
  return serials;
}

/** An RFC 5019 request: one SHA-1 CertID, optionally a nonce extension. */
function ocspRequest(issuer: Certificate, serial: bigint, nonce?: Buffer): Uint8Array {
  const { issuerNameHash, issuerKeyHash } = issuerHashes(issuer, 'sha1');
  const certId = new CertID({
    hashAlgorithm: new AlgorithmIdentifier({ algorithmId: oids.sha1, algorithmParams: new asn1js.Null() }),
    issuerNameHash: new asn1js.OctetString({ valueHex: Buffer.from(issuerNameHash, 'hex') }),
    issuerKeyHash: new asn1js.OctetString({ valueHex: Buffer.from(issuerKeyHash, 'hex') }),
    serialNumber: asn1js.Integer.fromBigInt(serial),
  });
  const request = new OCSPRequest({
    tbsRequest: new TBSRequest({
      requestList: [new OcspSingleRequest({ reqCert: certId })],
      ...(nonce
        ? {
            requestExtensions: [
              new Extension({ extnID: oids.ocspNonce, critical: false, extnValue: new asn1js.OctetString({ valueHex: nonce }).toBER() }),
            ],
          }
        : {}),
    }),
  });
  return new Uint8Array(request.toSchema(true).toBER());
}

/** Runs the load generator in a child process and waits for its figures. */
function runLoad(plan: LoadPlan): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), ['--load-generator'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let windowStart: NodeJS.CpuUsage | undefined;
    child.on('message', (message: LoadResult | 'measuring') => {
      if (message === 'measuring') windowStart = process.cpuUsage();
      else resolve({ ...message, responderCpuUs: cpuMicroseconds(process.cpuUsage(windowStart)) });
    });
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) reject(new Error(`the load generator exited with ${code}`));
    });
    child.send(plan);
  });
}

/**
 * Keeps `connections` requests in flight for the duration; each connection sends its next when the
 * last is answered. A bare HTTP/1.1 keep-alive client on plain sockets: requests are written from
 * bytes made ahead and answers read by their Content-Length, so the generator spends far less CPU
 * per request than the responder it measures.
 */
async function generateLoad(plan: LoadPlan): Promise<LoadResult> {
  const target = new URL(plan.url);
  const host = `${target.hostname}:${target.port}`;
  const templates = plan.mode !== 'cached' ? plan.requests.map((request) => Buffer.from(request, 'base64')) : [];
  const getHeads = plan.mode === 'cached' ? plan.requests.map((request) => Buffer.from(`GET ${target.pathname}${request} HTTP/1.1\r\nHost: ${host}\r\n\r\n`, 'latin1')) : [];
  const postHead = (length: number) =>
    Buffer.from(`POST ${target.pathname} HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/ocsp-request\r\nContent-Length: ${length}\r\n\r\n`, 'latin1');
  const latencies: number[] = [];
  let completed = 0;
  let failed = 0;
  let measuring = false;

  const connection = (until: () => number) =>
    new Promise<void>((resolve, reject) => {
      const socket = net.connect(Number(target.port), target.hostname);
      socket.setNoDelay(true);
      let pending: Buffer = Buffer.alloc(0);
      let started = 0n;
      const sendNext = () => {
        if (Date.now() >= until()) {
          socket.end();
          return;
        }
        const pick = Math.floor(Math.random() * plan.requests.length);
        started = process.hrtime.bigint();
        if (plan.mode === 'cached') {
          socket.write(getHeads[pick]!);
        } else {
          const body = Buffer.from(templates[pick]!);
          randomBytes(nonceLength).copy(body, plan.nonceOffset!);
          socket.write(Buffer.concat([postHead(body.length), body]));
        }
      };
      socket.on('connect', sendNext);
      socket.on('data', (chunk: Buffer) => {
        pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
        const headEnd = pending.indexOf('\r\n\r\n');
        if (headEnd < 0) return;
        const head = pending.toString('latin1', 0, headEnd);
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (pending.length < headEnd + 4 + length) return;
        const body = pending.subarray(headEnd + 4, headEnd + 4 + length);
        pending = pending.subarray(headEnd + 4 + length);
        const successful = head.startsWith('HTTP/1.1 200') && isSuccessfulOcspResponse(body);
        if (successful) {
          if (measuring) {
            completed += 1;
            latencies.push(Number(process.hrtime.bigint() - started) / 1e6);
          }
        } else if (measuring) failed += 1;
        sendNext();
      });
      socket.on('error', reject);
      socket.on('close', () => resolve());
    });

  // A short warm-up opens the connections and lets the JIT settle before measuring. No end is set
  // until measuring starts: on a loaded machine a connection may open after the warm-up is over.
  let end = Number.POSITIVE_INFINITY;
  const connections = Promise.all(Array.from({ length: plan.connections }, () => connection(() => end)));
  await new Promise((resolve) => setTimeout(resolve, Math.min(1000, plan.durationMs / 5)));
  measuring = true;
  process.send!('measuring');
  const cpuAtStart = process.cpuUsage();
  const start = Date.now();
  end = start + plan.durationMs;
  await connections;
  const elapsedMs = Date.now() - start;
  const generatorCpuUs = cpuMicroseconds(process.cpuUsage(cpuAtStart));
  latencies.sort((a, b) => a - b);
  const percentile = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((latencies.length * p) / 100))] ?? 0;
  return { mode: plan.mode, completed, failed, elapsedMs, p50Ms: percentile(50), p99Ms: percentile(99), generatorCpuUs };
}

function cpuMicroseconds(usage: NodeJS.CpuUsage): number {
  return usage.user + usage.system;
}

/** OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED, ... }: is the status successful (0)? */
function isSuccessfulOcspResponse(der: Buffer): boolean {
  if (der.length < 5 || der[0] !== 0x30) return false;
  const statusAt = der[1]! & 0x80 ? 2 + (der[1]! & 0x7f) : 2;
  return der[statusAt] === 0x0a && der[statusAt + 1] === 0x01 && der[statusAt + 2] === 0x00;
}
