import { WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError } from '@temporalio/client';
import { describe, expect, it } from 'vitest';
import { ConflictError, DependencyUnavailableError, NotFoundError, ValidationError } from './errors';
import { fromWorkflowError, isWorkflowNotFound } from './workflow-errors';

describe('Temporal client errors in the service terms', () => {
  it('makes a missing run a 404, a run already started a 409 and anything else a retryable 503, passing the service errors through', () => {
    const what = 'rollout r-17';
    expect(fromWorkflowError(new WorkflowNotFoundError('gone', 'rollout:acme:r-17', undefined), { what })).toEqual(new NotFoundError('rollout r-17 not found'));
    expect(fromWorkflowError(new WorkflowExecutionAlreadyStartedError('started', 'rollout:acme:r-17', 'configRollout'), { what })).toBeInstanceOf(ConflictError);
    const unavailable = fromWorkflowError(new Error('14 UNAVAILABLE: connection refused'), { what });
    expect(unavailable).toBeInstanceOf(DependencyUnavailableError);
    expect((unavailable as DependencyUnavailableError).retryable).toBe(true);
    const own = new ValidationError('bad');
    expect(fromWorkflowError(own, { what })).toBe(own);
  });

  it('recognises a gRPC NOT_FOUND as a missing run', () => {
    expect(isWorkflowNotFound(Object.assign(new Error('5 NOT_FOUND: workflow not found'), { code: 5 }))).toBe(true);
    expect(isWorkflowNotFound(new Error('something else'))).toBe(false);
  });
});
