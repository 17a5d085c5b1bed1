/**
 * The networks the service may reach devices on: the installation's allowlist (DEVICE_NETWORKS),
 * and loopback only in development. Nothing beyond it is ever contacted on a device's behalf, so
 * neither a tenant's provisioning request nor its discovery sites can aim the service at the host's
 * own ports, another network or a cloud metadata address.
 *
 * It is checked twice: where addresses come in (the API names the offending field) and where the
 * connection is made (no path around the API gets through). A name is resolved and every address it
 * resolves to must be allowed; the connection then goes to the address that was checked, so a name
 * cannot answer one way for the check and another for the connection.
 */
import { lookup } from 'node:dns/promises';
import { isIP, isIPv4 } from 'node:net';
import { networkInterfaces } from 'node:os';
import { DeviceUnavailableError, PolicyViolationError, ServiceError } from '../foundation/errors';
import type { DeviceAdapter } from './device-adapter';

interface NetworkBlock {
  /** As configured, normalised to the network address (`10.20.0.0/24`). */
  cidr: string;
  family: 4 | 6;
  first: bigint;
  last: bigint;
}

/** What development adds: the reference devices and simulators run on this host. */
export const loopbackNetworks = ['127.0.0.0/8', '::1/128'] as const;
/** Addresses that reach this host whatever it is called: loopback, and the unspecified address. */
const thisHostNetworks = [...loopbackNetworks, '0.0.0.0/8', '::/128'];

/** Why a CIDR is not one, or undefined with the block when it is. */
function parseBlock(text: string): NetworkBlock | string {
  const [address = '', prefixText, extra] = text.trim().split('/');
  const family = isIP(address) as 0 | 4 | 6;
  if (family === 0 || extra !== undefined || address.includes('%')) return 'is not an IPv4 or IPv6 CIDR such as 10.20.0.0/24';
  const bits = family === 4 ? 32 : 128;
  if (prefixText !== undefined && !/^\d{1,3}$/.test(prefixText)) return 'has a prefix length that is not a number';
  const prefixLength = prefixText === undefined ? bits : Number(prefixText);
  if (prefixLength > bits) return `has a prefix length above ${bits}`;
  const size = 1n << BigInt(bits - prefixLength);
  const first = addressValue(address) - (addressValue(address) % size);
  return { cidr: `${formatAddress(first, family)}/${prefixLength}`, family, first, last: first + size - 1n };
}

/** An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) is the IPv4 address it maps. */
function unmapped(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return mapped ? mapped[1]! : address.replace(/%.*$/, '');
}

function addressValue(address: string): bigint {
  if (isIPv4(address)) return address.split('.').reduce((value, octet) => (value << 8n) + BigInt(octet), 0n);
  // IPv6, possibly with `::` and an IPv4 tail.
  let text = address.toLowerCase();
  const tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (tail) {
    const v4 = addressValue(tail[1]!);
    text = `${text.slice(0, -tail[1]!.length)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const headGroups = head ? head.split(':') : [];
  const restGroups = rest ? rest.split(':') : [];
  const groups = rest === undefined ? headGroups : [...headGroups, ...Array<string>(8 - headGroups.length - restGroups.length).fill('0'), ...restGroups];
  return groups.reduce((value, group) => (value << 16n) + BigInt(parseInt(group, 16)), 0n);
}

function formatAddress(value: bigint, family: 4 | 6): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((shift) => String((value >> shift) & 0xffn)).join('.');
  const groups = Array.from({ length: 8 }, (_, index) => ((value >> BigInt(112 - index * 16)) & 0xffffn).toString(16));
  // RFC 5952: the longest run of two or more zero groups (the first of equals) becomes `::`.
  let best = { start: -1, length: 1 };
  for (let start = 0; start < 8; start += 1) {
    let length = 0;
    while (groups[start + length] === '0') length += 1;
    if (length > best.length) best = { start, length };
  }
  if (best.start < 0) return groups.join(':');
  return `${groups.slice(0, best.start).join(':')}::${groups.slice(best.start + best.length).join(':')}`;
}

/** This host's interface addresses now (interfaces come and go), as `<family>/<value>`. */
function ownAddresses(): Set<string> {
  const own = new Set<string>();
  for (const entries of Object.values(networkInterfaces())) {
    for (const entry of entries ?? []) {
      const text = unmapped(entry.address);
      const family = isIP(text);
      if (family !== 0) own.add(`${family}/${addressValue(text)}`);
    }
  }
  return own;
}

function overlaps(a: NetworkBlock, b: NetworkBlock): boolean {
  return a.family === b.family && a.first <= b.last && b.first <= a.last;
}

export class DeviceNetworks {
  readonly #blocks: readonly NetworkBlock[];
  /** Development only: the service's own host is where the reference devices run. */
  readonly #reachesOwnHost: boolean;

  private constructor(blocks: NetworkBlock[], reachesOwnHost: boolean) {
    this.#blocks = blocks;
    this.#reachesOwnHost = reachesOwnHost;
  }

  /**
   * The allowlist from its CIDRs, loopback added when `loopback` is set. Throws naming the entry
   * that is not a CIDR. Reaching the service's own host is a development convenience, never a
   * production setting: without `loopback`, CIDRs holding loopback or the unspecified address are
   * refused, and so, whatever the CIDRs, are the addresses of this host's own interfaces.
   */
  static of(cidrs: readonly string[], options: { loopback: boolean }): DeviceNetworks {
    const thisHost = thisHostNetworks.map((cidr) => parseBlock(cidr) as NetworkBlock);
    const blocks: NetworkBlock[] = [];
    for (const text of cidrs) {
      const block = parseBlock(text);
      if (typeof block === 'string') throw new RangeError(`"${text}" ${block}`);
      if (!options.loopback && thisHost.some((candidate) => overlaps(candidate, block))) {
        throw new RangeError(`"${text}" includes loopback or unspecified addresses, which only a development installation may reach`);
      }
      blocks.push(block);
    }
    const loopback = loopbackNetworks.map((cidr) => parseBlock(cidr) as NetworkBlock);
    return new DeviceNetworks(options.loopback ? [...blocks, ...loopback] : blocks, options.loopback);
  }

  /** The allowed networks, for messages that tell an operator what would be accepted. */
  get description(): string {
    return this.#blocks.length > 0 ? this.#blocks.map((block) => block.cidr).join(', ') : 'none';
  }

  /** Whether an IP address lies in an allowed network (and, in production, is not one of this host's own). */
  allows(address: string): boolean {
    const text = unmapped(address);
    const family = isIP(text);
    if (family === 0) return false;
    const value = addressValue(text);
    if (!this.#reachesOwnHost && ownAddresses().has(`${family}/${value}`)) return false;
    return this.#blocks.some((block) => block.family === family && value >= block.first && value <= block.last);
  }

  /** Whether the IPv4 CIDR `cidr` lies inside one allowed network. */
  containsNetwork(cidr: string): boolean {
    const block = parseBlock(cidr);
    return typeof block !== 'string' && this.#blocks.some((allowed) => allowed.family === block.family && allowed.first <= block.first && block.last <= allowed.last);
  }

  /**
   * Why a device address may not be used, worded for the operator who gave it, or undefined: the
   * protocol must be able to reach it and, on an IP network, every address its host stands for
   * must lie in the allowed networks. Addresses on serial buses have no host and pass.
   */
  async addressProblem(adapter: Pick<DeviceAdapter, 'validateAddress' | 'networkHost'>, address: string): Promise<string | undefined> {
    try {
      adapter.validateAddress(address);
      const host = adapter.networkHost(address);
      if (host !== undefined) await this.resolve(host);
      return undefined;
    } catch (error) {
      if (!(error instanceof ServiceError)) throw error;
      return error instanceof PolicyViolationError || error instanceof DeviceUnavailableError ? error.message : (error.fields[0]?.reason ?? error.message);
    }
  }

  /**
   * The address to connect to for `host`: the literal itself, or what the name resolves to. Throws
   * PolicyViolationError (never retried) when an address lies outside the allowed networks, and
   * DeviceUnavailableError when the name does not resolve now.
   */
  async resolve(host: string): Promise<string> {
    const literal = host.replace(/^\[(.*)\]$/, '$1');
    if (isIP(unmapped(literal)) !== 0) {
      if (!this.allows(literal)) throw this.#outside(literal);
      return unmapped(literal);
    }
    let addresses: { address: string }[];
    try {
      addresses = await lookup(literal, { all: true, verbatim: true });
    } catch (error) {
      throw new DeviceUnavailableError(`${literal} does not resolve: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    const outside = addresses.find(({ address }) => !this.allows(address));
    if (outside || addresses.length === 0) throw this.#outside(`${literal} (${outside?.address ?? 'no address'})`);
    return unmapped(addresses[0]!.address);
  }

  #outside(what: string): PolicyViolationError {
    return new PolicyViolationError(`${what} is outside the device networks this installation allows (${this.description})`, {
      fields: [{ field: 'address', reason: `is outside the device networks this installation allows (${this.description})` }],
    });
  }
}
