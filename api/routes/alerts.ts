import { z } from 'zod';
import { alertState, type Alert, type AlertStore } from '../../alerts/alert-store';
import { operation, type AnyOperation } from '../operation';

const timestamp = z.iso.datetime({ offset: true });

export const alertSchema = z
  .object({
    id: z.uuid(),
    kind: z.string(),
    severity: z.enum(['info', 'warning', 'critical']),
    state: z.enum(['firing', 'resolved']),
    summary: z.string(),
    details: z.record(z.string(), z.unknown()),
    firstRaisedAt: timestamp,
    lastRaisedAt: timestamp,
    resolvedAt: timestamp.nullable(),
    deliveredAt: timestamp.nullable(),
  })
  .meta({ id: 'Alert' });

export function alertOf(row: Alert) {
  return {
    id: row.id,
    kind: row.kind,
    severity: row.severity,
    state: alertState(row),
    summary: row.summary,
    details: row.details as Record<string, unknown>,
    firstRaisedAt: row.firstRaisedAt.toISOString(),
    lastRaisedAt: row.lastRaisedAt.toISOString(),
    resolvedAt: row.resolvedAt?.toISOString() ?? null,
    deliveredAt: row.deliveredAt?.toISOString() ?? null,
  };
}

export function alertOperations(alerts: AlertStore): AnyOperation[] {
  return [
    operation({
      operationId: 'listAlerts',
      method: 'get',
      path: '/api/v1/alerts',
      summary: "List the tenant's alerts, newest first",
      tag: 'alerts',
      permission: 'provisioning:read',
      query: z
        .object({
          state: z.enum(['firing', 'resolved']).optional(),
          limit: z.coerce.number().int().min(1).max(500).default(100),
        })
        .strict(),
      responses: { 200: { description: 'Alerts', schema: z.object({ alerts: z.array(alertSchema) }) } },
      async handle({ res, tenantId, query }) {
        const open = query.state === undefined ? undefined : query.state === 'firing';
        res.json({ alerts: (await alerts.list(tenantId, { open, limit: query.limit })).map(alertOf) });
      },
    }),
  ];
}
