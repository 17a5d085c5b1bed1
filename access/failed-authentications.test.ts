import { describe, expect, it } from 'vitest';
import { FailedAuthenticationThrottle } from './failed-authentications';

describe('FailedAuthenticationThrottle', () => {
  it('allows a burst of failures per key, then blocks until the refill rate allows one more', () => {
    const throttle = new FailedAuthenticationThrottle({ burst: 2, perMinute: 6 });
    const keys = ['address:10.0.0.1'];
    expect(throttle.retryAfterSeconds(keys, 0)).toBeUndefined();
    throttle.recordFailure(keys, 0);
    throttle.recordFailure(keys, 0);
    expect(throttle.retryAfterSeconds(keys, 0)).toBe(10);
    expect(throttle.retryAfterSeconds(['address:10.0.0.2'], 0)).toBeUndefined();
    expect(throttle.retryAfterSeconds(keys, 10_000)).toBeUndefined();
  });
});
