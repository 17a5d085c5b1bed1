/**
 * Device secrets (initial passwords and the like) sealed at rest. Workflows carry only the
 * (tenant, device, purpose) reference, so a secret never lands in workflow history, and the
 * database only ever holds ciphertext.
 */
import { and, eq, sql } from 'drizzle-orm';
import type { Database } from '../db/client';
import { deviceSecrets } from '../db/schema';
import type { DataKeys } from './data-keys';
import { associatedData, SealedValueError, type Sealer } from './sealing';

/** Purposes whose values are sealed under a tenant data key held wrapped in key custody. */
export interface EnvelopedPurposes {
  keys: DataKeys;
  /** The data key's purpose for a secret's purpose; undefined for secrets sealed under the key-encryption key. */
  dataKeyPurpose(purpose: string): string | undefined;
}

export class SecretVault {
  readonly #db: Database;
  readonly #sealer: Sealer;
  readonly #enveloped: EnvelopedPurposes | undefined;

  constructor(deps: { db: Database; sealer: Sealer; enveloped?: EnvelopedPurposes }) {
    this.#db = deps.db;
    this.#sealer = deps.sealer;
    this.#enveloped = deps.enveloped;
  }

  /** The sealer new values of this purpose are sealed with. */
  async #sealerFor(tenantId: string, purpose: string): Promise<Sealer> {
    const dataKeyPurpose = this.#enveloped?.dataKeyPurpose(purpose);
    return dataKeyPurpose === undefined ? this.#sealer : this.#enveloped!.keys.sealerFor(tenantId, dataKeyPurpose);
  }

  /** The sealer a stored value was sealed with, by the key id stored next to it. */
  async #sealerById(tenantId: string, keyId: string): Promise<Sealer> {
    if (keyId === this.#sealer.keyId) return this.#sealer;
    const sealer = await this.#enveloped?.keys.sealerById(tenantId, keyId);
    if (!sealer) throw new SealedValueError(`secret is sealed under key ${keyId}, which this service does not hold`);
    return sealer;
  }

  /** Stores (or replaces) a JSON-serialisable value. */
  async store(tenantId: string, deviceId: string, purpose: string, value: unknown): Promise<void> {
    await this.storeMany(tenantId, purpose, [{ deviceId, value }]);
  }

  /** Stores (or replaces) one value per device, in batches: a bulk import may bring thousands. */
  async storeMany(tenantId: string, purpose: string, entries: { deviceId: string; value: unknown }[]): Promise<void> {
    const sealer = await this.#sealerFor(tenantId, purpose);
    // Sealed a slice at a time, between the inserts: a bulk job's 100,000 at once would hold the thread.
    for (let start = 0; start < entries.length; start += 500) {
      const rows = entries.slice(start, start + 500).map(({ deviceId, value }) => {
        const json = JSON.stringify(value);
        if (json === undefined) throw new TypeError('SecretVault.store: the value is not JSON-serialisable');
        const sealedValue = sealer.seal(Buffer.from(json, 'utf8'), bindingOf(tenantId, deviceId, purpose));
        return { tenantId, deviceId, purpose, sealedValue, keyEncryptionKeyId: sealer.keyId };
      });
      await this.#db
        .insert(deviceSecrets)
        .values(rows)
        .onConflictDoUpdate({
          target: [deviceSecrets.tenantId, deviceSecrets.deviceId, deviceSecrets.purpose],
          set: { sealedValue: sql`excluded.sealed_value`, keyEncryptionKeyId: sql`excluded.key_encryption_key_id`, updatedAt: sql`now()` },
        });
    }
  }

  async read<T>(tenantId: string, deviceId: string, purpose: string): Promise<T | undefined> {
    const [row] = await this.#db
      .select({ sealedValue: deviceSecrets.sealedValue, keyId: deviceSecrets.keyEncryptionKeyId })
      .from(deviceSecrets)
      .where(matching(tenantId, deviceId, purpose));
    if (!row) return undefined;
    const sealer = await this.#sealerById(tenantId, row.keyId);
    const plaintext = sealer.unseal(row.sealedValue, bindingOf(tenantId, deviceId, purpose));
    return JSON.parse(plaintext.toString('utf8')) as T;
  }

  /** Stores the value only if none is stored yet, and returns whichever value is stored after. */
  async storeIfAbsent<T>(tenantId: string, deviceId: string, purpose: string, value: T): Promise<T> {
    const json = JSON.stringify(value);
    if (json === undefined) throw new TypeError('SecretVault.storeIfAbsent: the value is not JSON-serialisable');
    const sealer = await this.#sealerFor(tenantId, purpose);
    const sealedValue = sealer.seal(Buffer.from(json, 'utf8'), bindingOf(tenantId, deviceId, purpose));
    await this.#db
      .insert(deviceSecrets)
      .values({ tenantId, deviceId, purpose, sealedValue, keyEncryptionKeyId: sealer.keyId })
      .onConflictDoNothing({ target: [deviceSecrets.tenantId, deviceSecrets.deviceId, deviceSecrets.purpose] });
    return (await this.read<T>(tenantId, deviceId, purpose))!;
  }

  /**
   * Every stored secret, unsealed, for the records backup: it carries them inside its own
   * encryption, and a restore seals them again (`store`) under the destination's keys.
   */
  async exportAll(): Promise<{ tenantId: string; deviceId: string; purpose: string; value: unknown }[]> {
    const rows = await this.#db.select().from(deviceSecrets).orderBy(deviceSecrets.tenantId, deviceSecrets.deviceId, deviceSecrets.purpose);
    const secrets: { tenantId: string; deviceId: string; purpose: string; value: unknown }[] = [];
    for (const row of rows) {
      const sealer = await this.#sealerById(row.tenantId, row.keyEncryptionKeyId);
      const plaintext = sealer.unseal(row.sealedValue, bindingOf(row.tenantId, row.deviceId, row.purpose));
      try {
        secrets.push({ tenantId: row.tenantId, deviceId: row.deviceId, purpose: row.purpose, value: JSON.parse(plaintext.toString('utf8')) });
      } finally {
        plaintext.fill(0);
      }
    }
    return secrets;
  }

  /** Removes the secret; removing one that is not there is not an error. */
  async remove(tenantId: string, deviceId: string, purpose: string): Promise<void> {
    await this.#db.delete(deviceSecrets).where(matching(tenantId, deviceId, purpose));
  }

  /** Removes every secret of the device, whatever its purpose (a decommissioned device keeps none); returns how many. */
  async removeAllOf(tenantId: string, deviceId: string): Promise<number> {
    const removed = await this.#db
      .delete(deviceSecrets)
      .where(and(eq(deviceSecrets.tenantId, tenantId), eq(deviceSecrets.deviceId, deviceId)))
      .returning({ purpose: deviceSecrets.purpose });
    return removed.length;
  }
}

function matching(tenantId: string, deviceId: string, purpose: string) {
  return and(
    eq(deviceSecrets.tenantId, tenantId),
    eq(deviceSecrets.deviceId, deviceId),
    eq(deviceSecrets.purpose, purpose),
  );
}

/** Ties a sealed value to its row, so it cannot be moved to another device or purpose. */
function bindingOf(tenantId: string, deviceId: string, purpose: string): string {
  return associatedData('device-secret', tenantId, deviceId, purpose);
}
