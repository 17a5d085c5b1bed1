/**
 * Approval policies: which provisionings need a person's approval (by template, site or device
 * type) and how long the run waits before escalating and before giving up.
 */
import { and, eq, or } from 'drizzle-orm';
import { z } from 'zod';
import type { Database } from '../db/client';
import { approvalPolicies, type ApprovalPolicyRow } from '../db/schema';
import { ConflictError, NotFoundError } from '../foundation/errors';
import type { ApprovalRequirement } from '../contracts/provisioning';

export const approvalPolicyInputSchema = z
  .object({
    scope: z.enum(['template', 'site', 'device_type']),
    scopeValue: z.string().trim().min(1).max(64),
    timeoutSeconds: z.number().int().min(60).max(30 * 24 * 3600),
    escalateAfterSeconds: z.number().int().min(60).optional(),
  })
  .strict()
  .refine((p) => p.escalateAfterSeconds === undefined || p.escalateAfterSeconds < p.timeoutSeconds, {
    message: 'must be shorter than timeoutSeconds',
    path: ['escalateAfterSeconds'],
  });
export type ApprovalPolicyInput = z.infer<typeof approvalPolicyInputSchema>;
/** A policy as stored: what it covers and how long a run covered by it waits. */
export type ApprovalPolicy = ApprovalPolicyRow;

export class ApprovalPolicies {
  constructor(private readonly db: Database) {}

  list(tenantId: string): Promise<ApprovalPolicyRow[]> {
    return this.db.select().from(approvalPolicies).where(eq(approvalPolicies.tenantId, tenantId)).orderBy(approvalPolicies.createdAt);
  }

  async create(tenantId: string, input: ApprovalPolicyInput): Promise<ApprovalPolicyRow> {
    const [row] = await this.db
      .insert(approvalPolicies)
      .values({ tenantId, ...input, escalateAfterSeconds: input.escalateAfterSeconds ?? null })
      .onConflictDoNothing()
      .returning();
    if (!row) {
      throw new ConflictError(`a policy for ${input.scope} ${input.scopeValue} exists`, {
        fields: [{ field: 'scopeValue', reason: 'already covered by a policy' }],
      });
    }
    return row;
  }

  async remove(tenantId: string, id: string): Promise<void> {
    const deleted = await this.db
      .delete(approvalPolicies)
      .where(and(eq(approvalPolicies.tenantId, tenantId), eq(approvalPolicies.id, id)))
      .returning({ id: approvalPolicies.id });
    if (deleted.length === 0) throw new NotFoundError(`approval policy ${id} not found`);
  }

  /** What a provisioning must wait for: every matching policy applies, the strictest timing wins. */
  async requirementFor(
    tenantId: string,
    target: { templateId: string; site: string; deviceType: string },
  ): Promise<ApprovalRequirement | undefined> {
    const matching = await this.db
      .select()
      .from(approvalPolicies)
      .where(
        and(
          eq(approvalPolicies.tenantId, tenantId),
          or(
            and(eq(approvalPolicies.scope, 'template'), eq(approvalPolicies.scopeValue, target.templateId)),
            and(eq(approvalPolicies.scope, 'site'), eq(approvalPolicies.scopeValue, target.site)),
            and(eq(approvalPolicies.scope, 'device_type'), eq(approvalPolicies.scopeValue, target.deviceType)),
          ),
        ),
      );
    if (matching.length === 0) return undefined;
    const escalations = matching.map((p) => p.escalateAfterSeconds).filter((s): s is number => s !== null);
    return {
      policyIds: matching.map((p) => p.id),
      timeoutSeconds: Math.min(...matching.map((p) => p.timeoutSeconds)),
      ...(escalations.length > 0 ? { escalateAfterSeconds: Math.min(...escalations) } : {}),
    };
  }
}
