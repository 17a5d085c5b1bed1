/**
 * Response bodies as the API documents them. The OpenAPI document is generated from these, and the
 * API tests check real responses against that document.
 */
import { z } from 'zod';
import { permissions, roles } from '../access/roles';
import { certificateTypes } from '../pki/certificate-store';
import { provisioningStepNames } from '../contracts/provisioning';

const timestamp = z.iso.datetime({ offset: true });

export const problemSchema = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string().optional(),
    instance: z.string().optional(),
    errors: z
      .array(
        z.object({
          field: z.string(),
          reason: z.string(),
          line: z.number().int().optional(),
          column: z.string().optional(),
        }),
      )
      .optional(),
  })
  .meta({ id: 'Problem', description: 'RFC 9457 problem details' });

export const certificatePinsSchema = z
  .object({
    certificateSha256: z.string().describe('SHA-256 of the DER certificate, hex; changes at every renewal'),
    publicKeySha256: z.string().describe('RFC 7469 pin-sha256 of the public key, base64'),
    issuerCertificateSha256: z.array(z.string()).describe('SHA-256 of each issuer up to the root, nearest first; survives renewal'),
  })
  .meta({ id: 'CertificatePins' });

export const certificateInfoSchema = z.object({
  certificateId: z.uuid(),
  serialNumber: z.string(),
  fingerprint: z.string(),
  issuedAt: timestamp,
  expiresAt: timestamp,
  issuerDN: z.string(),
  subjectDN: z.string(),
  revokedAt: timestamp.optional(),
  pins: certificatePinsSchema.optional(),
});

export const provisioningRecordSchema = z
  .object({
    id: z.string(),
    tenantId: z.string(),
    deviceId: z.string(),
    provisioningMethod: z.enum(['manual', 'automatic', 'bulk', 'api']),
    status: z.enum(['pending', 'in_progress', 'completed', 'failed']),
    certificateInfo: certificateInfoSchema.optional(),
    configurationTemplate: z.string(),
    configurationVersion: z.number().int().optional(),
    provisioningSteps: z.array(
      z.object({
        step: z.enum(provisioningStepNames),
        status: z.enum(['pending', 'in_progress', 'completed', 'failed', 'skipped']),
        startedAt: timestamp.optional(),
        completedAt: timestamp.optional(),
        error: z.string().optional(),
        retryCount: z.number().int().min(0),
      }),
    ),
    metadata: z.record(z.string(), z.unknown()),
    createdAt: timestamp,
    completedAt: timestamp.optional(),
    error: z.object({ type: z.string(), message: z.string(), step: z.enum(provisioningStepNames).optional() }).optional(),
  })
  .meta({ id: 'DeviceProvisioningRecord' });

export const startedProvisioningsSchema = z
  .object({
    provisionings: z.array(
      z.object({
        deviceId: z.string(),
        provisioningId: z.string(),
        outcome: z.enum(['started', 'existing']),
        runId: z.string(),
        statusUrl: z.string(),
      }),
    ),
  })
  .meta({ id: 'StartedProvisionings' });

export const provisioningPlanSchema = z
  .object({
    valid: z.literal(true),
    templateId: z.string(),
    options: z.record(z.string(), z.unknown()),
    devices: z.array(z.record(z.string(), z.unknown())),
  })
  .meta({ id: 'ProvisioningPlan' });

export const deviceCertificateSchema = z
  .object({
    id: z.uuid(),
    deviceId: z.string().nullable(),
    tenantId: z.string(),
    certificateType: z.enum(certificateTypes),
    serialNumber: z.string(),
    fingerprint: z.string(),
    publicKey: z.string(),
    privateKeyLocation: z.string(),
    issuedAt: timestamp,
    expiresAt: timestamp,
    revokedAt: timestamp.optional(),
    revocationReason: z.string().nullable().optional(),
    retiredAt: timestamp.optional(),
    renewalOfCertificateId: z.uuid().optional(),
    issuerCertificateId: z.uuid().nullable(),
    subject: z.record(z.string(), z.unknown()),
    extensions: z.record(z.string(), z.unknown()),
    subjectDN: z.string(),
    issuerDN: z.string(),
    pins: certificatePinsSchema.optional(),
  })
  .meta({ id: 'DeviceCertificate' });

export const issuedCertificateSchema = z
  .object({ certificate: deviceCertificateSchema, pem: z.string(), chainPem: z.array(z.string()) })
  .meta({ id: 'IssuedCertificate' });

export const templateSchema = z
  .object({
    id: z.string(),
    tenantId: z.string().nullable(),
    name: z.string(),
    description: z.string().nullable(),
    deviceType: z.string().nullable(),
    protocol: z.string(),
    version: z.number().int(),
    builtIn: z.boolean(),
    body: z.record(z.string(), z.unknown()),
    parameters: z.record(z.string(), z.record(z.string(), z.unknown())).describe('Per-device parameters the body uses, by name'),
    createdAt: timestamp,
    updatedAt: timestamp,
  })
  .meta({ id: 'ConfigurationTemplate' });

export const healthSchema = z
  .object({
    status: z.enum(['ok', 'degraded']),
    checks: z.record(
      z.string(),
      z.object({ status: z.enum(['up', 'down']), latencyMs: z.number().optional(), error: z.string().optional() }),
    ),
  })
  .meta({ id: 'Health' });

export const apiKeySchema = z
  .object({
    id: z.uuid(),
    tenantId: z.string(),
    name: z.string(),
    role: z.enum(roles),
    /** Who acts when the key is used. */
    principal: z.string(),
    createdBy: z.string(),
    createdAt: timestamp,
    expiresAt: timestamp.nullable(),
    revokedAt: timestamp.nullable(),
    lastUsedAt: timestamp.nullable(),
    /** An emergency administrator key (made only offline): taken only with `X-Break-Glass-Reason`. */
    breakGlass: z.boolean(),
  })
  .meta({ id: 'ApiKey' });

export const whoAmISchema = z
  .object({
    subject: z.string(),
    credential: z.string(),
    kind: z.enum(['api-key', 'user']),
    tenantId: z.string(),
    role: z.enum(roles),
    name: z.string(),
    permissions: z.array(z.enum(permissions)),
    /** Present for a break-glass key, with the reason stated for this request. */
    breakGlass: z.boolean().optional(),
    breakGlassReason: z.string().optional(),
  })
  .meta({ id: 'Principal' });

export const pemChain = { contentType: 'application/pem-certificate-chain', schema: z.string() };
