/**
 * Waiting, durably, for a person to approve a provisioning run: the `approval` update's validator
 * accepts decisions only from an approving role of the same tenant who did not request the run;
 * without a decision the request is escalated, and after the timeout it is refused.
 */
import { ApplicationFailure, condition, setHandler } from '@temporalio/workflow';
import {
  approvalUpdate,
  approvingRoles,
  type ApprovalOutcome,
  type ApprovalRequirement,
  type DeviceProvisioningRecord,
} from '../contracts/provisioning';

export interface ApprovalContext {
  tenantId: string;
  requestedBy?: string;
  record: DeviceProvisioningRecord;
  /** Called when the wait passes `escalateAfterSeconds` without a decision. */
  escalate(waitingSince: string): Promise<void>;
  /** Called once an escalated request is decided or has timed out. */
  closeEscalation(): Promise<void>;
  /** Puts the request and its outcome on record. */
  audit(action: string, outcome: 'success' | 'failure', actor: string, details: Record<string, unknown>): Promise<void>;
}

function refuse(message: string): never {
  throw ApplicationFailure.create({ type: 'ApproverNotAllowed', message, nonRetryable: true });
}

/** Resolves when approved; throws a non-retryable failure when rejected or timed out. */
export async function awaitApproval(requirement: ApprovalRequirement, context: ApprovalContext): Promise<ApprovalOutcome> {
  const { record } = context;
  const step = record.provisioningSteps.find((s) => s.step === 'approval')!;
  const since = new Date();
  let outcome: ApprovalOutcome | undefined;

  setHandler(
    approvalUpdate,
    ({ decision, approver, comment }) => {
      outcome = { decision, decidedBy: approver.subject, decidedAt: new Date().toISOString(), ...(comment ? { comment } : {}) };
      return outcome;
    },
    {
      validator: ({ decision, approver }) => {
        if (outcome) throw ApplicationFailure.create({ type: 'AlreadyDecided', message: `already ${outcome.decision}d by ${outcome.decidedBy}` });
        if (decision !== 'approve' && decision !== 'reject') refuse('decision must be approve or reject');
        if (approver.tenantId !== context.tenantId) refuse('approvers may only decide for their own tenant');
        if (!approvingRoles.includes(approver.role)) refuse(`the ${approver.role} role may not approve provisioning`);
        if (context.requestedBy && approver.subject === context.requestedBy) refuse('the requester may not approve their own request');
      },
    },
  );

  step.status = 'in_progress';
  step.startedAt = since.toISOString();
  record.metadata.awaitingApproval = {
    policyIds: requirement.policyIds,
    since: since.toISOString(),
    timeoutAt: new Date(since.getTime() + requirement.timeoutSeconds * 1000).toISOString(),
  };
  await context.audit('approval.requested', 'success', 'workflow', { policyIds: requirement.policyIds });

  const timeoutMs = requirement.timeoutSeconds * 1000;
  const escalateMs = requirement.escalateAfterSeconds !== undefined ? requirement.escalateAfterSeconds * 1000 : undefined;
  let decided = false;
  let escalated = false;
  if (escalateMs !== undefined && escalateMs < timeoutMs) {
    decided = await condition(() => outcome !== undefined, escalateMs);
    if (!decided) {
      escalated = true;
      record.metadata.approvalEscalatedAt = new Date().toISOString();
      await context.escalate(since.toISOString());
    }
  }
  if (!decided) decided = await condition(() => outcome !== undefined, timeoutMs - (Date.now() - since.getTime()));
  if (escalated) await context.closeEscalation();

  delete record.metadata.awaitingApproval;
  step.completedAt = new Date().toISOString();
  if (!decided || !outcome) {
    // Late decisions are refused by the validator from now on.
    outcome = { decision: 'reject', decidedBy: 'timeout', decidedAt: step.completedAt };
    step.status = 'failed';
    step.error = `no decision within ${requirement.timeoutSeconds} s`;
    await context.audit('approval.timed_out', 'failure', 'workflow', { timeoutSeconds: requirement.timeoutSeconds });
    throw ApplicationFailure.nonRetryable(step.error, 'ApprovalTimedOut');
  }

  record.metadata.approval = outcome;
  const approved = outcome.decision === 'approve';
  await context.audit(approved ? 'approval.granted' : 'approval.rejected', approved ? 'success' : 'failure', outcome.decidedBy, {
    ...(outcome.comment ? { comment: outcome.comment } : {}),
  });
  if (!approved) {
    step.status = 'failed';
    step.error = `rejected by ${outcome.decidedBy}${outcome.comment ? `: ${outcome.comment}` : ''}`;
    throw ApplicationFailure.nonRetryable(step.error, 'ApprovalRejected');
  }
  step.status = 'completed';
  return outcome;
}
