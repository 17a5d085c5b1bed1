/**
 * Reads of a tenant's settings that every provisioning step asks for (its fleet policy, its
 * firmware catalogue), kept until they change. A write, in any process sharing the database, sends
 * a NOTIFY on the store's channel naming the tenant, and every process drops what it kept of that
 * tenant at once. A read is kept a minute at most whatever happens, should a notice be lost (a
 * dropped listening connection). A store given no notices keeps nothing.
 */
import type { DatabaseHandle } from './client';

const defaultMaxAgeMs = 60_000;
const maximumEntries = 10_000;

export class TenantReads<T> {
  readonly #channel: string;
  readonly #notices: Pick<DatabaseHandle, 'notify'> | undefined;
  readonly #maxAgeMs: number;
  readonly #entries = new Map<string, { value: T; readAt: number }>();
  /** Bumped at each change of a tenant: a read begun before it is not kept. */
  readonly #generations = new Map<string, number>();

  constructor(channel: string, notices: Pick<DatabaseHandle, 'notify'> | undefined, options: { maxAgeMs?: number } = {}) {
    this.#channel = channel;
    this.#notices = notices;
    this.#maxAgeMs = options.maxAgeMs ?? defaultMaxAgeMs;
  }

  /** What `load` reads for the tenant under `key`, kept until the tenant's next change. */
  async read(tenantId: string, key: string, load: () => Promise<T>): Promise<T> {
    if (!this.#notices) return load();
    const entryKey = `${tenantId}\0${key}`;
    const kept = this.#entries.get(entryKey);
    if (kept && Date.now() - kept.readAt < this.#maxAgeMs) return kept.value;
    const generation = this.#generations.get(tenantId) ?? 0;
    const readAt = Date.now();
    const value = await load();
    if ((this.#generations.get(tenantId) ?? 0) === generation) {
      this.#entries.delete(entryKey);
      if (this.#entries.size >= maximumEntries) this.#entries.delete(this.#entries.keys().next().value!);
      this.#entries.set(entryKey, { value, readAt });
    }
    return value;
  }

  /** After a write: this process forgets the tenant's reads, and tells every other one to. */
  async changed(tenantId: string): Promise<void> {
    this.forget(tenantId);
    await this.#notices?.notify(this.#channel, tenantId);
  }

  forget(tenantId: string): void {
    this.#generations.set(tenantId, (this.#generations.get(tenantId) ?? 0) + 1);
    for (const key of this.#entries.keys()) if (key.startsWith(`${tenantId}\0`)) this.#entries.delete(key);
  }

  /** Hears the changes other processes announce; returns the function that stops. */
  follow(database: Pick<DatabaseHandle, 'listen'>): Promise<() => Promise<void>> {
    return database.listen(this.#channel, (tenantId) => this.forget(tenantId));
  }
}
