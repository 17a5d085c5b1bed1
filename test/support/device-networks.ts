/**
 * Where test devices live: on loopback (a development installation) and in the 10.x networks of
 * the namespaces tests build (test/support/netns.ts).
 */
import { DeviceNetworks } from '../../adapters/device-networks';

export const testDeviceNetworkRanges = ['10.0.0.0/8'];

export const testDeviceNetworks = DeviceNetworks.of(testDeviceNetworkRanges, { loopback: true });
