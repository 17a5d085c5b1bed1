/**
 * Reading the failures activities raise, for workflows' records: the service error beneath
 * Temporal's wrappers, its type, its message and how many attempts it took.
 */
import { ActivityFailure, ApplicationFailure, TimeoutFailure, isCancellation } from '@temporalio/workflow';

/** The failure the device or CA actually raised, beneath Temporal's activity and timeout wrappers. */
export function rootCause(error: unknown): unknown {
  let current = error;
  while ((current instanceof ActivityFailure || current instanceof TimeoutFailure) && current.cause) {
    current = current.cause;
  }
  return current;
}

export function failureType(error: unknown): string {
  const cause = rootCause(error);
  if (cause instanceof ApplicationFailure && cause.type) return cause.type;
  return cause instanceof Error ? cause.name : 'Error';
}

export function describeFailure(error: unknown): string {
  if (isCancellation(error)) return 'cancelled';
  const cause = rootCause(error);
  return cause instanceof Error ? cause.message : String(cause);
}

/** Activities attach the attempt number to the failures they raise (see activities/step.ts). */
export function attemptsOf(error: unknown): number {
  const cause = rootCause(error);
  if (cause instanceof ApplicationFailure) {
    const details = cause.details?.[0] as { attempt?: number } | undefined;
    if (typeof details?.attempt === 'number') return details.attempt;
  }
  return 1;
}

/** An activity failure no retry could mend (non-retryable), as opposed to a timeout or a cancellation. */
export function isFailureForGood(error: unknown): boolean {
  if (isCancellation(error)) return false;
  const cause = rootCause(error);
  return cause instanceof ApplicationFailure && cause.nonRetryable === true;
}
