/**
 * One Temporal Schedule per site with active devices (`health:<tenant>:<site>`), sweeping it every
 * `healthCheckIntervalSeconds` of the tenant's fleet policy. The policy and the registry are the
 * record; the schedules follow them, so a Temporal cluster rebuilt from scratch gets them back at
 * start, and a tenant that turns health checks off loses its schedules.
 */
import { ScheduleNotFoundError, type Client, type ScheduleHandle } from '@temporalio/client';
import type { Logger } from '../foundation/logger';
import { deleteSchedule, ensureIntervalSchedule } from '../foundation/schedules';
import type { healthSweep } from '../workflows/health-sweep';
import { healthScheduleId, healthSweepSearchAttributes } from '../contracts/fleet-health';
import type { DeviceRegistry } from '../registry/device-registry';
import type { FleetPolicies, FleetPolicy } from './fleet-policies';

/** A sweep stuck longer than this would hold up the next ones (the schedule skips overlaps). */
export const healthSweepTimeout = '2h';

/** Creates or updates the site's schedule to follow the policy, or removes it when health checks are off. */
export async function applyHealthSchedule(client: Client, policy: FleetPolicy, site: string, taskQueue: string): Promise<ScheduleHandle | undefined> {
  const scheduleId = healthScheduleId(policy.tenantId, site);
  if (!policy.healthChecksEnabled) {
    await deleteSchedule(client, scheduleId);
    return undefined;
  }
  return ensureIntervalSchedule<typeof healthSweep>(client, {
    scheduleId,
    workflowType: 'healthSweep',
    args: [{ tenantId: policy.tenantId, site }],
    taskQueue,
    every: `${policy.healthCheckIntervalSeconds}s`,
    workflowExecutionTimeout: healthSweepTimeout,
    typedSearchAttributes: healthSweepSearchAttributes(policy.tenantId, site),
  });
}

/**
 * The tenant's site schedules follow its policy: one per site with active devices, none when health
 * checks are off; schedules of sites left without active devices are removed. Returns the schedule ids.
 */
export async function applyTenantHealthSchedules(
  client: Client,
  deps: { registry: Pick<DeviceRegistry, 'sitesWithActiveDevices'>; policy: FleetPolicy },
  taskQueue: string,
): Promise<string[]> {
  const { policy } = deps;
  const sites = (await deps.registry.sitesWithActiveDevices(policy.tenantId)).map((row) => row.site);
  const wanted = new Set(policy.healthChecksEnabled ? sites.map((site) => healthScheduleId(policy.tenantId, site)) : []);
  for (const site of sites) await applyHealthSchedule(client, policy, site, taskQueue);
  const prefix = healthScheduleId(policy.tenantId, '');
  for await (const schedule of client.schedule.list()) {
    const { scheduleId } = schedule;
    // Site ids hold no colon: anything longer is not a site schedule of this tenant.
    if (scheduleId.startsWith(prefix) && !scheduleId.slice(prefix.length).includes(':') && !wanted.has(scheduleId)) {
      await deleteSchedule(client, scheduleId);
    }
  }
  return [...wanted];
}

/**
 * What provisioning calls when a device becomes active: its site gets its schedule, following the
 * tenant's policy, unless it has one. Activation never fails for it: a schedule that could not be
 * made now is made at the next start, or by the next policy change or sweep on demand.
 */
export function siteHealthSchedules(client: Client, policies: Pick<FleetPolicies, 'get'>, taskQueue: string, logger: Logger) {
  // Sites known to have their schedule, so activating a thousand devices at one site asks Temporal once.
  const watched = new Set<string>();
  return {
    async watchSite(tenantId: string, site: string): Promise<void> {
      const scheduleId = healthScheduleId(tenantId, site);
      if (watched.has(scheduleId)) return;
      try {
        const policy = await policies.get(tenantId);
        if (!policy.healthChecksEnabled) return;
        try {
          await client.schedule.getHandle(scheduleId).describe();
        } catch (error) {
          if (!(error instanceof ScheduleNotFoundError)) throw error;
          await applyHealthSchedule(client, policy, site, taskQueue);
        }
        watched.add(scheduleId);
      } catch (error) {
        logger.warn({ err: error, tenantId, site, scheduleId }, 'could not give the site its health sweep schedule; the next start will');
      }
    },
  };
}

/** At start: every site with active devices has its schedule, following its tenant's policy. Returns how many run. */
export async function ensureHealthSchedules(
  client: Client,
  deps: { registry: Pick<DeviceRegistry, 'sitesWithActiveDevices'>; policies: Pick<FleetPolicies, 'get'> },
  taskQueue: string,
): Promise<number> {
  const policies = new Map<string, FleetPolicy>();
  let running = 0;
  for (const { tenantId, site } of await deps.registry.sitesWithActiveDevices()) {
    let policy = policies.get(tenantId);
    if (!policy) policies.set(tenantId, (policy = await deps.policies.get(tenantId)));
    if (await applyHealthSchedule(client, policy, site, taskQueue)) running += 1;
  }
  return running;
}
