/**
 * Device health over HTTP: the tenant's fleet policy (health probes, firmware verdicts, credential
 * rotation), sweeps of a site on demand, and what the sweeps saw happen to a device. The fleet
 * health service starts the sweeps and keeps the schedules; these operations declare them.
 */
import { z } from 'zod';
import { ValidationError } from '../../foundation/errors';
import { fleetPolicyInputSchema } from '../../fleet/fleet-policies';
import type { FleetHealth } from '../../fleet/fleet-health';
import { healthEventKinds, type HealthEventPosition } from '../../fleet/health-events';
import { identifierPattern, identifierReason } from '../../registry/identifiers';
import { operation, type AnyOperation } from '../operation';

const fleet = '/api/v1/fleet';
const timestamp = z.iso.datetime({ offset: true });
const identifier = z.string().regex(identifierPattern, identifierReason);

const fleetPolicySchema = z
  .object({
    tenantId: z.string(),
    healthChecksEnabled: z.boolean(),
    healthCheckIntervalSeconds: z.number().int(),
    offlineAfterFailures: z.number().int(),
    healthProbeConcurrency: z.number().int(),
    firmwareUnknown: z.enum(['block', 'approve', 'alert']),
    firmwareKnownBad: z.enum(['block', 'approve', 'alert']),
    credentialRotationDays: z.number().int().nullable(),
    healthSchedules: z.array(z.string()).describe('The Temporal Schedules sweeping the sites with active devices, one per site'),
    updatedBy: z.string().nullable(),
    updatedAt: timestamp.nullable(),
  })
  .meta({ id: 'FleetPolicy' });

const healthSweepSchema = z
  .object({
    healthSweepId: z.string(),
    state: z.enum(['running']),
    tenantId: z.string(),
    site: z.string(),
    probed: z.number().int(),
    online: z.number().int(),
    unanswered: z.number().int(),
    wentOffline: z.number().int(),
    cameBack: z.number().int(),
    rebooted: z.number().int(),
    certificateMismatches: z.number().int(),
    unsupported: z.number().int(),
  })
  .meta({ id: 'HealthSweep' });

const healthEventSchema = z
  .object({
    id: z.uuid(),
    deviceId: z.string(),
    kind: z.enum(healthEventKinds as [string, ...string[]]),
    details: z.record(z.string(), z.unknown()),
    occurredAt: timestamp,
  })
  .meta({ id: 'DeviceHealthEvent' });

const deviceParams = z.object({ deviceId: identifier });
const eventsQuery = z
  .object({
    limit: z.coerce.number().int().min(1).max(500).default(100),
    cursor: z.string().max(200).optional().describe('The `next` value of the previous page'),
  })
  .strict();

/** Opaque keyset position: base64url of `occurredAt|id`. */
function encodeCursor(position: HealthEventPosition): string {
  return Buffer.from(`${position.occurredAt.toISOString()}|${position.id}`).toString('base64url');
}

function decodeCursor(cursor: string): HealthEventPosition {
  const [at, id] = Buffer.from(cursor, 'base64url').toString('utf8').split('|');
  const occurredAt = new Date(at ?? '');
  if (!id || !z.uuid().safeParse(id).success || Number.isNaN(occurredAt.getTime())) {
    throw new ValidationError('cursor is not one this API returned', { fields: [{ field: 'query:cursor', reason: 'must be the `next` value of a previous page' }] });
  }
  return { occurredAt, id };
}

export function fleetHealthOperations(health: FleetHealth): AnyOperation[] {
  return [
    operation({
      operationId: 'getFleetPolicy',
      method: 'get',
      path: `${fleet}/policy`,
      summary: "The tenant's fleet policy: health probes, firmware verdicts, credential rotation",
      tag: 'fleet',
      permission: 'configuration:read',
      responses: { 200: { description: 'The policy in force (the service defaults until the tenant sets one)', schema: fleetPolicySchema } },
      async handle({ res, tenantId }) {
        res.json(await health.policy(tenantId));
      },
    }),
    operation({
      operationId: 'putFleetPolicy',
      method: 'put',
      path: `${fleet}/policy`,
      summary: "Set the fleet policy; the health schedules of the tenant's sites follow it",
      tag: 'fleet',
      permission: 'compliance:manage',
      body: fleetPolicyInputSchema,
      responses: { 200: { description: 'The policy in force', schema: fleetPolicySchema } },
      async handle({ res, tenantId, principal, body }) {
        res.json(await health.setPolicy(tenantId, body, principal.subject));
      },
    }),
    operation({
      operationId: 'startHealthSweep',
      method: 'post',
      path: `${fleet}/health-checks`,
      summary: "Probe a site's active devices now",
      tag: 'fleet',
      permission: 'configuration:deploy',
      body: z.object({ site: identifier }).strict(),
      responses: {
        202: { description: 'The sweep started; the health and events of each device follow as it is probed', schema: healthSweepSchema },
        404: { description: 'The site has no active devices' },
      },
      async handle({ res, tenantId, body }) {
        res.status(202).json(await health.sweepNow(tenantId, body.site));
      },
    }),
    operation({
      operationId: 'listDeviceHealthEvents',
      method: 'get',
      path: '/api/v1/devices/{deviceId}/health-events',
      summary: 'What the health sweeps saw happen to a device (offline, back online, rebooted, a foreign certificate), newest first',
      tag: 'fleet',
      permission: 'provisioning:read',
      params: deviceParams,
      query: eventsQuery,
      responses: {
        200: { description: 'A page of events; `next` continues it', schema: z.object({ events: z.array(healthEventSchema), next: z.string().optional() }) },
        404: { description: 'No such device' },
      },
      async handle({ res, tenantId, params, query }) {
        const page = await health.events(tenantId, params.deviceId, { limit: query.limit, ...(query.cursor ? { before: decodeCursor(query.cursor) } : {}) });
        res.json({ events: page.items, ...(page.next ? { next: encodeCursor(page.next) } : {}) });
      },
    }),
  ];
}
