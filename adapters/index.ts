/**
 * The device protocols the service can provision, by protocol name. A new protocol is one new
 * folder beside this file and one line here.
 */
import type { DeviceAdapter } from './device-adapter';
import { httpsDeviceAdapter } from './https';
import { snmpDeviceAdapter } from './snmp';
import { bacnetDeviceAdapter } from './bacnet';
import { onvifDeviceAdapter } from './onvif';
import { osdpReaderAdapter } from './osdp';

export function deviceAdapters(): ReadonlyMap<string, DeviceAdapter> {
  return new Map<string, DeviceAdapter>([httpsDeviceAdapter, onvifDeviceAdapter, osdpReaderAdapter, bacnetDeviceAdapter, snmpDeviceAdapter].map((adapter) => [adapter.protocol, adapter]));
}
