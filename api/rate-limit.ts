/**
 * Per-caller request budgets (token buckets): each authenticated principal, and each client address
 * for unauthenticated calls, may burst up to its capacity and then continues at the refill rate.
 * Kept in memory: each API process enforces its own share.
 */
import { TooManyRequestsError } from '../foundation/errors';

interface Bucket {
  tokens: number;
  updatedAt: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly refillPerMs: number;

  constructor(
    private readonly options: { perMinute: number; burst?: number; now?: () => number; maxTracked?: number },
  ) {
    this.refillPerMs = options.perMinute / 60_000;
  }

  private get capacity(): number {
    return this.options.burst ?? this.options.perMinute;
  }

  take(key: string): void {
    const now = (this.options.now ?? Date.now)();
    const bucket = this.buckets.get(key) ?? { tokens: this.capacity, updatedAt: now };
    bucket.tokens = Math.min(this.capacity, bucket.tokens + (now - bucket.updatedAt) * this.refillPerMs);
    bucket.updatedAt = now;
    if (bucket.tokens < 1) {
      const waitMs = (1 - bucket.tokens) / this.refillPerMs;
      throw new TooManyRequestsError('too many requests; slow down', Math.max(1, Math.ceil(waitMs / 1000)));
    }
    bucket.tokens -= 1;
    // Re-insert so the map's order is least-recently-used first, then drop the oldest if too many.
    this.buckets.delete(key);
    this.buckets.set(key, bucket);
    if (this.buckets.size > (this.options.maxTracked ?? 100_000)) {
      this.buckets.delete(this.buckets.keys().next().value!);
    }
  }
}
