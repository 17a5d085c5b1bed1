/**
 * Envelope encryption for secrets that must be sealed by a key in key custody: each tenant gets a
 * random AES-256 data key per purpose, stored only wrapped (AES-256-GCM inside the custody, the HSM
 * when one is configured) by a wrapping key of that tenant which never leaves it. The data key is
 * unwrapped once per process and seals values in memory, so a secret costs one custody call per
 * tenant rather than one per value; the database alone, or with the key-encryption key, opens none.
 */
import { randomBytes } from 'node:crypto';
import { and, eq } from 'drizzle-orm';
import type { Database } from '../db/client';
import { dataEncryptionKeys, type DataEncryptionKeyRow } from '../db/schema';
import type { KeyCustody } from './key-custody';
import { associatedData, SealedValueError, Sealer } from './sealing';

export class DataKeys {
  readonly #db: Database;
  readonly #custody: KeyCustody;
  /** Unwrapped data keys by tenant and purpose, and by id. */
  readonly #byPurpose = new Map<string, Promise<Sealer>>();
  readonly #byId = new Map<string, { tenantId: string; sealer: Sealer }>();

  constructor(deps: { db: Database; custody: KeyCustody }) {
    this.#db = deps.db;
    this.#custody = deps.custody;
  }

  /** The tenant's data key for `purpose`, made (and its wrapping key with it) on first use. */
  sealerFor(tenantId: string, purpose: string): Promise<Sealer> {
    const cacheKey = JSON.stringify([tenantId, purpose]);
    let sealer = this.#byPurpose.get(cacheKey);
    if (!sealer) {
      sealer = this.#load(tenantId, purpose);
      // A failure (custody unavailable) is not remembered: the next call tries again.
      sealer.catch(() => this.#byPurpose.delete(cacheKey));
      this.#byPurpose.set(cacheKey, sealer);
    }
    return sealer;
  }

  /** The data key that sealed a stored value, by the id stored with it; undefined when no such key exists. */
  async sealerById(tenantId: string, keyId: string): Promise<Sealer | undefined> {
    const cached = this.#byId.get(keyId);
    if (cached) return cached.tenantId === tenantId ? cached.sealer : undefined;
    const [row] = await this.#db
      .select()
      .from(dataEncryptionKeys)
      .where(and(eq(dataEncryptionKeys.id, keyId), eq(dataEncryptionKeys.tenantId, tenantId)));
    return row ? this.#unwrap(row) : undefined;
  }

  async #load(tenantId: string, purpose: string): Promise<Sealer> {
    const existing = await this.#find(tenantId, purpose);
    if (existing) return this.#unwrap(existing);
    const key = randomBytes(32);
    try {
      const sealer = new Sealer(key);
      const wrappingKeyLocation = await this.#custody.createWrappingKey(`data-key-wrapping:${tenantId}:${purpose}`);
      const wrappedKey = await this.#custody.wrap(wrappingKeyLocation, key, bindingOf(sealer.keyId, tenantId, purpose));
      await this.#db
        .insert(dataEncryptionKeys)
        .values({ id: sealer.keyId, tenantId, purpose, wrappedKey, wrappingKeyLocation })
        .onConflictDoNothing({ target: [dataEncryptionKeys.tenantId, dataEncryptionKeys.purpose] });
      // Another process may have made the tenant's key first: everyone uses the one stored.
      return this.#unwrap((await this.#find(tenantId, purpose))!);
    } finally {
      key.fill(0);
    }
  }

  async #find(tenantId: string, purpose: string): Promise<DataEncryptionKeyRow | undefined> {
    const [row] = await this.#db
      .select()
      .from(dataEncryptionKeys)
      .where(and(eq(dataEncryptionKeys.tenantId, tenantId), eq(dataEncryptionKeys.purpose, purpose)));
    return row;
  }

  async #unwrap(row: DataEncryptionKeyRow): Promise<Sealer> {
    const cached = this.#byId.get(row.id);
    if (cached?.tenantId === row.tenantId) return cached.sealer;
    const key = await this.#custody.unwrap(row.wrappingKeyLocation, row.wrappedKey, bindingOf(row.id, row.tenantId, row.purpose));
    try {
      const sealer = new Sealer(key);
      if (sealer.keyId !== row.id) throw new SealedValueError(`data key ${row.id} unwrapped to a different key`);
      this.#byId.set(row.id, { tenantId: row.tenantId, sealer });
      return sealer;
    } finally {
      key.fill(0);
    }
  }
}

/** Ties a wrapped data key to its row: another tenant's or purpose's key does not unwrap in its place. */
function bindingOf(keyId: string, tenantId: string, purpose: string): Uint8Array {
  return Buffer.from(associatedData('data-encryption-key', keyId, tenantId, purpose), 'utf8');
}
