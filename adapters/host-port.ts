/**
 * `host[:port]` addresses of devices on IP networks, parsed strictly and alike for every protocol
 * that uses them: an address that slips through here would only fail later, far from the operator
 * who typed it. Each protocol supplies its default port.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { ValidationError } from '../foundation/errors';

export interface HostPort {
  /** Without brackets, ready for `net.connect` or `dgram`. */
  host: string;
  port: number;
  /** Name to send for SNI; IP literals get none. */
  serverName?: string;
}

const dnsLabel = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/i;

export function parseHostPort(address: string, defaultPort: number): HostPort {
  const invalid = (reason: string) =>
    new ValidationError(`device address ${JSON.stringify(address)} is invalid: ${reason}`, {
      fields: [{ field: 'address', reason }],
    });
  if (address.trim() !== address || address === '') throw invalid('must be host[:port] without spaces');

  let host: string;
  let portText: string | undefined;
  if (address.startsWith('[')) {
    const match = /^\[([^\]]+)\](?::(.*))?$/.exec(address);
    if (!match || !isIPv6(match[1]!)) throw invalid('bracketed host must be an IPv6 address');
    [, host, portText] = match as unknown as [string, string, string | undefined];
  } else {
    const parts = address.split(':');
    if (parts.length > 2) throw invalid(`IPv6 addresses must be written in brackets, e.g. [fe80::1]:${defaultPort}`);
    [host, portText] = parts as [string, string | undefined];
    if (!isIPv4(host) && !isDnsName(host)) throw invalid('host must be an IPv4 address, [IPv6] address or DNS name');
  }

  let port = defaultPort;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText)) throw invalid('port must be a number from 1 to 65535');
    port = Number(portText);
    if (port < 1 || port > 65535) throw invalid('port must be a number from 1 to 65535');
  }
  return {
    host,
    port,
    serverName: isIPv4(host) || isIPv6(host) ? undefined : host.replace(/\.$/, ''),
  };
}

/** `host:port` as it goes into a URL or a `Host` header (IPv6 in brackets). */
export function authorityOf(host: string, port: number): string {
  return `${isIPv6(host) ? `[${host}]` : host}:${port}`;
}

function isDnsName(host: string): boolean {
  const name = host.endsWith('.') ? host.slice(0, -1) : host;
  if (name.length === 0 || name.length > 253) return false;
  const labels = name.split('.');
  // An all-numeric last label would make a mistyped IPv4 address look like a name.
  return labels.every((label) => dnsLabel.test(label)) && !/^\d+$/.test(labels.at(-1)!);
}
