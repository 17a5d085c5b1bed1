/**
 * Where a BACnet/IP device lives: `host[:port]/instance`, e.g. `192.0.2.10:47808/1234` or
 * `192.0.2.10/1234` (port 47808). BACnet/IP is UDP over IPv4 (Annex J), so the host is an IPv4
 * literal: a name would resolve at send time, and a device answering from another IP than we asked
 * would look like a stranger. The instance is the Device object instance (0..4194302), which is what
 * BACnet itself addresses devices by; one IP:port may front several devices behind a router, and the
 * instance keeps us from provisioning the wrong one.
 */
import { isIPv4 } from 'node:net';
import { ValidationError } from '../../foundation/errors';
import { defaultBacnetPort, maxDeviceInstance } from './protocol';

export interface BacnetDeviceAddress {
  host: string;
  port: number;
  instance: number;
  /** `host:port` as the client library addresses a peer. */
  endpoint: string;
}

export function parseBacnetAddress(address: string): BacnetDeviceAddress {
  const invalid = (reason: string) =>
    new ValidationError(`device address ${JSON.stringify(address)} is invalid: ${reason}`, {
      fields: [{ field: 'address', reason }],
    });
  const match = /^([^:/\s]+)(?::([^/]*))?\/(.*)$/.exec(address);
  if (!match) throw invalid('must be host[:port]/device-instance, e.g. 192.0.2.10:47808/1234');
  const [, host, portText, instanceText] = match;
  if (!isIPv4(host)) throw invalid('host must be an IPv4 address (BACnet/IP runs over UDP/IPv4)');

  let port = defaultBacnetPort;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
      throw invalid('port must be a number from 1 to 65535');
    }
    port = Number(portText);
  }
  if (!/^\d{1,7}$/.test(instanceText) || Number(instanceText) > maxDeviceInstance) {
    throw invalid(`device instance must be a number from 0 to ${maxDeviceInstance}`);
  }
  return { host, port, instance: Number(instanceText), endpoint: `${host}:${port}` };
}

export function formatBacnetAddress(device: { host: string; port: number; instance: number }): string {
  return `${device.host}:${device.port}/${device.instance}`;
}
