/**
 * Rotation of a device's per-device management secrets: the device takes new ones, a fresh login
 * proves them and only then does the vault forget the old ones (the adapter's part, one activity
 * retried for as long as the device may be away); the registry notes when, the audit trail why,
 * and a rotation that cannot finish raises an alert, which the next good one resolves.
 * The tenant's schedule runs a sweep that rotates every active device whose secrets are older than
 * its fleet policy allows, a page at a time and a few side by side.
 */
import { ParentClosePolicy, WorkflowIdReusePolicy, continueAsNew, executeChild, isCancellation, proxyActivities, workflowInfo } from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type { CredentialRotationActivities } from '../activities/credential-rotation';
import { nonRetryableErrorTypes } from '../foundation/errors';
import {
  credentialRotationWorkflowId,
  type CredentialRotationInput,
  type CredentialRotationOutcome,
  type CredentialRotationSweepInput,
  type CredentialRotationSweepReport,
} from '../contracts/credential-rotation';
import { describeFailure, failureType } from './failures';
import { deviceSiteTaskQueue, onSiteQueue } from './site-routing';

/** Six hours of trying an unreachable device before giving up and alerting. */
const defaultRetryWindowSeconds = 6 * 3600;

/** On a site served by an edge worker, the device is reached from the site, by that worker. */
const onDevice = (retryWindowSeconds: number, siteTaskQueue: string | undefined) =>
  proxyActivities<CredentialRotationActivities>(
    onSiteQueue(
      {
        startToCloseTimeout: '2m',
        heartbeatTimeout: '10s',
        scheduleToCloseTimeout: `${retryWindowSeconds}s`,
        retry: { initialInterval: '5s', backoffCoefficient: 2, maximumInterval: '10m', nonRetryableErrorTypes },
      },
      siteTaskQueue,
    ),
  );

const bookkeeping = proxyActivities<CredentialRotationActivities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m', nonRetryableErrorTypes },
});

export async function rotateDeviceCredentials(input: CredentialRotationInput): Promise<CredentialRotationOutcome> {
  const device = onDevice(input.retryWindowSeconds ?? defaultRetryWindowSeconds, await deviceSiteTaskQueue(input.tenantId, input.deviceId));
  let rotated: string[];
  try {
    ({ rotated } = await device.rotateManagementSecrets({ tenantId: input.tenantId, deviceId: input.deviceId }));
  } catch (error) {
    if (isCancellation(error)) throw error;
    await bookkeeping.recordCredentialRotationFailure({ ...input, error: describeFailure(error), errorType: failureType(error) });
    throw error;
  }
  return bookkeeping.recordCredentialRotation({ ...input, rotated });
}

const pageSize = 200;
const listedInReport = 1_000;

/** Carried across continue-as-new. */
export interface CredentialRotationSweepState {
  /** Secrets last set before this are due; empty when the tenant rotates nothing. */
  dueBefore: string;
  concurrency: number;
  after?: string;
  report: CredentialRotationSweepReport;
}

export async function credentialRotationSweep(
  input: CredentialRotationSweepInput & { state?: CredentialRotationSweepState },
): Promise<CredentialRotationSweepReport> {
  const state = input.state ?? (await startingState(input));
  const { report } = state;
  if (!state.dueBefore) return report;
  for (;;) {
    const page = await bookkeeping.listDevicesDueForCredentialRotation({
      tenantId: input.tenantId,
      dueBefore: state.dueBefore,
      ...(state.after ? { after: state.after } : {}),
      limit: pageSize,
    });
    for (let start = 0; start < page.length; start += state.concurrency) {
      const chunk = page.slice(start, start + state.concurrency);
      await Promise.all(chunk.map((deviceId) => rotateOne(input.tenantId, deviceId, report)));
    }
    if (page.length < pageSize) break;
    state.after = page.at(-1);
    if (workflowInfo().continueAsNewSuggested) await continueAsNew<typeof credentialRotationSweep>({ ...input, state });
  }
  await bookkeeping.recordCredentialRotationSweep({ report });
  return report;
}

/** The policy as it stands when the sweep starts; no cut-off when the tenant rotates nothing. */
async function startingState(input: CredentialRotationSweepInput): Promise<CredentialRotationSweepState> {
  const policy = await bookkeeping.credentialRotationPolicy({ tenantId: input.tenantId });
  const report: CredentialRotationSweepReport = { tenantId: input.tenantId, due: 0, rotated: 0, failed: 0, alreadyRotating: 0, failedDevices: [] };
  const dueBefore = policy.rotationDays === null ? '' : new Date(Date.now() - policy.rotationDays * 86_400_000).toISOString();
  return { dueBefore, concurrency: Math.max(1, Math.min(input.concurrency ?? policy.concurrency, 100)), report };
}

async function rotateOne(tenantId: string, deviceId: string, report: CredentialRotationSweepReport): Promise<void> {
  report.due += 1;
  try {
    await executeChild<typeof rotateDeviceCredentials>('rotateDeviceCredentials', {
      workflowId: credentialRotationWorkflowId(tenantId, deviceId),
      args: [{ tenantId, deviceId, reason: `secrets older than the fleet policy allows`, requestedBy: workflowInfo().workflowId }],
      workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
      parentClosePolicy: ParentClosePolicy.ABANDON,
    });
    report.rotated += 1;
  } catch (error) {
    if (isCancellation(error)) throw error;
    if (error instanceof WorkflowExecutionAlreadyStartedError) {
      report.alreadyRotating += 1;
      return;
    }
    report.failed += 1;
    if (report.failedDevices.length < listedInReport) report.failedDevices.push(deviceId);
  }
}
