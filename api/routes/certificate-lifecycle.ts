/**
 * Operations on the certificate lifecycle workflows: a device's renewal (where it stands, renew
 * now) and the rotation of a site's intermediate CA as one tracked job.
 */
import { z } from 'zod';
import type { IntermediateRotations } from '../../pki/rotations';
import type { CertificateRenewals } from '../../provisioning/certificate-renewals';
import { identifierPattern } from '../../registry/identifiers';
import { operation, type AnyOperation } from '../operation';

const timestamp = z.iso.datetime({ offset: true });

const renewalStatusSchema = z
  .object({
    tenantId: z.string(),
    deviceId: z.string(),
    state: z.enum(['waiting', 'renewing', 'retrying', 'stopped']),
    certificate: z.object({ certificateId: z.uuid(), serialNumber: z.string(), issuedAt: timestamp, expiresAt: timestamp }),
    renewAt: timestamp,
    failedAttempts: z.number().int(),
    nextAttemptAt: timestamp.optional(),
    lastError: z.string().optional(),
    completedRenewals: z.number().int(),
    stoppedBecause: z.string().optional(),
  })
  .meta({ id: 'CertificateRenewalStatus' });

const rotationProgressSchema = z
  .object({
    rotationId: z.string(),
    tenantId: z.string(),
    site: z.string(),
    state: z.enum(['rotating', 'reissuing', 'completed', 'overlap-ended']),
    previousCertificateId: z.uuid().optional(),
    currentCertificateId: z.uuid().optional(),
    devicesTotal: z.number().int(),
    devicesRemaining: z.number().int(),
    overlapEndsAt: timestamp.optional(),
    startedAt: timestamp,
    completedAt: timestamp.optional(),
    notRenewable: z.array(z.string()),
  })
  .meta({ id: 'IntermediateRotation' });

const deviceParams = z.object({ deviceId: z.string().regex(identifierPattern, 'must be a device id') });
const siteParams = z.object({ site: z.string().regex(identifierPattern, 'must be a site id') });
const rotationParams = z.object({ rotationId: z.string().regex(/^[0-9a-f-]{36}$/, 'must be a rotation id') });

export function certificateLifecycleOperations(deps: { renewals: CertificateRenewals; rotations: IntermediateRotations }): AnyOperation[] {
  const { renewals, rotations } = deps;

  return [
    operation({
      operationId: 'getCertificateRenewal',
      method: 'get',
      path: '/api/v1/provisioning/devices/{deviceId}/certificate-renewal',
      summary: "Where the renewal of a device's certificate stands",
      tag: 'certificates',
      permission: 'certificates:read',
      params: deviceParams,
      responses: { 200: { description: 'The renewal workflow of the device', schema: renewalStatusSchema } },
      async handle({ res, tenantId, params }) {
        res.json(await renewals.status(tenantId, params.deviceId));
      },
    }),
    operation({
      operationId: 'renewCertificateNow',
      method: 'post',
      path: '/api/v1/provisioning/devices/{deviceId}/certificate-renewal/renew',
      summary: "Renew a device's certificate now rather than at its renewal time",
      tag: 'certificates',
      permission: 'certificates:issue',
      params: deviceParams,
      body: z.object({ reason: z.string().min(1).max(200) }).strict(),
      responses: { 202: { description: 'The renewal workflow was asked to renew', schema: renewalStatusSchema } },
      async handle({ res, tenantId, params, body }) {
        await renewals.renewNow(tenantId, params.deviceId, body.reason);
        res.status(202).json(await renewals.status(tenantId, params.deviceId));
      },
    }),
    operation({
      operationId: 'rotateSiteIntermediate',
      method: 'post',
      path: '/api/v1/provisioning/ca/sites/{site}/intermediate/rotate',
      summary: "Rotate a site's intermediate CA: new key, devices re-issued, the old one revoked after the overlap",
      tag: 'certificates',
      permission: 'ca:manage',
      params: siteParams,
      body: z
        .object({
          overlapDays: z.number().int().min(1).max(365).default(30),
          /** How often progress is re-counted; short only for small sites and tests. */
          progressCheckSeconds: z.number().int().min(1).max(86_400).optional(),
        })
        .strict(),
      responses: { 202: { description: 'Rotation started', schema: rotationProgressSchema } },
      async handle({ res, tenantId, principal, params, body }) {
        const rotation = await rotations.start(tenantId, params.site, {
          overlapDays: body.overlapDays,
          requestedBy: principal.subject,
          progressCheckSeconds: body.progressCheckSeconds,
        });
        res.status(202).location(`/api/v1/provisioning/ca/rotations/${rotation.rotationId}`).json(rotation);
      },
    }),
    operation({
      operationId: 'getIntermediateRotation',
      method: 'get',
      path: '/api/v1/provisioning/ca/rotations/{rotationId}',
      summary: 'Progress of an intermediate CA rotation',
      tag: 'certificates',
      permission: 'certificates:read',
      params: rotationParams,
      responses: { 200: { description: 'The rotation', schema: rotationProgressSchema } },
      async handle({ res, tenantId, params }) {
        res.json(await rotations.progress(tenantId, params.rotationId));
      },
    }),
  ];
}
