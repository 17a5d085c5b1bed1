/**
 * One discovery sweep of a site, started by the site's schedule or on demand: every configured
 * scanner runs side by side as its own activity, then what they saw is merged and recorded. A
 * scanner that fails is reported in the summary; the others' observations are still recorded.
 */
import { ActivityFailure, ApplicationFailure, proxyActivities, type ActivityOptions } from '@temporalio/workflow';
import type { DiscoveryActivities, ScannerCounts, SweepRecordSummary } from '../activities/discovery';
import type { SiteScanner } from '../discovery/discovery-store';
import type { DiscoveryObservation } from '../discovery/observation';
import { onSiteQueue, siteDeviceTaskQueue } from './site-routing';

const site = proxyActivities<DiscoveryActivities>({
  startToCloseTimeout: '1m',
  retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 3, nonRetryableErrorTypes: ['NotFoundError', 'ValidationError'] },
});

/** A scan listens for up to a minute; a scanner that fails twice is reported rather than retried on. */
const scanning: ActivityOptions = {
  startToCloseTimeout: '3m',
  heartbeatTimeout: '20s',
  retry: { initialInterval: '5s', maximumAttempts: 2 },
};

/** Recording is one transaction plus alerts; retried while the database is briefly away. */
const recording = proxyActivities<DiscoveryActivities>({
  startToCloseTimeout: '5m',
  heartbeatTimeout: '1m',
  retry: { initialInterval: '5s', backoffCoefficient: 2, maximumInterval: '1m', maximumAttempts: 5 },
});

export interface DiscoverySweepInput {
  tenantId: string;
  site: string;
}

export interface DiscoverySweepSummary {
  tenantId: string;
  site: string;
  scanners: ScannerCounts[];
  failures: { scanner: SiteScanner; error: string }[];
  observations: number;
  /** Absent when the site was disabled and nothing was scanned. */
  recorded?: SweepRecordSummary;
  skipped?: 'site-disabled';
}

export async function discoverySweep(input: DiscoverySweepInput): Promise<DiscoverySweepSummary> {
  const configuration = await site.loadDiscoverySite(input);
  const summary: DiscoverySweepSummary = { tenantId: input.tenantId, site: input.site, scanners: [], failures: [], observations: 0 };
  if (!configuration.enabled) return { ...summary, skipped: 'site-disabled' };
  // A site served by an edge worker is scanned from the site, by that worker; what it saw is recorded centrally.
  const scanners = proxyActivities<DiscoveryActivities>(onSiteQueue(scanning, await siteDeviceTaskQueue(input.tenantId, input.site)));

  const results = await Promise.allSettled(
    configuration.scanners.map((scanner) => scanners.runDiscoveryScanner({ tenantId: input.tenantId, site: input.site, scanner })),
  );
  const observations: DiscoveryObservation[] = [];
  results.forEach((result, index) => {
    const scanner = configuration.scanners[index]!;
    if (result.status === 'fulfilled') {
      observations.push(...result.value.observations);
      summary.scanners.push(result.value.counts);
    } else {
      summary.failures.push({ scanner, error: failureMessage(result.reason) });
    }
  });
  summary.observations = observations.length;
  summary.recorded = await recording.recordDiscoverySweep({ tenantId: input.tenantId, site: input.site, observations });
  return summary;
}

function failureMessage(error: unknown): string {
  const cause = error instanceof ActivityFailure ? error.cause : error;
  if (cause instanceof ApplicationFailure) return `${cause.type ?? 'Error'}: ${cause.message}`;
  return cause instanceof Error ? cause.message : String(cause);
}
