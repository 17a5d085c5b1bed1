/**
 * A revocation made in one service process reaches the OCSP responder of another process sharing
 * the database at once, instead of that responder answering "good" from its cache until shortly
 * before nextUpdate.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SoftwareKeyStore } from '../custody/software-keystore';
import { Sealer } from '../custody/sealing';
import { openDatabase, type DatabaseHandle } from '../db/client';
import { createLogger } from '../foundation/logger';
import { createServerDatabaseUrl, openTestDatabase } from '../test/support/database';
import { issueDevice, pkiSettings, run } from '../test/support/pki-publication';
import { CertificateAuthority } from './certificate-authority';
import { OcspResponder } from './ocsp-responder';
import { announceRevocation, followRevocations, revocationChannel } from './revocation-notices';

const logger = createLogger('silent');

/** One service process's view: its own database connection, CA and OCSP responder, one shared key-encryption key. */
async function serviceProcess(url: string, sealer: Sealer) {
  const handle = await openDatabase({ url });
  const softwareKeys = new SoftwareKeyStore({ db: handle.db, sealer });
  const ca = new CertificateAuthority({ db: handle.db, custody: softwareKeys, settings: pkiSettings, logger });
  const ocsp = new OcspResponder({ db: handle.db, ca, custody: softwareKeys, settings: pkiSettings, logger });
  return { handle, ca, ocsp };
}

describe('revocation notices between service processes', () => {
  const tenantId = `notices-${randomBytes(3).toString('hex')}`;
  const sealer = new Sealer(randomBytes(32));
  let directory: string;
  let first: Awaited<ReturnType<typeof serviceProcess>>;
  let second: Awaited<ReturnType<typeof serviceProcess>>;
  let stopFollowing: () => Promise<void>;

  beforeAll(async () => {
    const url = await createServerDatabaseUrl();
    first = await serviceProcess(url, sealer);
    second = await serviceProcess(url, sealer);
    stopFollowing = await followRevocations(second.handle, second.ocsp, logger);
    directory = mkdtempSync(path.join(process.env.TEST_WORK_DIR ?? os.tmpdir(), 'notices-'));
  });
  afterAll(async () => {
    await stopFollowing?.();
    await first?.handle.close();
    await second?.handle.close();
    if (directory) rmSync(directory, { recursive: true, force: true });
  });

  /** What the second process's responder says about the certificate, as openssl reads it. */
  async function statusFromSecond(request: Uint8Array): Promise<string> {
    const answer = await second.ocsp.respond(request);
    const file = path.join(directory, `response-${randomBytes(4).toString('hex')}.der`);
    writeFileSync(file, answer.der);
    const printed = await run('openssl', ['ocsp', '-respin', file, '-resp_text', '-noverify'], { cwd: directory });
    return printed.output.match(/Cert Status: (\w+)/)![1]!;
  }

  it("makes the other process's responder answer revoked at once, where its cache said good", async () => {
    const intermediate = await first.ca.ensureSiteIntermediateCa(tenantId, 'hq');
    const device = await issueDevice(first.ca, tenantId);
    writeFileSync(path.join(directory, 'intermediate.pem'), intermediate.pem);
    writeFileSync(path.join(directory, 'device.pem'), device.pem);
    const requestFile = path.join(directory, 'request.der');
    const made = await run('openssl', ['ocsp', '-issuer', 'intermediate.pem', '-cert', 'device.pem', '-no_nonce', '-reqout', requestFile], { cwd: directory });
    expect(made.status, made.output).toBe(0);
    const request = new Uint8Array(readFileSync(requestFile));

    expect(await statusFromSecond(request)).toBe('good');
    await first.ca.revokeCertificate(device.id, 'keyCompromise');
    // Revoked in the database, but the second process still serves the response it signed.
    expect(await statusFromSecond(request)).toBe('good');

    await announceRevocation(first.handle, device.id);
    await expect.poll(() => statusFromSecond(request), { timeout: 5_000 }).toBe('revoked');
  });
});

describe('revocation notices on the embedded database', () => {
  let handle: DatabaseHandle;
  beforeAll(async () => {
    handle = await openTestDatabase('embedded');
  });
  afterAll(() => handle?.close());

  it('reach a listener in the same process, carrying the certificate id only', async () => {
    const heard: string[] = [];
    const stop = await handle.listen(revocationChannel, (payload) => heard.push(payload));
    await announceRevocation(handle, '0b5e7c1e-0000-4000-8000-000000000001');
    await expect.poll(() => heard).toEqual(['0b5e7c1e-0000-4000-8000-000000000001']);
    await stop();
  });
});
