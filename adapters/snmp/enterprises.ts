/**
 * Vendors by their IANA Private Enterprise Number, the arc under 1.3.6.1.4.1 that a device's
 * sysObjectID starts with. Only numbers checked against published vendor MIBs are listed; an
 * unknown number is reported as such rather than guessed.
 */
import type { DeviceType } from '../device-adapter';
import { enterprisesArc } from './mib';

export interface EnterpriseVendor {
  manufacturer: string;
  /** What this vendor's SNMP-managed products on a security network usually are. */
  deviceType: DeviceType;
}

export const enterpriseVendors: ReadonlyMap<number, EnterpriseVendor> = new Map([
  [9, { manufacturer: 'Cisco', deviceType: 'other' }],
  [11, { manufacturer: 'Hewlett Packard Enterprise', deviceType: 'other' }],
  [318, { manufacturer: 'APC by Schneider Electric', deviceType: 'other' }],
  [368, { manufacturer: 'Axis Communications', deviceType: 'camera' }],
  [2636, { manufacturer: 'Juniper Networks', deviceType: 'other' }],
  [3967, { manufacturer: 'Bosch Security Systems', deviceType: 'camera' }],
  [8072, { manufacturer: 'Net-SNMP', deviceType: 'other' }],
  [14823, { manufacturer: 'Aruba Networks', deviceType: 'other' }],
  [39165, { manufacturer: 'Hikvision', deviceType: 'camera' }],
  [1004849, { manufacturer: 'Dahua Technology', deviceType: 'camera' }],
]);

/** The enterprise number a sysObjectID sits under, or undefined for OIDs outside the arc. */
export function enterpriseNumber(sysObjectId: string): number | undefined {
  const oid = sysObjectId.replace(/^\./, '');
  if (!oid.startsWith(`${enterprisesArc}.`)) return undefined;
  const pen = Number(oid.slice(enterprisesArc.length + 1).split('.')[0]);
  return Number.isSafeInteger(pen) ? pen : undefined;
}

const descriptionHints: [RegExp, DeviceType][] = [
  [/\b(camera|dome|bullet|ptz|encoder|video server|nvr)\b/i, 'camera'],
  [/\b(intercom|door station)\b/i, 'intercom'],
  [/\b(door controller|access controller|access control panel)\b/i, 'door_controller'],
  [/\b(card reader|reader)\b/i, 'card_reader'],
  [/\b(bacnet|building controller|hvac)\b/i, 'building_controller'],
];

/**
 * Device type from what the device says of itself first (its description is more specific than its
 * vendor: Axis also makes intercoms and door controllers), then from the vendor, else `other`.
 */
export function deviceTypeFor(sysDescr: string, vendor: EnterpriseVendor | undefined): DeviceType {
  for (const [pattern, type] of descriptionHints) if (pattern.test(sysDescr)) return type;
  return vendor?.deviceType ?? 'other';
}
