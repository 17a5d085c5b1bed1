/**
 * Where an SNMP agent lives: `host[:port]`, port 161 when absent (see ../host-port).
 */
import { isIPv6 } from 'node:net';
import { parseHostPort } from '../host-port';

export interface SnmpEndpoint {
  /** Without brackets, as `dgram` wants it. */
  host: string;
  port: number;
  transport: 'udp4' | 'udp6';
}

export const defaultSnmpPort = 161;

export function parseSnmpAddress(address: string): SnmpEndpoint {
  const { host, port } = parseHostPort(address, defaultSnmpPort);
  return { host, port, transport: isIPv6(host) ? 'udp6' : 'udp4' };
}
