/**
 * Configuration settings of ONVIF devices: what the device service lets us set remotely and read
 * back (host name, NTP, time zone, which management protocols listen).
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import type { BuiltInTemplate, ProtocolSettings } from '../device-adapter';

const hostname = z
  .string()
  .regex(/^(?!-)[a-z0-9-]{1,63}(?<!-)$/, 'must be an RFC 1123 host label: a-z, 0-9 and "-", at most 63 characters');

const dnsName = /^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$/;
const ntpServer = z
  .string()
  .refine((value) => isIP(value) !== 0 || (dnsName.test(value) && !/\.\d+\.?$/.test(value)), 'must be a DNS name or an IP address');

/**
 * ONVIF devices take POSIX TZ strings (IEEE 1003.1), e.g. `CET-1CEST,M3.5.0,M10.5.0/3`, not IANA
 * names; the standard name part is three or more letters or a `<...>` quoted form.
 */
const posixTimeZone = z
  .string()
  .max(64)
  .regex(
    /^(?:[A-Za-z]{3,}|<[A-Za-z0-9+-]{3,}>)[+-]?\d{1,2}(?::\d{2}){0,2}(?:(?:[A-Za-z]{3,}|<[A-Za-z0-9+-]{3,}>)(?:[+-]?\d{1,2}(?::\d{2}){0,2})?(?:,[A-Za-z0-9.:/+-]+){0,2})?$/,
    'must be a POSIX TZ string such as CET-1CEST,M3.5.0,M10.5.0/3 or UTC0',
  );

export const onvifDeviceSettings = z
  .object({
    hostname,
    ntp: z.object({ servers: z.array(ntpServer).min(1, 'at least one NTP server is required').max(4) }).strict(),
    timezone: posixTimeZone.optional(),
    management: z
      .object({
        /** Plain HTTP on the device service; HTTPS stays on once our certificate is installed. */
        httpEnabled: z.boolean(),
      })
      .strict(),
  })
  .strict();

export type OnvifDeviceSettings = z.infer<typeof onvifDeviceSettings>;

export const onvifProtocolSettings: ProtocolSettings = {
  schema: onvifDeviceSettings,
  requiresDeviceCertificate: (settings) =>
    (settings as OnvifDeviceSettings).management?.httpEnabled === false
      ? 'management.httpEnabled is false, so only HTTPS with a certificate we issued could reach the device'
      : undefined,
};

/** A starting template for cameras: HTTP off once provisioned, two NTP servers, central European time. */
export const onvifCameraTemplateSettings: OnvifDeviceSettings = {
  hostname: '{{device.hostname}}',
  ntp: { servers: ['ntp1.{{device.site}}.internal', 'ntp2.{{device.site}}.internal'] },
  timezone: 'CET-1CEST,M3.5.0,M10.5.0/3',
  management: { httpEnabled: false },
};

export const onvifBuiltInTemplates: readonly BuiltInTemplate[] = [
  {
    id: 'onvif-camera',
    name: 'ONVIF camera',
    description: 'Certificate from the site CA on the device, HTTPS only (HTTP off), per-device management user, NTP from the site.',
    deviceType: 'camera',
    body: onvifCameraTemplateSettings,
  },
];
