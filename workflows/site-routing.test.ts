import { describe, expect, it } from 'vitest';
import { attemptsWithin, onSiteQueue } from './site-routing';

const deviceRetry = { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s' } as const;

describe('device steps on a site queue', () => {
  it('keep the retry window as the attempts its backoff fits: 24 in the default 600 s', () => {
    expect(attemptsWithin(600, deviceRetry)).toBe(24);
    expect(attemptsWithin(0, deviceRetry)).toBe(1);
    expect(attemptsWithin(3, deviceRetry)).toBe(3);
  });

  it('move to the site queue without a schedule-to-close bound, so waiting for the site worker never fails them', () => {
    const options = onSiteQueue({ startToCloseTimeout: '45s', scheduleToCloseTimeout: '600s', retry: deviceRetry }, 'q/sites/acme/north');
    expect(options).toEqual({ startToCloseTimeout: '45s', taskQueue: 'q/sites/acme/north', retry: { ...deviceRetry, maximumAttempts: 24 } });
    expect(options).not.toHaveProperty('scheduleToStartTimeout');
  });

  it('keep an explicit attempt limit, and stay as they are for a site run centrally', () => {
    const limited = { startToCloseTimeout: '45s', scheduleToCloseTimeout: '600s', retry: { ...deviceRetry, maximumAttempts: 5 } };
    expect(onSiteQueue(limited, 'q/sites/acme/north').retry).toEqual(limited.retry);
    expect(onSiteQueue(limited, undefined)).toBe(limited);
  });

  it('wait for an absent site worker no longer than a step that must not hold up the rest asks, and only on a site queue', () => {
    const decommissionStep = { startToCloseTimeout: '45s', scheduleToCloseTimeout: '5m', retry: { ...deviceRetry, maximumAttempts: 5 } };
    expect(onSiteQueue(decommissionStep, 'q/sites/acme/north', '5m')).toEqual({
      startToCloseTimeout: '45s',
      scheduleToStartTimeout: '5m',
      taskQueue: 'q/sites/acme/north',
      retry: decommissionStep.retry,
    });
    expect(onSiteQueue(decommissionStep, undefined, '5m')).toBe(decommissionStep);
  });
});
