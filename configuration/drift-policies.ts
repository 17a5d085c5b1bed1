/**
 * Each tenant's drift detection policy and the Temporal Schedule that carries it out: a drift check
 * every `intervalMinutes`, alerting on a drifted device or also putting it back. The policy is
 * kept here so a Temporal cluster rebuilt from scratch gets its schedules back at start.
 */
import { eq } from 'drizzle-orm';
import type { Client, ScheduleHandle } from '@temporalio/client';
import type { SearchAttributePair } from '@temporalio/common';
import { z } from 'zod';
import type { Database } from '../db/client';
import { configurationDriftPolicies, type ConfigurationDriftPolicyRow } from '../db/schema';
import { deleteSchedule, ensureIntervalSchedule } from '../foundation/schedules';
import type { configurationDriftCheck } from '../workflows/configuration-drift';
import { provisioningSearchAttributes } from '../contracts/provisioning';

export const driftPolicyInputSchema = z
  .object({
    enabled: z.boolean(),
    action: z.enum(['alert', 'remediate']).describe('`alert` reports a drifted device; `remediate` also re-applies its desired version'),
    intervalMinutes: z.number().int().min(5).max(7 * 24 * 60).default(60),
  })
  .strict();
export type DriftPolicyInput = z.infer<typeof driftPolicyInputSchema>;

export interface DriftPolicy extends DriftPolicyInput {
  tenantId: string;
  updatedBy: string | null;
  updatedAt: string | null;
}

/** What a tenant that never set a policy gets: no scheduled checks (a check can still be run on demand). */
const defaultPolicy: DriftPolicyInput = { enabled: false, action: 'alert', intervalMinutes: 60 };

function toPolicy(tenantId: string, row: ConfigurationDriftPolicyRow | undefined): DriftPolicy {
  if (!row) return { tenantId, ...defaultPolicy, updatedBy: null, updatedAt: null };
  return {
    tenantId,
    enabled: row.enabled,
    action: row.action,
    intervalMinutes: row.intervalMinutes,
    updatedBy: row.updatedBy,
    updatedAt: row.updatedAt.toISOString(),
  };
}

export class DriftPolicies {
  constructor(private readonly db: Database) {}

  async get(tenantId: string): Promise<DriftPolicy> {
    const [row] = await this.db.select().from(configurationDriftPolicies).where(eq(configurationDriftPolicies.tenantId, tenantId));
    return toPolicy(tenantId, row);
  }

  async put(tenantId: string, input: DriftPolicyInput, actor: string): Promise<DriftPolicy> {
    const values = { enabled: input.enabled, action: input.action, intervalMinutes: input.intervalMinutes, updatedBy: actor };
    const [row] = await this.db
      .insert(configurationDriftPolicies)
      .values({ tenantId, ...values })
      .onConflictDoUpdate({ target: configurationDriftPolicies.tenantId, set: { ...values, updatedAt: new Date() } })
      .returning();
    return toPolicy(tenantId, row);
  }

  async listEnabled(): Promise<DriftPolicy[]> {
    const rows = await this.db.select().from(configurationDriftPolicies).where(eq(configurationDriftPolicies.enabled, true));
    return rows.map((row) => toPolicy(row.tenantId, row));
  }
}

export function driftScheduleId(tenantId: string): string {
  return `configuration-drift:${tenantId}`;
}

/** What every drift check carries for finding a tenant's checks in Temporal's visibility. */
export function driftCheckSearchAttributes(tenantId: string): SearchAttributePair[] {
  return [{ key: provisioningSearchAttributes.tenantId, value: tenantId }];
}

/** Workflow ids of a tenant's on-demand drift checks start with this; scheduled ones with the schedule id and a time. */
export function driftCheckPrefix(tenantId: string): string {
  return `${driftScheduleId(tenantId)}:`;
}

/** Creates or updates the tenant's schedule to follow its policy, or removes it when disabled. */
export async function applyDriftSchedule(client: Client, policy: DriftPolicy, taskQueue: string): Promise<ScheduleHandle | undefined> {
  if (!policy.enabled) {
    await deleteSchedule(client, driftScheduleId(policy.tenantId));
    return undefined;
  }
  return ensureIntervalSchedule<typeof configurationDriftCheck>(client, {
    scheduleId: driftScheduleId(policy.tenantId),
    workflowType: 'configurationDriftCheck',
    args: [{ tenantId: policy.tenantId, action: policy.action }],
    taskQueue,
    every: `${policy.intervalMinutes}m`,
    workflowExecutionTimeout: '6h',
    typedSearchAttributes: driftCheckSearchAttributes(policy.tenantId),
  });
}

/** At start: every enabled tenant's schedule exists and follows its policy. Returns how many. */
export async function ensureDriftSchedules(client: Client, policies: DriftPolicies, taskQueue: string): Promise<number> {
  const enabled = await policies.listEnabled();
  for (const policy of enabled) await applyDriftSchedule(client, policy, taskQueue);
  return enabled.length;
}
