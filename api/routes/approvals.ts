import { z } from 'zod';
import { approvalPolicyInputSchema, type ApprovalPolicies, type ApprovalPolicy } from '../../provisioning/approval-policies';
import type { ProvisioningService } from '../../provisioning/provisioning-service';
import { operation, type AnyOperation } from '../operation';

const policySchema = z
  .object({
    id: z.uuid(),
    tenantId: z.string(),
    scope: z.enum(['template', 'site', 'device_type']),
    scopeValue: z.string(),
    timeoutSeconds: z.number().int(),
    escalateAfterSeconds: z.number().int().nullable(),
    createdAt: z.iso.datetime({ offset: true }),
  })
  .meta({ id: 'ApprovalPolicy' });

const outcomeSchema = z
  .object({
    decision: z.enum(['approve', 'reject']),
    decidedBy: z.string(),
    decidedAt: z.iso.datetime({ offset: true }),
    comment: z.string().optional(),
  })
  .meta({ id: 'ApprovalOutcome' });

function policyOf(row: ApprovalPolicy) {
  return {
    id: row.id,
    tenantId: row.tenantId,
    scope: row.scope,
    scopeValue: row.scopeValue,
    timeoutSeconds: row.timeoutSeconds,
    escalateAfterSeconds: row.escalateAfterSeconds,
    createdAt: row.createdAt.toISOString(),
  };
}

const policiesPath = '/api/v1/provisioning/approval-policies';

export function approvalOperations(provisioning: ProvisioningService, policies: ApprovalPolicies): AnyOperation[] {
  return [
    operation({
      operationId: 'decideApproval',
      method: 'post',
      path: '/api/v1/provisioning/devices/{provisioningId}/approval',
      summary: 'Approve or reject a provisioning run waiting for approval',
      tag: 'approvals',
      permission: 'provisioning:approve',
      params: z.object({ provisioningId: z.string().min(1).max(200) }),
      body: z
        .object({ decision: z.enum(['approve', 'reject']), comment: z.string().trim().max(1000).optional() })
        .strict(),
      responses: {
        200: { description: 'The decision as the run recorded it', schema: outcomeSchema },
        409: { description: 'The run is not waiting for approval' },
      },
      async handle({ res, tenantId, principal, params, body }) {
        const outcome = await provisioning.decideApproval(tenantId, params.provisioningId, {
          decision: body.decision,
          comment: body.comment,
          approver: { subject: principal.subject, tenantId: principal.tenantId, role: principal.role, name: principal.name },
        });
        res.json(outcome);
      },
    }),
    operation({
      operationId: 'listApprovalPolicies',
      method: 'get',
      path: policiesPath,
      summary: 'List approval policies',
      tag: 'approvals',
      permission: 'policies:manage',
      responses: { 200: { description: 'The policies', schema: z.object({ policies: z.array(policySchema) }) } },
      async handle({ res, tenantId }) {
        res.json({ policies: (await policies.list(tenantId)).map(policyOf) });
      },
    }),
    operation({
      operationId: 'createApprovalPolicy',
      method: 'post',
      path: policiesPath,
      summary: 'Require approval for a template, site or device type',
      tag: 'approvals',
      permission: 'policies:manage',
      body: approvalPolicyInputSchema,
      responses: {
        201: { description: 'Created', schema: policySchema },
        409: { description: 'A policy already covers this scope' },
      },
      async handle({ res, tenantId, body }) {
        res.status(201).json(policyOf(await policies.create(tenantId, body)));
      },
    }),
    operation({
      operationId: 'deleteApprovalPolicy',
      method: 'delete',
      path: `${policiesPath}/{policyId}`,
      summary: 'Delete an approval policy',
      tag: 'approvals',
      permission: 'policies:manage',
      params: z.object({ policyId: z.uuid() }),
      responses: { 204: { description: 'Deleted' } },
      async handle({ res, tenantId, params }) {
        await policies.remove(tenantId, params.policyId);
        res.status(204).end();
      },
    }),
  ];
}
