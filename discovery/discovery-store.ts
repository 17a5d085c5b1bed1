/**
 * What discovery remembers: each site's scan configuration, every device it has seen (merged
 * across protocols and sweeps, keyed by its strongest identity), and the conflicts and moves it
 * surfaced instead of merging.
 *
 * `recordSweep` is one transaction, so an activity retried after a failure finds either nothing
 * of its sweep recorded or all of it, and never reports a move twice.
 */
import { and, asc, desc, eq, getTableColumns, inArray, isNull, sql } from 'drizzle-orm';
import { z } from 'zod';
import type { DeviceNetworks } from '../adapters/device-networks';
import type { Database } from '../db/client';
import {
  discoveredDevices,
  discoveryEvents,
  discoverySites,
  type DiscoveredDeviceRow,
  type DiscoveryEventRow,
  type DiscoverySiteRow,
} from '../db/schema';
import { identifierPattern } from '../registry/identifiers';
import type { ZeroTouchMatch } from '../contracts/zero-touch';
import type { DeviceRegistry } from '../registry/device-registry';
import { NotFoundError, ValidationError, type FieldProblem } from '../foundation/errors';
import { fieldProblems } from '../foundation/validation';
import { vendorKey } from './fingerprint';
import { mergeObservations, type DeviceMove, type DiscoveredDevice, type DiscoveryConflict, type KnownDevice } from './merge';
import type { DiscoveryObservation } from './observation';
import { parseScanScope, scopeOutsideNetworks, type ScanScope } from './scope';

/** The scanners a site may run; DHCP is fed by lease events, not swept. */
export const siteScanners = ['ws-discovery', 'mdns', 'ssdp', 'snmp', 'bacnet'] as const;
export type SiteScanner = (typeof siteScanners)[number];

/** A device as discovery recorded it: where it was seen, what it showed, and what it matched. */
export type DiscoveredDeviceRecord = DiscoveredDeviceRow;
/** A conflict or move discovery surfaced, as recorded. */
export type DiscoveryEventRecord = DiscoveryEventRow;

export const minSweepIntervalMinutes = 5;
/** A week. */
export const maxSweepIntervalMinutes = 10_080;

export interface DiscoverySite {
  tenantId: string;
  site: string;
  scope: ScanScope;
  scanners: SiteScanner[];
  intervalMinutes: number;
  enabled: boolean;
  createdAt: string;
  updatedAt: string;
}

const siteConfigurationSchema = z
  .object({
    scope: z.unknown(),
    scanners: z
      .array(z.enum(siteScanners))
      .min(1, 'name at least one scanner')
      .refine((scanners) => new Set(scanners).size === scanners.length, 'scanners must not repeat'),
    intervalMinutes: z.number().int().min(minSweepIntervalMinutes).max(maxSweepIntervalMinutes),
    enabled: z.boolean().default(true),
  })
  .strict();
export type DiscoverySiteConfiguration = z.input<typeof siteConfigurationSchema>;

const siteNameSchema = z.string().regex(identifierPattern, 'must be a site id');

/** The event kinds that are conflicts: open until a sweep no longer sees them. */
const conflictKinds = ['serial-claimed-by-several-macs', 'ip-claimed-by-several-macs'] as const;

export interface RecordedConflict {
  kind: DiscoveryConflict['kind'];
  /** `<vendor>/<serial>` or the IP: what the event and its alert are keyed on. */
  subject: string;
  conflict: DiscoveryConflict;
  /** False when the same conflict was already open from an earlier sweep. */
  opened: boolean;
}

export interface SweepRecord {
  /** Every device this sweep saw, as stored. */
  devices: DiscoveredDeviceRow[];
  /** Those matching no registry device. */
  unknown: DiscoveredDeviceRow[];
  /** Seen before as unknown, registered now: their unauthorized alerts can close. */
  becameRegistered: DiscoveredDeviceRow[];
  conflicts: RecordedConflict[];
  /** Open conflicts of the site this sweep did not see again, now resolved. */
  resolvedConflicts: { kind: string; subject: string }[];
  moves: DeviceMove[];
}

export function conflictSubject(conflict: DiscoveryConflict): string {
  return conflict.kind === 'serial-claimed-by-several-macs' ? `${vendorKey(conflict.manufacturer)}/${conflict.serialNumber}` : conflict.ip;
}

/** The identity a device is stored under, strongest first, as merge.ts derives it for unknown devices. */
export function identityCandidates(device: DiscoveredDevice): string[] {
  const first = device.observations[0];
  const candidates = [
    device.macAddress ? `mac:${device.macAddress}` : undefined,
    device.serialNumber && device.manufacturer ? `serial:${vendorKey(device.manufacturer)}/${device.serialNumber}` : undefined,
    device.ip ? `ip:${device.ip}` : undefined,
    ...device.endpoints.map((endpoint) => `endpoint:${first?.source ?? 'unknown'}/${endpoint.address}`),
    `endpoint:${first?.source ?? 'unknown'}/${first?.observedAt ?? device.lastObservedAt}`,
  ];
  return candidates.filter((key): key is string => key !== undefined);
}

/** The IP of a registry address (`host[:port]` or `[v6]:port`), when it holds one. */
function hostOf(address: string): string | undefined {
  const bracketed = /^\[([^\]]+)\]/.exec(address);
  if (bracketed) return bracketed[1];
  const host = address.split(':')[0];
  return host && /^\d{1,3}(\.\d{1,3}){3}$/.test(host) ? host : undefined;
}

const registryPrefix = 'registry:';
const discoveredPrefix = 'discovered:';

export class DiscoveryStore {
  readonly #db: Database;
  readonly #networks: DeviceNetworks;
  readonly #registry: DeviceRegistry;

  /** `networks`: where devices may be reached; a site's scope must stay inside them. `registry`: the devices sightings are matched with. */
  constructor(deps: { db: Database; networks: DeviceNetworks; registry: DeviceRegistry }) {
    this.#db = deps.db;
    this.#networks = deps.networks;
    this.#registry = deps.registry;
  }

  // ------------------------------------------------------------------------------- sites

  /** Creates or replaces a site's configuration; every problem is reported by field (`scope.ranges.0`). */
  async upsertSite(tenantId: string, site: string, configuration: unknown): Promise<{ site: DiscoverySite; created: boolean }> {
    const problems: FieldProblem[] = [];
    if (!siteNameSchema.safeParse(site).success) problems.push({ field: 'site', reason: 'must be a site id' });
    const parsed = siteConfigurationSchema.safeParse(configuration);
    if (!parsed.success) problems.push(...fieldProblems(parsed.error).filter((problem) => problem.field !== 'scope'));
    const scope = parseScanScope(parsed.success ? parsed.data.scope : (configuration as { scope?: unknown } | undefined)?.scope);
    const scopeErrors = scope.ok ? scopeOutsideNetworks(scope.scope, this.#networks) : scope.errors;
    problems.push(...scopeErrors.map((error) => ({ field: error.field ? `scope.${error.field}` : 'scope', reason: error.message })));
    if (problems.length > 0 || !parsed.success || !scope.ok) {
      throw new ValidationError(`discovery site is invalid: ${problems.map((p) => `${p.field}: ${p.reason}`).join('; ')}`, { fields: problems });
    }
    const values = {
      tenantId,
      site,
      scope: scope.scope,
      scanners: parsed.data.scanners,
      intervalMinutes: parsed.data.intervalMinutes,
      enabled: parsed.data.enabled,
    };
    const [row] = await this.#db
      .insert(discoverySites)
      .values(values)
      .onConflictDoUpdate({
        target: [discoverySites.tenantId, discoverySites.site],
        set: { scope: values.scope, scanners: values.scanners, intervalMinutes: values.intervalMinutes, enabled: values.enabled, updatedAt: sql`now()` },
      })
      // xmax is 0 on a row this statement inserted, set on one it updated.
      .returning({ ...getTableColumns(discoverySites), created: sql<boolean>`(xmax = 0)` });
    const { created, ...stored } = row!;
    return { site: siteOf(stored), created };
  }

  async findSite(tenantId: string, site: string): Promise<DiscoverySite | undefined> {
    const [row] = await this.#db.select().from(discoverySites).where(and(eq(discoverySites.tenantId, tenantId), eq(discoverySites.site, site)));
    return row ? siteOf(row) : undefined;
  }

  async getSite(tenantId: string, site: string): Promise<DiscoverySite> {
    const found = await this.findSite(tenantId, site);
    if (!found) throw new NotFoundError(`discovery site ${site} is not configured`);
    return found;
  }

  async listSites(tenantId: string): Promise<DiscoverySite[]> {
    const rows = await this.#db.select().from(discoverySites).where(eq(discoverySites.tenantId, tenantId)).orderBy(asc(discoverySites.site));
    return rows.map(siteOf);
  }

  /** Every tenant's enabled sites: the schedules the service makes sure exist at start. */
  async listEnabledSites(): Promise<{ tenantId: string; site: DiscoverySite }[]> {
    const rows = await this.#db.select().from(discoverySites).where(eq(discoverySites.enabled, true)).orderBy(asc(discoverySites.tenantId), asc(discoverySites.site));
    return rows.map((row) => ({ tenantId: row.tenantId, site: siteOf(row) }));
  }

  /** Removes the site's configuration; what it discovered stays, as history. */
  async deleteSite(tenantId: string, site: string): Promise<boolean> {
    const deleted = await this.#db
      .delete(discoverySites)
      .where(and(eq(discoverySites.tenantId, tenantId), eq(discoverySites.site, site)))
      .returning({ site: discoverySites.site });
    return deleted.length > 0;
  }

  // ----------------------------------------------------------------------------- devices

  async listDevices(tenantId: string, options: { site?: string; unknownOnly?: boolean; limit?: number } = {}): Promise<DiscoveredDeviceRow[]> {
    return this.#db
      .select()
      .from(discoveredDevices)
      .where(
        and(
          eq(discoveredDevices.tenantId, tenantId),
          options.site ? eq(discoveredDevices.site, options.site) : undefined,
          options.unknownOnly ? isNull(discoveredDevices.registeredDeviceId) : undefined,
        ),
      )
      .orderBy(desc(discoveredDevices.lastSeenAt), asc(discoveredDevices.identityKey))
      .limit(Math.min(options.limit ?? 500, 5_000));
  }

  async listEvents(tenantId: string, options: { site?: string; open?: boolean; limit?: number } = {}): Promise<DiscoveryEventRow[]> {
    return this.#db
      .select()
      .from(discoveryEvents)
      .where(
        and(
          eq(discoveryEvents.tenantId, tenantId),
          options.site ? eq(discoveryEvents.site, options.site) : undefined,
          options.open === undefined ? undefined : options.open ? isNull(discoveryEvents.resolvedAt) : sql`${discoveryEvents.resolvedAt} is not null`,
        ),
      )
      .orderBy(desc(discoveryEvents.lastSeenAt))
      .limit(Math.min(options.limit ?? 500, 5_000));
  }

  /**
   * Notes which discovered devices the zero-touch registrations that took their sightings are
   * waiting for, by the registration's MAC or serial. Returns their identity keys.
   */
  async markZeroTouchMatches(tenantId: string, identityKeys: string[], registrations: ZeroTouchMatch[]): Promise<Set<string>> {
    const matched = new Set<string>();
    if (registrations.length === 0 || identityKeys.length === 0) return matched;
    const rows = await this.#db
      .select()
      .from(discoveredDevices)
      .where(and(eq(discoveredDevices.tenantId, tenantId), inArray(discoveredDevices.identityKey, identityKeys)));
    for (const row of rows) {
      const registration = registrations.find(
        (candidate) =>
          (candidate.macAddress !== undefined && candidate.macAddress === row.macAddress) ||
          (candidate.serialNumber !== undefined && candidate.serialNumber === row.serialNumber),
      );
      if (!registration) continue;
      matched.add(row.identityKey);
      await this.#db.update(discoveredDevices).set({ zeroTouchRegistrationId: registration.registrationId }).where(eq(discoveredDevices.id, row.id));
    }
    return matched;
  }

  // ------------------------------------------------------------------------------- sweeps

  /**
   * Merges one sweep's observations with what the site saw before and what the registry holds,
   * stores the devices, and records moves and conflicts.
   */
  async recordSweep(tenantId: string, site: string, observations: readonly DiscoveryObservation[], now = new Date()): Promise<SweepRecord> {
    const registered = await this.#registry.list(tenantId);
    return this.#db.transaction(async (tx) => {
      const previous = await tx
        .select()
        .from(discoveredDevices)
        .where(and(eq(discoveredDevices.tenantId, tenantId), eq(discoveredDevices.site, site)));

      // Registry first, earlier sightings after: a MAC seen before then matches the earlier sighting,
      // so a move is measured from where discovery last saw it, not from a stale registry address.
      const known: KnownDevice[] = [
        ...registered.map((row) =>
          defined({ id: `${registryPrefix}${row.deviceId}`, macAddress: row.macAddress, serialNumber: row.serialNumber, ip: hostOf(row.address), manufacturer: row.manufacturer ?? undefined }),
        ),
        ...previous.map((row) =>
          defined({
            id: `${discoveredPrefix}${row.identityKey}`,
            macAddress: row.macAddress ?? undefined,
            serialNumber: row.serialNumber ?? undefined,
            ip: row.ip ?? undefined,
            manufacturer: row.manufacturer ?? undefined,
          }),
        ),
      ];
      const merged = mergeObservations(observations, known);

      const previousByKey = new Map(previous.map((row) => [row.identityKey, row]));
      const registryByMac = new Map(registered.map((row) => [row.macAddress, row]));
      const registryBySerial = new Map(registered.map((row) => [row.serialNumber, row]));
      const usedKeys = new Set<string>();
      const stored: DiscoveredDeviceRow[] = [];
      const becameRegistered: DiscoveredDeviceRow[] = [];

      for (const device of merged.devices) {
        const earlier = this.#earlierSighting(device, previous, previousByKey);
        const strongest = identityCandidates(device).find((key) => !usedKeys.has(key))!;
        let identityKey = earlier?.identityKey ?? strongest;
        // Known only by address until now: the row takes the MAC or serial it has shown.
        if (earlier && /^(ip|endpoint):/.test(earlier.identityKey) && /^(mac|serial):/.test(strongest)) {
          const [taken] = await tx
            .select({ id: discoveredDevices.id })
            .from(discoveredDevices)
            .where(and(eq(discoveredDevices.tenantId, tenantId), eq(discoveredDevices.identityKey, strongest)));
          if (!taken) {
            await tx.update(discoveredDevices).set({ identityKey: strongest }).where(eq(discoveredDevices.id, earlier.id));
            identityKey = strongest;
          }
        }
        usedKeys.add(identityKey);
        const registry =
          (device.macAddress ? registryByMac.get(device.macAddress) : undefined) ??
          // A serial alone identifies a registered device only when nothing contradicts it.
          (device.serialNumber && !device.inConflict ? registryBySerial.get(device.serialNumber) : undefined);
        const registeredDeviceId = registry && (!device.macAddress || registry.macAddress === device.macAddress) ? registry.deviceId : null;
        const values = {
          tenantId,
          site,
          identityKey,
          macAddress: device.macAddress ?? null,
          ip: device.ip ?? null,
          serialNumber: device.serialNumber ?? null,
          manufacturer: device.manufacturer ?? null,
          model: device.model ?? null,
          firmwareVersion: device.firmwareVersion ?? null,
          deviceType: device.fingerprint.deviceType.confidence > 0 ? device.fingerprint.deviceType.value : null,
          fingerprint: device.fingerprint,
          endpoints: device.endpoints,
          sources: device.sources,
          registeredDeviceId,
          inConflict: device.inConflict,
          firstSeenAt: earlier?.firstSeenAt ?? new Date(device.firstObservedAt),
          lastSeenAt: new Date(device.lastObservedAt),
        };
        const [row] = await tx
          .insert(discoveredDevices)
          .values(values)
          .onConflictDoUpdate({
            target: [discoveredDevices.tenantId, discoveredDevices.identityKey],
            // firstSeenAt stays as first recorded; everything else is what this sweep saw.
            set: {
              site: values.site,
              macAddress: values.macAddress,
              ip: values.ip,
              serialNumber: values.serialNumber,
              manufacturer: values.manufacturer,
              model: values.model,
              firmwareVersion: values.firmwareVersion,
              deviceType: values.deviceType,
              fingerprint: values.fingerprint,
              endpoints: values.endpoints,
              sources: values.sources,
              registeredDeviceId: values.registeredDeviceId,
              inConflict: values.inConflict,
              lastSeenAt: values.lastSeenAt,
            },
          })
          .returning();
        stored.push(row!);
        if (earlier && earlier.registeredDeviceId === null && registeredDeviceId !== null) becameRegistered.push(row!);
      }

      // Moves: facts to keep, nothing to resolve, so each is recorded already closed.
      for (const move of merged.moves) {
        await tx.insert(discoveryEvents).values({
          tenantId,
          site,
          kind: 'moved',
          subject: move.mac,
          details: { ...move, deviceId: move.deviceId.replace(/^(registry|discovered):/, '') },
          firstSeenAt: now,
          lastSeenAt: now,
          resolvedAt: now,
        });
      }

      const conflicts: RecordedConflict[] = [];
      for (const conflict of merged.conflicts) {
        const subject = conflictSubject(conflict);
        const [event] = await tx
          .insert(discoveryEvents)
          .values({ tenantId, site, kind: conflict.kind, subject, details: conflict, firstSeenAt: now, lastSeenAt: now })
          .onConflictDoUpdate({
            target: [discoveryEvents.tenantId, discoveryEvents.kind, discoveryEvents.subject],
            targetWhere: isNull(discoveryEvents.resolvedAt),
            set: { site, details: conflict, lastSeenAt: now },
          })
          .returning();
        conflicts.push({ kind: conflict.kind, subject, conflict, opened: event!.firstSeenAt.getTime() === now.getTime() });
      }
      const stillSeen = new Set(conflicts.map((c) => `${c.kind} ${c.subject}`));
      const open = await tx
        .select()
        .from(discoveryEvents)
        .where(
          and(
            eq(discoveryEvents.tenantId, tenantId),
            eq(discoveryEvents.site, site),
            inArray(discoveryEvents.kind, [...conflictKinds]),
            isNull(discoveryEvents.resolvedAt),
          ),
        );
      const resolvedConflicts: { kind: string; subject: string }[] = [];
      for (const event of open.filter((candidate) => !stillSeen.has(`${candidate.kind} ${candidate.subject}`))) {
        await tx.update(discoveryEvents).set({ resolvedAt: now }).where(and(eq(discoveryEvents.id, event.id), isNull(discoveryEvents.resolvedAt)));
        resolvedConflicts.push({ kind: event.kind, subject: event.subject });
      }

      return {
        devices: stored,
        unknown: stored.filter((row) => row.registeredDeviceId === null),
        becameRegistered,
        conflicts,
        resolvedConflicts,
        moves: merged.moves.map((move) => ({ ...move, deviceId: move.deviceId.replace(/^(registry|discovered):/, '') })),
      };
    });
  }

  /**
   * The stored device this one is: the earlier sighting merge matched it to, else an earlier
   * sighting under the same identity, else an IP-only sighting at its address (now known better).
   */
  #earlierSighting(device: DiscoveredDevice, previous: DiscoveredDeviceRow[], byKey: Map<string, DiscoveredDeviceRow>): DiscoveredDeviceRow | undefined {
    if (device.known && device.id.startsWith(discoveredPrefix)) return byKey.get(device.id.slice(discoveredPrefix.length));
    for (const key of identityCandidates(device).slice(0, 2)) {
      const row = byKey.get(key);
      if (row) return row;
    }
    if (device.macAddress) {
      const byMac = previous.find((row) => row.macAddress === device.macAddress);
      if (byMac) return byMac;
    }
    return device.ip && !device.inConflict ? byKey.get(`ip:${device.ip}`) : undefined;
  }
}

function siteOf(row: DiscoverySiteRow): DiscoverySite {
  return {
    tenantId: row.tenantId,
    site: row.site,
    scope: row.scope as ScanScope,
    scanners: row.scanners as SiteScanner[],
    intervalMinutes: row.intervalMinutes,
    enabled: row.enabled,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  };
}

function defined<T extends Record<string, unknown>>(record: T): T {
  return Object.fromEntries(Object.entries(record).filter(([, value]) => value !== undefined && value !== null)) as T;
}

