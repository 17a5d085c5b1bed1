/**
 * Provisioning metrics emitted by the workflow itself, through the SDK's workflow metric meter: it
 * records nothing while a history is replayed, so a run is counted once however often a worker
 * rebuilds it. The worker runtime exports them next to its own (see observability/runtime-metrics.ts),
 * labelled with `namespace`, `taskQueue` and `workflowType` in addition to the labels set here.
 *
 * PromQL, over a window such as 1h (cancelled runs count in neither the rate nor the times):
 *   success rate  sum(increase(provisioning_runs_total{outcome="completed"}[1h]))
 *                 / sum(increase(provisioning_runs_total{outcome=~"completed|failed"}[1h]))
 *   average time  sum(rate(provisioning_duration_seconds_sum{outcome="completed"}[1h]))
 *                 / sum(rate(provisioning_duration_seconds_count{outcome="completed"}[1h]))
 *   p95 time      histogram_quantile(0.95, sum by (le) (rate(provisioning_duration_seconds_bucket{outcome="completed"}[1h])))
 *   failed tries  sum by (step) (increase(provisioning_step_attempts_total{outcome="failed"}[1h]))
 */
import { metricMeter } from '@temporalio/workflow';
import type { ProvisioningMethod, ProvisioningStepName } from '../contracts/provisioning';
import { provisioningMetricNames } from '../contracts/metrics';

/** Cancelled runs are kept apart so that an operator's cancel does not count against the success rate. */
export type ProvisioningOutcome = 'completed' | 'failed' | 'cancelled';

export interface ProvisioningRunLabels {
  tenant: string;
  method: ProvisioningMethod;
  protocol: string;
}

export function recordProvisioningRun(labels: ProvisioningRunLabels, outcome: ProvisioningOutcome, durationSeconds: number): void {
  const tags = { ...labels, outcome };
  metricMeter.createCounter(provisioningMetricNames.runs, undefined, 'Provisioning runs finished, by outcome').add(1, tags);
  metricMeter
    .createHistogram(provisioningMetricNames.duration, 'float', 's', 'Time from the start of a provisioning run to its end')
    .record(Math.max(0, durationSeconds), tags);
}

/**
 * A step that finished records one attempt with its own outcome and, as failed attempts, the retries
 * before it (activities report their attempt number, so retries are known without extra events).
 */
export function recordStepAttempts(
  labels: ProvisioningRunLabels,
  step: ProvisioningStepName,
  outcome: ProvisioningOutcome,
  retries: number,
): void {
  const attempts = metricMeter.createCounter(provisioningMetricNames.stepAttempts, undefined, 'Attempts at each provisioning step, by outcome');
  if (retries > 0) attempts.add(retries, { ...labels, step, outcome: 'failed' });
  attempts.add(1, { ...labels, step, outcome });
}
