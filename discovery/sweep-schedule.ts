/**
 * Each discovery site's Temporal Schedule: a sweep every `intervalMinutes`. Created or brought up
 * to date when the site is configured, deleted when it is removed or disabled.
 */
import type { Client, ScheduleHandle } from '@temporalio/client';
import { deleteSchedule, ensureIntervalSchedule } from '../foundation/schedules';
import type { discoverySweep } from '../workflows/discovery-sweep';
import type { DiscoveryStore } from './discovery-store';

export function discoveryScheduleId(tenantId: string, site: string): string {
  return `discovery:${tenantId}:${site}`;
}

export function ensureDiscoverySchedule(
  client: Client,
  options: { tenantId: string; site: string; taskQueue: string; everyMinutes: number; sweepNowIfNew?: boolean },
): Promise<ScheduleHandle> {
  return ensureIntervalSchedule<typeof discoverySweep>(client, {
    scheduleId: discoveryScheduleId(options.tenantId, options.site),
    workflowType: 'discoverySweep',
    args: [{ tenantId: options.tenantId, site: options.site }],
    taskQueue: options.taskQueue,
    every: `${options.everyMinutes}m`,
    // Scanners listen for a minute at most each, side by side; recording follows.
    workflowExecutionTimeout: '30m',
    // A site just configured is swept at once rather than an interval later.
    runOnCreation: options.sweepNowIfNew ?? false,
  });
}

/** Removes the site's schedule; false when there was none. */
export function deleteDiscoverySchedule(client: Client, options: { tenantId: string; site: string }): Promise<boolean> {
  return deleteSchedule(client, discoveryScheduleId(options.tenantId, options.site));
}

/**
 * Brings every enabled site's schedule up to date at start: a schedule deleted by hand, or lost
 * with a Temporal cluster rebuilt from scratch, comes back; the interval and queue follow the
 * configuration. Returns how many sites have one.
 */
export async function ensureDiscoverySchedules(client: Client, store: DiscoveryStore, taskQueue: string): Promise<number> {
  const sites = await store.listEnabledSites();
  for (const { tenantId, site } of sites) {
    await ensureDiscoverySchedule(client, { tenantId, site: site.site, taskQueue, everyMinutes: site.intervalMinutes });
  }
  return sites.length;
}
