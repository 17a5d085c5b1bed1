/**
 * The worker runtime's own Prometheus exporter: SDK Core serves its metrics (workflow and activity
 * counts, task latencies, slots, polls) and the provisioning workflow's metrics on `/metrics` of the
 * address given here. The runtime is installed once per process, so these options belong in the
 * one `Runtime.install` call the service makes.
 */
import type { TelemetryOptions } from '@temporalio/worker';
import { provisioningDurationBucketsSeconds, provisioningMetricNames } from '../contracts/metrics';

/** Loopback, so only this process (the metrics handler) reads it unless an operator opens it up. */
export const defaultWorkerMetricsBindAddress = '127.0.0.1:9464';

export function workerRuntimeTelemetry(bindAddress: string): TelemetryOptions {
  return {
    metrics: {
      prometheus: {
        bindAddress,
        // Core's default buckets are for milliseconds; a provisioning run is measured in seconds.
        histogramBucketOverrides: { [provisioningMetricNames.duration]: provisioningDurationBucketsSeconds },
      },
    },
  };
}

/** Where to read what the exporter bound to `bindAddress` serves; a wildcard bind is read over loopback. */
export function workerMetricsUrl(bindAddress: string): string {
  const url = new URL(`http://${bindAddress}/metrics`);
  if (url.hostname === '0.0.0.0') url.hostname = '127.0.0.1';
  if (url.hostname === '[::]') url.hostname = '[::1]';
  return url.toString();
}
