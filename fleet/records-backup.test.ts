/**
 * The records backup round trip between the two kinds of database, each install with its own
 * key-encryption key: everything comes back, sealed values open under the destination's keys, the
 * audit chains and certificate chains verify, and what is tampered with or already there is refused
 * without writing anything.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BackupIntegrityError, BackupPassphraseError, type ScryptParameters } from '../custody/backup-envelope';
import { readRecordRows } from '../db/record-tables';
import { eq } from 'drizzle-orm';
import { auditEvents, certificates, provisioningRuns } from '../db/schema';
import { ConflictError } from '../foundation/errors';
import { createServiceParts, type ServiceParts } from '../service/parts';
import { makeCsr } from '../test/support/openssl';
import { testConfig, testLogger } from '../test/support/service';
import type { DatabaseKind } from '../test/support/database';
import { readRecordsBackupHeader } from './records-backup';

const passphrase = 'correct horse battery staple';
/** The smallest cost the format accepts, so the tests spend their time on the records. */
const scrypt: ScryptParameters = { N: 2 ** 14, r: 8, p: 1 };
const tenant = 'acme';

const certificatesOf = (parts: ServiceParts) => parts.database.db.select().from(certificates).where(eq(certificates.tenantId, tenant));

async function openInstall(kind: DatabaseKind): Promise<ServiceParts> {
  return createServiceParts(await testConfig({ database: kind }), testLogger);
}

/** An install with a device that went all the way: registered, certified, run archived, audited, alerted. */
async function populate(parts: ServiceParts) {
  const device = { deviceId: 'cam-1', serialNumber: 'SN-CAM-1', macAddress: '02:00:00:00:00:01', address: '127.0.0.1:8443', protocol: 'https', deviceType: 'camera', site: 'hq', name: 'Lobby' };
  await parts.registry.register(tenant, device);
  const { csrPem } = makeCsr({ key: 'P-256', subject: `/CN=${device.deviceId}`, subjectAltName: 'IP:127.0.0.1,URI:urn:dev:mac:020000000001' });
  const certificate = await parts.ca.issueDeviceCertificate({ tenantId: tenant, device, csrPem });
  await parts.vault.store(tenant, device.deviceId, 'initial-credentials', { username: 'admin', password: 'factory-secret' });
  // A configuration secret: sealed under the tenant's data key, itself wrapped in key custody.
  await parts.vault.store(tenant, device.deviceId, 'configuration-secret:opsPassword', 'Ops-Secret-4711!');
  await parts.database.db.insert(provisioningRuns).values({
    tenantId: tenant,
    deviceId: device.deviceId,
    workflowId: `provision:${tenant}:${device.deviceId}`,
    runId: 'run-1',
    provisioningMethod: 'manual',
    outcome: 'completed',
    startedAt: new Date(Date.now() - 60_000),
    finishedAt: new Date(),
    certificateSerial: certificate.serialNumber,
    record: { deviceId: device.deviceId, status: 'active', certificateSerial: certificate.serialNumber },
  });
  for (const action of ['device.registered', 'certificate.issued', 'provisioning.completed']) {
    await parts.audit.append({ tenantId: tenant, actor: 'user:alice', actorType: 'user', action, targetType: 'device', targetId: device.deviceId });
  }
  await parts.alerts.raise({ tenantId: tenant, kind: 'device.unauthorized', severity: 'warning', fingerprint: 'device.unauthorized:x', summary: 'seen' });
  const key = await parts.apiKeys.create({ tenantId: tenant, role: 'operator', name: 'ci', createdBy: 'test' });
  return { device, certificate, key: key.key };
}

describe.each([
  { source: 'server', destination: 'embedded' },
  { source: 'embedded', destination: 'server' },
] as const)('records backup from a $source database to a fresh $destination one', ({ source, destination }) => {
  let from: ServiceParts;
  let to: ServiceParts;
  let populated: Awaited<ReturnType<typeof populate>>;
  let file: Buffer;

  beforeAll(async () => {
    from = await openInstall(source);
    to = await openInstall(destination);
    populated = await populate(from);
    ({ file } = await from.recordsBackup.createBackup({ passphrase, scrypt }));
  });

  afterAll(async () => {
    await from?.close();
    await to?.close();
  });

  it('writes a file whose readable header counts what it holds and reveals no secret', () => {
    const header = readRecordsBackupHeader(file);
    expect(header.tenants).toEqual([tenant]);
    expect(header.counts).toMatchObject({ deviceSecrets: 2, certificateAuthority: true });
    expect(header.counts.tables).toMatchObject({ devices: 1, provisioningRuns: 1, apiKeys: 1, alerts: 1 });
    expect(header.counts.tables.auditEvents).toBeGreaterThanOrEqual(3);
    for (const secret of ['factory-secret', 'Ops-Secret-4711!', populated.device.serialNumber, populated.key]) {
      expect(file.includes(Buffer.from(secret))).toBe(false);
    }
  });

  it('refuses a wrong passphrase and a tampered file, and writes nothing', async () => {
    await expect(to.recordsBackup.restoreBackup(file, { passphrase: 'not the passphrase at all' })).rejects.toBeInstanceOf(BackupPassphraseError);
    const tampered = Buffer.from(file);
    tampered[tampered.length - 10]! ^= 0x01;
    await expect(to.recordsBackup.restoreBackup(tampered, { passphrase })).rejects.toBeInstanceOf(BackupIntegrityError);
    const headerChanged = Buffer.from(file.toString('latin1').replace('"createdAt":"', '"createdAt":"1'), 'latin1');
    await expect(to.recordsBackup.restoreBackup(headerChanged, { passphrase })).rejects.toBeInstanceOf(BackupIntegrityError);
    expect(await to.registry.list(tenant)).toEqual([]);
    expect(await certificatesOf(to)).toEqual([]);
  });

  it('restores into a fresh install: inventory, archived runs, certificates, API keys, alerts, audit chain and sealed secrets', async () => {
    const result = await to.recordsBackup.restoreBackup(file, { passphrase });
    expect(result.certificateAuthority?.tenants).toEqual([{ tenantId: tenant, outcome: 'restored' }]);
    expect(result.deviceSecrets).toBe(2);
    expect(result.certificatesVerified).toBe((await certificatesOf(from)).length);
    const sourceChain = await from.audit.verify(tenant);
    expect(result.auditChains).toContainEqual({ tenantId: tenant, eventsChecked: sourceChain.eventsChecked, lastSequence: sourceChain.lastSequence });

    // The inventory and the archived status answer as on the source.
    expect(await to.registry.get(tenant, populated.device.deviceId)).toMatchObject({ serialNumber: 'SN-CAM-1', site: 'hq', name: 'Lobby' });
    const runs = await readRecordRows(to.database.db, 'provisioningRuns');
    expect(runs).toEqual(await readRecordRows(from.database.db, 'provisioningRuns'));
    expect(runs[0]).toMatchObject({ runId: 'run-1', outcome: 'completed', certificateSerial: populated.certificate.serialNumber });
    expect((await to.ca.getCertificate(populated.certificate.id)).pem).toBe(populated.certificate.pem);

    // Secrets open under the destination's own keys.
    expect(await to.vault.read(tenant, populated.device.deviceId, 'initial-credentials')).toEqual({ username: 'admin', password: 'factory-secret' });
    expect(await to.vault.read(tenant, populated.device.deviceId, 'configuration-secret:opsPassword')).toBe('Ops-Secret-4711!');

    // The same API key works, and the alert is still open.
    expect(await to.apiKeys.authenticate(populated.key)).toMatchObject({ tenantId: tenant, role: 'operator' });
    expect(await to.alerts.list(tenant, { open: true })).toEqual([expect.objectContaining({ fingerprint: 'device.unauthorized:x' })]);

    // The chain continues: the restore is its next event, and it all verifies.
    const verification = await to.audit.verify(tenant);
    expect(verification.ok).toBe(true);
    const last = (await to.audit.list(tenant, { after: verification.lastSequence - 1 }))[0]!;
    expect(last.action).toBe('records.restored');
  });

  it('refuses to restore over records already there, naming them', async () => {
    const attempt = to.recordsBackup.restoreBackup(file, { passphrase });
    await expect(attempt).rejects.toBeInstanceOf(ConflictError);
    await expect(attempt).rejects.toThrow(/fresh install/);
  });
});

describe('records backup of a broken audit chain', () => {
  let from: ServiceParts;
  let to: ServiceParts;

  beforeAll(async () => {
    from = await openInstall('embedded');
    to = await openInstall('embedded');
  });

  afterAll(async () => {
    await from?.close();
    await to?.close();
  });

  it('refuses a backup whose audit chain does not verify, and leaves no records behind', async () => {
    await populate(from);
    const head = await from.audit.verify(tenant);
    // An event slipped in past the audit log: its hash covers nothing.
    await from.database.db.insert(auditEvents).values({
      tenantId: tenant,
      sequence: head.lastSequence + 1,
      occurredAt: new Date(),
      actor: 'mallory',
      actorType: 'user',
      action: 'device.registered',
      outcome: 'success',
      details: {},
      previousHash: '0'.repeat(64),
      hash: 'f'.repeat(64),
    });
    const { file } = await from.recordsBackup.createBackup({ passphrase, scrypt });
    await expect(to.recordsBackup.restoreBackup(file, { passphrase })).rejects.toThrow(/audit chain of tenant acme does not verify/);
    expect(await to.registry.list(tenant)).toEqual([]);
    expect(await readRecordRows(to.database.db, 'auditEvents')).toEqual([]);
  });
});

describe('records backup of an install that has issued nothing yet', () => {
  it('carries no CA, and restores the records it has', async () => {
    const from = await openInstall('embedded');
    const to = await openInstall('server');
    try {
      await from.registry.register(tenant, { deviceId: 'rdr-1', serialNumber: 'SN-RDR-1', macAddress: '02:00:00:00:00:21', address: '/dev/ttyUSB0@0x65', protocol: 'osdp', deviceType: 'card-reader', site: 'hq' });
      const { file, header } = await from.recordsBackup.createBackup({ passphrase, scrypt });
      expect(header.counts.certificateAuthority).toBe(false);
      const result = await to.recordsBackup.restoreBackup(file, { passphrase });
      expect(result).toMatchObject({ certificateAuthority: null, certificatesVerified: 0 });
      expect(await to.registry.get(tenant, 'rdr-1')).toMatchObject({ protocol: 'osdp', lifecycleState: 'registered' });
    } finally {
      await from.close();
      await to.close();
    }
  });
});
