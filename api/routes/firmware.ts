/**
 * The tenant's firmware catalogue (approved versions with their image digests, known-bad versions
 * with the reason) and the firmware report: what the fleet runs and which devices are on firmware
 * that is not approved. Reading is a compliance reader's; changing the catalogue is the compliance
 * manager's, and each change is audited.
 */
import { z } from 'zod';
import type { AuditLog } from '../../audit/audit-log';
import { firmwareCatalogueEntryInputSchema, firmwareStatuses, type FirmwareCatalogue, type FirmwareCatalogueEntry } from '../../fleet/firmware-catalogue';
import type { FirmwareReports } from '../../fleet/firmware-report';
import { identifierPattern } from '../../registry/identifiers';
import type { Principal } from '../../access/roles';
import { operation, type AnyOperation } from '../operation';

const firmwarePath = '/api/v1/firmware';
const timestamp = z.iso.datetime({ offset: true });

const entrySchema = z
  .object({
    id: z.uuid(),
    vendor: z.string(),
    model: z.string(),
    version: z.string(),
    status: z.enum(firmwareStatuses),
    sha256: z.string().nullable().describe('Null: the vendor publishes no digest, devices of this version are judged by version only'),
    reason: z.string().nullable(),
    createdBy: z.string(),
    createdAt: timestamp,
    updatedAt: timestamp,
  })
  .meta({ id: 'FirmwareCatalogueEntry' });

const verdictStatus = z.enum(['unchecked', 'approved', 'unknown', 'known_bad']);

const reportSchema = z
  .object({
    tenantId: z.string(),
    totals: z.object({
      devices: z.number().int(),
      approved: z.number().int(),
      unknown: z.number().int(),
      knownBad: z.number().int(),
      unchecked: z.number().int(),
    }),
    firmware: z.array(
      z.object({
        manufacturer: z.string().nullable(),
        model: z.string().nullable(),
        firmwareVersion: z.string().nullable(),
        firmwareStatus: verdictStatus,
        count: z.number().int(),
      }),
    ),
    unapproved: z.array(
      z.object({
        deviceId: z.string(),
        name: z.string().nullable(),
        site: z.string(),
        protocol: z.string(),
        lifecycleState: z.string(),
        manufacturer: z.string().nullable(),
        model: z.string().nullable(),
        firmwareVersion: z.string().nullable(),
        firmwareStatus: verdictStatus,
        verdict: z.record(z.string(), z.unknown()).nullable(),
      }),
    ),
    next: z.string().optional(),
  })
  .meta({ id: 'FirmwareReport' });

const catalogueQuery = z
  .object({ vendor: z.string().trim().min(1).max(128).optional(), model: z.string().trim().min(1).max(128).optional() })
  .strict();

const reportQuery = z
  .object({
    limit: z.coerce.number().int().min(1).max(500).default(100),
    cursor: z.string().regex(identifierPattern, 'must be the `next` value of a previous page').optional(),
  })
  .strict();

export interface FirmwareApiDependencies {
  firmwareCatalogue: FirmwareCatalogue;
  firmwareReports: FirmwareReports;
  audit: AuditLog;
}

export function firmwareOperations(deps: FirmwareApiDependencies): AnyOperation[] {
  const { firmwareCatalogue: catalogue, firmwareReports: reports, audit } = deps;

  const recordChange = (tenantId: string, principal: Principal, action: string, entry: FirmwareCatalogueEntry) =>
    audit.append({
      tenantId,
      actor: principal.subject,
      actorType: principal.kind === 'api-key' ? 'api-key' : 'user',
      action,
      targetType: 'firmware',
      targetId: entry.id,
      details: { vendor: entry.vendor, model: entry.model, version: entry.version, status: entry.status, sha256: entry.sha256, reason: entry.reason },
    });

  return [
    operation({
      operationId: 'listFirmwareCatalogue',
      method: 'get',
      path: `${firmwarePath}/catalogue`,
      summary: "List the tenant's firmware catalogue",
      tag: 'firmware',
      permission: 'compliance:read',
      query: catalogueQuery,
      responses: { 200: { description: 'By vendor, model and version', schema: z.object({ entries: z.array(entrySchema) }) } },
      async handle({ res, tenantId, query }) {
        res.json({ entries: await catalogue.list(tenantId, query) });
      },
    }),
    operation({
      operationId: 'putFirmwareCatalogueEntry',
      method: 'put',
      path: `${firmwarePath}/catalogue`,
      summary: 'Approve a firmware version (with its image digest) or mark one known bad (with the reason)',
      tag: 'firmware',
      permission: 'compliance:manage',
      body: firmwareCatalogueEntryInputSchema,
      responses: {
        200: { description: 'The entry for this vendor, model and version was replaced', schema: entrySchema },
        201: { description: 'Added', schema: entrySchema },
      },
      async handle({ res, tenantId, principal, body }) {
        const { entry, created } = await catalogue.upsert(tenantId, body, principal.subject);
        await recordChange(tenantId, principal, created ? 'firmware.catalogue_added' : 'firmware.catalogue_changed', entry);
        res.status(created ? 201 : 200).json(entry);
      },
    }),
    operation({
      operationId: 'deleteFirmwareCatalogueEntry',
      method: 'delete',
      path: `${firmwarePath}/catalogue/{entryId}`,
      summary: 'Remove a firmware catalogue entry (devices keep their verdict until judged again)',
      tag: 'firmware',
      permission: 'compliance:manage',
      params: z.object({ entryId: z.uuid() }),
      responses: { 204: { description: 'Removed' } },
      async handle({ res, tenantId, principal, params }) {
        const removed = await catalogue.remove(tenantId, params.entryId);
        await recordChange(tenantId, principal, 'firmware.catalogue_removed', removed);
        res.status(204).end();
      },
    }),
    operation({
      operationId: 'getFirmwareReport',
      method: 'get',
      path: `${firmwarePath}/report`,
      summary: 'Count devices per vendor, model, firmware version and verdict; list those on unapproved firmware',
      tag: 'firmware',
      permission: 'compliance:read',
      query: reportQuery,
      responses: { 200: { description: 'Counts, and a page of devices on firmware not approved; `next` continues it', schema: reportSchema } },
      async handle({ res, tenantId, query }) {
        res.json(await reports.report(tenantId, { after: query.cursor, limit: query.limit }));
      },
    }),
  ];
}
