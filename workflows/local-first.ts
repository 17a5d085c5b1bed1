/**
 * Activities tried first in the worker that runs the workflow. A local activity leaves one marker
 * in the history where a regular one costs Temporal a task to schedule, dispatch and record, so a
 * run whose steps all succeed at once costs a fraction of the work. An attempt that fails for a
 * reason a retry may mend (a timeout, a device that is rebooting) falls back to the regular
 * activity, which heartbeats and retries over its whole window, on any worker. A failure for good
 * or a cancellation ends the call as it would have anyway.
 */
import {
  isCancellation,
  log,
  proxyActivities,
  proxyLocalActivities,
  type ActivityInterfaceFor,
  type ActivityOptions,
} from '@temporalio/workflow';
import type { Duration } from '@temporalio/common';
import { attemptsOf, describeFailure, isFailureForGood } from './failures';

export interface ActivityRoute<A> {
  /** Absent where the activities run only as regular activities. */
  local?: ActivityInterfaceFor<A>;
  remote: ActivityInterfaceFor<A>;
}

/**
 * The regular activities with `options`, and with `localFirst`, one local attempt of at most
 * `localTimeout` before them: a step slower than that is better off heartbeating.
 */
export function activityRoute<A>(options: ActivityOptions, localFirst: boolean, localTimeout: Duration): ActivityRoute<A> {
  return {
    remote: proxyActivities<A>(options),
    ...(localFirst ? { local: proxyLocalActivities<A>({ startToCloseTimeout: localTimeout, retry: { maximumAttempts: 1 } }) } : {}),
  };
}

/**
 * Calls `call` with the local activities, then, if that attempt failed for a reason a retry may
 * mend, with the regular ones; `fellBack` learns how many attempts were made locally.
 */
export async function callLocalFirst<A, R>(
  route: ActivityRoute<A>,
  call: (activities: ActivityInterfaceFor<A>) => Promise<R>,
  fellBack?: (localAttempts: number) => void,
): Promise<R> {
  if (!route.local) return call(route.remote);
  try {
    return await call(route.local);
  } catch (error) {
    if (isCancellation(error) || isFailureForGood(error)) throw error;
    log.info('a local attempt failed; the regular activity takes over', { error: describeFailure(error) });
    fellBack?.(attemptsOf(error));
    return call(route.remote);
  }
}
