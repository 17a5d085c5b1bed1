import { Router } from 'express';
import { z } from 'zod';
import type { ProvisioningService } from '../../provisioning/provisioning-service';
import { parseOrThrow } from '../../service/validation';
import { tenantOf } from '../tenant';

const cancelBody = z.object({ reason: z.string().trim().min(1).max(500).optional() }).strict();

export function provisioningRoutes(provisioning: ProvisioningService): Router {
  const router = Router();
  const statusUrl = (id: string) => `/api/v1/provisioning/devices/${encodeURIComponent(id)}/status`;

  router.post('/devices', async (req, res) => {
    const tenantId = tenantOf(req);
    const dryRun = req.body?.options?.validateOnly === true;
    if (dryRun) {
      const { request, devices } = await provisioning.validate(tenantId, req.body);
      res.status(200).json({
        valid: true,
        templateId: request.templateId,
        options: request.options,
        devices: devices.map(({ credentials, ...device }) => ({ ...device, hasCredentials: Boolean(credentials) })),
      });
      return;
    }
    const started = await provisioning.start(tenantId, req.body);
    const provisionings = started.map((run) => ({ ...run, statusUrl: statusUrl(run.provisioningId) }));
    if (provisionings.length === 1) res.location(provisionings[0].statusUrl);
    res.status(202).json({ provisionings });
  });

  router.get('/devices/:provisioningId/status', async (req, res) => {
    res.json(await provisioning.status(tenantOf(req), req.params.provisioningId));
  });

  router.post('/devices/:provisioningId/cancel', async (req, res) => {
    const { reason } = parseOrThrow(cancelBody, req.body ?? {}, 'cancel request');
    await provisioning.cancel(tenantOf(req), req.params.provisioningId, reason);
    res.status(202).json({ provisioningId: req.params.provisioningId, cancellationRequested: true });
  });

  router.post('/devices/:provisioningId/activate', async (req, res) => {
    await provisioning.activate(tenantOf(req), req.params.provisioningId);
    res.status(202).json({ provisioningId: req.params.provisioningId, activationRequested: true });
  });

  return router;
}
