/**
 * Drift detection, run by a Temporal Schedule (and on demand): reads the running configuration of
 * every device we configured, compares it with the version it should run, and records the result.
 * Per tenant policy, a drifted device raises an alert, or is also put back by a remediation
 * rollout: one tracked job re-applying each drifted device's desired version.
 */
import { ParentClosePolicy, continueAsNew, proxyActivities, setHandler, startChild, workflowInfo } from '@temporalio/workflow';
import type { ConfigurationActivities, DeviceDriftResult } from '../activities/configuration';
import {
  driftCheckProgressQuery,
  maximumRolloutDevices,
  rolloutListing,
  rolloutWorkflowId,
  type ConfigurationRolloutInput,
  type DriftCheckInput,
  type DriftCheckReport,
  type RolloutTarget,
} from '../contracts/configuration';
import type { configRollout } from './configuration-rollout';
import { deviceSiteTaskQueue, onSiteQueue } from './site-routing';

/**
 * Reading a device: one retry for a blip; a device that stays silent is reported unreadable. On a
 * site served by an edge worker, the device is read from the site, by that worker; while that
 * worker is away (the site's `site.worker_missing` alert says so) the device is reported
 * unreadable after two minutes rather than holding up the tenant's whole check.
 */
const onDevice = (siteTaskQueue: string | undefined) =>
  proxyActivities<ConfigurationActivities>(
    onSiteQueue({ startToCloseTimeout: '1m', heartbeatTimeout: '30s', retry: { initialInterval: '5s', maximumAttempts: 2 } }, siteTaskQueue, '2m'),
  );

const bookkeeping = proxyActivities<ConfigurationActivities>({
  startToCloseTimeout: '1m',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s' },
});

const pageSize = 200;
const defaultConcurrency = 20;
/** Device ids kept per list in the report; the counts are always complete. */
const listedInReport = 1_000;

export interface DriftCheckState {
  after?: string;
  report: DriftCheckReport;
  /** Drifted devices whose policy is to remediate, with the version each should run. */
  toRemediate: RolloutTarget[];
}

export async function configurationDriftCheck(input: DriftCheckInput & { state?: DriftCheckState }): Promise<DriftCheckReport> {
  const state: DriftCheckState = input.state ?? {
    report: { tenantId: input.tenantId, checked: 0, inSync: 0, drifted: 0, unreadable: 0, unsupported: 0, driftedDevices: [], unreadableDevices: [] },
    toRemediate: [],
  };
  const concurrency = Math.max(1, Math.min(input.concurrency ?? defaultConcurrency, 100));
  const { report } = state;
  let finished = false;
  setHandler(driftCheckProgressQuery, () => ({ state: finished ? 'completed' : 'running', action: input.action, report }));

  for (;;) {
    const page = await bookkeeping.listConfiguredDevices({ tenantId: input.tenantId, ...(state.after ? { after: state.after } : {}), limit: pageSize });
    for (let start = 0; start < page.length; start += concurrency) {
      const chunk = page.slice(start, start + concurrency);
      const results = await Promise.all(chunk.map((deviceId) => checked(input.tenantId, deviceId, input.action)));
      for (const result of results) tally(state, result);
    }
    if (page.length < pageSize) break;
    state.after = page.at(-1);
    if (workflowInfo().continueAsNewSuggested) await continueAsNew<typeof configurationDriftCheck>({ ...input, state });
  }

  if (state.toRemediate.length > 0) {
    // Named after the run that found the drift: unique, and short enough for a rollout id.
    const rolloutId = `remediation-${workflowInfo().runId}`;
    const rollout: ConfigurationRolloutInput = {
      rolloutId,
      tenantId: input.tenantId,
      kind: 'remediation',
      targets: state.toRemediate.slice(0, maximumRolloutDevices),
      concurrency: Math.min(concurrency, 20),
      // Putting a device back to what it already ran should not fail; stop early if it does.
      maxFailureRate: 0.5,
      minimumDevicesBeforeHalt: 4,
      requestedBy: 'drift-detection',
    };
    await startChild<typeof configRollout>('configRollout', {
      workflowId: rolloutWorkflowId(input.tenantId, rolloutId),
      args: [rollout],
      ...rolloutListing(rollout),
      // The remediation is its own tracked job; it outlives this check.
      parentClosePolicy: ParentClosePolicy.ABANDON,
    });
    report.remediationRolloutId = rolloutId;
  }
  await bookkeeping.recordDriftCheck({ tenantId: input.tenantId, report });
  finished = true;
  return report;
}

async function checked(tenantId: string, deviceId: string, action: DriftCheckInput['action']): Promise<DeviceDriftResult> {
  try {
    const device = onDevice(await deviceSiteTaskQueue(tenantId, deviceId));
    return await device.checkDeviceDrift({ tenantId, deviceId, action });
  } catch (error) {
    return { deviceId, state: 'unreadable', reason: error instanceof Error ? error.message : String(error) };
  }
}

function tally(state: DriftCheckState, result: DeviceDriftResult): void {
  const { report } = state;
  report.checked += 1;
  const note = (list: string[]) => {
    if (list.length < listedInReport) list.push(result.deviceId);
  };
  switch (result.state) {
    case 'in-sync':
      report.inSync += 1;
      break;
    case 'drifted':
      report.drifted += 1;
      note(report.driftedDevices);
      if (result.remediate && result.desired) state.toRemediate.push({ deviceId: result.deviceId, ...result.desired });
      break;
    case 'unreadable':
      report.unreadable += 1;
      note(report.unreadableDevices);
      break;
    case 'unsupported':
      report.unsupported += 1;
      break;
  }
}
