/**
 * Where an HTTPS device lives: `host[:port]`, port 443 when absent (see ../host-port).
 */
import { isIPv6 } from 'node:net';
import { parseHostPort } from '../host-port';

export interface DeviceEndpoint {
  /** Without brackets, ready for `tls.connect`. */
  host: string;
  port: number;
  /** Name to send for SNI; IP literals get none. */
  serverName?: string;
  /** The `Host` header value. */
  authority: string;
}

export const defaultHttpsPort = 443;

export function parseDeviceAddress(address: string): DeviceEndpoint {
  const { host, port, serverName } = parseHostPort(address, defaultHttpsPort);
  const literal = isIPv6(host) ? `[${host}]` : host;
  return { host, port, serverName, authority: port === defaultHttpsPort ? literal : `${literal}:${port}` };
}
