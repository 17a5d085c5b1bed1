/**
 * The device protocols the service can provision, by protocol name. A new protocol is one new
 * folder beside this file and one line here: its adapter brings its settings schema and built-in
 * templates, which the rest of the service asks the adapter for.
 */
import type { DeviceAdapter } from './device-adapter';
import type { DeviceNetworks } from './device-networks';
import { HttpsDeviceAdapter } from './https';
import { SnmpDeviceAdapter } from './snmp';
import { BacnetDeviceAdapter } from './bacnet';
import { OnvifDeviceAdapter } from './onvif';
import { osdpReaderAdapter } from './osdp';

/** The adapters, each reaching devices on IP networks only inside `networks`. */
export function deviceAdapters(networks: DeviceNetworks): ReadonlyMap<string, DeviceAdapter> {
  return new Map<string, DeviceAdapter>(
    [
      new HttpsDeviceAdapter({ networks }),
      new OnvifDeviceAdapter({ networks }),
      osdpReaderAdapter,
      new BacnetDeviceAdapter({ networks }),
      new SnmpDeviceAdapter({ networks }),
    ].map((adapter) => [adapter.protocol, adapter]),
  );
}
