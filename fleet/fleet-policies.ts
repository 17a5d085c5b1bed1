/**
 * Each tenant's fleet policy: how often its active devices are probed and after how many failed
 * probes in a row one counts as offline, what unknown or known-bad firmware does to a run, and how
 * often per-device management secrets are rotated. Tenants that never set one get the service's
 * defaults (`HEALTH_CHECK_INTERVAL` and friends).
 */
import { eq } from 'drizzle-orm';
import { z } from 'zod';
import type { Database, DatabaseHandle } from '../db/client';
import { TenantReads } from '../db/tenant-reads';
import { fleetPolicies, type FleetPolicyRow } from '../db/schema';

const firmwareAction = z
  .enum(['block', 'approve', 'alert'])
  .describe('`block` fails identification for good and issues nothing; `approve` waits for an approver; `alert` goes on and alerts');

export const fleetPolicyInputSchema = z
  .object({
    healthChecksEnabled: z.boolean(),
    healthCheckIntervalSeconds: z.number().int().min(30).max(24 * 3600),
    offlineAfterFailures: z.number().int().min(1).max(100),
    healthProbeConcurrency: z.number().int().min(1).max(200),
    firmwareUnknown: firmwareAction,
    firmwareKnownBad: firmwareAction,
    credentialRotationDays: z.number().int().min(1).max(3650).nullable(),
  })
  .strict();
export type FleetPolicyInput = z.infer<typeof fleetPolicyInputSchema>;

export interface FleetPolicy extends FleetPolicyInput {
  tenantId: string;
  updatedBy: string | null;
  updatedAt: string | null;
}

export function toFleetPolicy(tenantId: string, row: FleetPolicyRow | undefined, defaults: FleetPolicyInput): FleetPolicy {
  if (!row) return { tenantId, ...defaults, updatedBy: null, updatedAt: null };
  return {
    tenantId,
    healthChecksEnabled: row.healthChecksEnabled,
    healthCheckIntervalSeconds: row.healthCheckIntervalSeconds,
    offlineAfterFailures: row.offlineAfterFailures,
    healthProbeConcurrency: row.healthProbeConcurrency,
    firmwareUnknown: row.firmwareUnknown,
    firmwareKnownBad: row.firmwareKnownBad,
    credentialRotationDays: row.credentialRotationDays,
    updatedBy: row.updatedBy,
    updatedAt: row.updatedAt.toISOString(),
  };
}

export class FleetPolicies {
  /** Each tenant's policy as last read: every provisioning run asks for it (see `TenantReads`). */
  readonly reads: TenantReads<FleetPolicy>;

  /**
   * `defaults`: what a tenant without a policy of its own gets, from the service's settings.
   * `notices`: where changes are announced to other processes; without it nothing is kept.
   */
  constructor(
    private readonly db: Database,
    readonly defaults: FleetPolicyInput,
    notices?: Pick<DatabaseHandle, 'notify'>,
  ) {
    this.reads = new TenantReads('fleet_policy_changed', notices);
  }

  async get(tenantId: string): Promise<FleetPolicy> {
    return this.reads.read(tenantId, '', async () => {
      const [row] = await this.db.select().from(fleetPolicies).where(eq(fleetPolicies.tenantId, tenantId));
      return toFleetPolicy(tenantId, row, this.defaults);
    });
  }

  async put(tenantId: string, input: FleetPolicyInput, actor: string): Promise<FleetPolicy> {
    const values = { ...fleetPolicyInputSchema.parse(input), updatedBy: actor };
    const [row] = await this.db
      .insert(fleetPolicies)
      .values({ tenantId, ...values })
      .onConflictDoUpdate({ target: fleetPolicies.tenantId, set: { ...values, updatedAt: new Date() } })
      .returning();
    await this.reads.changed(tenantId);
    return toFleetPolicy(tenantId, row, this.defaults);
  }

  /** Tenants that set a policy of their own. */
  async tenants(): Promise<string[]> {
    const rows = await this.db.select({ tenantId: fleetPolicies.tenantId }).from(fleetPolicies);
    return rows.map((row) => row.tenantId);
  }
}
