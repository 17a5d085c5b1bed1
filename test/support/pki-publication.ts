/**
 * A certificate authority with its CRL publisher and OCSP responder on a fresh database, and the
 * publication router on a bare express app on loopback behind the cached OCSP answers (as the
 * service listens), for tests of what the CA publishes.
 */
import { spawn } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { createServer, type Server } from 'node:http';
import express from 'express';
import { SoftwareKeyStore } from '../../custody/software-keystore';
import { pkiMountPath, pkiPublicationRouter, withCachedOcspAnswers } from '../../api/pki-publication';
import type { KeyCustody } from '../../custody/key-custody';
import { Sealer } from '../../custody/sealing';
import type { DatabaseHandle } from '../../db/client';
import type { CertificateRow } from '../../db/schema';
import { CertificateAuthority, type DeviceForCertificate } from '../../pki/certificate-authority';
import { CrlPublisher } from '../../pki/crl';
import { OcspResponder, type OcspResponderDependencies } from '../../pki/ocsp-responder';
import type { ServiceConfig } from '../../service/config';
import { createLogger } from '../../foundation/logger';
import { openTestCustody, type CustodyKind } from './custody';
import { openTestDatabase, type DatabaseKind } from './database';
import { makeCsr } from './openssl';

export type { CustodyKind } from './custody';

export const pkiSettings: ServiceConfig['ca'] = {
  rootValidityDays: 3650,
  intermediateValidityDays: 1825,
  deviceValidityDays: 365,
  keyAlgorithm: 'P-384',
  crlValidityHours: 24,
  rootCrlValidityDays: 180,
  crlPublishIntervalMinutes: 360,
  ocspResponseValidityMinutes: 60,
  renewalAtFraction: 2 / 3,
};

export interface PkiUnderTest {
  handle: DatabaseHandle;
  custody: KeyCustody;
  softwareKeys: SoftwareKeyStore;
  /** Seals the software keys; another process over the same database would use the same. */
  sealer: Sealer;
  ca: CertificateAuthority;
  crls: CrlPublisher;
  ocsp: OcspResponder;
  /** Base URL of the publication router, e.g. `http://127.0.0.1:41234/pki`. */
  baseUrl: string;
  close(): Promise<void>;
}

export async function startPki(options: {
  custody: CustodyKind;
  database?: DatabaseKind;
  ocsp?: Partial<OcspResponderDependencies>;
  maxRequestBytes?: number;
}): Promise<PkiUnderTest> {
  const logger = createLogger('silent');
  const handle = await openTestDatabase(options.database ?? 'server');
  const sealer = new Sealer(Buffer.alloc(32, 9));
  const softwareKeys = new SoftwareKeyStore({ db: handle.db, sealer });
  const custody = await openTestCustody(options.custody, { db: handle.db, sealer });
  const ca = new CertificateAuthority({ db: handle.db, custody, settings: pkiSettings, logger });
  const crls = new CrlPublisher({ db: handle.db, ca, settings: pkiSettings, logger });
  const ocsp = new OcspResponder({ db: handle.db, ca, custody, settings: pkiSettings, logger, ...options.ocsp });

  const app = express();
  app.use(
    pkiMountPath,
    pkiPublicationRouter({ ca, crls, ocsp, logger, ...(options.maxRequestBytes ? { maxRequestBytes: options.maxRequestBytes } : {}) }),
  );
  const server = await new Promise<Server>((resolve) => {
    // As the service listens: repeated OCSP GETs answered from memory before Express routes them.
    const listening = createServer(withCachedOcspAnswers(app, ocsp)).listen(0, '127.0.0.1', () => resolve(listening));
  });
  const { port } = server.address() as AddressInfo;
  return {
    handle,
    custody,
    softwareKeys,
    sealer,
    ca,
    crls,
    ocsp,
    baseUrl: `http://127.0.0.1:${port}${pkiMountPath}`,
    async close() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await custody.close();
      await handle.close();
    },
  };
}

let deviceNumber = 0;

/** A device certificate issued by the site's intermediate for a fresh device. */
export async function issueDevice(ca: CertificateAuthority, tenantId: string, site = 'hq'): Promise<CertificateRow> {
  deviceNumber += 1;
  const device: DeviceForCertificate = {
    deviceId: `cam-${deviceNumber}`,
    serialNumber: `SN-${deviceNumber}`,
    macAddress: `00:11:22:33:44:${(deviceNumber % 256).toString(16).padStart(2, '0')}`,
    address: `10.0.0.${deviceNumber % 250}:443`,
    site,
  };
  const { csrPem } = makeCsr({ key: 'P-256', subject: `/CN=${device.deviceId}` });
  return ca.issueDeviceCertificate({ tenantId, device, csrPem });
}

export interface CommandResult {
  status: number | null;
  stdout: string;
  stderr: string;
  output: string;
}

/**
 * Runs a command and returns its exit status and output, failing or not. Asynchronous, so a
 * client such as `openssl ocsp` can talk to a server in this same process.
 */
export function run(command: string, args: string[], options: { cwd?: string; timeoutMs?: number } = {}): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr, output: `${stdout}${stderr}` });
    });
  });
}
