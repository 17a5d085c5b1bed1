/**
 * Where a tenant's compliance policy and its approvers' exceptions are kept. A tenant without a
 * policy gets the defaults (every mandatory rule on and critical); an exception covers one rule for
 * one device or one template until it expires or is revoked.
 */
import { and, desc, eq, gt, inArray, isNull, or, type SQL } from 'drizzle-orm';
import { z } from 'zod';
import type { Database } from '../db/client';
import { complianceOverrides, compliancePolicies, type ComplianceOverrideRow } from '../db/schema';
import { NotFoundError, ValidationError, type FieldProblem } from '../foundation/errors';
import { fieldProblems } from '../foundation/validation';
import {
  complianceRuleIds,
  complianceSeverities,
  defaultCompliancePolicy,
  ruleDefinition,
  type ApplicableOverride,
  type CompliancePolicy,
  type ComplianceRuleId,
} from './compliance';

export const compliancePolicyInputSchema = z
  .object({
    /** Rules not named here return to their defaults. */
    rules: z
      .partialRecord(
        z.enum(complianceRuleIds),
        z
          .object({
            enabled: z.boolean(),
            severity: z.enum(complianceSeverities).optional(),
            parameters: z.record(z.string(), z.unknown()).optional(),
          })
          .strict(),
      )
      .default({}),
  })
  .strict();
export type CompliancePolicyInput = z.infer<typeof compliancePolicyInputSchema>;

/** Device ids per query when looking up exceptions for many devices at once. */
const deviceIdsPerQuery = 1000;

/** The longest an exception may last before someone must look at it again. */
export const maximumOverrideDays = 365;

export const complianceOverrideInputSchema = z
  .object({
    ruleId: z.enum(complianceRuleIds),
    deviceId: z.string().trim().min(1).max(128).optional(),
    templateId: z.string().trim().min(1).max(63).optional(),
    reason: z.string().trim().min(10, 'must say why, in at least 10 characters').max(2000),
    expiresAt: z.iso.datetime({ offset: true }),
  })
  .strict()
  .superRefine((input, context) => {
    if ((input.deviceId === undefined) === (input.templateId === undefined)) {
      context.addIssue({ code: 'custom', path: ['deviceId'], message: 'give exactly one of deviceId and templateId' });
    }
    const expiresAt = Date.parse(input.expiresAt);
    if (expiresAt <= Date.now()) context.addIssue({ code: 'custom', path: ['expiresAt'], message: 'must be in the future' });
    if (expiresAt > Date.now() + maximumOverrideDays * 86_400_000) {
      context.addIssue({ code: 'custom', path: ['expiresAt'], message: `must be within ${maximumOverrideDays} days` });
    }
  });
export type ComplianceOverrideInput = z.infer<typeof complianceOverrideInputSchema>;

export interface ComplianceOverride {
  id: string;
  tenantId: string;
  ruleId: string;
  scope: 'device' | 'template';
  deviceId?: string;
  templateId?: string;
  reason: string;
  requestedBy: string | null;
  approvedBy: string;
  createdAt: string;
  expiresAt: string;
  revokedAt: string | null;
  revokedBy: string | null;
  active: boolean;
}

export function overrideOf(row: ComplianceOverrideRow, now = new Date()): ComplianceOverride {
  return {
    id: row.id,
    tenantId: row.tenantId,
    ruleId: row.ruleId,
    scope: row.scope,
    ...(row.scope === 'device' ? { deviceId: row.scopeValue } : { templateId: row.scopeValue }),
    reason: row.reason,
    requestedBy: row.requestedBy,
    approvedBy: row.approvedBy,
    createdAt: row.createdAt.toISOString(),
    expiresAt: row.expiresAt.toISOString(),
    revokedAt: row.revokedAt?.toISOString() ?? null,
    revokedBy: row.revokedBy,
    active: !row.revokedAt && row.expiresAt > now,
  };
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export class CompliancePolicies {
  constructor(private readonly db: Database) {}

  /** The tenant's policy: its own settings over the defaults. */
  async policyFor(tenantId: string): Promise<CompliancePolicy> {
    const policy = defaultCompliancePolicy();
    const rows = await this.db.select().from(compliancePolicies).where(eq(compliancePolicies.tenantId, tenantId));
    for (const row of rows) {
      const definition = ruleDefinition(row.ruleId);
      if (!definition) continue;
      policy[definition.id] = {
        enabled: row.enabled,
        severity: row.severity,
        parameters: (definition.parameters as z.ZodObject).parse(row.parameters ?? {}),
        source: 'tenant',
      };
    }
    return policy;
  }

  /** Replaces the tenant's policy; each rule's parameters are checked against that rule's own schema. */
  async replacePolicy(tenantId: string, input: CompliancePolicyInput, updatedBy: string): Promise<CompliancePolicy> {
    const defaults = defaultCompliancePolicy();
    const problems: FieldProblem[] = [];
    const rows = Object.entries(input.rules).flatMap(([ruleId, setting]) => {
      if (!setting) return [];
      const definition = ruleDefinition(ruleId)!;
      const parsed = (definition.parameters as z.ZodObject).safeParse(setting.parameters ?? {});
      if (!parsed.success) {
        problems.push(...fieldProblems(parsed.error, `rules.${ruleId}.parameters`));
        return [];
      }
      return [
        {
          tenantId,
          ruleId,
          enabled: setting.enabled,
          severity: setting.severity ?? defaults[ruleId as ComplianceRuleId].severity,
          parameters: parsed.data as Record<string, unknown>,
          updatedBy,
        },
      ];
    });
    if (problems.length > 0) {
      throw new ValidationError(`compliance policy is invalid: ${problems.map((p) => `${p.field}: ${p.reason}`).join('; ')}`, {
        fields: problems,
      });
    }
    await this.db.transaction(async (tx) => {
      await tx.delete(compliancePolicies).where(eq(compliancePolicies.tenantId, tenantId));
      if (rows.length > 0) await tx.insert(compliancePolicies).values(rows);
    });
    return this.policyFor(tenantId);
  }

  /** When and by whom the policy was last changed; undefined while the tenant has the defaults. */
  async lastChange(tenantId: string): Promise<{ updatedAt: string; updatedBy: string } | undefined> {
    const [row] = await this.db
      .select({ updatedAt: compliancePolicies.updatedAt, updatedBy: compliancePolicies.updatedBy })
      .from(compliancePolicies)
      .where(eq(compliancePolicies.tenantId, tenantId))
      .orderBy(desc(compliancePolicies.updatedAt))
      .limit(1);
    return row ? { updatedAt: row.updatedAt.toISOString(), updatedBy: row.updatedBy } : undefined;
  }

  async createOverride(
    tenantId: string,
    input: ComplianceOverrideInput,
    approvedBy: string,
    requestedBy: string | undefined,
  ): Promise<ComplianceOverride> {
    const [row] = await this.db
      .insert(complianceOverrides)
      .values({
        tenantId,
        scope: input.deviceId !== undefined ? 'device' : 'template',
        scopeValue: (input.deviceId ?? input.templateId)!,
        ruleId: input.ruleId,
        reason: input.reason,
        requestedBy: requestedBy ?? null,
        approvedBy,
        expiresAt: new Date(input.expiresAt),
      })
      .returning();
    return overrideOf(row);
  }

  async getOverride(tenantId: string, id: string): Promise<ComplianceOverride> {
    if (!uuidPattern.test(id)) throw new NotFoundError(`override ${id} not found`);
    const [row] = await this.db
      .select()
      .from(complianceOverrides)
      .where(and(eq(complianceOverrides.tenantId, tenantId), eq(complianceOverrides.id, id)));
    if (!row) throw new NotFoundError(`override ${id} not found`);
    return overrideOf(row);
  }

  async listOverrides(
    tenantId: string,
    filter: { deviceId?: string; templateId?: string; activeOnly?: boolean } = {},
  ): Promise<ComplianceOverride[]> {
    const now = new Date();
    const conditions: (SQL | undefined)[] = [eq(complianceOverrides.tenantId, tenantId)];
    if (filter.deviceId !== undefined) {
      conditions.push(and(eq(complianceOverrides.scope, 'device'), eq(complianceOverrides.scopeValue, filter.deviceId)));
    }
    if (filter.templateId !== undefined) {
      conditions.push(and(eq(complianceOverrides.scope, 'template'), eq(complianceOverrides.scopeValue, filter.templateId)));
    }
    if (filter.activeOnly) conditions.push(isNull(complianceOverrides.revokedAt), gt(complianceOverrides.expiresAt, now));
    const rows = await this.db
      .select()
      .from(complianceOverrides)
      .where(and(...conditions))
      .orderBy(desc(complianceOverrides.createdAt))
      .limit(500);
    return rows.map((row) => overrideOf(row, now));
  }

  /** Revokes an exception; revoking one already revoked changes nothing. */
  async revokeOverride(tenantId: string, id: string, revokedBy: string): Promise<ComplianceOverride> {
    const current = await this.getOverride(tenantId, id);
    if (current.revokedAt) return current;
    const [row] = await this.db
      .update(complianceOverrides)
      .set({ revokedAt: new Date(), revokedBy })
      .where(and(eq(complianceOverrides.tenantId, tenantId), eq(complianceOverrides.id, id), isNull(complianceOverrides.revokedAt)))
      .returning();
    return row ? overrideOf(row) : this.getOverride(tenantId, id);
  }

  /** Exceptions in force now for any of these devices, or for the template. */
  async activeFor(tenantId: string, target: { deviceIds: string[]; templateId: string }): Promise<Map<string, ApplicableOverride[]>> {
    const now = new Date();
    const rows: ComplianceOverrideRow[] = [];
    // In slices: a bulk file of 100,000 devices would pass PostgreSQL's 65,535 bind parameters.
    for (let start = 0; start === 0 || start < target.deviceIds.length; start += deviceIdsPerQuery) {
      const deviceIds = target.deviceIds.slice(start, start + deviceIdsPerQuery);
      rows.push(
        ...(await this.db
          .select()
          .from(complianceOverrides)
          .where(
            and(
              eq(complianceOverrides.tenantId, tenantId),
              isNull(complianceOverrides.revokedAt),
              gt(complianceOverrides.expiresAt, now),
              or(
                start === 0 ? and(eq(complianceOverrides.scope, 'template'), eq(complianceOverrides.scopeValue, target.templateId)) : undefined,
                deviceIds.length > 0 ? and(eq(complianceOverrides.scope, 'device'), inArray(complianceOverrides.scopeValue, deviceIds)) : undefined,
              ),
            ),
          )),
      );
    }
    const byDevice = new Map(target.deviceIds.map((deviceId) => [deviceId, [] as ApplicableOverride[]]));
    for (const row of rows) if (row.scope === 'device') byDevice.get(row.scopeValue)?.push(applicable(row));
    const forTemplate = rows.filter((row) => row.scope === 'template').map(applicable);
    for (const overrides of byDevice.values()) overrides.push(...forTemplate);
    return byDevice;
  }
}

function applicable(row: ComplianceOverrideRow): ApplicableOverride {
  return { id: row.id, ruleId: row.ruleId, approvedBy: row.approvedBy, expiresAt: row.expiresAt };
}
