/**
 * Discovery: configuring where each site is swept (scope, scanners, interval), sweeping on
 * demand, and what sweeps found: devices (the unknown ones first of interest) and the conflicts
 * and moves they surfaced.
 */
import { z } from 'zod';
import {
  maxSweepIntervalMinutes,
  minSweepIntervalMinutes,
  siteScanners,
  type DiscoveredDeviceRecord,
  type DiscoveryEventRecord,
  type DiscoverySite,
  type DiscoveryStore,
} from '../../discovery/discovery-store';
import type { DiscoverySweeps } from '../../discovery/sweeps';
import { identifierPattern } from '../../registry/identifiers';
import { operation, type AnyOperation } from '../operation';

const base = '/api/v1/discovery';
const timestamp = z.iso.datetime({ offset: true });
const siteParams = z.object({ site: z.string().regex(identifierPattern, 'must be a site id') });
const sweepParams = z.object({ sweepId: z.string().regex(/^discovery-sweep:[^/]{1,300}$/, 'must be a sweep id') });

const siteSchema = z
  .object({
    site: z.string(),
    scope: z.object({
      interfaces: z.array(z.string()),
      ranges: z.array(z.string()),
      ports: z.array(z.number().int()),
      allowLoopback: z.boolean(),
      maxAddressesPerSweep: z.number().int(),
    }),
    scanners: z.array(z.enum(siteScanners)),
    intervalMinutes: z.number().int(),
    enabled: z.boolean(),
    scheduleId: z.string().optional(),
    createdAt: timestamp,
    updatedAt: timestamp,
  })
  .meta({ id: 'DiscoverySite' });

const siteBody = z
  .object({
    /** Validated by the scan scope's own rules, each problem reported as `scope.<field>`. */
    scope: z.record(z.string(), z.unknown()),
    scanners: z.array(z.enum(siteScanners)).min(1),
    intervalMinutes: z.number().int().min(minSweepIntervalMinutes).max(maxSweepIntervalMinutes),
    enabled: z.boolean().default(true),
  })
  .strict();

const endpointSchema = z.object({ protocol: z.string(), address: z.string() });

const deviceSchema = z
  .object({
    id: z.uuid(),
    site: z.string(),
    identityKey: z.string(),
    macAddress: z.string().nullable(),
    ip: z.string().nullable(),
    serialNumber: z.string().nullable(),
    manufacturer: z.string().nullable(),
    model: z.string().nullable(),
    firmwareVersion: z.string().nullable(),
    deviceType: z.string().nullable(),
    fingerprint: z.record(z.string(), z.unknown()),
    endpoints: z.array(endpointSchema),
    sources: z.array(z.string()),
    registeredDeviceId: z.string().nullable(),
    zeroTouchRegistrationId: z.string().nullable(),
    inConflict: z.boolean(),
    firstSeenAt: timestamp,
    lastSeenAt: timestamp,
  })
  .meta({ id: 'DiscoveredDevice' });

const eventSchema = z
  .object({
    id: z.uuid(),
    site: z.string(),
    kind: z.enum(['serial-claimed-by-several-macs', 'ip-claimed-by-several-macs', 'moved']),
    subject: z.string(),
    details: z.record(z.string(), z.unknown()),
    firstSeenAt: timestamp,
    lastSeenAt: timestamp,
    resolvedAt: timestamp.nullable(),
  })
  .meta({ id: 'DiscoveryEvent' });

const countsSchema = z.object({
  scanner: z.enum(siteScanners),
  observations: z.number().int(),
  datagramsSent: z.number().int(),
  datagramsReceived: z.number().int(),
  malformedPackets: z.number().int(),
  outOfScopeAnswers: z.number().int(),
  droppedObservations: z.number().int(),
  interfacesMissing: z.array(z.string()),
  problems: z.array(z.string()),
});

const sweepSchema = z
  .object({
    sweepId: z.string(),
    tenantId: z.string(),
    site: z.string(),
    state: z.enum(['running', 'completed', 'failed']),
    startedAt: timestamp.optional(),
    error: z.string().optional(),
    summary: z
      .object({
        scanners: z.array(countsSchema),
        failures: z.array(z.object({ scanner: z.enum(siteScanners), error: z.string() })),
        observations: z.number().int(),
        skipped: z.literal('site-disabled').optional(),
        recorded: z
          .object({
            devices: z.number().int(),
            unknown: z.number().int(),
            registered: z.number().int(),
            zeroTouchMatched: z.number().int(),
            conflicts: z.number().int(),
            moves: z.number().int(),
            alertsRaised: z.number().int(),
            alertsResolved: z.number().int(),
            unknownDevices: z.array(z.string()),
          })
          .optional(),
      })
      .optional(),
  })
  .meta({ id: 'DiscoverySweep' });

export function discoveryOperations(deps: { store: DiscoveryStore; sweeps: DiscoverySweeps }): AnyOperation[] {
  const { store, sweeps } = deps;

  const siteView = (site: DiscoverySite & { scheduleId?: string }) => ({
    site: site.site,
    scope: site.scope,
    scanners: site.scanners,
    intervalMinutes: site.intervalMinutes,
    enabled: site.enabled,
    ...(site.scheduleId ? { scheduleId: site.scheduleId } : {}),
    createdAt: site.createdAt,
    updatedAt: site.updatedAt,
  });

  return [
    operation({
      operationId: 'putDiscoverySite',
      method: 'put',
      path: `${base}/sites/{site}`,
      summary: "Configure a site's discovery: scan scope, scanners and sweep interval; a new or re-enabled site is swept at once",
      tag: 'discovery',
      permission: 'discovery:manage',
      params: siteParams,
      body: siteBody,
      responses: {
        200: { description: 'The site was updated and its schedule follows', schema: siteSchema },
        201: { description: 'The site was created with its schedule', schema: siteSchema },
      },
      async handle({ res, tenantId, params, body }) {
        const { site, created } = await sweeps.configureSite(tenantId, params.site, body);
        res.status(created ? 201 : 200).json(siteView(site));
      },
    }),
    operation({
      operationId: 'getDiscoverySite',
      method: 'get',
      path: `${base}/sites/{site}`,
      summary: "A site's discovery configuration: scan scope, scanners and sweep interval",
      tag: 'discovery',
      permission: 'discovery:read',
      params: siteParams,
      responses: { 200: { description: 'The site', schema: siteSchema } },
      async handle({ res, tenantId, params }) {
        res.json(siteView(await sweeps.site(tenantId, params.site)));
      },
    }),
    operation({
      operationId: 'listDiscoverySites',
      method: 'get',
      path: `${base}/sites`,
      summary: 'The sites configured for discovery',
      tag: 'discovery',
      permission: 'discovery:read',
      responses: { 200: { description: 'The sites', schema: z.object({ sites: z.array(siteSchema) }) } },
      async handle({ res, tenantId }) {
        res.json({ sites: (await store.listSites(tenantId)).map(siteView) });
      },
    }),
    operation({
      operationId: 'deleteDiscoverySite',
      method: 'delete',
      path: `${base}/sites/{site}`,
      summary: "Stop discovering a site: its configuration and schedule go, what it found stays",
      tag: 'discovery',
      permission: 'discovery:manage',
      params: siteParams,
      responses: { 204: { description: 'Removed' } },
      async handle({ res, tenantId, params }) {
        await sweeps.removeSite(tenantId, params.site);
        res.status(204).end();
      },
    }),
    operation({
      operationId: 'startDiscoverySweep',
      method: 'post',
      path: `${base}/sites/{site}/sweeps`,
      summary: 'Sweep a site now',
      tag: 'discovery',
      permission: 'discovery:sweep',
      params: siteParams,
      responses: { 202: { description: 'The sweep started', schema: sweepSchema } },
      async handle({ res, tenantId, params }) {
        const sweep = await sweeps.start(tenantId, params.site);
        res.status(202).location(`${base}/sweeps/${encodeURIComponent(sweep.sweepId)}`).json(sweep);
      },
    }),
    operation({
      operationId: 'getDiscoverySweep',
      method: 'get',
      path: `${base}/sweeps/{sweepId}`,
      summary: 'Where a sweep stands, and its summary once it has finished',
      tag: 'discovery',
      permission: 'discovery:read',
      params: sweepParams,
      responses: { 200: { description: 'The sweep', schema: sweepSchema } },
      async handle({ res, tenantId, params }) {
        res.json(await sweeps.get(tenantId, params.sweepId));
      },
    }),
    operation({
      operationId: 'listDiscoveredDevices',
      method: 'get',
      path: `${base}/devices`,
      summary: 'Devices discovery has seen, most recent first',
      tag: 'discovery',
      permission: 'discovery:read',
      query: z
        .object({
          site: z.string().regex(identifierPattern, 'must be a site id').optional(),
          unknownOnly: z.enum(['true', 'false']).optional(),
          limit: z.coerce.number().int().min(1).max(5_000).optional(),
        })
        .strict(),
      responses: { 200: { description: 'The devices', schema: z.object({ devices: z.array(deviceSchema) }) } },
      async handle({ res, tenantId, query }) {
        const rows = await store.listDevices(tenantId, { site: query.site, unknownOnly: query.unknownOnly === 'true', limit: query.limit });
        res.json({ devices: rows.map(deviceView) });
      },
    }),
    operation({
      operationId: 'listDiscoveryEvents',
      method: 'get',
      path: `${base}/events`,
      summary: 'Conflicts and moves discovery surfaced',
      tag: 'discovery',
      permission: 'discovery:read',
      query: z
        .object({
          site: z.string().regex(identifierPattern, 'must be a site id').optional(),
          open: z.enum(['true', 'false']).optional(),
          limit: z.coerce.number().int().min(1).max(5_000).optional(),
        })
        .strict(),
      responses: { 200: { description: 'The events', schema: z.object({ events: z.array(eventSchema) }) } },
      async handle({ res, tenantId, query }) {
        const rows = await store.listEvents(tenantId, { site: query.site, open: query.open === undefined ? undefined : query.open === 'true', limit: query.limit });
        res.json({ events: rows.map(eventView) });
      },
    }),
  ];
}

function deviceView(row: DiscoveredDeviceRecord) {
  const { tenantId: _tenant, firstSeenAt, lastSeenAt, ...rest } = row;
  return { ...rest, firstSeenAt: firstSeenAt.toISOString(), lastSeenAt: lastSeenAt.toISOString() };
}

function eventView(row: DiscoveryEventRecord) {
  const { tenantId: _tenant, firstSeenAt, lastSeenAt, resolvedAt, ...rest } = row;
  return { ...rest, firstSeenAt: firstSeenAt.toISOString(), lastSeenAt: lastSeenAt.toISOString(), resolvedAt: resolvedAt?.toISOString() ?? null };
}
