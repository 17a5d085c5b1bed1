/**
 * A site's health sweep, run by its Temporal Schedule (and on demand): probes the site's active
 * devices page by page, each page one activity probing a bounded number of devices at once, and
 * continues as new past a large site so its history stays short. What each probe means (offline
 * after enough failures in a row, back online, rebooted, a certificate other than ours) is recorded
 * by the activity; the run keeps only the counts.
 */
import { continueAsNew, proxyActivities, setHandler, workflowInfo, type ActivityOptions } from '@temporalio/workflow';
import type { FleetHealthActivities } from '../activities/fleet-health';
import {
  addHealthSweepCounts,
  healthSweepProgressQuery,
  noHealthSweepCounts,
  type HealthSweepInput,
  type HealthSweepReport,
} from '../contracts/fleet-health';
import { onSiteQueue, siteDeviceTaskQueue } from './site-routing';

/**
 * Probing a page: each probe has its own device timeout, so a page of silent devices takes a while;
 * the heartbeat shows it is still going. A page that fails as a whole (the database away) is tried again.
 */
const probing: ActivityOptions = {
  startToCloseTimeout: '15m',
  heartbeatTimeout: '1m',
  retry: { initialInterval: '5s', backoffCoefficient: 2, maximumInterval: '1m', maximumAttempts: 5 },
};

const pageSize = 200;

export async function healthSweep(input: HealthSweepInput): Promise<HealthSweepReport> {
  const counts = input.state?.counts ?? noHealthSweepCounts();
  let after = input.state?.after;
  let finished = false;
  const report = (): HealthSweepReport => ({ tenantId: input.tenantId, site: input.site, ...counts });
  setHandler(healthSweepProgressQuery, () => ({ state: finished ? 'completed' : 'running', report: report() }));
  // A site served by an edge worker is probed from the site, by that worker.
  const probes = proxyActivities<FleetHealthActivities>(onSiteQueue(probing, await siteDeviceTaskQueue(input.tenantId, input.site)));

  for (;;) {
    const page = await probes.probeSiteDevices({ tenantId: input.tenantId, site: input.site, pageSize, ...(after ? { after } : {}) });
    addHealthSweepCounts(counts, page.counts);
    if (!page.next) break;
    after = page.next;
    if (workflowInfo().continueAsNewSuggested) await continueAsNew<typeof healthSweep>({ ...input, state: { after, counts } });
  }
  finished = true;
  return report();
}
