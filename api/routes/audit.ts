import { z } from 'zod';
import { maximumAuditSequence, type AuditEvent, type AuditLog } from '../../audit/audit-log';
import { operation, type AnyOperation } from '../operation';

const eventSchema = z
  .object({
    sequence: z.number().int(),
    occurredAt: z.iso.datetime({ offset: true }),
    actor: z.string(),
    actorType: z.string(),
    action: z.string(),
    targetType: z.string().nullable(),
    targetId: z.string().nullable(),
    outcome: z.enum(['success', 'failure']),
    details: z.record(z.string(), z.unknown()),
    previousHash: z.string(),
    hash: z.string(),
  })
  .meta({ id: 'AuditEvent' });

function eventOf(row: AuditEvent) {
  return {
    sequence: row.sequence,
    occurredAt: row.occurredAt.toISOString(),
    actor: row.actor,
    actorType: row.actorType,
    action: row.action,
    targetType: row.targetType,
    targetId: row.targetId,
    outcome: row.outcome,
    details: row.details as Record<string, unknown>,
    previousHash: row.previousHash,
    hash: row.hash,
  };
}

export function auditOperations(audit: AuditLog): AnyOperation[] {
  return [
    operation({
      operationId: 'listAuditEvents',
      method: 'get',
      path: '/api/v1/audit/events',
      summary: "List the tenant's audit events, oldest first",
      tag: 'audit',
      permission: 'audit:read',
      query: z
        .object({
          after: z.coerce.number().int().min(0).max(maximumAuditSequence).optional(),
          limit: z.coerce.number().int().min(1).max(500).default(100),
          action: z.string().max(100).optional(),
          targetType: z.string().max(100).optional(),
          targetId: z.string().max(200).optional(),
        })
        .strict(),
      responses: { 200: { description: 'A page of events', schema: z.object({ events: z.array(eventSchema) }) } },
      async handle({ res, tenantId, query }) {
        res.json({ events: (await audit.list(tenantId, query)).map(eventOf) });
      },
    }),
    operation({
      operationId: 'verifyAuditChain',
      method: 'get',
      path: '/api/v1/audit/verify',
      summary: "Verify the tenant's audit hash chain",
      tag: 'audit',
      permission: 'audit:read',
      responses: {
        200: {
          description: 'Whether every event is intact and linked to the one before',
          schema: z.object({
            ok: z.boolean(),
            eventsChecked: z.number().int(),
            lastSequence: z.number().int(),
            firstProblem: z.object({ sequence: z.number().int(), problem: z.string() }).optional(),
          }),
        },
      },
      async handle({ res, tenantId }) {
        res.json(await audit.verify(tenantId));
      },
    }),
  ];
}
