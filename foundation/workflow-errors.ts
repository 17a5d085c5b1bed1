/**
 * What the Temporal client throws, in the service's own terms, in one place: a run that does not
 * exist is a 404, one already started a 409, anything else from the workflow service a 503 that
 * may be retried. Errors that already are the service's pass through.
 */
import { WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError } from '@temporalio/client';
import { ConflictError, DependencyUnavailableError, NotFoundError, ServiceError } from './errors';

export interface WorkflowErrorWording {
  /** What the run is to the caller, e.g. `rollout r-17`: "<what> not found". */
  what: string;
  notFound?: string;
  alreadyStarted?: string;
}

export function isWorkflowNotFound(error: unknown): boolean {
  if (error instanceof WorkflowNotFoundError) return true;
  // Some calls (queries of a run that just closed, describes of a deleted one) report it as a gRPC NOT_FOUND.
  return error instanceof Error && (error as { code?: number }).code === 5;
}

export function fromWorkflowError(error: unknown, wording: WorkflowErrorWording): Error {
  if (error instanceof ServiceError) return error;
  if (isWorkflowNotFound(error)) return new NotFoundError(wording.notFound ?? `${wording.what} not found`);
  if (error instanceof WorkflowExecutionAlreadyStartedError) {
    return new ConflictError(wording.alreadyStarted ?? `${wording.what} was already started`);
  }
  const message = error instanceof Error ? error.message : String(error);
  return new DependencyUnavailableError(`the workflow service could not answer: ${message}`, { cause: error });
}
