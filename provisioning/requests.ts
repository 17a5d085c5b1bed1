/**
 * The DeviceProvisioningRequest contract: its schema, normalisation (MAC addresses, derived device
 * ids) and the checks that need more than the schema (duplicates within one request). The API
 * declares it as the body of a provisioning request; bulk import parses each row of a file with
 * it, and zero-touch provisioning the device a registration's sighting found.
 */
import { z } from 'zod';
import type { DeviceType } from '../adapters/device-adapter';
import { templateIdPattern } from '../configuration/templates';
import type { FieldProblem } from '../foundation/errors';
import type { DeviceDescriptor } from '../contracts/provisioning';
import { normaliseMacAddress } from '../foundation/mac-address';
import { identifierPattern, identifierReason } from '../registry/identifiers';
import { credentialsSchema } from '../registry/initial-credentials';

export const deviceTypes = [
  'camera',
  'door_controller',
  'card_reader',
  'building_controller',
  'intercom',
  'other',
] as const satisfies readonly DeviceType[];

export const macAddressSchema = z.string().transform((value, context) => {
  const normalised = normaliseMacAddress(value);
  if (!normalised) {
    context.addIssue({ code: 'custom', message: 'must be a MAC address such as 00:1a:2b:3c:4d:5e' });
    return z.NEVER;
  }
  return normalised;
});

export function deviceRequestSchema(protocols: readonly string[]) {
  return z
    .object({
      deviceId: z.string().regex(identifierPattern, identifierReason).optional(),
      serialNumber: z.string().trim().regex(identifierPattern, identifierReason),
      macAddress: macAddressSchema,
      address: z.string().trim().min(1, 'is required').max(255),
      protocol: z.string().refine((p) => protocols.includes(p), {
        message: `must be one of: ${protocols.join(', ')}`,
      }),
      deviceType: z.enum(deviceTypes).default('other'),
      site: z.string().regex(identifierPattern, identifierReason),
      name: z.string().trim().min(1).max(120).optional(),
      credentials: credentialsSchema.optional(),
      metadata: z.record(z.string().max(64), z.string().max(1024)).optional(),
    })
    .strict();
}

/** How a run goes when the request says nothing: with a certificate, activated at once. */
export const defaultRunOptions = { skipCertificateGeneration: false, autoActivate: true } as const;

export function provisioningRequestSchema(protocols: readonly string[]) {
  return z
    .object({
      devices: z.array(deviceRequestSchema(protocols)).min(1, 'at least one device is required').max(100, 'at most 100 devices per request; use bulk import for more'),
      templateId: z.string().regex(templateIdPattern, 'must be a template id').default('default'),
      provisioningMethod: z.enum(['manual', 'api']).default('api'),
      options: z
        .object({
          validateOnly: z.boolean().default(false),
          skipCertificateGeneration: z.boolean().default(defaultRunOptions.skipCertificateGeneration),
          autoActivate: z.boolean().default(defaultRunOptions.autoActivate),
          certificateValidityDays: z.number().int().min(1).max(825).optional(),
          deviceRetryWindowSeconds: z.number().int().min(10).max(7 * 24 * 3600).optional(),
        })
        .strict()
        .default({ validateOnly: false, ...defaultRunOptions }),
    })
    .strict();
}

/** A device as parsed: its id defaults to its serial number. */
export type DeviceRequest = z.infer<ReturnType<typeof deviceRequestSchema>>;
export type DeviceProvisioningRequest = DeviceRequest & { deviceId: string };
export type ProvisioningRequest = z.infer<ReturnType<typeof provisioningRequestSchema>>;

/** What a provisioning run is told about the device: the request without its credentials. */
export function deviceDescriptorOf(device: DeviceProvisioningRequest): DeviceDescriptor {
  return {
    deviceId: device.deviceId,
    serialNumber: device.serialNumber,
    macAddress: device.macAddress,
    address: device.address,
    protocol: device.protocol,
    deviceType: device.deviceType,
    site: device.site,
    ...(device.name ? { name: device.name } : {}),
  };
}

/** The same device named twice in one request is a mistake, not two provisionings. */
export function duplicatesWithin(devices: DeviceProvisioningRequest[], prefix = 'devices'): FieldProblem[] {
  const problems: FieldProblem[] = [];
  const seen = new Map<string, number>();
  devices.forEach((device, index) => {
    for (const key of ['deviceId', 'serialNumber', 'macAddress'] as const) {
      const marker = `${key}=${device[key]}`;
      const first = seen.get(marker);
      if (first === undefined) seen.set(marker, index);
      else problems.push({ field: `${prefix}[${index}].${key}`, reason: `duplicates ${prefix}[${first}].${key}` });
    }
  });
  return problems;
}
