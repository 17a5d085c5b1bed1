/**
 * Reads by key in batches: keys asked for in the same turn of the event loop, or while a read is
 * under way, are read together. Alone, a caller waits one turn; under load, many share one round
 * trip (a database's cost per query, not per key, is what this saves).
 */
export class BatchedReads<K, V> {
  readonly #read: (keys: K[]) => Promise<Map<K, V>>;
  readonly #maxBatch: number;
  readonly #waiting = new Map<K, { resolve: (value: V | undefined) => void; reject: (error: unknown) => void }[]>();
  #reading = false;

  /** `read` answers the keys it knows; a key missing from its map is answered undefined. */
  constructor(read: (keys: K[]) => Promise<Map<K, V>>, options: { maxBatch?: number } = {}) {
    this.#read = read;
    this.#maxBatch = options.maxBatch ?? 500;
  }

  get(key: K): Promise<V | undefined> {
    return new Promise((resolve, reject) => {
      const waiters = this.#waiting.get(key);
      if (waiters) waiters.push({ resolve, reject });
      else this.#waiting.set(key, [{ resolve, reject }]);
      if (!this.#reading) void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    this.#reading = true;
    // Wait for the rest of this turn of the event loop: requests that arrived together (an
    // embedded database blocks the loop while it reads, so they queue on the sockets) read together.
    await new Promise((resolve) => setImmediate(resolve));
    while (this.#waiting.size > 0) {
      const batch = new Map<K, { resolve: (value: V | undefined) => void; reject: (error: unknown) => void }[]>();
      for (const [key, waiters] of this.#waiting) {
        if (batch.size >= this.#maxBatch) break;
        batch.set(key, waiters);
      }
      for (const key of batch.keys()) this.#waiting.delete(key);
      try {
        const found = await this.#read([...batch.keys()]);
        for (const [key, waiters] of batch) for (const waiter of waiters) waiter.resolve(found.get(key));
      } catch (error) {
        for (const waiters of batch.values()) for (const waiter of waiters) waiter.reject(error);
      }
    }
    this.#reading = false;
  }
}
