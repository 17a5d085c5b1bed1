/**
 * Scan scope: the explicit configuration of where discovery may look. Nothing is scanned that the
 * scope does not name: multicast scanners send only out of its interfaces and keep only answers
 * from inside its ranges; sweeps (SNMP, BACnet unicast) walk only its ranges and ports.
 *
 * Limits keep one misconfiguration from turning a scan into a flood: a range is at most a /20, a
 * sweep at most `maxAddressesPerSweep` addresses, multicast, broadcast and reserved blocks are
 * refused, and loopback is refused unless `allowLoopback` says so (tests and single-host labs).
 */
import os from 'node:os';
import { isIPv4 } from 'node:net';
import { z } from 'zod';
import type { DeviceNetworks } from '../adapters/device-networks';

/** Largest range one entry may name: a /20 is 4096 addresses, a large site's camera VLAN. */
export const smallestPrefixLength = 20;
/** Ceiling for `maxAddressesPerSweep`, whatever the configuration asks. */
export const sweepAddressCeiling = 4096;
export const defaultMaxAddressesPerSweep = 1024;
export const maxInterfaces = 16;
export const maxRanges = 64;
export const maxPorts = 64;

/** Linux interface names: at most 15 bytes, no slash, colon or white space. */
const interfaceNamePattern = /^[A-Za-z0-9_.@-]{1,15}$/;

export interface Ipv4Range {
  /** The CIDR as configured, normalised to its network address (`10.0.0.0/24`). */
  cidr: string;
  /** First and last address as unsigned 32-bit numbers. */
  first: number;
  last: number;
  prefixLength: number;
}

/** Blocks no scan may touch: "this network", multicast, reserved and limited broadcast. */
const forbiddenBlocks: { cidr: string; reason: string }[] = [
  { cidr: '0.0.0.0/8', reason: 'is "this network" (0.0.0.0/8), not a device range' },
  { cidr: '224.0.0.0/4', reason: 'is multicast (224.0.0.0/4); multicast groups are chosen by each scanner' },
  { cidr: '240.0.0.0/4', reason: 'is reserved or the limited broadcast address (240.0.0.0/4)' },
];
const loopbackBlock = '127.0.0.0/8';

export function ipv4ToNumber(address: string): number {
  return address.split('.').reduce((value, octet) => value * 256 + Number(octet), 0);
}

export function numberToIpv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join('.');
}

/** Undefined when `text` is not an IPv4 CIDR (`a.b.c.d/n`, or a bare address meaning /32). */
export function parseIpv4Cidr(text: string): Ipv4Range | undefined {
  const [address, prefixText, extra] = text.trim().split('/');
  if (extra !== undefined || !address || !isIPv4(address)) return undefined;
  if (prefixText !== undefined && !/^\d{1,2}$/.test(prefixText)) return undefined;
  const prefixLength = prefixText === undefined ? 32 : Number(prefixText);
  if (prefixLength > 32) return undefined;
  const size = 2 ** (32 - prefixLength);
  const first = ipv4ToNumber(address) - (ipv4ToNumber(address) % size);
  return { cidr: `${numberToIpv4(first)}/${prefixLength}`, first, last: first + size - 1, prefixLength };
}

function overlaps(range: Ipv4Range, cidr: string): boolean {
  const block = parseIpv4Cidr(cidr)!;
  return range.first <= block.last && block.first <= range.last;
}

function rangeIssue(range: Ipv4Range, allowLoopback: boolean): string | undefined {
  if (range.prefixLength < smallestPrefixLength) {
    return `${range.cidr} is larger than a /${smallestPrefixLength} (${2 ** (32 - smallestPrefixLength)} addresses); split it into smaller ranges`;
  }
  for (const block of forbiddenBlocks) if (overlaps(range, block.cidr)) return `${range.cidr} ${block.reason}`;
  if (!allowLoopback && overlaps(range, loopbackBlock)) return `${range.cidr} is loopback; set allowLoopback to scan it`;
  return undefined;
}

export const scanScopeSchema = z
  .object({
    /** Interfaces multicast scanners send out of, by name (`eth0`, `vlan20`). */
    interfaces: z
      .array(z.string().regex(interfaceNamePattern, 'must be a network interface name (at most 15 characters, no spaces)'))
      .min(1, 'name at least one interface')
      .max(maxInterfaces),
    /** IPv4 CIDRs (`10.20.0.0/24`, or one address). Multicast answers from outside them are dropped. */
    ranges: z.array(z.string()).max(maxRanges).default([]),
    /** TCP/UDP ports sweeps may probe; empty means each scanner's protocol default. */
    ports: z.array(z.number().int().min(1).max(65_535)).max(maxPorts).default([]),
    /** Loopback interfaces and 127.0.0.0/8 are refused unless this is set. */
    allowLoopback: z.boolean().default(false),
    maxAddressesPerSweep: z.number().int().min(1).max(sweepAddressCeiling).default(defaultMaxAddressesPerSweep),
  })
  .strict()
  .superRefine((scope, context) => {
    let total = 0;
    scope.ranges.forEach((text, index) => {
      const range = parseIpv4Cidr(text);
      if (!range) {
        context.addIssue({ code: 'custom', path: ['ranges', index], message: `${JSON.stringify(text)} is not an IPv4 CIDR such as 10.20.0.0/24` });
        return;
      }
      const issue = rangeIssue(range, scope.allowLoopback);
      if (issue) context.addIssue({ code: 'custom', path: ['ranges', index], message: issue });
      else total += range.last - range.first + 1;
    });
    if (total > scope.maxAddressesPerSweep) {
      context.addIssue({
        code: 'custom',
        path: ['ranges'],
        message: `the ranges hold ${total} addresses, more than maxAddressesPerSweep (${scope.maxAddressesPerSweep})`,
      });
    }
    scope.interfaces.forEach((name, index) => {
      if (!scope.allowLoopback && (name === 'lo' || name.startsWith('lo:'))) {
        context.addIssue({ code: 'custom', path: ['interfaces', index], message: `${name} is loopback; set allowLoopback to scan it` });
      }
    });
    if (new Set(scope.ports).size !== scope.ports.length) {
      context.addIssue({ code: 'custom', path: ['ports'], message: 'ports must not repeat' });
    }
  });

export type ScanScopeInput = z.input<typeof scanScopeSchema>;
export type ScanScope = z.output<typeof scanScopeSchema>;

export interface ScopeFieldError {
  /** Dotted path of the offending field, e.g. `ranges.1`. */
  field: string;
  message: string;
}

export type ScopeParseResult = { ok: true; scope: ScanScope } | { ok: false; errors: ScopeFieldError[] };

/** Validates configuration into a scope, or lists every problem by field. */
export function parseScanScope(input: unknown): ScopeParseResult {
  const parsed = scanScopeSchema.safeParse(input);
  if (parsed.success) return { ok: true, scope: parsed.data };
  return { ok: false, errors: parsed.error.issues.map((issue) => ({ field: issue.path.map(String).join('.'), message: issue.message })) };
}

export function scopeRanges(scope: ScanScope): Ipv4Range[] {
  return scope.ranges.map((text) => parseIpv4Cidr(text)).filter((range): range is Ipv4Range => range !== undefined);
}

/** An interface of this host the scope allows, with its IPv4 address and on-link network. */
export interface ScopeInterface {
  name: string;
  address: string;
  network: Ipv4Range;
}

/**
 * The scope's interfaces as they exist now, with their IPv4 addresses. Interfaces that are absent
 * or have no IPv4 address are listed in `missing` rather than failing the scan: a VLAN may be down.
 */
export function resolveScopeInterfaces(scope: ScanScope): { interfaces: ScopeInterface[]; missing: string[] } {
  const present = os.networkInterfaces();
  const interfaces: ScopeInterface[] = [];
  const missing: string[] = [];
  for (const name of scope.interfaces) {
    const ipv4 = (present[name] ?? []).filter((entry) => entry.family === 'IPv4');
    if (ipv4.length === 0) missing.push(name);
    for (const entry of ipv4) {
      const network = parseIpv4Cidr(entry.cidr ?? `${entry.address}/32`)!;
      interfaces.push({ name, address: entry.address, network });
    }
  }
  return { interfaces, missing };
}

/**
 * Whether answers from `address` belong to the scan: inside a configured range, or, when no range
 * is configured, on the network of one of the scope's interfaces.
 */
export function isAddressInScope(scope: ScanScope, address: string, interfaces: ScopeInterface[] = resolveScopeInterfaces(scope).interfaces): boolean {
  const text = address.startsWith('::ffff:') ? address.slice(7) : address;
  if (!isIPv4(text)) return false;
  const value = ipv4ToNumber(text);
  const ranges = scope.ranges.length > 0 ? scopeRanges(scope) : interfaces.map((entry) => entry.network);
  if (!scope.allowLoopback && text.startsWith('127.')) return false;
  return ranges.some((range) => value >= range.first && value <= range.last);
}

/**
 * Every address a sweep may probe, in order, never more than `maxAddressesPerSweep`, and none
 * outside the device networks whatever the scope names.
 */
export function* sweepAddresses(scope: ScanScope, networks: DeviceNetworks): Generator<string> {
  let yielded = 0;
  for (const range of scopeRanges(scope)) {
    // A /31 or /32 has no network or broadcast address to skip (RFC 3021).
    const skipEnds = range.prefixLength <= 30;
    for (let value = range.first + (skipEnds ? 1 : 0); value <= range.last - (skipEnds ? 1 : 0); value += 1) {
      if (yielded >= scope.maxAddressesPerSweep) return;
      const address = numberToIpv4(value);
      if (!networks.allows(address)) continue;
      yielded += 1;
      yield address;
    }
  }
}

/**
 * What of a scope reaches beyond the device networks of this installation: ranges outside them,
 * and loopback where the installation may not reach it. A tenant's site must not point the
 * scanners at the service's own host or at networks that are not the installation's devices'.
 */
export function scopeOutsideNetworks(scope: ScanScope, networks: DeviceNetworks): ScopeFieldError[] {
  const problems: ScopeFieldError[] = scope.ranges.flatMap((text, index) => {
    const range = parseIpv4Cidr(text);
    return range && !networks.containsNetwork(range.cidr)
      ? [{ field: `ranges.${index}`, message: `${range.cidr} is outside the device networks this installation allows (${networks.description})` }]
      : [];
  });
  if (scope.allowLoopback && !networks.allows('127.0.0.1')) {
    problems.push({ field: 'allowLoopback', message: 'only a development installation may scan loopback' });
  }
  return problems;
}
