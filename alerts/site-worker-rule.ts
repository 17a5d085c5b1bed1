/**
 * `site.worker_missing`: a site set to an edge worker whose task queue has no live poller. Its
 * device-facing work waits in the queue (durably, never failing for that) until a worker is back;
 * the alert says someone should look at the site, and resolves once a worker polls again.
 */
import type { Client } from '@temporalio/client';
// The package is CommonJS: Node's ESM loader sees only its default export.
import proto from '@temporalio/proto';
import type { SiteWorkers } from '../discovery/site-workers';
import { alertFingerprint, alertKinds } from './alert-store';
import type { AlertRule, AlertSettings } from './rules';

/** When each poller of a queue's activity tasks last polled. */
export type ActivityPollers = (taskQueue: string) => Promise<{ identity: string; lastAccessTime?: Date }[]>;

/** The pollers Temporal lists for a queue (`DescribeTaskQueue`, activity tasks); it keeps gone ones listed for minutes. */
export function activityPollers(client: Client): ActivityPollers {
  return async (taskQueue) => {
    const described = await client.workflowService.describeTaskQueue({
      namespace: client.options.namespace,
      taskQueue: { name: taskQueue, kind: proto.temporal.api.enums.v1.TaskQueueKind.TASK_QUEUE_KIND_NORMAL },
      taskQueueType: proto.temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
    });
    return (described.pollers ?? []).map((poller) => ({
      identity: poller.identity ?? '',
      ...(poller.lastAccessTime?.seconds != null
        ? { lastAccessTime: new Date(Number(poller.lastAccessTime.seconds) * 1000 + Math.floor((poller.lastAccessTime.nanos ?? 0) / 1e6)) }
        : {}),
    }));
  };
}

export function siteWorkerMissingRule(sites: Pick<SiteWorkers, 'edgeSites'>, pollers: ActivityPollers, settings: NonNullable<AlertSettings['siteWorkers']>): AlertRule {
  return {
    name: 'site worker missing',
    kinds: [alertKinds.siteWorkerMissing],
    async evaluate(tenantId, now) {
      const liveSince = now.getTime() - settings.pollerStaleSeconds * 1000;
      const missing = [];
      for (const site of await sites.edgeSites(tenantId)) {
        const seen = await pollers(site.taskQueue);
        const lastSeen = seen.flatMap((poller) => (poller.lastAccessTime ? [poller.lastAccessTime.getTime()] : [])).sort((a, b) => b - a)[0];
        if (lastSeen !== undefined && lastSeen >= liveSince) continue;
        missing.push({
          kind: alertKinds.siteWorkerMissing,
          severity: 'critical' as const,
          fingerprint: alertFingerprint(alertKinds.siteWorkerMissing, site.site),
          summary: `no edge worker polls site ${site.site}'s task queue: its device work waits until one does`,
          details: {
            site: site.site,
            taskQueue: site.taskQueue,
            ...(lastSeen !== undefined ? { lastPolledAt: new Date(lastSeen).toISOString() } : {}),
          },
        });
      }
      return missing;
    },
  };
}
