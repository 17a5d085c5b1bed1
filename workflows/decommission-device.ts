/**
 * Takes a device out of the fleet for good, kept for the record: ends its workflows (so nothing
 * issues it another certificate), removes what provisioning created on the device where the
 * protocol allows, revokes every certificate it holds (`cessationOfOperation`), forgets its secrets
 * and marks it decommissioned, each step audited. Every activity is safe to repeat, so a worker
 * killed half-way loses nothing; a device that cannot be reached is tried a bounded number of times
 * and then recorded as not cleaned up, never holding the decommissioning up.
 */
import { proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { DeviceLifecycleActivities } from '../activities/device-lifecycle';
import type { ProvisioningActivities } from '../activities/provisioning';
import { nonRetryableErrorTypes } from '../foundation/errors';
import {
  decommissionProgressQuery,
  decommissionSteps,
  type DecommissionInput,
  type DecommissionProgress,
  type DecommissionStepName,
} from '../contracts/device-lifecycle';
import { describeFailure } from './failures';
import { deviceSiteTaskQueue, onSiteQueue } from './site-routing';

type Activities = DeviceLifecycleActivities & Pick<ProvisioningActivities, 'recordAuditEvent'>;

/** The records and the CA: must eventually happen, so retried for as long as it takes. */
const bookkeeping = proxyActivities<Activities>({
  startToCloseTimeout: '2m',
  heartbeatTimeout: '10s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m', nonRetryableErrorTypes },
});

/**
 * The device itself: it may be dead (that may be why it goes), so a few tries and then on without
 * it. On a site served by an edge worker, the device is reached from the site, by that worker. The
 * certificates are revoked only after this step, so it never waits for an absent site worker longer
 * than it would try an unreachable device (five minutes): then the decommission goes on without it.
 */
const onDevice = (siteTaskQueue: string | undefined) =>
  proxyActivities<Activities>(
    onSiteQueue(
      {
        startToCloseTimeout: '45s',
        heartbeatTimeout: '10s',
        scheduleToCloseTimeout: '5m',
        retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 5, nonRetryableErrorTypes },
      },
      siteTaskQueue,
      '5m',
    ),
  );

export async function decommissionDevice(input: DecommissionInput): Promise<DecommissionProgress> {
  const { tenantId, deviceId, reason } = input;
  const actor = workflowInfo().workflowId;
  const progress: DecommissionProgress = {
    tenantId,
    deviceId,
    reason,
    requestedBy: input.requestedBy,
    state: 'running',
    steps: decommissionSteps.map((step) => ({ step, status: 'pending' })),
    endedWorkflows: [],
    revokedCertificates: [],
    startedAt: workflowInfo().startTime.toISOString(),
  };
  setHandler(decommissionProgressQuery, () => progress);

  const audit = (action: string, details: Record<string, unknown> = {}, outcome: 'success' | 'failure' = 'success') =>
    bookkeeping.recordAuditEvent({
      tenantId,
      actor,
      actorType: 'workflow',
      action,
      outcome,
      targetType: 'device',
      targetId: deviceId,
      details: { decommissionId: actor, reason, ...details },
    });

  /** Runs one step, recording it in the progress and the audit trail. */
  async function step<T>(name: DecommissionStepName, perform: () => Promise<T>, describe: (result: T) => { detail: string; details: Record<string, unknown> }) {
    const entry = progress.steps.find((s) => s.step === name)!;
    entry.status = 'in_progress';
    const result = await perform();
    const { detail, details } = describe(result);
    entry.status = 'completed';
    entry.detail = detail;
    await audit(auditAction(name), details);
    return result;
  }

  await audit('device.decommission_started', { requestedBy: input.requestedBy, ...(input.replacedBy ? { replacedBy: input.replacedBy } : {}) });

  await step(
    'endWorkflows',
    () => bookkeeping.endDeviceWorkflows({ tenantId, deviceId, reason: `device decommissioned: ${reason}`, since: progress.startedAt }),
    ({ ended }) => {
      progress.endedWorkflows = ended;
      return { detail: ended.length > 0 ? `ended ${ended.join(', ')}` : 'none running', details: { ended } };
    },
  );

  const access = progress.steps.find((s) => s.step === 'removeManagementAccess')!;
  const device = onDevice(await deviceSiteTaskQueue(tenantId, deviceId));
  try {
    await step(
      'removeManagementAccess',
      () => device.removeDeviceManagementAccess({ tenantId, deviceId, resetToInstallKey: input.resetToInstallKey }),
      ({ supported, removed }) => {
        progress.managementAccess = supported
          ? { removed: true, items: removed }
          : { removed: false, items: [], reason: 'the protocol offers no way to remove it' };
        return { detail: supported ? `removed ${removed.join(', ') || 'nothing'}` : 'not supported by the protocol', details: progress.managementAccess };
      },
    );
    if (!progress.managementAccess?.removed) access.status = 'skipped';
  } catch (error) {
    access.status = 'failed';
    access.detail = describeFailure(error);
    progress.managementAccess = { removed: false, items: [], reason: access.detail };
    await audit(auditAction('removeManagementAccess'), progress.managementAccess, 'failure');
  }

  await step(
    'revokeCertificates',
    () => bookkeeping.revokeAllDeviceCertificates({ tenantId, deviceId, reason: 'cessationOfOperation', actor }),
    ({ serials }) => {
      progress.revokedCertificates = serials;
      return { detail: `revoked ${serials.length} certificate(s)`, details: { serials, revocationReason: 'cessationOfOperation' } };
    },
  );

  await step(
    'removeSecrets',
    () => bookkeeping.removeDeviceSecrets({ tenantId, deviceId }),
    ({ removed }) => {
      progress.removedSecrets = removed;
      return { detail: `removed ${removed} secret(s)`, details: { removed } };
    },
  );

  await step(
    'markDecommissioned',
    () => bookkeeping.markDeviceDecommissioned({ tenantId, deviceId, reason }),
    ({ decommissionedAt }) => ({ detail: `decommissioned at ${decommissionedAt}`, details: { decommissionedAt } }),
  );

  progress.state = 'completed';
  progress.completedAt = new Date().toISOString();
  await audit('device.decommissioned', { managementAccessRemoved: progress.managementAccess?.removed ?? false });
  return progress;
}

/** `device.decommission.remove_management_access`: audit actions are dotted lower-case words. */
function auditAction(step: DecommissionStepName): string {
  return `device.decommission.${step.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`)}`;
}
