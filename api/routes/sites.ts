/**
 * Sites: whether a site's device-facing work (device steps of provisioning, health probes,
 * discovery scanners) runs on an edge worker at the site, polling the site's own task queue.
 */
import { z } from 'zod';
import type { AuditLog } from '../../audit/audit-log';
import type { SiteWorkers, SiteWorkerSetting } from '../../discovery/site-workers';
import { identifierPattern } from '../../registry/identifiers';
import { operation, type AnyOperation } from '../operation';

const base = '/api/v1/sites';
const siteParams = z.object({ site: z.string().regex(identifierPattern, 'must be a site id') });

const edgeWorkerSchema = z
  .object({
    site: z.string(),
    edgeWorker: z.boolean().meta({ description: "True: the site's device-facing work runs on an edge worker polling taskQueue" }),
    taskQueue: z.string().meta({ description: "The task queue the site's device-facing activities are scheduled on" }),
    updatedBy: z.string(),
    updatedAt: z.iso.datetime({ offset: true }),
  })
  .meta({ id: 'SiteEdgeWorker' });

const edgeWorkerBody = z.object({ edgeWorker: z.boolean() }).strict();

function view(setting: SiteWorkerSetting): z.infer<typeof edgeWorkerSchema> {
  return setting;
}

export function siteOperations(deps: { siteWorkers: SiteWorkers; audit: AuditLog }): AnyOperation[] {
  const { siteWorkers, audit } = deps;
  return [
    operation({
      operationId: 'putSiteEdgeWorker',
      method: 'put',
      path: `${base}/{site}/edge-worker`,
      summary: "Say whether a site's device-facing work runs on an edge worker at the site; runs planned from then on follow it",
      tag: 'sites',
      permission: 'discovery:manage',
      params: siteParams,
      body: edgeWorkerBody,
      responses: {
        200: { description: 'The setting was changed', schema: edgeWorkerSchema },
        201: { description: 'The site was configured for the first time', schema: edgeWorkerSchema },
      },
      async handle({ res, tenantId, principal, params, body }) {
        const { setting, created } = await siteWorkers.set(tenantId, params.site, body.edgeWorker, principal.subject);
        await audit.append({
          tenantId,
          actor: principal.subject,
          actorType: principal.kind === 'api-key' ? 'api-key' : 'user',
          action: 'site.edge_worker_set',
          targetType: 'site',
          targetId: params.site,
          details: { edgeWorker: setting.edgeWorker, taskQueue: setting.taskQueue },
        });
        res.status(created ? 201 : 200).json(view(setting));
      },
    }),
    operation({
      operationId: 'getSiteEdgeWorker',
      method: 'get',
      path: `${base}/{site}/edge-worker`,
      summary: "Where a site's device-facing work runs: centrally or on an edge worker at the site (a site never configured runs centrally: 404)",
      tag: 'sites',
      permission: 'discovery:read',
      params: siteParams,
      responses: { 200: { description: 'The setting', schema: edgeWorkerSchema }, 404: { description: 'Never configured: the site runs centrally' } },
      async handle({ res, tenantId, params }) {
        res.json(view(await siteWorkers.setting(tenantId, params.site)));
      },
    }),
  ];
}
