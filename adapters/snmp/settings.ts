/**
 * Configuration settings of SNMP-managed devices (encoders, switches, UPS): the per-device SNMPv3
 * user to provision, what happens to community (v1/v2c) access and to the factory admin user, and
 * the system group values to set.
 */
import { z } from 'zod';
import type { BuiltInTemplate, ProtocolSettings } from '../device-adapter';

/** SnmpAdminString (RFC 3411): printable here, because it also names the user in operators' tools. */
const adminString = (max: number) =>
  z
    .string()
    .max(max)
    .regex(/^[\x20-\x7e]*$/, 'must be printable ASCII');

export const snmpDeviceSettings = z
  .object({
    /** The USM user provisioned for this device; its keys are generated and kept by the service. */
    usmUser: z
      .string()
      .min(1)
      .max(32)
      .regex(/^[A-Za-z0-9._-]+$/, 'must be 1 to 32 characters of A-Z, a-z, 0-9, ".", "_" or "-"'),
    system: z
      .object({
        name: adminString(255).pipe(z.string().min(1)),
        location: adminString(255),
        contact: adminString(255),
      })
      .strict(),
    /**
     * `disabled` maps every v1/v2c community of the agent onto a VACM group without access, so
     * community requests go unanswered; `unchanged` leaves them as the device had them.
     */
    communityAccess: z.enum(['disabled', 'unchanged']),
    /** Whether activation deletes the factory admin user once the per-device user is proven. */
    removeFactoryAdmin: z.boolean(),
  })
  .strict();

export type SnmpDeviceSettings = z.infer<typeof snmpDeviceSettings>;

export const snmpProtocolSettings: ProtocolSettings = {
  schema: snmpDeviceSettings,
  // SNMP devices get no certificate from us: the per-device USM user is what keeps them reachable.
  requiresDeviceCertificate: () => undefined,
};

export const snmpBuiltInTemplates: readonly BuiltInTemplate[] = [
  {
    id: 'snmp-v3-baseline',
    name: 'SNMPv3 baseline',
    description: 'Per-device SNMPv3 user (SHA-256/AES), community (v1/v2c) access off, system group named after the device.',
    deviceType: null,
    body: {
      usmUser: 'provisioning',
      system: { name: '{{device.hostname}}', location: '{{device.site}}', contact: 'security-operations' },
      communityAccess: 'disabled',
      removeFactoryAdmin: false,
    } satisfies SnmpDeviceSettings,
  },
];
