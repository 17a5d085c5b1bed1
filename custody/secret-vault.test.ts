import { randomBytes } from 'node:crypto';
import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DatabaseHandle } from '../db/client';
import { deviceSecrets } from '../db/schema';
import { databaseKinds, openTestDatabase } from '../test/support/database';
import { Sealer, SealedValueError } from './sealing';
import { SecretVault } from './secret-vault';

describe.each(databaseKinds)('SecretVault on the %s database', (kind) => {
  let handle: DatabaseHandle;
  let vault: SecretVault;
  const sealer = new Sealer(randomBytes(32));
  const credentials = { username: 'admin', password: 'factory-default-9f3b' };

  beforeAll(async () => {
    handle = await openTestDatabase(kind);
    vault = new SecretVault({ db: handle.db, sealer });
  });
  afterAll(() => handle?.close());

  async function storedRow(tenantId: string, deviceId: string, purpose: string) {
    const [row] = await handle.db
      .select()
      .from(deviceSecrets)
      .where(and(eq(deviceSecrets.tenantId, tenantId), eq(deviceSecrets.deviceId, deviceId), eq(deviceSecrets.purpose, purpose)));
    return row;
  }

  it('returns the stored value', async () => {
    await vault.store('acme', 'cam-1', 'initial-credentials', credentials);
    expect(await vault.read('acme', 'cam-1', 'initial-credentials')).toEqual(credentials);
  });

  it('keeps only ciphertext and the key id in the database', async () => {
    const row = await storedRow('acme', 'cam-1', 'initial-credentials');
    expect(row?.keyEncryptionKeyId).toBe(sealer.keyId);
    const stored = Buffer.from(row!.sealedValue);
    expect(stored.includes(Buffer.from(credentials.password))).toBe(false);
    expect(stored.includes(Buffer.from('admin'))).toBe(false);
  });

  it('replaces the value when storing again', async () => {
    await vault.store('acme', 'cam-1', 'initial-credentials', { ...credentials, password: 'rotated' });
    expect(await vault.read('acme', 'cam-1', 'initial-credentials')).toEqual({ ...credentials, password: 'rotated' });
    const rows = await handle.db.select().from(deviceSecrets).where(eq(deviceSecrets.deviceId, 'cam-1'));
    expect(rows).toHaveLength(1);
  });

  it("removes every secret of one device, whatever its purpose, and no other device's or tenant's", async () => {
    await vault.store('acme', 'cam-gone', 'initial-credentials', credentials);
    await vault.store('acme', 'cam-gone', 'device-key:scbk', 'a2V5');
    await vault.store('acme', 'cam-stays', 'initial-credentials', credentials);
    await vault.store('globex', 'cam-gone', 'initial-credentials', credentials);
    expect(await vault.removeAllOf('acme', 'cam-gone')).toBe(2);
    expect(await vault.read('acme', 'cam-gone', 'initial-credentials')).toBeUndefined();
    expect(await vault.read('acme', 'cam-gone', 'device-key:scbk')).toBeUndefined();
    expect(await vault.read('acme', 'cam-stays', 'initial-credentials')).toEqual(credentials);
    expect(await vault.read('globex', 'cam-gone', 'initial-credentials')).toEqual(credentials);
    expect(await vault.removeAllOf('acme', 'cam-gone')).toBe(0);
  });

  it('answers undefined for a secret never stored', async () => {
    expect(await vault.read('acme', 'cam-404', 'initial-credentials')).toBeUndefined();
  });

  it('refuses a sealed value moved to another device', async () => {
    await vault.store('acme', 'cam-2', 'initial-credentials', { username: 'admin', password: 'other' });
    const original = await storedRow('acme', 'cam-1', 'initial-credentials');
    await handle.db
      .update(deviceSecrets)
      .set({ sealedValue: original!.sealedValue })
      .where(eq(deviceSecrets.id, (await storedRow('acme', 'cam-2', 'initial-credentials'))!.id));
    await expect(vault.read('acme', 'cam-2', 'initial-credentials')).rejects.toThrow(SealedValueError);
  });

  it('keeps tenants apart', async () => {
    await vault.store('globex', 'cam-1', 'initial-credentials', { username: 'root', password: 'globex' });
    expect(await vault.read('globex', 'cam-1', 'initial-credentials')).toEqual({ username: 'root', password: 'globex' });
    expect(await vault.read('acme', 'cam-1', 'initial-credentials')).toEqual({ ...credentials, password: 'rotated' });
  });

  it('forgets a removed secret', async () => {
    await vault.remove('acme', 'cam-1', 'initial-credentials');
    expect(await vault.read('acme', 'cam-1', 'initial-credentials')).toBeUndefined();
    await vault.remove('acme', 'cam-1', 'initial-credentials');
  });
});
