import { createPrivateKey, createPublicKey, randomBytes, randomUUID, verify } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KeyAlgorithm } from '../key-custody';
import { Sealer } from '../sealing';
import type { DatabaseHandle } from '../../db/client';
import { softwareKeys } from '../../db/schema';
import { NotFoundError, PolicyViolationError } from '../../foundation/errors';
import { databaseKinds, openTestDatabase } from '../../test/support/database';
import { SoftwareKeyStore } from './software-key-store';

const algorithms: KeyAlgorithm[] = ['P-256', 'P-384', 'RSA-2048', 'RSA-3072'];

/** Every byte the table holds for a key, however the driver returns it. */
async function storedBytes(handle: DatabaseHandle, id: string): Promise<Buffer> {
  const [row] = await handle.db.select().from(softwareKeys).where(eq(softwareKeys.id, id));
  return Buffer.concat([
    Buffer.from(row!.sealedPrivateKey),
    Buffer.from(row!.publicKeySpki),
    Buffer.from(JSON.stringify(row)),
  ]);
}

const idOf = (location: string) => location.slice('software:'.length);

describe.each(databaseKinds)('SoftwareKeyStore on the %s database', (kind) => {
  let handle: DatabaseHandle;
  let store: SoftwareKeyStore;
  const sealer = new Sealer(randomBytes(32));

  beforeAll(async () => {
    handle = await openTestDatabase(kind);
    store = new SoftwareKeyStore({ db: handle.db, sealer });
  });
  afterAll(() => handle?.close());

  it.each(algorithms)('creates a %s key whose signatures verify against its public key', async (algorithm) => {
    const key = await store.createKey(`test-${algorithm}`, algorithm);
    expect(key.location).toMatch(/^software:[0-9a-f-]{36}$/);
    expect(key.algorithm).toBe(algorithm);
    const publicKey = createPublicKey({ key: Buffer.from(key.publicKeySpki), format: 'der', type: 'spki' });
    const data = Buffer.from('tbsCertificate bytes');
    for (const [hash, nodeHash] of [
      ['SHA-256', 'sha256'],
      ['SHA-384', 'sha384'],
    ] as const) {
      const signature = await store.sign(key.location, hash, data);
      expect(verify(nodeHash, data, { key: publicKey, dsaEncoding: 'der' }, signature)).toBe(true);
    }
  });

  it('signs with keys read back by a fresh store (nothing is only in memory)', async () => {
    const key = await store.createKey('reloaded', 'P-256');
    const fresh = new SoftwareKeyStore({ db: handle.db, sealer });
    expect(await fresh.getKey(key.location)).toEqual(key);
    const signature = await fresh.sign(key.location, 'SHA-256', Buffer.from('x'));
    const publicKey = createPublicKey({ key: Buffer.from(key.publicKeySpki), format: 'der', type: 'spki' });
    expect(verify('sha256', Buffer.from('x'), publicKey, signature)).toBe(true);
  });

  it('never stores a private key in plaintext', async () => {
    const key = await store.createExportableKey('scan', 'P-256');
    const privateKey = createPrivateKey(await store.unsealPrivateKeyPem(key.location));
    const pkcs8 = privateKey.export({ type: 'pkcs8', format: 'der' });
    const bytes = await storedBytes(handle, idOf(key.location));
    expect(bytes.includes(pkcs8)).toBe(false);
    // Not even the private scalar on its own, raw or base64-encoded.
    const scalar = Buffer.from(privateKey.export({ format: 'jwk' }).d!, 'base64url');
    expect(scalar).toHaveLength(32);
    expect(bytes.includes(scalar)).toBe(false);
    expect(bytes.includes(Buffer.from(scalar.toString('base64')))).toBe(false);
    expect(bytes.includes(Buffer.from(scalar.toString('hex')))).toBe(false);

    // And no stored row starts a PKCS#8 PrivateKeyInfo (SEQUENCE, then INTEGER 0 as version).
    const rows = await handle.db.select().from(softwareKeys);
    for (const row of rows) {
      const sealed = Buffer.from(row.sealedPrivateKey);
      expect(sealed.includes(Buffer.from('02010030', 'hex'))).toBe(false);
      expect(row.keyEncryptionKeyId).toBe(sealer.keyId);
    }
  });

  it('hands out only keys created exportable', async () => {
    const exportable = await store.createExportableKey('service-identity', 'P-256');
    const pem = await store.unsealPrivateKeyPem(exportable.location);
    expect(pem).toContain('-----BEGIN PRIVATE KEY-----');
    const derived = createPublicKey(createPrivateKey(pem)).export({ type: 'spki', format: 'der' });
    expect(Buffer.from(derived).equals(Buffer.from(exportable.publicKeySpki))).toBe(true);

    const caKey = await store.createKey('root-ca', 'P-384');
    await expect(store.unsealPrivateKeyPem(caKey.location)).rejects.toThrow(PolicyViolationError);
    await expect(new SoftwareKeyStore({ db: handle.db, sealer }).unsealPrivateKeyPem(caKey.location)).rejects.toThrow(
      PolicyViolationError,
    );
  });

  it('cannot open keys under another key-encryption key', async () => {
    const key = await store.createKey('kek-bound', 'P-256');
    const other = new SoftwareKeyStore({ db: handle.db, sealer: new Sealer(randomBytes(32)) });
    await expect(other.sign(key.location, 'SHA-256', Buffer.from('x'))).rejects.toThrow(/authentication/);
  });

  it('refuses a sealed key copied into another row', async () => {
    const a = await store.createKey('a', 'P-256');
    const b = await store.createKey('b', 'P-256');
    const [rowA] = await handle.db.select().from(softwareKeys).where(eq(softwareKeys.id, idOf(a.location)));
    await handle.db
      .update(softwareKeys)
      .set({ sealedPrivateKey: rowA!.sealedPrivateKey })
      .where(eq(softwareKeys.id, idOf(b.location)));
    const fresh = new SoftwareKeyStore({ db: handle.db, sealer });
    await expect(fresh.sign(b.location, 'SHA-256', Buffer.from('x'))).rejects.toThrow(/authentication/);
  });

  it('answers NotFoundError for unknown or malformed locations', async () => {
    await expect(store.getKey(`software:${randomUUID()}`)).rejects.toThrow(NotFoundError);
    await expect(store.sign(`software:${randomUUID()}`, 'SHA-256', Buffer.from('x'))).rejects.toThrow(NotFoundError);
    await expect(store.getKey('software:not-a-uuid')).rejects.toThrow(NotFoundError);
    await expect(store.getKey('pkcs11:token=x;id=%01')).rejects.toThrow(NotFoundError);
  });
});
