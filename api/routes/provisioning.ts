import { z } from 'zod';
import type { ProvisioningService } from '../../provisioning/provisioning-service';
import { provisioningRequestSchema } from '../../provisioning/requests';
import { operation, type AnyOperation } from '../operation';
import { provisioningPlanSchema, provisioningRecordSchema, startedProvisioningsSchema } from '../schemas';

const base = '/api/v1/provisioning/devices';
const provisioningIdParams = z.object({ provisioningId: z.string().min(1).max(200) });
const cancelBody = z.object({ reason: z.string().trim().min(1).max(500).optional() }).strict();

export function provisioningOperations(provisioning: ProvisioningService, protocols: string[]): AnyOperation[] {
  const statusUrl = (id: string) => `${base}/${encodeURIComponent(id)}/status`;
  return [
    operation({
      operationId: 'startProvisioning',
      method: 'post',
      path: base,
      summary: 'Start provisioning devices',
      tag: 'provisioning',
      permission: 'provisioning:write',
      body: provisioningRequestSchema(protocols),
      responses: {
        202: { description: 'One provisioning run per device, started or already under way', schema: startedProvisioningsSchema },
        200: { description: 'With options.validateOnly: the validated plan; nothing is started', schema: provisioningPlanSchema },
        409: { description: 'A device is already provisioned or conflicts with the registry' },
        422: { description: "A device's configuration breaks the compliance policy; `errors` name each device and rule" },
      },
      async handle({ res, tenantId, principal, body }) {
        if (body.options.validateOnly) {
          const devices = await provisioning.validate(tenantId, body);
          res.status(200).json({
            valid: true,
            templateId: body.templateId,
            options: body.options,
            devices: devices.map(({ credentials, ...device }) => ({ ...device, hasCredentials: Boolean(credentials) })),
          });
          return;
        }
        const started = await provisioning.start(tenantId, body, principal.subject);
        const provisionings = started.map((run) => ({ ...run, statusUrl: statusUrl(run.provisioningId) }));
        if (provisionings.length === 1) res.location(provisionings[0].statusUrl);
        res.status(202).json({ provisionings });
      },
    }),
    operation({
      operationId: 'getProvisioningStatus',
      method: 'get',
      path: `${base}/{provisioningId}/status`,
      summary: 'Read the status of a provisioning run',
      tag: 'provisioning',
      permission: 'provisioning:read',
      params: provisioningIdParams,
      responses: { 200: { description: 'The provisioning record', schema: provisioningRecordSchema } },
      async handle({ res, tenantId, params }) {
        res.json(await provisioning.status(tenantId, params.provisioningId));
      },
    }),
    operation({
      operationId: 'cancelProvisioning',
      method: 'post',
      path: `${base}/{provisioningId}/cancel`,
      summary: 'Cancel a provisioning run',
      tag: 'provisioning',
      permission: 'provisioning:write',
      params: provisioningIdParams,
      body: cancelBody.optional().transform((value) => value ?? {}),
      responses: {
        202: {
          description: 'Cancellation requested; anything issued is revoked',
          schema: z.object({ provisioningId: z.string(), cancellationRequested: z.literal(true) }),
        },
      },
      async handle({ res, tenantId, params, body }) {
        await provisioning.cancel(tenantId, params.provisioningId, body.reason);
        res.status(202).json({ provisioningId: params.provisioningId, cancellationRequested: true });
      },
    }),
    operation({
      operationId: 'activateProvisionedDevice',
      method: 'post',
      path: `${base}/{provisioningId}/activate`,
      summary: 'Activate a device provisioned without automatic activation',
      tag: 'provisioning',
      permission: 'provisioning:write',
      params: provisioningIdParams,
      responses: {
        202: {
          description: 'Activation requested',
          schema: z.object({ provisioningId: z.string(), activationRequested: z.literal(true) }),
        },
      },
      async handle({ res, tenantId, params }) {
        await provisioning.activate(tenantId, params.provisioningId);
        res.status(202).json({ provisioningId: params.provisioningId, activationRequested: true });
      },
    }),
  ];
}
