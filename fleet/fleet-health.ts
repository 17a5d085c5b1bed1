/**
 * Device health seen from outside: the tenant's fleet policy and the site schedules that follow it,
 * sweeps of a site started on demand, and a device's health events. A sweep is a workflow; what it
 * found is in the registry (each device's health) and in the events, and its counts in the run.
 */
import { randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { NotFoundError } from '../foundation/errors';
import { fromWorkflowError } from '../foundation/workflow-errors';
import type { DeviceRegistry } from '../registry/device-registry';
import type { healthSweep } from '../workflows/health-sweep';
import {
  healthScheduleId,
  healthSweepOnDemandPrefix,
  healthSweepSearchAttributes,
  noHealthSweepCounts,
  type HealthSweepReport,
} from '../contracts/fleet-health';
import type { CredentialRotations } from './credential-rotations';
import type { FleetPolicies, FleetPolicy, FleetPolicyInput } from './fleet-policies';
import type { DeviceHealthEvents, HealthEvent, HealthEventPosition } from './health-events';
import { applyHealthSchedule, applyTenantHealthSchedules, healthSweepTimeout } from './health-schedules';

/** The policy, and the site schedules carrying out its health checks. */
export type ScheduledFleetPolicy = FleetPolicy & { healthSchedules: string[] };

export type StartedHealthSweep = HealthSweepReport & { healthSweepId: string; state: 'running' };

export interface FleetHealthDependencies {
  client: Client;
  taskQueue: string;
  policies: FleetPolicies;
  registry: Pick<DeviceRegistry, 'find' | 'sitesWithActiveDevices'>;
  events: DeviceHealthEvents;
  /** The tenant's credential rotation schedule, which follows the same policy. */
  credentialRotations: Pick<CredentialRotations, 'followPolicy'>;
}

export class FleetHealth {
  constructor(private readonly deps: FleetHealthDependencies) {}

  async policy(tenantId: string): Promise<ScheduledFleetPolicy> {
    const policy = await this.deps.policies.get(tenantId);
    const sites = policy.healthChecksEnabled ? await this.deps.registry.sitesWithActiveDevices(tenantId) : [];
    return { ...policy, healthSchedules: sites.map(({ site }) => healthScheduleId(tenantId, site)) };
  }

  /** Sets the policy; the schedules of the tenant's sites, and its credential rotation schedule, follow it. */
  async setPolicy(tenantId: string, input: FleetPolicyInput, actor: string): Promise<ScheduledFleetPolicy> {
    const policy = await this.deps.policies.put(tenantId, input, actor);
    try {
      const healthSchedules = await applyTenantHealthSchedules(this.deps.client, { registry: this.deps.registry, policy }, this.deps.taskQueue);
      await this.deps.credentialRotations.followPolicy(tenantId);
      return { ...policy, healthSchedules };
    } catch (error) {
      throw fromWorkflowError(error, { what: `the health schedules of tenant ${tenantId}` });
    }
  }

  /** Sweeps the site's active devices now, and makes sure the site has its schedule from here on. */
  async sweepNow(tenantId: string, site: string): Promise<StartedHealthSweep> {
    const sites = await this.deps.registry.sitesWithActiveDevices(tenantId);
    if (!sites.some((row) => row.site === site)) throw new NotFoundError(`site ${site} has no active devices`);
    const healthSweepId = `${healthSweepOnDemandPrefix(tenantId, site)}${randomUUID()}`;
    try {
      await applyHealthSchedule(this.deps.client, await this.deps.policies.get(tenantId), site, this.deps.taskQueue);
      await this.deps.client.workflow.start<typeof healthSweep>('healthSweep', {
        workflowId: healthSweepId,
        taskQueue: this.deps.taskQueue,
        args: [{ tenantId, site }],
        workflowExecutionTimeout: healthSweepTimeout,
        typedSearchAttributes: healthSweepSearchAttributes(tenantId, site),
      });
    } catch (error) {
      throw fromWorkflowError(error, { what: `health sweep ${healthSweepId}` });
    }
    return { healthSweepId, state: 'running', tenantId, site, ...noHealthSweepCounts() };
  }

  /** A device's health events, newest first; 404 for a device the tenant does not have. */
  async events(tenantId: string, deviceId: string, page: { limit: number; before?: HealthEventPosition }): Promise<{ items: HealthEvent[]; next?: HealthEventPosition }> {
    if (!(await this.deps.registry.find(tenantId, deviceId))) throw new NotFoundError(`device ${deviceId} is not registered`);
    return this.deps.events.list(tenantId, deviceId, page);
  }
}
