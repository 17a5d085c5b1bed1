/**
 * Device-facing activities of a site served by an edge worker run on the site's own task queue
 * (contracts/site-workers.ts). Work for such a site waits, durably, while no worker polls that
 * queue: an activity's schedule-to-start time is left unlimited, and the schedule-to-close bound
 * goes too, since it would count the wait against the device's retry window and fail a run whose
 * site worker is only away. The retry window is kept as the number of attempts that fit in it.
 */
import type { Duration } from '@temporalio/common';
import { msToNumber } from '@temporalio/common/lib/time';
import { patched, proxyActivities, type ActivityOptions, type RetryPolicy } from '@temporalio/workflow';
import type { SiteRoutingActivities } from '../activities/site-routing';

/** Attempts whose backoff intervals (initial, doubled by the coefficient, capped) add up to the window. */
export function attemptsWithin(windowSeconds: number, retry: RetryPolicy): number {
  const initial = durationSeconds(retry.initialInterval ?? '1s');
  const maximum = retry.maximumInterval === undefined ? initial * 100 : durationSeconds(retry.maximumInterval);
  const coefficient = retry.backoffCoefficient ?? 2;
  let attempts = 1;
  let waited = 0;
  let interval = initial;
  while (waited + interval <= windowSeconds) {
    waited += interval;
    attempts += 1;
    interval = Math.min(interval * coefficient, maximum);
  }
  return attempts;
}

/**
 * `options` for a device step, moved onto the site's queue when there is one. A step that must not
 * hold up what comes after it (a decommission's revocation, the other devices of a drift check or a
 * rollout) gives `waitForWorkerAtMost`: if no worker of the site takes it within that time it fails,
 * as an unreachable device would, instead of waiting for the site's worker to come back.
 */
export function onSiteQueue(options: ActivityOptions, siteTaskQueue: string | undefined, waitForWorkerAtMost?: Duration): ActivityOptions {
  if (!siteTaskQueue) return options;
  const { scheduleToCloseTimeout, ...rest } = options;
  const windowSeconds = scheduleToCloseTimeout === undefined ? undefined : durationSeconds(scheduleToCloseTimeout);
  const retry = options.retry ?? {};
  return {
    ...rest,
    ...(waitForWorkerAtMost === undefined ? {} : { scheduleToStartTimeout: waitForWorkerAtMost }),
    taskQueue: siteTaskQueue,
    retry: { ...retry, ...(retry.maximumAttempts === undefined && windowSeconds !== undefined ? { maximumAttempts: attemptsWithin(windowSeconds, retry) } : {}) },
  };
}

function durationSeconds(duration: Duration): number {
  return msToNumber(duration) / 1000;
}

/** Marks sweeps that ask where their site's device work runs; sweeps before it ran everything centrally. */
const sweepsRouteBySite = 'sweeps-route-by-site';
/**
 * Marks device work (credential rotation, decommissioning, renewal installs, configuration rollouts
 * and drift checks) that asks where its device's site runs its device work; runs before it reached
 * every device centrally.
 */
const devicesRouteBySite = 'devices-route-by-site';

/** A look-up in the database: quick, and only transiently unavailable. */
const routing = proxyActivities<SiteRoutingActivities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 10 },
});

/**
 * The queue a sweep's device-facing activities for `site` run on: the site's own when an edge
 * worker serves it, else undefined (the sweep's own queue).
 */
export async function siteDeviceTaskQueue(tenantId: string, site: string): Promise<string | undefined> {
  if (!patched(sweepsRouteBySite)) return undefined;
  return (await routing.siteDeviceTaskQueue({ tenantId, site })) ?? undefined;
}

/** As `siteDeviceTaskQueue`, for the site the registry places a device at. */
export async function deviceSiteTaskQueue(tenantId: string, deviceId: string): Promise<string | undefined> {
  if (!patched(devicesRouteBySite)) return undefined;
  return (await routing.deviceSiteTaskQueue({ tenantId, deviceId })) ?? undefined;
}
