/**
 * `npm run ca:backup` and `npm run ca:restore` as an operator runs them: the scripts read the
 * service configuration from the environment, and the restored install then issues again.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SoftwareKeyStore } from '../custody/software-keystore';
import { Sealer } from '../custody/sealing';
import { openDatabase, type DatabaseHandle } from '../db/client';
import { certificates, softwareKeys } from '../db/schema';
import { readBackupHeader } from '../pki/ca-backup';
import { CertificateAuthority } from '../pki/certificate-authority';
import type { ServiceConfig } from '../service/config';
import { createLogger } from '../foundation/logger';
import { createServerDatabaseUrl } from '../test/support/database';
import { makeCsr, verifyChain } from '../test/support/openssl';
import { runScript } from '../test/support/scripts';

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

describe('npm run ca:backup and ca:restore', () => {
  const work = mkdtempSync(path.join(process.env.TEST_WORK_DIR ?? '/tmp', 'ca-backup-'));
  const passphraseFile = path.join(work, 'passphrase');
  const backupFile = path.join(work, 'ca.backup');
  const kekA = randomBytes(32).toString('base64');
  const kekB = randomBytes(32).toString('base64');
  let urlA: string;
  let urlB: string;
  let handleA: DatabaseHandle;
  let envA: Record<string, string>;
  let envB: Record<string, string>;

  beforeAll(async () => {
    writeFileSync(passphraseFile, 'a long operator passphrase for the CA\n', { mode: 0o600 });
    [urlA, urlB] = await Promise.all([createServerDatabaseUrl(), createServerDatabaseUrl()]);
    envA = { DATABASE_URL: urlA, KEY_ENCRYPTION_KEY: kekA, DATA_DIR: path.join(work, 'a') };
    envB = { DATABASE_URL: urlB, KEY_ENCRYPTION_KEY: kekB, DATA_DIR: path.join(work, 'b') };

    handleA = await openDatabase({ url: urlA });
    const sealer = new Sealer(Buffer.from(kekA, 'base64'));
    const keys = new SoftwareKeyStore({ db: handleA.db, sealer });
    const ca = new CertificateAuthority({ db: handleA.db, custody: keys, settings, logger });
    const { csrPem } = makeCsr({ key: 'P-256', subject: '/CN=cam-1', subjectAltName: 'IP:10.0.0.5' });
    const issued = await ca.issueDeviceCertificate({
      tenantId: 'acme',
      device: { deviceId: 'cam-1', serialNumber: 'SN-1', macAddress: '00:11:22:aa:bb:cc', address: '10.0.0.5:8443', site: 'hq' },
      csrPem,
    });
    await ca.revokeCertificate(issued.id, 'superseded');
  });
  afterAll(() => handleA?.close());

  it('refuses a passphrase given as an argument, before touching anything', async () => {
    const run = await runScript('scripts/ca-backup.ts', envA, '--out', backupFile, '--passphrase', 'secret passphrase here');
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/passphrase is never taken as an argument/);
    expect(run.stdout).toBe('');
    expect(() => statSync(backupFile)).toThrow();
  });

  it('writes an owner-only backup and prints counts and CA fingerprints, never key material', async () => {
    const run = await runScript('scripts/ca-backup.ts', envA, '--out', backupFile, '--passphrase-file', passphraseFile);
    console.info(`ca:backup took ${run.elapsedMs} ms with the default scrypt cost`);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(statSync(backupFile).mode & 0o777).toBe(0o600);

    const rows = await handleA.db.select().from(certificates);
    const rootRow = rows.find((row) => row.certificateType === 'root')!;
    const intermediateRow = rows.find((row) => row.certificateType === 'intermediate')!;
    expect(run.stdout).toContain(`wrote ${backupFile} (`);
    expect(run.stdout).toContain('tenants: acme\n');
    expect(run.stdout).toContain('certificates: root 1, intermediate 1, services-intermediate 0, ocsp 0, service 0, server 0, configuration-signing 0, device 1 (1 revoked)\n');
    expect(run.stdout).toContain('software keys: 2\n');
    expect(run.stdout).toContain(`acme root live software sha256:${rootRow.fingerprint} CN=acme Root CA,O=acme (${rootRow.id})`);
    expect(run.stdout).toContain(`acme intermediate site hq live software sha256:${intermediateRow.fingerprint}`);
    expect(run.stdout).not.toMatch(/PRIVATE KEY|BEGIN/);
    expect(readBackupHeader(readFileSync(backupFile)).kdf).toMatchObject({ N: 2 ** 17, r: 8, p: 1 });
  });

  it('never overwrites an existing backup file', async () => {
    const before = readFileSync(backupFile);
    const run = await runScript('scripts/ca-backup.ts', envA, '--out', backupFile, '--passphrase-file', passphraseFile);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/already exists/);
    expect(readFileSync(backupFile).equals(before)).toBe(true);
  });

  it('refuses a wrong passphrase from the environment and leaves the destination empty', async () => {
    const run = await runScript('scripts/ca-restore.ts', { ...envB, CA_BACKUP_PASSPHRASE: 'not the passphrase at all' }, '--in', backupFile);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/CA restore refused: the passphrase does not open this backup/);
    const handleB = await openDatabase({ url: urlB });
    try {
      expect(await handleB.db.select().from(certificates)).toEqual([]);
      expect(await handleB.db.select().from(softwareKeys)).toEqual([]);
    } finally {
      await handleB.close();
    }
  });

  it('restores into another install whose CA then issues certificates that chain to the original root', async () => {
    const run = await runScript('scripts/ca-restore.ts', { ...envB, CA_BACKUP_PASSPHRASE_FILE: passphraseFile }, '--in', backupFile);
    console.info(`ca:restore took ${run.elapsedMs} ms with the default scrypt cost`);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('tenant acme: restored\n');
    expect(run.stdout).toContain('inserted: 3 certificates, 0 certificate revocation lists, 2 software keys\n');

    const handleB = await openDatabase({ url: urlB });
    try {
      const keys = new SoftwareKeyStore({ db: handleB.db, sealer: new Sealer(Buffer.from(kekB, 'base64')) });
      const ca = new CertificateAuthority({ db: handleB.db, custody: keys, settings, logger });
      const original = await handleA.db.select().from(certificates);
      const rootRow = original.find((row) => row.certificateType === 'root')!;
      const intermediateRow = original.find((row) => row.certificateType === 'intermediate')!;
      const { csrPem } = makeCsr({ key: 'P-256', subject: '/CN=cam-2', subjectAltName: 'IP:10.0.0.6' });
      const issued = await ca.issueDeviceCertificate({
        tenantId: 'acme',
        device: { deviceId: 'cam-2', serialNumber: 'SN-2', macAddress: '00:11:22:aa:bb:cd', address: '10.0.0.6:8443', site: 'hq' },
        csrPem,
      });
      expect(issued.issuerCertificateId).toBe(intermediateRow.id);
      expect(verifyChain({ rootPem: rootRow.pem, intermediatePems: [intermediateRow.pem], leafPem: issued.pem })).toMatch(/leaf.pem: OK/);
      const revoked = original.find((row) => row.certificateType === 'device')!;
      expect((await ca.getCertificate(revoked.id)).revocationReason).toBe('superseded');
    } finally {
      await handleB.close();
    }
  });

  it('refuses to restore into an install that has since issued, with exit code 1', async () => {
    const run = await runScript('scripts/ca-restore.ts', { ...envB, CA_BACKUP_PASSPHRASE_FILE: passphraseFile }, '--in', backupFile);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/already holds certificates of tenant acme that differ from the backup/);
  });
});
