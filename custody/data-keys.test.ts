/**
 * Envelope encryption of configuration secrets: data keys wrapped by a key in custody (SoftHSM2
 * or the software store), and the vault sealing those secrets under them.
 */
import { randomBytes } from 'node:crypto';
import { and, eq } from 'drizzle-orm';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePkcs11Uri } from './hsm-pkcs11/pkcs11-uri';
import type { DatabaseHandle } from '../db/client';
import { dataEncryptionKeys, deviceSecrets } from '../db/schema';
import { custodyKinds, openTestCustody, tokenKeyAttributes } from '../test/support/custody';
import { openTestDatabase } from '../test/support/database';
import { DataKeys } from './data-keys';
import type { KeyCustody } from './key-custody';
import { Sealer, SealedValueError } from './sealing';
import { SecretVault } from './secret-vault';

describe.each(custodyKinds)('data keys wrapped in %s key custody', (custodyKind) => {
  let handle: DatabaseHandle;
  let custody: KeyCustody;
  const keyEncryptionKey = new Sealer(randomBytes(32));
  const tenant = `acme-${randomBytes(3).toString('hex')}`;
  const enveloped = (keys: DataKeys) => ({ keys, dataKeyPurpose: (purpose: string) => (purpose.startsWith('configuration-secret:') ? 'configuration-secrets' : undefined) });

  beforeAll(async () => {
    handle = await openTestDatabase('embedded');
    custody = await openTestCustody(custodyKind, { db: handle.db, sealer: keyEncryptionKey });
  });
  afterAll(async () => {
    await custody?.close();
    await handle?.close();
  });

  async function storedKey(tenantId: string) {
    const [row] = await handle.db.select().from(dataEncryptionKeys).where(and(eq(dataEncryptionKeys.tenantId, tenantId), eq(dataEncryptionKeys.purpose, 'configuration-secrets')));
    return row!;
  }

  it('makes one data key per tenant and purpose, stores it only wrapped, and a fresh instance unwraps the same key', async () => {
    const keys = new DataKeys({ db: handle.db, custody });
    const first = await keys.sealerFor(tenant, 'configuration-secrets');
    expect(await keys.sealerFor(tenant, 'configuration-secrets')).toBe(first);
    const other = await keys.sealerFor(`${tenant}-other`, 'configuration-secrets');
    expect(other.keyId).not.toBe(first.keyId);

    const row = await storedKey(tenant);
    expect(row).toMatchObject({ id: first.keyId, wrappingKeyLocation: expect.stringMatching(custodyKind === 'pkcs11' ? /^pkcs11:/ : /^software:/) });
    expect(row.wrappedKey.byteLength).toBe(12 + 32 + 16);

    const blob = first.seal(Buffer.from('secret'), 'binding');
    const restarted = new DataKeys({ db: handle.db, custody });
    const again = await restarted.sealerById(tenant, first.keyId);
    expect(again!.unseal(blob, 'binding').toString()).toBe('secret');
    expect(await restarted.sealerById(`${tenant}-other`, first.keyId)).toBeUndefined();
  });

  it("refuses a wrapped key copied into another tenant's row", async () => {
    const theirs = await storedKey(`${tenant}-other`);
    const ours = await storedKey(tenant);
    await handle.db.update(dataEncryptionKeys).set({ wrappedKey: ours.wrappedKey }).where(eq(dataEncryptionKeys.id, theirs.id));
    try {
      await expect(new DataKeys({ db: handle.db, custody }).sealerById(`${tenant}-other`, theirs.id)).rejects.toThrow(SealedValueError);
    } finally {
      await handle.db.update(dataEncryptionKeys).set({ wrappedKey: theirs.wrappedKey }).where(eq(dataEncryptionKeys.id, theirs.id));
    }
  });

  it('refuses a wrapped key altered by one bit', async () => {
    const row = await storedKey(tenant);
    const altered = Buffer.from(row.wrappedKey);
    altered[20]! ^= 1;
    await expect(custody.unwrap(row.wrappingKeyLocation, altered, Buffer.from('any'))).rejects.toThrow(SealedValueError);
  });

  it('seals configuration secrets under the tenant data key, other secrets under the key-encryption key, and reads both', async () => {
    const vault = new SecretVault({ db: handle.db, sealer: keyEncryptionKey, enveloped: enveloped(new DataKeys({ db: handle.db, custody })) });
    await vault.store(tenant, 'cam-1', 'configuration-secret:opsPassword', 'Ops-correct-horse-9!');
    await vault.store(tenant, 'cam-1', 'initial-credentials', { username: 'admin', password: 'factory' });

    const rows = await handle.db.select().from(deviceSecrets).where(and(eq(deviceSecrets.tenantId, tenant), eq(deviceSecrets.deviceId, 'cam-1')));
    const byPurpose = Object.fromEntries(rows.map((row) => [row.purpose, row]));
    expect(byPurpose['configuration-secret:opsPassword']!.keyEncryptionKeyId).toBe((await storedKey(tenant)).id);
    expect(byPurpose['initial-credentials']!.keyEncryptionKeyId).toBe(keyEncryptionKey.keyId);

    const restarted = new SecretVault({ db: handle.db, sealer: keyEncryptionKey, enveloped: enveloped(new DataKeys({ db: handle.db, custody })) });
    expect(await restarted.read(tenant, 'cam-1', 'configuration-secret:opsPassword')).toBe('Ops-correct-horse-9!');
    expect(await restarted.read(tenant, 'cam-1', 'initial-credentials')).toEqual({ username: 'admin', password: 'factory' });
    // The key-encryption key alone, with the whole database, does not open a configuration secret.
    const withoutCustody = new SecretVault({ db: handle.db, sealer: keyEncryptionKey });
    await expect(withoutCustody.read(tenant, 'cam-1', 'configuration-secret:opsPassword')).rejects.toThrow(SealedValueError);
  });

  it.runIf(custodyKind === 'pkcs11')('keeps the wrapping key in the token, sensitive and never extractable', async () => {
    const row = await storedKey(tenant);
    await custody.close();
    expect(tokenKeyAttributes(pkcs11js.CKO_SECRET_KEY, parsePkcs11Uri(row.wrappingKeyLocation)!.id!)).toEqual({
      token: true,
      sensitive: true,
      extractable: false,
      valueReadable: false,
    });
  });
});
