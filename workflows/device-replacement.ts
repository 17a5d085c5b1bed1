/**
 * Replacing a device with a new unit (RMA) and provisioning an active device again on purpose: each
 * one workflow, visible as one job. The new run is an ordinary `provisionDevice` child, planned as
 * every run is; only once it has succeeded is the old unit decommissioned (replacement) or the old
 * certificate revoked as superseded (re-provisioning), so a failed new run leaves the old one as it was.
 */
import {
  ApplicationFailure,
  ParentClosePolicy,
  executeChild,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError, WorkflowIdReusePolicy } from '@temporalio/common';
import type { DeviceLifecycleActivities } from '../activities/device-lifecycle';
import type { ProvisioningActivities } from '../activities/provisioning';
import { nonRetryableErrorTypes } from '../foundation/errors';
import { provisioningWorkflowId, startProvisioning } from '../contracts/provisioning';
import {
  decommissionWorkflowId,
  replacementProgressQuery,
  reprovisioningProgressQuery,
  startDecommission,
  type ReplaceDeviceInput,
  type ReplacementProgress,
  type ReprovisionInput,
  type ReprovisioningProgress,
} from '../contracts/device-lifecycle';
import type { decommissionDevice } from './decommission-device';
import { describeFailure } from './failures';
import type { provisionDevice } from './provision-device';

type Activities = Pick<DeviceLifecycleActivities, 'recordDeviceReplacement' | 'revokeSupersededCertificate'> & Pick<ProvisioningActivities, 'recordAuditEvent'>;

/** The records and the CA: must eventually happen, so retried for as long as it takes. */
const bookkeeping = proxyActivities<Activities>({
  startToCloseTimeout: '1m',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m', nonRetryableErrorTypes },
});

function auditFor(tenantId: string, deviceId: string, reason: string) {
  return (action: string, details: Record<string, unknown> = {}, outcome: 'success' | 'failure' = 'success') =>
    bookkeeping.recordAuditEvent({
      tenantId,
      actor: workflowInfo().workflowId,
      actorType: 'workflow',
      action,
      outcome,
      targetType: 'device',
      targetId: deviceId,
      details: { jobId: workflowInfo().workflowId, reason, ...details },
    });
}

/** The job fails, named by what failed; its progress (still queryable) says the same. */
async function failJob(
  progress: { state: string; error?: string; completedAt?: string },
  error: unknown,
  audit: ReturnType<typeof auditFor>,
  action: string,
): Promise<never> {
  progress.state = 'failed';
  progress.error = describeFailure(error);
  progress.completedAt = new Date().toISOString();
  await audit(action, { error: progress.error }, 'failure');
  throw ApplicationFailure.nonRetryable(progress.error, 'DeviceLifecycleFailed');
}

export async function replaceDevice(input: ReplaceDeviceInput): Promise<ReplacementProgress> {
  const { tenantId, oldDeviceId, reason } = input;
  const newDeviceId = input.provisioning.device.deviceId;
  const progress: ReplacementProgress = {
    tenantId,
    oldDeviceId,
    newDeviceId,
    reason,
    requestedBy: input.requestedBy,
    state: 'provisioning',
    provisioningId: provisioningWorkflowId(tenantId, newDeviceId),
    startedAt: workflowInfo().startTime.toISOString(),
  };
  setHandler(replacementProgressQuery, () => progress);
  const audit = auditFor(tenantId, oldDeviceId, reason);
  await audit('device.replacement_started', { newDeviceId, requestedBy: input.requestedBy });

  try {
    await executeChild<typeof provisionDevice>('provisionDevice', {
      ...startProvisioning(input.provisioning),
      // The new unit's provisioning stands on its own, whatever becomes of this job.
      parentClosePolicy: ParentClosePolicy.ABANDON,
    });
  } catch (error) {
    return failJob(progress, error, audit, 'device.replacement_failed');
  }

  progress.state = 'decommissioning';
  progress.decommissionId = decommissionWorkflowId(tenantId, oldDeviceId);
  await bookkeeping.recordDeviceReplacement({ tenantId, oldDeviceId, newDeviceId });
  try {
    await executeChild<typeof decommissionDevice>('decommissionDevice', {
      ...startDecommission({ tenantId, deviceId: oldDeviceId, reason: `replaced by ${newDeviceId}: ${reason}`, requestedBy: input.requestedBy, replacedBy: newDeviceId }),
      parentClosePolicy: ParentClosePolicy.ABANDON,
    });
  } catch (error) {
    // Someone is decommissioning the old unit already: that decommissioning is this one.
    if (!(error instanceof WorkflowExecutionAlreadyStartedError)) return failJob(progress, error, audit, 'device.replacement_failed');
  }

  progress.state = 'completed';
  progress.completedAt = new Date().toISOString();
  await audit('device.replaced', { newDeviceId });
  return progress;
}

export async function reprovisionDevice(input: ReprovisionInput): Promise<ReprovisioningProgress> {
  const { tenantId, deviceId, reason } = input;
  const progress: ReprovisioningProgress = {
    tenantId,
    deviceId,
    reason,
    requestedBy: input.requestedBy,
    state: 'provisioning',
    provisioningId: provisioningWorkflowId(tenantId, deviceId),
    ...(input.previousCertificateId ? { previousCertificateId: input.previousCertificateId } : {}),
    startedAt: workflowInfo().startTime.toISOString(),
  };
  setHandler(reprovisioningProgressQuery, () => progress);
  const audit = auditFor(tenantId, deviceId, reason);
  await audit('device.reprovisioning_started', { requestedBy: input.requestedBy });

  /** The old certificate goes once the device no longer uses it: after the new run, or after it failed past installing its own. */
  const revokePrevious = async () => {
    if (!input.previousCertificateId) return;
    const { revoked } = await bookkeeping.revokeSupersededCertificate({ tenantId, deviceId, certificateId: input.previousCertificateId, actor: workflowInfo().workflowId });
    progress.previousCertificateRevoked = revoked;
  };

  try {
    const record = await executeChild<typeof provisionDevice>('provisionDevice', {
      ...startProvisioning(input.provisioning),
      // The device's earlier run completed under the same id: this job is the guard against doing it twice.
      workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
      parentClosePolicy: ParentClosePolicy.ABANDON,
    });
    progress.newCertificateSerial = record.certificateInfo?.serialNumber;
  } catch (error) {
    await revokePrevious();
    return failJob(progress, error, audit, 'device.reprovisioning_failed');
  }

  // The new certificate is installed and the device activated on it: the old one is no longer in use.
  progress.state = 'revoking';
  await revokePrevious();

  progress.state = 'completed';
  progress.completedAt = new Date().toISOString();
  await audit('device.reprovisioned', { certificateSerial: progress.newCertificateSerial, previousCertificateRevoked: progress.previousCertificateRevoked ?? false });
  return progress;
}
