import type { Response } from 'express';
import { z } from 'zod';
import type { CaHierarchy, CertificateAuthorityService } from '../../pki/certificate-authority';
import { certificateTypes, revocationReasons, type CertificateRow, type RevocationReason } from '../../pki/certificate-store';
import { identifierPattern } from '../../registry/identifiers';
import type { DeviceRegistry } from '../../registry/device-registry';
import { ConflictError, ForbiddenError, NotFoundError, ValidationError, type FieldProblem } from '../../foundation/errors';
import type { CertificateInventory, CertificatePins } from '../../pki/certificate-inventory';
import type { AuditLog } from '../../audit/audit-log';
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

/** The brief's DeviceCertificate, with what a client should pin when the caller asks for one certificate. */
export function deviceCertificateOf(row: CertificateRow, pins?: CertificatePins) {
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
    ...(row.retiredAt ? { retiredAt: row.retiredAt.toISOString() } : {}),
    ...(row.renewalOfCertificateId ? { renewalOfCertificateId: row.renewalOfCertificateId } : {}),
    issuerCertificateId: row.issuerCertificateId,
    subject: row.subject as Record<string, unknown>,
    extensions: row.extensions as Record<string, unknown>,
    subjectDN: row.subjectDn,
    issuerDN: row.issuerDn,
    ...(pins ? { pins } : {}),
  };
}

function sendPem(res: Response, pems: string[]) {
  res.type('application/pem-certificate-chain').send(pems.map((pem) => pem.trimEnd() + '\n').join(''));
}

/** Reasons an operator may give (RFC 5280 5.3.1); certificateHold and removeFromCRL are not offered: revocation here is final. */
const operatorRevocationReasons = revocationReasons.filter((reason) => reason !== 'certificateHold' && reason !== 'removeFromCRL');

const revokeSchema = z
  .object({
    reason: z.enum(operatorRevocationReasons as [RevocationReason, ...RevocationReason[]]),
    comment: z.string().max(500).optional(),
  })
  .strict();

const listQuery = z
  .object({
    certificateType: z.enum(certificateTypes).optional(),
    deviceId: z.string().regex(identifierPattern, 'must be a device id').optional(),
    site: z.string().regex(identifierPattern, 'must be a site id').optional(),
    expiringWithinDays: z.coerce.number().int().min(0).max(3650).optional(),
    liveOnly: z.enum(['true', 'false']).transform((v) => v === 'true').optional(),
    limit: z.coerce.number().int().min(1).max(500).default(100),
    cursor: z.string().max(200).optional(),
  })
  .strict();

/** Opaque keyset position: base64url of `expiresAt|id`. */
function encodeCursor(next: { expiresAt: Date; id: string }): string {
  return Buffer.from(`${next.expiresAt.toISOString()}|${next.id}`).toString('base64url');
}

function decodeCursor(cursor: string): { expiresAt: Date; id: string } {
  const [at, id] = Buffer.from(cursor, 'base64url').toString('utf8').split('|');
  const expiresAt = new Date(at ?? '');
  if (!id || !z.uuid().safeParse(id).success || Number.isNaN(expiresAt.getTime())) {
    throw new ValidationError('cursor is not one this API returned', { fields: [{ field: 'query:cursor', reason: 'must be the `next` value of a previous page' }] });
  }
  return { expiresAt, id };
}

export function certificateOperations(
  ca: CertificateAuthorityService & CaHierarchy,
  registry: DeviceRegistry,
  inventory: CertificateInventory,
  audit: Pick<AuditLog, 'append'>,
): AnyOperation[] {
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
        const row = await certificateOf(tenantId, params.certificateId);
        res.json(deviceCertificateOf(row, await inventory.pinsOf(row)));
      },
    }),
    operation({
      operationId: 'listCertificates',
      method: 'get',
      path: '/api/v1/provisioning/certificates',
      summary: 'List certificates, soonest expiry first (e.g. those expiring within N days)',
      tag: 'certificates',
      permission: 'certificates:read',
      query: listQuery,
      responses: {
        200: {
          description: 'A page of certificates; `next` continues it',
          schema: z.object({ certificates: z.array(deviceCertificateSchema), next: z.string().optional() }),
        },
      },
      async handle({ res, tenantId, query }) {
        const page = await inventory.list(tenantId, {
          certificateType: query.certificateType,
          deviceId: query.deviceId,
          site: query.site,
          expiringWithinDays: query.expiringWithinDays,
          liveOnly: query.liveOnly,
          limit: query.limit,
          after: query.cursor ? decodeCursor(query.cursor) : undefined,
        });
        res.json({ certificates: page.items.map((row) => deviceCertificateOf(row)), ...(page.next ? { next: encodeCursor(page.next) } : {}) });
      },
    }),
    operation({
      operationId: 'revokeCertificate',
      method: 'post',
      path: '/api/v1/provisioning/certificates/{certificateId}/revoke',
      summary: 'Revoke a certificate with an RFC 5280 reason; it is listed in the next CRL and answered as revoked by OCSP',
      tag: 'certificates',
      permission: 'certificates:revoke',
      params: certificateParams,
      body: revokeSchema,
      responses: {
        200: { description: 'Revoked', schema: deviceCertificateSchema },
        409: { description: 'Already revoked (the first revocation stands)' },
      },
      async handle({ res, tenantId, principal, params, body }) {
        const row = await certificateOf(tenantId, params.certificateId);
        if (row.certificateType !== 'device' && !roleAllows(principal.role, 'ca:manage')) {
          throw new ForbiddenError(`the ${principal.role} role may not revoke ${row.certificateType} certificates`);
        }
        if (row.revokedAt) {
          throw new ConflictError(`certificate ${row.id} was already revoked on ${row.revokedAt.toISOString()} (${row.revocationReason})`);
        }
        const revoked = await ca.revokeCertificate(row.id, body.reason);
        await audit.append({
          tenantId,
          actor: principal.subject,
          actorType: 'user',
          action: 'certificate.revoked',
          targetType: 'certificate',
          targetId: revoked.id,
          details: {
            reason: body.reason,
            ...(body.comment ? { comment: body.comment } : {}),
            revokedAt: revoked.revokedAt?.toISOString(),
            serialNumber: revoked.serialNumber,
            certificateType: revoked.certificateType,
            deviceId: revoked.deviceId,
          },
        });
        res.json(deviceCertificateOf(revoked));
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
