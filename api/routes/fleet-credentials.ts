/**
 * Rotation of a device's per-device management secrets (the ONVIF management password, SNMPv3
 * keys, an OSDP reader's SCBK): rotate now, and where the latest rotation stands.
 */
import { z } from 'zod';
import type { CredentialRotations } from '../../fleet/credential-rotations';
import { identifierPattern } from '../../registry/identifiers';
import { operation, type AnyOperation } from '../operation';

const timestamp = z.iso.datetime({ offset: true });

const rotationStatusSchema = z
  .object({
    tenantId: z.string(),
    deviceId: z.string(),
    workflowId: z.string(),
    state: z.enum(['running', 'completed', 'failed']),
    startedAt: timestamp,
    closedAt: timestamp.optional(),
    rotated: z.array(z.string()).optional().describe('What was rotated, once completed'),
    error: z.string().optional(),
  })
  .meta({ id: 'CredentialRotation' });

const deviceParams = z.object({ deviceId: z.string().regex(identifierPattern, 'must be a device id') });

export function fleetCredentialOperations(deps: { rotations: CredentialRotations }): AnyOperation[] {
  const { rotations } = deps;
  return [
    operation({
      operationId: 'rotateDeviceCredentials',
      method: 'post',
      path: '/api/v1/devices/{deviceId}/rotate-credentials',
      summary: "Replace an active device's per-device management secrets, each proven by a fresh login before the old one is forgotten",
      tag: 'fleet',
      permission: 'provisioning:write',
      params: deviceParams,
      body: z.object({ reason: z.string().min(1).max(200) }).strict(),
      responses: {
        202: { description: 'The rotation under way (a running one is answered rather than started twice)', schema: rotationStatusSchema },
        409: { description: 'The device is not active' },
        501: { description: "The device's protocol has no per-device management secret of ours (HTTPS, BACnet)" },
      },
      async handle({ res, tenantId, principal, params, body }) {
        const rotation = await rotations.start(tenantId, params.deviceId, { reason: body.reason, requestedBy: principal.subject });
        res.status(202).location(`/api/v1/devices/${params.deviceId}/credential-rotation`).json(rotation);
      },
    }),
    operation({
      operationId: 'getDeviceCredentialRotation',
      method: 'get',
      path: '/api/v1/devices/{deviceId}/credential-rotation',
      summary: "Where the latest rotation of a device's management secrets stands",
      tag: 'fleet',
      permission: 'provisioning:read',
      params: deviceParams,
      responses: { 200: { description: 'The latest rotation', schema: rotationStatusSchema } },
      async handle({ res, tenantId, params }) {
        res.json(await rotations.status(tenantId, params.deviceId));
      },
    }),
  ];
}
