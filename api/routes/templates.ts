import { Router } from 'express';
import { templateInputSchema, type TemplateCatalog } from '../../configuration/templates';
import { parseOrThrow } from '../../service/validation';
import { tenantOf } from '../tenant';

export function templateRoutes(templates: TemplateCatalog): Router {
  const router = Router();

  router.get('/templates', async (req, res) => {
    res.json({ templates: await templates.list(tenantOf(req)) });
  });

  router.get('/templates/:templateId', async (req, res) => {
    res.json(await templates.get(tenantOf(req), req.params.templateId));
  });

  router.post('/templates', async (req, res) => {
    const input = parseOrThrow(templateInputSchema, req.body, 'template');
    const created = await templates.create(tenantOf(req), input);
    res.status(201).location(`/api/v1/provisioning/templates/${encodeURIComponent(created.id)}`).json(created);
  });

  router.put('/templates/:templateId', async (req, res) => {
    const input = parseOrThrow(templateInputSchema, req.body, 'template');
    res.json(await templates.update(tenantOf(req), req.params.templateId, input));
  });

  router.delete('/templates/:templateId', async (req, res) => {
    await templates.remove(tenantOf(req), req.params.templateId);
    res.status(204).end();
  });

  return router;
}
