import { z } from 'zod';
import { templateIdPattern, templateInputSchema, type TemplateCatalog } from '../../configuration/templates';
import { operation, type AnyOperation } from '../operation';
import { templateSchema } from '../schemas';

const base = '/api/v1/provisioning/templates';
const templateParams = z.object({ templateId: z.string().regex(templateIdPattern, 'must be a template id') });
const versionParams = templateParams.extend({
  version: z.coerce.number().int('must be a whole number').min(1, 'must be 1 or more').max(2_147_483_647),
});

const templateVersionSchema = z
  .object({
    templateId: z.string(),
    version: z.number().int(),
    tenantId: z.string().nullable(),
    name: z.string(),
    description: z.string().nullable(),
    deviceType: z.string().nullable(),
    protocol: z.string(),
    body: z.record(z.string(), z.unknown()),
    parameters: z.record(z.string(), z.record(z.string(), z.unknown())),
    contentHash: z.string().describe('SHA-256 of the canonical JSON of protocol, body and parameters'),
    createdBy: z.string(),
    createdAt: z.iso.datetime({ offset: true }),
  })
  .meta({ id: 'ConfigurationTemplateVersion', description: 'One saved version of a template; never changes' });

export function templateOperations(templates: TemplateCatalog): AnyOperation[] {
  return [
    operation({
      operationId: 'listTemplates',
      method: 'get',
      path: base,
      summary: 'List configuration templates',
      tag: 'templates',
      permission: 'templates:read',
      responses: { 200: { description: 'Built-in and tenant templates', schema: z.object({ templates: z.array(templateSchema) }) } },
      async handle({ res, tenantId }) {
        res.json({ templates: await templates.list(tenantId) });
      },
    }),
    operation({
      operationId: 'getTemplate',
      method: 'get',
      path: `${base}/{templateId}`,
      summary: 'Read a configuration template',
      tag: 'templates',
      permission: 'templates:read',
      params: templateParams,
      responses: { 200: { description: 'The template', schema: templateSchema } },
      async handle({ res, tenantId, params }) {
        res.json(await templates.get(tenantId, params.templateId));
      },
    }),
    operation({
      operationId: 'createTemplate',
      method: 'post',
      path: base,
      summary: 'Create a configuration template',
      tag: 'templates',
      permission: 'templates:write',
      body: templateInputSchema,
      responses: {
        201: { description: 'Created', schema: templateSchema },
        409: { description: 'A template with this id exists' },
      },
      async handle({ res, tenantId, principal, body }) {
        const created = await templates.create(tenantId, body, principal.subject);
        res.status(201).location(`${base}/${encodeURIComponent(created.id)}`).json(created);
      },
    }),
    operation({
      operationId: 'updateTemplate',
      method: 'put',
      path: `${base}/{templateId}`,
      summary: 'Replace a configuration template, creating its next version',
      tag: 'templates',
      permission: 'templates:write',
      params: templateParams,
      body: templateInputSchema,
      responses: {
        200: { description: 'The new version', schema: templateSchema },
        409: { description: 'Built-in templates cannot be changed' },
      },
      async handle({ res, tenantId, principal, params, body }) {
        res.json(await templates.update(tenantId, params.templateId, body, principal.subject));
      },
    }),
    operation({
      operationId: 'listTemplateVersions',
      method: 'get',
      path: `${base}/{templateId}/versions`,
      summary: 'List the versions of a configuration template',
      tag: 'templates',
      permission: 'templates:read',
      params: templateParams,
      responses: {
        200: { description: 'Every saved version, newest first', schema: z.object({ versions: z.array(templateVersionSchema) }) },
      },
      async handle({ res, tenantId, params }) {
        res.json({ versions: await templates.listVersions(tenantId, params.templateId) });
      },
    }),
    operation({
      operationId: 'getTemplateVersion',
      method: 'get',
      path: `${base}/{templateId}/versions/{version}`,
      summary: 'Read one version of a configuration template',
      tag: 'templates',
      permission: 'templates:read',
      params: versionParams,
      responses: { 200: { description: 'The version as it was saved', schema: templateVersionSchema } },
      async handle({ res, tenantId, params }) {
        res.json(await templates.getVersion(tenantId, params.templateId, params.version));
      },
    }),
    operation({
      operationId: 'deleteTemplate',
      method: 'delete',
      path: `${base}/{templateId}`,
      summary: 'Delete a configuration template',
      tag: 'templates',
      permission: 'templates:write',
      params: templateParams,
      responses: {
        204: { description: 'Deleted' },
        409: { description: 'Built-in templates cannot be deleted' },
      },
      async handle({ res, tenantId, params }) {
        await templates.remove(tenantId, params.templateId);
        res.status(204).end();
      },
    }),
  ];
}
