import { z } from 'zod';
import { templateIdPattern, templateInputSchema, type TemplateCatalog } from '../../configuration/templates';
import { operation, type AnyOperation } from '../operation';
import { templateSchema } from '../schemas';

const base = '/api/v1/provisioning/templates';
const templateParams = z.object({ templateId: z.string().regex(templateIdPattern, 'must be a template id') });

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
      async handle({ res, tenantId, body }) {
        const created = await templates.create(tenantId, body);
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
      async handle({ res, tenantId, params, body }) {
        res.json(await templates.update(tenantId, params.templateId, body));
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
