/**
 * Drift detection seen from outside: the tenant's policy and the schedule that follows it, checks
 * started on demand, and what each check found. A check is a workflow; what it found is read by
 * querying it, never stored here.
 */
import { randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { NotFoundError } from '../foundation/errors';
import { fromWorkflowError } from '../foundation/workflow-errors';
import { driftCheckProgressQuery, type DriftAction, type DriftCheckReport } from '../contracts/configuration';
import type { configurationDriftCheck } from '../workflows/configuration-drift';
import { tenantVisibilityFilter } from '../contracts/provisioning';
import {
  applyDriftSchedule,
  driftCheckPrefix,
  driftCheckSearchAttributes,
  driftScheduleId,
  type DriftPolicies,
  type DriftPolicy,
  type DriftPolicyInput,
} from './drift-policies';

/** The policy, and the schedule carrying it out while it is enabled. */
export type ScheduledDriftPolicy = DriftPolicy & { scheduleId?: string };

/** A check as the workflow service lists it; what it found is in the check itself. */
export interface DriftCheckSummary {
  driftCheckId: string;
  trigger: 'schedule' | 'on-demand';
  /** The workflow execution status: `running`, `completed`, `failed`, … */
  execution: string;
  startedAt: string;
  closedAt?: string;
}

/** What a check found so far, or in all. */
export type DriftCheckOutcome = Omit<DriftCheckReport, 'tenantId'> & {
  driftCheckId: string;
  state: 'running' | 'completed' | 'failed';
  action?: DriftAction;
  error?: string;
};

export interface DriftChecksDependencies {
  client: Client;
  taskQueue: string;
  policies: DriftPolicies;
}

/** The counts of a check that has looked at no device yet. */
const nothingFound = (): Omit<DriftCheckReport, 'tenantId'> => ({ checked: 0, inSync: 0, drifted: 0, unreadable: 0, unsupported: 0, driftedDevices: [], unreadableDevices: [] });

export class DriftChecks {
  constructor(private readonly deps: DriftChecksDependencies) {}

  async policy(tenantId: string): Promise<ScheduledDriftPolicy> {
    const policy = await this.deps.policies.get(tenantId);
    return { ...policy, ...(policy.enabled ? { scheduleId: driftScheduleId(tenantId) } : {}) };
  }

  /** Sets the policy; its Temporal Schedule follows. */
  async setPolicy(tenantId: string, input: DriftPolicyInput, actor: string): Promise<ScheduledDriftPolicy> {
    const policy = await this.deps.policies.put(tenantId, input, actor);
    const schedule = await applyDriftSchedule(this.deps.client, policy, this.deps.taskQueue);
    return { ...policy, ...(schedule ? { scheduleId: schedule.scheduleId } : {}) };
  }

  /** Checks every configured device's running configuration now; `action` is the policy's when absent. */
  async start(tenantId: string, action?: DriftAction): Promise<DriftCheckOutcome> {
    const chosen = action ?? (await this.deps.policies.get(tenantId)).action;
    const driftCheckId = `${driftCheckPrefix(tenantId)}${randomUUID()}`;
    try {
      await this.deps.client.workflow.start<typeof configurationDriftCheck>('configurationDriftCheck', {
        workflowId: driftCheckId,
        taskQueue: this.deps.taskQueue,
        args: [{ tenantId, action: chosen }],
        workflowExecutionTimeout: '6h',
        typedSearchAttributes: driftCheckSearchAttributes(tenantId),
      });
    } catch (error) {
      throw fromWorkflowError(error, { what: `drift check ${driftCheckId}` });
    }
    return { driftCheckId, state: 'running', action: chosen, ...nothingFound() };
  }

  /** Checks, scheduled and on demand, newest first. */
  async list(tenantId: string, limit: number): Promise<DriftCheckSummary[]> {
    const listed: DriftCheckSummary[] = [];
    const filter = `WorkflowType = 'configurationDriftCheck' AND ${tenantVisibilityFilter(tenantId)}`;
    try {
      for await (const execution of this.deps.client.workflow.list({ query: filter, pageSize: limit })) {
        if (!execution.workflowId.startsWith(driftScheduleId(tenantId))) continue;
        listed.push({
          driftCheckId: execution.workflowId,
          trigger: execution.workflowId.startsWith(driftCheckPrefix(tenantId)) ? 'on-demand' : 'schedule',
          execution: execution.status.name.toLowerCase(),
          startedAt: execution.startTime.toISOString(),
          ...(execution.closeTime ? { closedAt: execution.closeTime.toISOString() } : {}),
        });
        if (listed.length >= limit) break;
      }
    } catch (error) {
      throw fromWorkflowError(error, { what: 'the drift checks' });
    }
    return listed;
  }

  async get(tenantId: string, driftCheckId: string): Promise<DriftCheckOutcome> {
    const what = `drift check ${driftCheckId}`;
    // Scheduled checks are named after the schedule, on-demand ones after the prefix.
    if (!driftCheckId.startsWith(driftScheduleId(tenantId))) throw new NotFoundError(`${what} not found`);
    const handle = this.deps.client.workflow.getHandle<typeof configurationDriftCheck>(driftCheckId);
    try {
      const status = (await handle.describe()).status.name;
      if (status !== 'RUNNING' && status !== 'COMPLETED') {
        return { driftCheckId, state: 'failed', ...nothingFound(), error: `the check ended ${status.toLowerCase()}` };
      }
      const progress = await handle.query(driftCheckProgressQuery);
      // Another tenant whose id extends this one's shares the prefix; the check knows its tenant.
      if (progress.report.tenantId !== tenantId) throw new NotFoundError(`${what} not found`);
      const { tenantId: _tenant, ...counts } = progress.report;
      return { driftCheckId, state: progress.state, action: progress.action, ...counts };
    } catch (error) {
      throw fromWorkflowError(error, { what });
    }
  }
}
