/**
 * Turns the observations of one sweep into devices, against the devices already known.
 *
 * Identity, strongest first:
 * 1. the same MAC address is one device (a MAC is never split);
 * 2. the same serial number from the same vendor is one device;
 * 3. the same IP within this sweep is one device, when no two MACs claim that IP.
 * Rules 2 and 3 never join observations that carry different MACs: two MACs claiming one serial,
 * or one IP claimed by two MACs, is a conflict, reported with the claims, and none of the claims
 * is merged into another (MAC-less observations of a conflicting serial or IP stay on their own).
 * A known device seen at a new IP under its MAC is a move, not a new device.
 *
 * Pure: the result depends only on the arguments.
 */
import { fingerprintDevice, reportedFieldConfidence, vendorKey, type DeviceFingerprint } from './fingerprint';
import type { DiscoveryObservation, DiscoverySource } from './observation';

/** A device the registry already holds, as far as identity goes. */
export interface KnownDevice {
  id: string;
  macAddress?: string;
  ip?: string;
  serialNumber?: string;
  manufacturer?: string;
}

export interface DiscoveredDevice {
  /** The known device's id, or a key derived from the strongest identity seen (`mac:`, `serial:`, `ip:`, `endpoint:`). */
  id: string;
  /** Whether `id` is a known device's. */
  known: boolean;
  macAddress?: string;
  ip?: string;
  serialNumber?: string;
  manufacturer?: string;
  model?: string;
  firmwareVersion?: string;
  hostname?: string;
  endpoints: { protocol: string; address: string }[];
  sources: DiscoverySource[];
  fingerprint: DeviceFingerprint;
  /** True when one of its observations is part of a conflict: not to be provisioned unattended. */
  inConflict: boolean;
  firstObservedAt: string;
  lastObservedAt: string;
  observations: DiscoveryObservation[];
}

export interface DeviceMove {
  mac: string;
  from: string;
  to: string;
  deviceId: string;
}

/** One claim in a conflict: who said it and from where. */
export interface ConflictClaim {
  macAddress?: string;
  ip?: string;
  serialNumber?: string;
  source: DiscoverySource | 'registry';
  observedAt?: string;
  /** The known device making the claim, for claims from the registry. */
  deviceId?: string;
}

export type DiscoveryConflict =
  | { kind: 'serial-claimed-by-several-macs'; serialNumber: string; manufacturer: string; macAddresses: string[]; claims: ConflictClaim[] }
  | { kind: 'ip-claimed-by-several-macs'; ip: string; macAddresses: string[]; claims: ConflictClaim[] };

export interface MergeResult {
  devices: DiscoveredDevice[];
  moves: DeviceMove[];
  conflicts: DiscoveryConflict[];
}

/** Union-find over observation indexes, each component carrying the one MAC it may hold. */
class Components {
  private readonly parent: number[];
  private readonly mac: (string | undefined)[];

  constructor(observations: readonly DiscoveryObservation[]) {
    this.parent = observations.map((_, index) => index);
    this.mac = observations.map((observation) => observation.macAddress);
  }

  root(index: number): number {
    while (this.parent[index] !== index) {
      this.parent[index] = this.parent[this.parent[index]!]!;
      index = this.parent[index]!;
    }
    return index;
  }

  macOf(index: number): string | undefined {
    return this.mac[this.root(index)];
  }

  /** Joins two components; callers have made sure they do not hold different MACs. */
  join(a: number, b: number): void {
    const [rootA, rootB] = [this.root(a), this.root(b)];
    if (rootA === rootB) return;
    this.parent[rootB] = rootA;
    this.mac[rootA] = this.mac[rootA] ?? this.mac[rootB];
  }
}

export function mergeObservations(observations: readonly DiscoveryObservation[], knownDevices: readonly KnownDevice[] = []): MergeResult {
  const components = new Components(observations);
  const conflicts: DiscoveryConflict[] = [];
  const conflicted = new Set<number>();

  // 1. The same MAC.
  joinByKey(observations, components, (o) => o.macAddress);

  // 2. The same serial from the same vendor, unless MACs (seen now or registered) disagree.
  const knownBySerial = new Map<string, KnownDevice[]>();
  for (const device of knownDevices) {
    const key = serialKey(device);
    if (key) knownBySerial.set(key, [...(knownBySerial.get(key) ?? []), device]);
  }
  for (const [key, members] of groupBy(observations, serialKey)) {
    const registered = (knownBySerial.get(key) ?? []).filter((device) => device.macAddress);
    const macs = distinct([...members.map((index) => components.macOf(index)), ...registered.map((device) => device.macAddress)]);
    if (macs.length > 1) {
      const first = observations[members[0]!]!;
      conflicts.push({
        kind: 'serial-claimed-by-several-macs',
        serialNumber: first.serialNumber!.trim(),
        manufacturer: first.manufacturer!.trim(),
        macAddresses: macs,
        claims: [
          ...members.map((index) => claimOf(observations[index]!)),
          ...registered.map((device) => ({ macAddress: device.macAddress, ip: device.ip, serialNumber: device.serialNumber, source: 'registry' as const, deviceId: device.id })),
        ],
      });
      members.forEach((index) => conflicted.add(index));
      continue;
    }
    members.slice(1).forEach((index) => components.join(members[0]!, index));
  }

  // 3. The same IP in this sweep, unless two MACs claim it.
  for (const [ip, members] of groupBy(observations, (o) => o.ip)) {
    const macs = distinct(members.map((index) => components.macOf(index)));
    if (macs.length > 1) {
      conflicts.push({ kind: 'ip-claimed-by-several-macs', ip, macAddresses: macs, claims: members.map((index) => claimOf(observations[index]!)) });
      members.forEach((index) => conflicted.add(index));
      continue;
    }
    // A MAC-less observation that claimed a conflicting serial stays on its own: no silent attribution.
    const joinable = members.filter((index) => !conflicted.has(index) || observations[index]!.macAddress !== undefined);
    joinable.slice(1).forEach((index) => components.join(joinable[0]!, index));
  }

  // Gather components in the order their first observation came.
  const groups = new Map<number, number[]>();
  observations.forEach((_, index) => {
    const root = components.root(index);
    const members = groups.get(root);
    if (members) members.push(index);
    else groups.set(root, [index]);
  });

  const knownByMac = new Map(knownDevices.filter((d) => d.macAddress).map((d) => [d.macAddress!, d]));
  const conflictedSerials = new Set(conflicts.flatMap((c) => (c.kind === 'serial-claimed-by-several-macs' ? [`${vendorKey(c.manufacturer)}/${c.serialNumber}`] : [])));
  const devices: DiscoveredDevice[] = [];
  const moves: DeviceMove[] = [];
  for (const members of groups.values()) {
    const device = deviceOf(members.map((index) => observations[index]!), members.some((index) => conflicted.has(index)));
    const serial = serialKey(device);
    const known =
      (device.macAddress ? knownByMac.get(device.macAddress) : undefined) ??
      (serial && !conflictedSerials.has(serial) ? knownBySerial.get(serial)?.find((d) => !d.macAddress || !device.macAddress || d.macAddress === device.macAddress) : undefined);
    if (known) {
      device.id = known.id;
      device.known = true;
      if (device.macAddress && known.macAddress === device.macAddress && known.ip && device.ip && known.ip !== device.ip) {
        moves.push({ mac: device.macAddress, from: known.ip, to: device.ip, deviceId: known.id });
      }
    }
    devices.push(device);
  }
  return { devices, moves, conflicts };
}

function deviceOf(members: DiscoveryObservation[], inConflict: boolean): DiscoveredDevice {
  // Identity fields from the most trusted source first, the latest observation breaking ties.
  const ranked = [...members].sort(
    (a, b) => reportedFieldConfidence[b.source] - reportedFieldConfidence[a.source] || b.observedAt.localeCompare(a.observedAt),
  );
  const latest = [...members].sort((a, b) => b.observedAt.localeCompare(a.observedAt));
  const field = <K extends 'macAddress' | 'serialNumber' | 'hostname'>(key: K, order: DiscoveryObservation[]) => order.find((o) => o[key])?.[key];
  const fingerprint = fingerprintDevice(members);
  const macAddress = field('macAddress', ranked);
  const ip = latest.find((o) => o.ip)?.ip;
  const serialNumber = field('serialNumber', ranked);
  const endpoints = new Map<string, { protocol: string; address: string }>();
  for (const observation of members) for (const endpoint of observation.endpoints) endpoints.set(`${endpoint.protocol} ${endpoint.address}`, endpoint);
  const manufacturer = fingerprint.manufacturer?.value;
  const id = macAddress
    ? `mac:${macAddress}`
    : serialNumber && manufacturer
      ? `serial:${vendorKey(manufacturer)}/${serialNumber}`
      : ip
        ? `ip:${ip}`
        : `endpoint:${members[0]!.source}/${members[0]!.endpoints[0]?.address ?? members[0]!.observedAt}`;
  const times = members.map((o) => o.observedAt).sort();
  return {
    id,
    known: false,
    ...defined({
      macAddress,
      ip,
      serialNumber,
      manufacturer,
      model: fingerprint.model?.value,
      firmwareVersion: fingerprint.firmwareVersion?.value,
      hostname: field('hostname', latest),
    }),
    endpoints: [...endpoints.values()],
    sources: distinct(members.map((o) => o.source)) as DiscoverySource[],
    fingerprint,
    inConflict,
    firstObservedAt: times[0]!,
    lastObservedAt: times.at(-1)!,
    observations: members,
  };
}

function serialKey(item: { serialNumber?: string; manufacturer?: string }): string | undefined {
  const serial = item.serialNumber?.trim();
  const manufacturer = item.manufacturer?.trim();
  return serial && manufacturer ? `${vendorKey(manufacturer)}/${serial}` : undefined;
}

function joinByKey(observations: readonly DiscoveryObservation[], components: Components, key: (o: DiscoveryObservation) => string | undefined): void {
  for (const members of groupBy(observations, key).values()) members.slice(1).forEach((index) => components.join(members[0]!, index));
}

function groupBy(observations: readonly DiscoveryObservation[], key: (o: DiscoveryObservation) => string | undefined): Map<string, number[]> {
  const groups = new Map<string, number[]>();
  observations.forEach((observation, index) => {
    const value = key(observation);
    if (value === undefined) return;
    const members = groups.get(value);
    if (members) members.push(index);
    else groups.set(value, [index]);
  });
  return groups;
}

function claimOf(observation: DiscoveryObservation): ConflictClaim {
  return defined({
    macAddress: observation.macAddress,
    ip: observation.ip,
    serialNumber: observation.serialNumber,
    source: observation.source,
    observedAt: observation.observedAt,
  }) as ConflictClaim;
}

function distinct<T>(values: (T | undefined)[]): T[] {
  return [...new Set(values.filter((value): value is T => value !== undefined))];
}

function defined<T extends Record<string, unknown>>(record: T): Partial<T> {
  return Object.fromEntries(Object.entries(record).filter(([, value]) => value !== undefined)) as Partial<T>;
}
