import { Router, type Response } from 'express';
import { z } from 'zod';
import type { CertificateRow } from '../../db/schema';
import type { CertificateAuthority } from '../../pki/certificate-authority';
import { identifierPattern } from '../../provisioning/requests';
import type { DeviceRegistry } from '../../registry/device-registry';
import { NotFoundError, ValidationError, type FieldProblem } from '../../service/errors';
import { parseOrThrow } from '../../service/validation';
import { tenantOf } from '../tenant';

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
      csr: z.string().includes('-----BEGIN CERTIFICATE REQUEST-----', {
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
    subject: row.subject,
    extensions: row.extensions,
    subjectDN: row.subjectDn,
    issuerDN: row.issuerDn,
  };
}

function sendPem(res: Response, pems: string[]) {
  res.type('application/pem-certificate-chain').send(pems.map((pem) => pem.trimEnd() + '\n').join(''));
}

export function certificateRoutes(ca: CertificateAuthority, registry: DeviceRegistry): Router {
  const router = Router();

  async function certificateOf(tenantId: string, id: string): Promise<CertificateRow> {
    const row = z.uuid().safeParse(id).success ? await ca.getCertificate(id).catch(() => undefined) : undefined;
    if (!row || row.tenantId !== tenantId) throw new NotFoundError(`certificate ${id} not found`);
    return row;
  }

  router.post('/certificates/generate', async (req, res) => {
    const tenantId = tenantOf(req);
    const body = parseOrThrow(generateSchema, req.body, 'certificate request');
    if (body.certificateType === 'intermediate') {
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
  });

  router.get('/certificates/:certificateId', async (req, res) => {
    res.json(deviceCertificateOf(await certificateOf(tenantOf(req), req.params.certificateId)));
  });

  router.get('/certificates/:certificateId/pem', async (req, res) => {
    sendPem(res, [(await certificateOf(tenantOf(req), req.params.certificateId)).pem]);
  });

  /** The certificate followed by its issuers up to the root, as TLS servers present it. */
  router.get('/certificates/:certificateId/chain', async (req, res) => {
    const row = await certificateOf(tenantOf(req), req.params.certificateId);
    sendPem(res, [row.pem, ...(await ca.getChainPem(row.id))]);
  });

  /** The tenant's root CA: the trust anchor for its device certificates. */
  router.get('/ca/root', async (req, res) => {
    sendPem(res, await ca.trustAnchorsPem(tenantOf(req)));
  });

  return router;
}
