/**
 * Wraps an activity so that (a) the workflow learns how many attempts a step took, for the
 * record's retryCount, (b) the service's errors become Temporal failures whose type and
 * retryability come from the error class (for the database's own refusals, from its SQLSTATE), in
 * one place, and (c) it heartbeats while it runs, so a worker that dies mid-step is noticed within
 * the heartbeat timeout rather than the step timeout.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import { ServiceError } from '../foundation/errors';
import { isDataException } from '../foundation/validation';

/** Well inside the workflows' heartbeat timeout (10 s). */
const heartbeatIntervalMs = 2_000;

export type Attempted<T> = T & { attempt: number };

export function toActivityFailure(error: unknown, attempt: number): ApplicationFailure {
  if (error instanceof ApplicationFailure) return error;
  if (error instanceof ServiceError) {
    return ApplicationFailure.create({
      type: error.name,
      message: error.message,
      nonRetryable: !error.retryable,
      details: [{ attempt, fields: error.fields }],
    });
  }
  // Anything unexpected (a bug, a driver hiccup) is retried: the step's retry window bounds it.
  // Data the database refuses as such never becomes storable, so that alone fails at once.
  const message = error instanceof Error ? error.message : String(error);
  return ApplicationFailure.create({
    type: error instanceof Error ? error.name : 'Error',
    message,
    nonRetryable: isDataException(error),
    details: [{ attempt }],
  });
}

/**
 * Heartbeats while `action` runs, so that a worker that dies holding the activity is noticed within
 * the caller's heartbeat timeout. A local attempt has no heartbeat: the workflow task it runs in is
 * kept alive instead.
 */
export async function whileHeartbeating<R>(action: () => Promise<R>): Promise<R> {
  const context = Context.current();
  const heartbeat = context.info.isLocal ? undefined : setInterval(() => context.heartbeat(), heartbeatIntervalMs);
  try {
    return await action();
  } finally {
    clearInterval(heartbeat);
  }
}

/** Each of `activities`, heartbeating while it runs (see `whileHeartbeating`). */
export function heartbeatingAll<T extends Record<string, (input: never) => Promise<unknown>>>(activities: T): T {
  return Object.fromEntries(
    Object.entries(activities).map(([name, activity]) => [name, (input: never) => whileHeartbeating(() => activity(input))]),
  ) as T;
}

export function provisioningStep<A extends unknown[], R extends object>(
  action: (...args: A) => Promise<R>,
): (...args: A) => Promise<Attempted<R>> {
  return async (...args: A) => {
    const { attempt } = Context.current().info;
    try {
      return { ...(await whileHeartbeating(() => action(...args))), attempt };
    } catch (error) {
      throw toActivityFailure(error, attempt);
    }
  };
}
