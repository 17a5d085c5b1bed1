import { z } from 'zod';
import { ValidationError } from '../../foundation/errors';
import { inventoryExportColumns, type FleetInventory } from '../../fleet/inventory';
import { deviceTypes } from '../../provisioning/requests';
import { identifierPattern, identifierReason } from '../../registry/identifiers';
import { lifecycleStates, type InventoryFilters, type InventoryPosition, type LifecycleState } from '../../registry/device-registry';
import type { RunPosition } from '../../registry/run-archive';
import { operation, type AnyOperation } from '../operation';
import { alertOf, alertSchema } from './alerts';

const timestamp = z.iso.datetime({ offset: true });
const identifier = z.string().regex(identifierPattern, identifierReason);
const deviceParams = z.object({ deviceId: identifier });

const filterFields = {
  site: identifier.optional(),
  protocol: z.string().max(32).optional(),
  deviceType: z.enum(deviceTypes).optional(),
  state: z.enum([...(lifecycleStates as [LifecycleState, ...LifecycleState[]]), 'offline']).optional(),
  health: z.enum(['unknown', 'online', 'offline']).optional(),
  firmwareStatus: z.enum(['unchecked', 'approved', 'unknown', 'known_bad']).optional(),
  vendor: z.string().min(1).max(128).optional(),
  model: z.string().min(1).max(128).optional(),
  certificateExpiringWithinDays: z.coerce.number().int().min(0).max(3650).optional(),
  q: z.string().min(1).max(128).optional(),
};

const listQuery = z
  .object({
    ...filterFields,
    sort: z.enum(['deviceId', 'site']).default('deviceId'),
    limit: z.coerce.number().int().min(1).max(500).default(100),
    cursor: z.string().max(300).optional(),
  })
  .strict();

const exportQuery = z.object({ ...filterFields, format: z.enum(['csv', 'xlsx']).default('csv') }).strict();

/** The filters among a query's parameters, those given. */
function filtersOf(query: Record<string, unknown>): InventoryFilters {
  return Object.fromEntries(Object.keys(filterFields).flatMap((key) => (query[key] === undefined ? [] : [[key, query[key]]])));
}

const badCursor = () =>
  new ValidationError('cursor is not one this API returned', { fields: [{ field: 'query:cursor', reason: 'must be the `next` value of a previous page' }] });

/** Opaque keyset positions: base64url of `key|deviceId` (identifiers never hold `|`). */
function encodeDeviceCursor(position: InventoryPosition): string {
  return Buffer.from(`${position.key}|${position.deviceId}`).toString('base64url');
}

function decodeDeviceCursor(cursor: string): InventoryPosition {
  const [key, deviceId, ...rest] = Buffer.from(cursor, 'base64url').toString('utf8').split('|');
  if (rest.length > 0 || !key || !deviceId || !identifierPattern.test(key) || !identifierPattern.test(deviceId)) throw badCursor();
  return { key, deviceId };
}

function encodeRunCursor(position: RunPosition): string {
  return Buffer.from(`${position.finishedAt.toISOString()}|${position.runId}`).toString('base64url');
}

function decodeRunCursor(cursor: string): RunPosition {
  const [at, runId, ...rest] = Buffer.from(cursor, 'base64url').toString('utf8').split('|');
  const finishedAt = new Date(at ?? '');
  if (rest.length > 0 || !runId || !/^[0-9a-f-]{36}$/.test(runId) || Number.isNaN(finishedAt.getTime())) throw badCursor();
  return { finishedAt, runId };
}

const inventoryDeviceSchema = z
  .object({
    deviceId: z.string(),
    name: z.string().nullable(),
    serialNumber: z.string(),
    macAddress: z.string(),
    address: z.string(),
    protocol: z.string(),
    deviceType: z.string(),
    site: z.string(),
    vendor: z.string().nullable(),
    model: z.string().nullable(),
    firmwareVersion: z.string().nullable(),
    state: z.enum(lifecycleStates as [LifecycleState, ...LifecycleState[]]),
    health: z.enum(['unknown', 'online', 'offline']),
    healthCheckedAt: timestamp.nullable(),
    firmwareStatus: z.enum(['unchecked', 'approved', 'unknown', 'known_bad']),
    certificateExpiresAt: timestamp.nullable(),
    configurationTemplate: z.string().nullable(),
    configurationVersion: z.number().int().nullable(),
    activatedAt: timestamp.nullable(),
    decommissionedAt: timestamp.nullable(),
    metadata: z.record(z.string(), z.string()),
    updatedAt: timestamp,
  })
  .meta({ id: 'InventoryDevice' });

const archivedRunSchema = z
  .object({
    workflowId: z.string(),
    runId: z.string(),
    provisioningMethod: z.string(),
    outcome: z.enum(['completed', 'failed', 'cancelled']),
    startedAt: timestamp,
    finishedAt: timestamp,
    certificateSerial: z.string().optional(),
  })
  .meta({ id: 'ArchivedRun' });

const deviceViewSchema = inventoryDeviceSchema
  .extend({
    firmware: z.object({
      status: z.enum(['unchecked', 'approved', 'unknown', 'known_bad']),
      hash: z.string().nullable(),
      verdict: z.record(z.string(), z.unknown()).nullable(),
    }),
    healthDetail: z.object({
      status: z.enum(['unknown', 'online', 'offline']),
      checkedAt: timestamp.nullable(),
      changedAt: timestamp.nullable(),
      consecutiveFailures: z.number().int(),
      uptimeSeconds: z.number().int().nullable(),
      lastRebootAt: timestamp.nullable(),
    }),
    certificate: z
      .object({
        id: z.string(),
        serialNumber: z.string(),
        fingerprint: z.string(),
        issuedAt: timestamp,
        expiresAt: timestamp,
        revokedAt: timestamp.nullable(),
        pins: z.object({ certificateSha256: z.string(), publicKeySha256: z.string(), issuerCertificateSha256: z.array(z.string()) }),
      })
      .nullable(),
    configuration: z.object({
      templateId: z.string().nullable(),
      version: z.number().int().nullable(),
      hash: z.string().nullable(),
      drift: z.enum(['in-sync', 'drifted', 'unchecked']),
    }),
    lifecycle: z.object({
      decommissionReason: z.string().nullable(),
      replacedBy: z.string().nullable(),
      replacementOf: z.string().nullable(),
      credentialsRotatedAt: timestamp.nullable(),
    }),
    lastRun: archivedRunSchema.nullable(),
    openAlerts: z.array(alertSchema),
  })
  .meta({ id: 'DeviceView' });

export function deviceOperations(inventory: FleetInventory): AnyOperation[] {
  return [
    operation({
      operationId: 'listDevices',
      method: 'get',
      path: '/api/v1/devices',
      summary: "The tenant's devices, filtered and keyset-paged: lifecycle, health, firmware verdict, certificate expiry, free text",
      tag: 'devices',
      permission: 'provisioning:read',
      query: listQuery,
      responses: {
        200: {
          description: 'A page of devices; `next` continues it',
          schema: z.object({ devices: z.array(inventoryDeviceSchema), next: z.string().optional() }),
        },
      },
      async handle({ res, tenantId, query }) {
        const page = await inventory.list(tenantId, filtersOf(query), {
          limit: query.limit,
          sort: query.sort,
          ...(query.cursor ? { after: decodeDeviceCursor(query.cursor) } : {}),
        });
        res.json({ devices: page.devices, ...(page.next ? { next: encodeDeviceCursor(page.next) } : {}) });
      },
    }),
    operation({
      operationId: 'exportDevices',
      method: 'get',
      path: '/api/v1/devices/export',
      summary: 'Download the devices the filters select as CSV or an Excel workbook (cells never run as formulas)',
      tag: 'devices',
      permission: 'provisioning:read',
      query: exportQuery,
      responses: {
        200: {
          description: `One row per device: ${inventoryExportColumns.join(', ')}`,
          contentType: 'text/csv',
          alsoAs: ['application/vnd.openxmlformats-officedocument.spreadsheetml.sheet'],
        },
      },
      async handle({ res, tenantId, query }) {
        const file = await inventory.export(tenantId, filtersOf(query), query.format);
        res.type(query.format === 'csv' ? 'text/csv' : 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet');
        res.attachment(`devices.${query.format}`).send(file);
      },
    }),
    operation({
      operationId: 'getDevice',
      method: 'get',
      path: '/api/v1/devices/{deviceId}',
      summary: 'One device: identity, site, state, health, firmware verdict, certificate and pins, configuration and drift, last run, open alerts',
      tag: 'devices',
      permission: 'provisioning:read',
      params: deviceParams,
      responses: { 200: { description: 'The device', schema: deviceViewSchema } },
      async handle({ res, tenantId, params }) {
        const view = await inventory.device(tenantId, params.deviceId);
        res.json({ ...view, openAlerts: view.openAlerts.map(alertOf) });
      },
    }),
    operation({
      operationId: 'listDeviceRuns',
      method: 'get',
      path: '/api/v1/devices/{deviceId}/runs',
      summary: "Every provisioning run of the device, newest first, from the archive (kept after Temporal's retention)",
      tag: 'devices',
      permission: 'provisioning:read',
      params: deviceParams,
      query: z
        .object({ limit: z.coerce.number().int().min(1).max(500).default(100), cursor: z.string().max(300).optional() })
        .strict(),
      responses: {
        200: { description: 'Runs; `next` continues the list', schema: z.object({ runs: z.array(archivedRunSchema), next: z.string().optional() }) },
      },
      async handle({ res, tenantId, params, query }) {
        const page = await inventory.runs(tenantId, params.deviceId, {
          limit: query.limit,
          ...(query.cursor ? { after: decodeRunCursor(query.cursor) } : {}),
        });
        res.json({ runs: page.runs, ...(page.next ? { next: encodeRunCursor(page.next) } : {}) });
      },
    }),
  ];
}
