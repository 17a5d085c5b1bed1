/**
 * Discovery sweeps seen from outside: a site's configuration together with the schedule that
 * sweeps it, sweeps started on demand, and where each stands. A sweep is a workflow; its summary is
 * its result, read from Temporal, never stored here.
 */
import { randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { NotFoundError } from '../foundation/errors';
import { fromWorkflowError } from '../foundation/workflow-errors';
import type { discoverySweep, DiscoverySweepSummary } from '../workflows/discovery-sweep';
import type { DiscoverySite, DiscoverySiteConfiguration, DiscoveryStore } from './discovery-store';
import { deleteDiscoverySchedule, discoveryScheduleId, ensureDiscoverySchedule } from './sweep-schedule';

/** On-demand sweeps of a tenant are named with this prefix, then the site and a random id. */
export function sweepWorkflowPrefix(tenantId: string): string {
  return `discovery-sweep:${tenantId}:`;
}

/** A site's configuration, and the schedule sweeping it while it is enabled. */
export type ScheduledDiscoverySite = DiscoverySite & { scheduleId?: string };

export interface DiscoverySweep {
  sweepId: string;
  tenantId: string;
  site: string;
  state: 'running' | 'completed' | 'failed';
  startedAt?: string;
  error?: string;
  /** Once completed. */
  summary?: Omit<DiscoverySweepSummary, 'tenantId' | 'site'>;
}

export interface DiscoverySweepsDependencies {
  store: DiscoveryStore;
  client: Client;
  taskQueue: string;
}

export class DiscoverySweeps {
  constructor(private readonly deps: DiscoverySweepsDependencies) {}

  /** Creates or updates a site; its schedule follows, and a new or re-enabled site is swept at once. */
  async configureSite(tenantId: string, site: string, configuration: DiscoverySiteConfiguration): Promise<{ site: ScheduledDiscoverySite; created: boolean }> {
    const { store, client, taskQueue } = this.deps;
    const { site: stored, created } = await store.upsertSite(tenantId, site, configuration);
    if (!stored.enabled) {
      // A disabled site is not swept, on schedule or otherwise.
      await deleteDiscoverySchedule(client, { tenantId, site: stored.site });
      return { site: stored, created };
    }
    const schedule = await ensureDiscoverySchedule(client, { tenantId, site: stored.site, taskQueue, everyMinutes: stored.intervalMinutes, sweepNowIfNew: true });
    return { site: { ...stored, scheduleId: schedule.scheduleId }, created };
  }

  async site(tenantId: string, site: string): Promise<ScheduledDiscoverySite> {
    const stored = await this.deps.store.getSite(tenantId, site);
    return { ...stored, ...(stored.enabled ? { scheduleId: discoveryScheduleId(tenantId, stored.site) } : {}) };
  }

  /** Stops discovering a site: its configuration and schedule go, what it found stays. */
  async removeSite(tenantId: string, site: string): Promise<void> {
    const existed = await this.deps.store.deleteSite(tenantId, site);
    const scheduled = await deleteDiscoverySchedule(this.deps.client, { tenantId, site });
    if (!existed && !scheduled) throw new NotFoundError(`discovery site ${site} is not configured`);
  }

  /** Sweeps a configured site now. */
  async start(tenantId: string, site: string): Promise<DiscoverySweep> {
    await this.deps.store.getSite(tenantId, site);
    const sweepId = `${sweepWorkflowPrefix(tenantId)}${site}:${randomUUID()}`;
    try {
      await this.deps.client.workflow.start<typeof discoverySweep>('discoverySweep', {
        workflowId: sweepId,
        taskQueue: this.deps.taskQueue,
        args: [{ tenantId, site }],
        workflowExecutionTimeout: '30m',
      });
    } catch (error) {
      throw fromWorkflowError(error, { what: `sweep ${sweepId}` });
    }
    return { sweepId, tenantId, site, state: 'running', startedAt: new Date().toISOString() };
  }

  /** Where a sweep stands, and its summary once it has finished. */
  async get(tenantId: string, sweepId: string): Promise<DiscoverySweep> {
    const what = `sweep ${sweepId}`;
    // Sweep ids carry their tenant: another tenant's is as good as absent.
    const prefix = sweepWorkflowPrefix(tenantId);
    const site = sweepId.startsWith(prefix) ? sweepId.slice(prefix.length).split(':')[0] : undefined;
    if (!site) throw new NotFoundError(`${what} not found`);
    const handle = this.deps.client.workflow.getHandle<typeof discoverySweep>(sweepId);
    try {
      const description = await handle.describe();
      const sweep = { sweepId, tenantId, site, startedAt: description.startTime.toISOString() };
      if (description.status.name === 'RUNNING') return { ...sweep, state: 'running' };
      if (description.status.name !== 'COMPLETED') return { ...sweep, state: 'failed', error: `the sweep ended ${description.status.name.toLowerCase()}` };
      const summary: DiscoverySweepSummary = await handle.result();
      return {
        ...sweep,
        state: 'completed',
        summary: {
          scanners: summary.scanners,
          failures: summary.failures,
          observations: summary.observations,
          ...(summary.skipped ? { skipped: summary.skipped } : {}),
          ...(summary.recorded ? { recorded: summary.recorded } : {}),
        },
      };
    } catch (error) {
      throw fromWorkflowError(error, { what });
    }
  }
}
