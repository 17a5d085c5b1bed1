/**
 * `npm run backup` and `npm run restore` as an operator runs them: the scripts read the service
 * configuration from the environment; the backup of a PostgreSQL server install restores into a
 * fresh embedded one with another key-encryption key, which then answers as the source did.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readRecordsBackupHeader } from '../fleet/records-backup';
import { createLogger } from '../foundation/logger';
import { loadConfig } from '../service/config';
import { createServiceParts } from '../service/parts';
import { createServerDatabaseUrl } from '../test/support/database';
import { makeCsr } from '../test/support/openssl';
import { runScript } from '../test/support/scripts';

const logger = createLogger('silent');

describe('npm run backup and restore', () => {
  it('backs up a server install and restores it into a fresh embedded install with another key', async () => {
    const work = mkdtempSync(path.join(process.env.TEST_WORK_DIR ?? '/tmp', 'records-backup-'));
    const passphraseFile = path.join(work, 'passphrase');
    writeFileSync(passphraseFile, 'a long operator passphrase for everything\n', { mode: 0o600 });
    const backupFile = path.join(work, 'service.backup');
    const source = { DATABASE_URL: await createServerDatabaseUrl(), KEY_ENCRYPTION_KEY: randomBytes(32).toString('base64'), DATA_DIR: path.join(work, 'a') };
    const destination = { KEY_ENCRYPTION_KEY: randomBytes(32).toString('base64'), DATA_DIR: path.join(work, 'b') };

    const device = { deviceId: 'door-7', serialNumber: 'SN-DOOR-7', macAddress: '02:00:00:00:00:07', address: '127.0.0.1:8443', protocol: 'https', deviceType: 'door-controller', site: 'hq' };
    const parts = await createServiceParts(loadConfig(source), logger);
    try {
      await parts.registry.register('acme', device);
      const { csrPem } = makeCsr({ key: 'P-256', subject: '/CN=door-7', subjectAltName: 'IP:127.0.0.1,URI:urn:dev:mac:020000000007' });
      await parts.ca.issueDeviceCertificate({ tenantId: 'acme', device, csrPem });
      await parts.vault.store('acme', device.deviceId, 'initial-credentials', { username: 'admin', password: 'door-factory' });
      await parts.audit.append({ tenantId: 'acme', actor: 'user:alice', actorType: 'user', action: 'device.registered', targetId: device.deviceId });
    } finally {
      await parts.close();
    }

    const refused = await runScript('scripts/backup.ts', source, '--out', backupFile, '--passphrase', 'never here please');
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/never taken as an argument/);

    const backup = await runScript('scripts/backup.ts', source, '--out', backupFile, '--passphrase-file', passphraseFile);
    expect(backup.stderr).toBe('');
    expect(backup.code).toBe(0);
    expect(backup.stdout).toMatch(/devices 1/);
    expect(backup.stdout).toMatch(/certificate authority: included/);
    expect(statSync(backupFile).mode & 0o777).toBe(0o600);
    expect(readRecordsBackupHeader(readFileSync(backupFile)).tenants).toEqual(['acme']);
    expect(readFileSync(backupFile).includes(Buffer.from('door-factory'))).toBe(false);

    const restore = await runScript('scripts/restore.ts', destination, '--in', backupFile, '--passphrase-file', passphraseFile);
    expect(restore.stderr).toBe('');
    expect(restore.code).toBe(0);
    expect(restore.stdout).toMatch(/audit chain acme: ok/);
    expect(restore.stdout).toMatch(/certificates verified against their issuers: [1-9]/);

    const again = await runScript('scripts/restore.ts', destination, '--in', backupFile, '--passphrase-file', passphraseFile);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/restore refused: .*fresh install/);

    const restored = await createServiceParts(loadConfig(destination), logger);
    try {
      expect(await restored.registry.get('acme', device.deviceId)).toMatchObject({ serialNumber: 'SN-DOOR-7', site: 'hq' });
      expect(await restored.vault.read('acme', device.deviceId, 'initial-credentials')).toEqual({ username: 'admin', password: 'door-factory' });
      expect((await restored.audit.verify('acme')).ok).toBe(true);
    } finally {
      await restored.close();
    }
  }, 180_000);
});
