/**
 * Where an SNMP agent lives: `host[:port]`, port 161 when absent. Parsed strictly so that a typo
 * is refused when the device is registered, not when the first datagram goes nowhere.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { ValidationError } from '../../service/errors';

export interface SnmpEndpoint {
  /** Without brackets, as `dgram` wants it. */
  host: string;
  port: number;
  transport: 'udp4' | 'udp6';
}

export const defaultSnmpPort = 161;

const dnsLabel = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/i;

export function parseSnmpAddress(address: string): SnmpEndpoint {
  const invalid = (reason: string) =>
    new ValidationError(`device address ${JSON.stringify(address)} is invalid: ${reason}`, {
      fields: [{ field: 'address', reason }],
    });
  if (address.trim() !== address || address === '') throw invalid('must be host[:port] without spaces');

  let host: string;
  let portText: string | undefined;
  if (address.startsWith('[')) {
    const match = /^\[([^\]]+)\](?::(.*))?$/.exec(address);
    if (!match || !isIPv6(match[1])) throw invalid('bracketed host must be an IPv6 address');
    [, host, portText] = match;
  } else {
    const parts = address.split(':');
    if (parts.length > 2) throw invalid('IPv6 addresses must be written in brackets, e.g. [fe80::1]:161');
    [host, portText] = parts;
    if (!isIPv4(host) && !isDnsName(host)) throw invalid('host must be an IPv4 address, [IPv6] address or DNS name');
  }

  let port = defaultSnmpPort;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText)) throw invalid('port must be a number from 1 to 65535');
    port = Number(portText);
    if (port < 1 || port > 65535) throw invalid('port must be a number from 1 to 65535');
  }
  return { host, port, transport: isIPv6(host) ? 'udp6' : 'udp4' };
}

function isDnsName(host: string): boolean {
  const name = host.endsWith('.') ? host.slice(0, -1) : host;
  if (name.length === 0 || name.length > 253) return false;
  const labels = name.split('.');
  // An all-numeric last label would make a mistyped IPv4 address look like a name.
  return labels.every((label) => dnsLabel.test(label)) && !/^\d+$/.test(labels.at(-1)!);
}
