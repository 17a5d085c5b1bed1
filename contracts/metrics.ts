/**
 * The provisioning metrics the workflow emits (workflows/metrics.ts) as the worker runtime's
 * exporter must know them (observability/runtime-metrics.ts): their names, and the buckets of the
 * duration histogram. Deterministic imports only.
 */

export const provisioningMetricNames = {
  runs: 'provisioning_runs_total',
  duration: 'provisioning_duration_seconds',
  stepAttempts: 'provisioning_step_attempts_total',
} as const;

/** From a device that answers at once (0.1 s) to one retried for the whole window or awaiting an operator (1 h). */
export const provisioningDurationBucketsSeconds = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600];
