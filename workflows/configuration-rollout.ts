/**
 * A configuration rollout: every target device gets its template version, at most `concurrency`
 * devices at a time. When more than `maxFailureRate` of the devices tried so far failed, it halts:
 * devices in flight finish, the rest are skipped, and the report says why. A rollback is the same
 * job with each device's previous version as its target, so it is tracked the same way.
 */
import { ActivityFailure, ApplicationFailure, condition, continueAsNew, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { ConfigurationActivities } from '../activities/configuration';
import {
  cancelRolloutSignal,
  maximumRolloutConcurrency,
  pauseRolloutSignal,
  resumeRolloutSignal,
  rolloutProgressQuery,
  rolloutReportQuery,
  setRolloutConcurrencySignal,
  type ConfigurationRolloutInput,
  type DeviceRolloutResult,
  type RolloutCarriedState,
  type RolloutProgress,
  type RolloutReport,
  type RolloutTarget,
} from '../contracts/configuration';
import { deviceSiteTaskQueue, onSiteQueue } from './site-routing';
import { preparesCentrally, pushPreparedCentrally } from './prepared-configuration';

/**
 * Pushing to a device: a flaky one is tried a few times; a refusal (compliance, validation) is not
 * retried. On a site served by an edge worker, the device is reached from the site, by that worker;
 * a site whose worker stays away ten minutes fails that device's push, which counts against the
 * rollout's failure threshold, rather than stalling the rollout.
 */
const onDevice = (siteTaskQueue: string | undefined) =>
  proxyActivities<ConfigurationActivities>(
    onSiteQueue(
      {
        startToCloseTimeout: '3m',
        heartbeatTimeout: '30s',
        retry: { initialInterval: '5s', backoffCoefficient: 2, maximumInterval: '1m', maximumAttempts: 4 },
      },
      siteTaskQueue,
      '10m',
    ),
  );

const bookkeeping = proxyActivities<ConfigurationActivities>({
  startToCloseTimeout: '1m',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s' },
});

export async function configRollout(input: ConfigurationRolloutInput): Promise<RolloutReport> {
  const state: RolloutCarriedState = input.state ?? {
    next: 0,
    results: [],
    concurrency: input.concurrency,
    paused: false,
    startedAt: new Date(Date.now()).toISOString(),
  };
  const inFlight = new Set<string>();
  let finishedAt: string | undefined;

  const counters = () => {
    const count = (outcome: DeviceRolloutResult['outcome']) => state.results.filter((result) => result.outcome === outcome).length;
    return { total: input.targets.length, applied: count('applied'), failed: count('failed'), skipped: count('skipped') };
  };
  const progress = (): RolloutProgress => ({
    rolloutId: input.rolloutId,
    kind: input.kind,
    ...(input.rollbackOf ? { rollbackOf: input.rollbackOf } : {}),
    state: finishedAt
      ? state.cancelledBecause !== undefined
        ? 'cancelled'
        : state.haltedBecause !== undefined
          ? 'halted'
          : 'completed'
      : state.haltedBecause !== undefined
        ? 'halted'
        : state.paused
          ? 'paused'
          : 'running',
    ...counters(),
    pending: input.targets.length - state.next,
    inProgress: inFlight.size,
    concurrency: state.concurrency,
    maxFailureRate: input.maxFailureRate,
    ...(state.haltedBecause ? { haltedBecause: state.haltedBecause } : {}),
    ...(state.cancelledBecause !== undefined ? { cancelledBecause: state.cancelledBecause } : {}),
    startedAt: state.startedAt,
    ...(finishedAt ? { finishedAt } : {}),
  });
  setHandler(rolloutProgressQuery, progress);
  setHandler(rolloutReportQuery, () => ({ ...progress(), devices: state.results }));
  setHandler(pauseRolloutSignal, () => void (state.paused = true));
  setHandler(resumeRolloutSignal, () => void (state.paused = false));
  setHandler(cancelRolloutSignal, (reason) => void (state.cancelledBecause = reason ?? 'cancelled'));
  setHandler(setRolloutConcurrencySignal, (concurrency) => {
    if (Number.isInteger(concurrency) && concurrency >= 1) state.concurrency = Math.min(concurrency, maximumRolloutConcurrency);
  });

  const stopping = () => state.cancelledBecause !== undefined || state.haltedBecause !== undefined;
  const checkFailureRate = () => {
    const { applied, failed } = counters();
    const tried = applied + failed;
    if (state.haltedBecause === undefined && tried >= input.minimumDevicesBeforeHalt && failed / tried > input.maxFailureRate) {
      state.haltedBecause = `${failed} of ${tried} devices failed, more than the ${Math.round(input.maxFailureRate * 100)}% allowed`;
    }
  };
  const apply = async (target: RolloutTarget) => {
    inFlight.add(target.deviceId);
    try {
      const siteTaskQueue = await deviceSiteTaskQueue(input.tenantId, target.deviceId);
      const device = onDevice(siteTaskQueue);
      const request = { tenantId: input.tenantId, ...target, rolloutId: input.rolloutId, kind: input.kind, requestedBy: input.requestedBy };
      // A site's worker only sends what was rendered and signed centrally.
      const outcome = preparesCentrally(siteTaskQueue)
        ? await pushPreparedCentrally({ tenantId: input.tenantId, ...target, requestedBy: input.requestedBy }, ({ reference }) =>
            device.applyPreparedDeviceConfiguration({ ...request, reference }),
          )
        : await device.applyDeviceConfiguration(request);
      state.results.push({
        deviceId: target.deviceId,
        outcome: 'applied',
        ...(outcome.previous ? { previous: outcome.previous } : {}),
        applied: { templateId: target.templateId, version: target.version, hash: outcome.hash },
      });
    } catch (error) {
      state.results.push({ deviceId: target.deviceId, outcome: 'failed', ...failureOf(error) });
    } finally {
      inFlight.delete(target.deviceId);
      checkFailureRate();
    }
  };

  for (;;) {
    const more = () => state.next < input.targets.length && !stopping();
    await condition(() => (more() && !state.paused && inFlight.size < state.concurrency) || (inFlight.size === 0 && (!more() || workflowInfo().continueAsNewSuggested)));
    if (inFlight.size === 0 && more() && workflowInfo().continueAsNewSuggested) {
      await continueAsNew<typeof configRollout>({ ...input, state });
    }
    if (!more()) {
      if (inFlight.size === 0) break;
      continue;
    }
    if (state.paused || inFlight.size >= state.concurrency) continue;
    void apply(input.targets[state.next++]!);
  }

  for (const target of input.targets.slice(state.next)) {
    state.results.push({ deviceId: target.deviceId, outcome: 'skipped', error: state.cancelledBecause ?? state.haltedBecause });
  }
  state.next = input.targets.length;
  finishedAt = new Date(Date.now()).toISOString();
  const report: RolloutReport = { ...progress(), devices: state.results };
  await bookkeeping.recordRolloutOutcome({ tenantId: input.tenantId, report, requestedBy: input.requestedBy });
  return report;
}

/** The failure an apply attempt ended with. */
function failureOf(error: unknown): { error: string; errorType: string } {
  const cause = error instanceof ActivityFailure ? error.cause : error;
  if (cause instanceof ApplicationFailure) return { error: cause.message, errorType: cause.type ?? 'Error' };
  return { error: cause instanceof Error ? cause.message : String(cause), errorType: 'Error' };
}
