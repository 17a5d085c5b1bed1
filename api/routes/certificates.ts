import type { Response } from 'express';
import { z } from 'zod';
import type { CertificateRow } from '../../db/schema';
import type { CertificateAuthority } from '../../pki/certificate-authority';
import { identifierPattern } from '../../provisioning/requests';
import type { DeviceRegistry } from '../../registry/device-registry';
import { ForbiddenError, NotFoundError, ValidationError, type FieldProblem } from '../../service/errors';
import { roleAllows } from '../../access/roles';
import { operation, type AnyOperation } from '../operation';
import { deviceCertificateSchema, issuedCertificateSchema, pemChain } from '../schemas';

const subjectSchema = z
  .object({
    commonName: z.string().optional(),
    organizationalUnit: z.string().optional(),
    organization: z.string().optional(),
    locality: z.string().optional(),
    state: z.string().optional(),
    country: z.string().optional(),
  })
  .strict();

const generateSchema = z.discriminatedUnion('certificateType', [
  z
    .object({
      certificateType: z.literal('device'),
      deviceId: z.string().regex(identifierPattern, 'must be a registered device id'),
      csr: z.string().max(65_536).includes('-----BEGIN CERTIFICATE REQUEST-----', {
        message: 'must be a PEM PKCS#10 request: device keys are generated on the device and never leave it',
      }),
      validityPeriod: z.number().int().min(1).max(825).optional(),
      subject: subjectSchema.optional(),
    })
    .strict(),
  z
    .object({
      certificateType: z.literal('intermediate'),
      site: z.string().regex(identifierPattern, 'must be a site id'),
    })
    .strict(),
]);

const certificateParams = z.object({ certificateId: z.string().max(64) });

/** The brief's DeviceCertificate. */
export function deviceCertificateOf(row: CertificateRow) {
  return {
    id: row.id,
    deviceId: row.deviceId,
    tenantId: row.tenantId,
    certificateType: row.certificateType,
    serialNumber: row.serialNumber,
    fingerprint: row.fingerprint,
    publicKey: row.publicKey,
    privateKeyLocation: row.privateKeyLocation,
    issuedAt: row.issuedAt.toISOString(),
    expiresAt: row.expiresAt.toISOString(),
    ...(row.revokedAt ? { revokedAt: row.revokedAt.toISOString(), revocationReason: row.revocationReason } : {}),
    issuerCertificateId: row.issuerCertificateId,
    subject: row.subject as Record<string, unknown>,
    extensions: row.extensions as Record<string, unknown>,
    subjectDN: row.subjectDn,
    issuerDN: row.issuerDn,
  };
}

function sendPem(res: Response, pems: string[]) {
  res.type('application/pem-certificate-chain').send(pems.map((pem) => pem.trimEnd() + '\n').join(''));
}

export function certificateOperations(ca: CertificateAuthority, registry: DeviceRegistry): AnyOperation[] {
  async function certificateOf(tenantId: string, id: string): Promise<CertificateRow> {
    const row = z.uuid().safeParse(id).success ? await ca.getCertificate(id).catch(() => undefined) : undefined;
    if (!row || row.tenantId !== tenantId) throw new NotFoundError(`certificate ${id} not found`);
    return row;
  }

  return [
    operation({
      operationId: 'generateCertificate',
      method: 'post',
      path: '/api/v1/provisioning/certificates/generate',
      summary: 'Issue a device certificate from a CSR, or create a site intermediate CA',
      tag: 'certificates',
      permission: 'certificates:issue',
      body: generateSchema,
      responses: {
        201: { description: 'Issued', schema: issuedCertificateSchema },
        422: { description: 'The CSR cannot be signed (signature, key strength or names)' },
      },
      async handle({ req, res, tenantId, principal, body }) {
        if (body.certificateType === 'intermediate') {
          if (!roleAllows(principal.role, 'ca:manage')) {
            throw new ForbiddenError(`the ${principal.role} role may not create certificate authorities`);
          }
          const row = await ca.ensureSiteIntermediateCa(tenantId, body.site);
          res.status(201).json({ certificate: deviceCertificateOf(row), pem: row.pem, chainPem: await ca.getChainPem(row.id) });
          return;
        }
        const device = await registry.find(tenantId, body.deviceId);
        if (!device) {
          throw new ValidationError(`device ${body.deviceId} is not registered`, {
            fields: [{ field: 'deviceId', reason: 'no registered device with this id' }],
          });
        }
        // The subject comes from the registry; a caller may state it, but only as the registry has it.
        const expected: Record<string, string> = {
          commonName: device.deviceId,
          organizationalUnit: device.site,
          organization: tenantId,
        };
        const mismatches: FieldProblem[] = [];
        for (const [key, value] of Object.entries(body.subject ?? {})) {
          if (value === undefined) continue;
          if (!(key in expected)) mismatches.push({ field: `subject.${key}`, reason: 'not set on device certificates' });
          else if (expected[key] !== value) mismatches.push({ field: `subject.${key}`, reason: `must be ${expected[key]} for this device` });
        }
        if (mismatches.length > 0) throw new ValidationError('subject does not match the device registry', { fields: mismatches });

        const idempotencyKey = req.get('idempotency-key');
        const row = await ca.issueDeviceCertificate({
          tenantId,
          device,
          csrPem: body.csr,
          validityDays: body.validityPeriod,
          ...(idempotencyKey ? { issuanceKey: `api:${tenantId}:${idempotencyKey}` } : {}),
        });
        res
          .status(201)
          .location(`/api/v1/provisioning/certificates/${row.id}`)
          .json({ certificate: deviceCertificateOf(row), pem: row.pem, chainPem: await ca.getChainPem(row.id) });
      },
    }),
    operation({
      operationId: 'getCertificate',
      method: 'get',
      path: '/api/v1/provisioning/certificates/{certificateId}',
      summary: 'Read a certificate',
      tag: 'certificates',
      permission: 'certificates:read',
      params: certificateParams,
      responses: { 200: { description: 'The certificate', schema: deviceCertificateSchema } },
      async handle({ res, tenantId, params }) {
        res.json(deviceCertificateOf(await certificateOf(tenantId, params.certificateId)));
      },
    }),
    operation({
      operationId: 'getCertificatePem',
      method: 'get',
      path: '/api/v1/provisioning/certificates/{certificateId}/pem',
      summary: 'Download a certificate as PEM',
      tag: 'certificates',
      permission: 'certificates:read',
      params: certificateParams,
      responses: { 200: { description: 'The certificate', ...pemChain } },
      async handle({ res, tenantId, params }) {
        sendPem(res, [(await certificateOf(tenantId, params.certificateId)).pem]);
      },
    }),
    operation({
      operationId: 'getCertificateChain',
      method: 'get',
      path: '/api/v1/provisioning/certificates/{certificateId}/chain',
      summary: 'Download a certificate and its issuers up to the root as PEM',
      tag: 'certificates',
      permission: 'certificates:read',
      params: certificateParams,
      responses: { 200: { description: 'Certificate first, root last', ...pemChain } },
      async handle({ res, tenantId, params }) {
        const row = await certificateOf(tenantId, params.certificateId);
        sendPem(res, [row.pem, ...(await ca.getChainPem(row.id))]);
      },
    }),
    operation({
      operationId: 'getRootCa',
      method: 'get',
      path: '/api/v1/provisioning/ca/root',
      summary: "Download the tenant's root CA certificate",
      tag: 'certificates',
      permission: 'certificates:read',
      responses: { 200: { description: 'The trust anchor for the tenant\'s device certificates', ...pemChain } },
      async handle({ res, tenantId }) {
        sendPem(res, await ca.trustAnchorsPem(tenantId));
      },
    }),
  ];
}
