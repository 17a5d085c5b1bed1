/**
 * Configuration settings of BACnet/IP building controllers, checked before anything is written.
 * Every setting maps onto one standard property (see `index.ts`); BACnet has no "apply settings"
 * document, so each is written, read back and compared.
 */
import { z } from 'zod';
import type { BuiltInTemplate, ProtocolSettings } from '../device-adapter';

/** BACnet CharacterStrings are often capped by devices; these bounds fit common controllers. */
const printable = (max: number) =>
  z
    .string()
    .max(max)
    .regex(/^[^\u0000-\u001f\u007f]*$/, 'must not contain control characters');

const hubUri = z
  .string()
  .max(256)
  .regex(/^wss:\/\/[^\s/]+(\/\S*)?$/, 'must be a wss:// URI (BACnet/SC hubs are reached over secure WebSockets)');

export const bacnetDeviceSettings = z
  .object({
    /** Device Object_Name; must be unique on the BACnet internetwork. */
    objectName: printable(64).min(1),
    location: printable(128).optional(),
    description: printable(128).optional(),
    /**
     * Offset of local standard time from UTC in minutes, as people write it (+60 for CET). BACnet's
     * UTC_Offset counts the other way round (UTC minus local), which the adapter takes care of.
     */
    utcOffsetMinutes: z.number().int().min(-780).max(780).optional(),
    /** Send a UTC TimeSynchronization after configuring, so schedules and logs start out right. */
    synchroniseClock: z.boolean().optional(),
    /** APDU_Timeout the device uses for its own confirmed requests, in milliseconds. */
    apduTimeoutMs: z.number().int().min(1000).max(60000).optional(),
    /** Number_Of_APDU_Retries. */
    apduRetries: z.number().int().min(0).max(10).optional(),
    /** BACnet/SC hubs; only for devices with a Secure Connect network port. */
    secureConnect: z
      .object({
        primaryHubUri: hubUri,
        failoverHubUri: hubUri.optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

export type BacnetDeviceSettings = z.infer<typeof bacnetDeviceSettings>;

export const bacnetProtocolSettings: ProtocolSettings = {
  schema: bacnetDeviceSettings,
  requiresDeviceCertificate: (settings) =>
    (settings as BacnetDeviceSettings).secureConnect
      ? 'secureConnect hub URIs make the device connect over BACnet/SC, whose TLS needs an operational certificate from us'
      : undefined,
};

const controllerBaseline = {
  objectName: '{{device.name}}',
  location: '{{device.site}}',
  description: 'provisioned controller {{device.deviceId}}',
  utcOffsetMinutes: 60,
  synchroniseClock: true,
  apduTimeoutMs: 6000,
  apduRetries: 3,
} satisfies BacnetDeviceSettings;

/** Starting templates: plain BACnet/IP controllers (no certificate steps), and BACnet/SC ones that also name the site's hubs. */
export const bacnetBuiltInTemplates: readonly BuiltInTemplate[] = [
  {
    id: 'bacnet-controller',
    name: 'BACnet/IP controller',
    description: 'Device object named after the device, site as location, clock synchronised, conservative APDU timing.',
    deviceType: 'building_controller',
    body: controllerBaseline,
  },
  {
    id: 'bacnet-sc-controller',
    name: 'BACnet/SC controller',
    description: "As the BACnet/IP baseline, plus the operational certificate from the site's CA and the site's primary and failover hubs.",
    deviceType: 'building_controller',
    body: {
      ...controllerBaseline,
      secureConnect: {
        primaryHubUri: 'wss://bacnet-hub-1.{{device.site}}.internal/hub',
        failoverHubUri: 'wss://bacnet-hub-2.{{device.site}}.internal/hub',
      },
    } satisfies BacnetDeviceSettings,
  },
];
