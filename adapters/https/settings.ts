/**
 * Configuration settings of devices managed over their native HTTPS API (the reference device and
 * its kind): host name, time, where logs go, TLS and management access, VLAN and local accounts.
 */
import { z } from 'zod';
import type { BuiltInTemplate, ProtocolSettings } from '../device-adapter';

const hostname = z
  .string()
  .regex(/^(?!-)[a-z0-9-]{1,63}(?<!-)$/, 'must be an RFC 1123 host label: a-z, 0-9 and "-", at most 63 characters');

const networkHost = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[A-Za-z0-9.:[\]-]+$/, 'must be a host name or IP address');

export const httpsDeviceSettings = z
  .object({
    hostname,
    timezone: z.string().regex(/^[A-Za-z_]+(\/[A-Za-z0-9_+-]+)*$/, 'must be an IANA time zone such as Europe/Berlin'),
    site: z.string().min(1).max(64),
    ntp: z.object({ servers: z.array(networkHost).min(1, 'at least one NTP server is required').max(4) }).strict(),
    syslog: z
      .object({
        host: networkHost,
        port: z.number().int().min(1).max(65535),
        protocol: z.enum(['udp', 'tcp', 'tls']),
      })
      .strict()
      .optional(),
    tls: z.object({ minVersion: z.enum(['TLSv1.2', 'TLSv1.3']) }).strict(),
    management: z.object({ httpEnabled: z.boolean(), passwordLogin: z.boolean() }).strict(),
    /** The management VLAN (IEEE 802.1Q id, optional 802.1p priority). */
    vlan: z
      .object({ id: z.number().int().min(1).max(4094), priority: z.number().int().min(0).max(7).optional() })
      .strict()
      .optional(),
    /** Local accounts besides the factory one; passwords come from the secret vault, per device. */
    users: z
      .array(
        z
          .object({
            username: z.string().regex(/^[A-Za-z0-9._-]{1,32}$/, 'must be 1 to 32 characters of A-Z, a-z, 0-9, ".", "_" or "-"'),
            password: z.string().min(1).max(128),
            role: z.enum(['administrator', 'operator', 'viewer']),
          })
          .strict(),
      )
      .max(16)
      .optional(),
  })
  .strict();

export type HttpsDeviceSettings = z.infer<typeof httpsDeviceSettings>;

export const httpsProtocolSettings: ProtocolSettings = {
  schema: httpsDeviceSettings,
  requiresDeviceCertificate: (settings) =>
    (settings as HttpsDeviceSettings).management?.passwordLogin === false
      ? 'management.passwordLogin is false, so only mutual TLS with a certificate we issued could reach the device'
      : undefined,
};

export const httpsBuiltInTemplates: readonly BuiltInTemplate[] = [
  {
    id: 'default',
    name: 'Default',
    description: 'Hardened baseline for devices with a native HTTPS management API: TLS 1.2+, mutual TLS only, NTP.',
    deviceType: null,
    body: {
      hostname: '{{device.hostname}}',
      timezone: 'UTC',
      site: '{{device.site}}',
      ntp: { servers: ['ntp1.{{device.site}}.internal', 'ntp2.{{device.site}}.internal'] },
      tls: { minVersion: 'TLSv1.2' },
      management: { httpEnabled: false, passwordLogin: false },
    },
  },
];
