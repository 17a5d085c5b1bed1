/**
 * Throttling clients that keep presenting wrong credentials (EST logins, enrolment tokens): what
 * they may still try is counted in failures, so a client that gets it right is never slowed down.
 */

export interface FailedAuthenticationLimits {
  /** Failures a client address (or a device id) may have in a burst... */
  burst: number;
  /** ...and how many more it regains per minute. */
  perMinute: number;
}

/**
 * Token buckets of failures, per key (a client address, a device id): a client may fail `burst`
 * times, then once per `60 / perMinute` seconds. In memory, per process.
 */
export class FailedAuthenticationThrottle {
  readonly #buckets = new Map<string, { tokens: number; updatedAt: number }>();
  readonly #limits: FailedAuthenticationLimits;
  readonly #maximumTracked = 100_000;

  constructor(limits: FailedAuthenticationLimits) {
    this.#limits = limits;
  }

  /** Seconds until one of the keys may fail again, or undefined when none is blocked. */
  retryAfterSeconds(keys: readonly string[], now = Date.now()): number | undefined {
    let wait: number | undefined;
    for (const key of keys) {
      const tokens = this.#tokens(key, now);
      if (tokens < 1) {
        const seconds = Math.max(1, Math.ceil(((1 - tokens) * 60) / this.#limits.perMinute));
        wait = Math.max(wait ?? 0, seconds);
      }
    }
    return wait;
  }

  recordFailure(keys: readonly string[], now = Date.now()): void {
    for (const key of keys) {
      const tokens = this.#tokens(key, now);
      this.#buckets.delete(key);
      this.#buckets.set(key, { tokens: tokens - 1, updatedAt: now });
      if (this.#buckets.size > this.#maximumTracked) this.#buckets.delete(this.#buckets.keys().next().value!);
    }
  }

  #tokens(key: string, now: number): number {
    const bucket = this.#buckets.get(key);
    if (!bucket) return this.#limits.burst;
    return Math.min(this.#limits.burst, bucket.tokens + ((now - bucket.updatedAt) * this.#limits.perMinute) / 60_000);
  }
}
