/**
 * The side effects of a discovery sweep: running one scanner over a site's scope, and recording
 * what the sweep found (devices, conflicts, moves), with the alerts, the audit entry and the
 * sightings handed to zero-touch provisioning that follow from it.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import type { DeviceNetworks } from '../adapters/device-networks';
import { alertFingerprint, alertKinds, type AlertStore } from '../alerts/alert-store';
import type { AuditLog } from '../audit/audit-log';
import type { DiscoveredDeviceRecord, DiscoverySite, DiscoveryStore, SiteScanner } from '../discovery/discovery-store';
import type { DiscoveryObservation } from '../discovery/observation';
import type { ScanOptions, ScanOutcome, ScanReport } from '../discovery/scanner';
import { scopeOutsideNetworks, type ScanScope } from '../discovery/scope';
import { scanBacnet, type BacnetWhoIsOptions } from '../discovery/scanners/bacnet-whois';
import { scanMdns, type MdnsScanOptions } from '../discovery/scanners/mdns';
import { sweepSnmp, type SnmpSweepOptions } from '../discovery/scanners/snmp-sweep';
import { scanSsdp, type SsdpScanOptions } from '../discovery/scanners/ssdp';
import { scanWsDiscovery, type WsDiscoveryScanOptions } from '../discovery/scanners/ws-discovery';
import type { Logger } from '../foundation/logger';
import type { DeviceSighting, ZeroTouchMatch } from '../contracts/zero-touch';
import { provisioningStep } from './step';

/** Where discovery hands the devices it saw to zero-touch provisioning. */
export interface ZeroTouchOffers {
  /** Returns the zero-touch registrations that took a sighting. */
  offerSightings(tenantId: string, sightings: DeviceSighting[]): Promise<{ matched: ZeroTouchMatch[] }>;
}

/** Per-scanner settings that are not part of a site's scope (credentials, ports, unicast targets in tests). */
export interface ScannerSettings {
  'ws-discovery'?: Omit<WsDiscoveryScanOptions, keyof ScanOptions>;
  mdns?: Omit<MdnsScanOptions, keyof ScanOptions>;
  ssdp?: Omit<SsdpScanOptions, keyof ScanOptions>;
  snmp?: Omit<SnmpSweepOptions, keyof ScanOptions>;
  bacnet?: Omit<BacnetWhoIsOptions, keyof ScanOptions>;
}

export interface DiscoveryActivityDependencies {
  /** Sites to sweep and what their sweeps found. */
  discovery: DiscoveryStore;
  alerts: AlertStore;
  audit: AuditLog;
  zeroTouch: ZeroTouchOffers;
  /** Where devices may be reached: a scope reaching beyond is not scanned. */
  networks: DeviceNetworks;
  logger: Logger;
  scanners?: ScannerSettings;
  /** How long each scanner may listen and probe; scanners cap it at a minute. */
  scanTimeoutMs?: number;
  /** Most observations one scanner hands back: each travels through the workflow's history. */
  maxObservationsPerScanner?: number;
}

export const defaultScanTimeoutMs = 10_000;
/** Observations are about 1 KB each; this keeps one scanner's result well inside Temporal's payload limit. */
export const defaultMaxObservationsPerScanner = 1_000;
export const maxObservationsPerScanner = 5_000;
const heartbeatIntervalMs = 2_000;

/** The report of a scan as counts, for the sweep summary; problems are logged, a few kept. */
export interface ScannerCounts {
  scanner: SiteScanner;
  observations: number;
  datagramsSent: number;
  datagramsReceived: number;
  malformedPackets: number;
  outOfScopeAnswers: number;
  droppedObservations: number;
  interfacesMissing: string[];
  problems: string[];
}

export interface ScannerResult {
  observations: DiscoveryObservation[];
  counts: ScannerCounts;
}

export interface SweepRecordSummary {
  devices: number;
  unknown: number;
  registered: number;
  zeroTouchMatched: number;
  conflicts: number;
  moves: number;
  alertsRaised: number;
  alertsResolved: number;
  /** The identity keys of unknown devices, for the summary (bounded). */
  unknownDevices: string[];
}

export const discoveryActor = 'discovery';

export function createDiscoveryActivities(deps: DiscoveryActivityDependencies) {
  const store = deps.discovery;
  const log = deps.logger.child({ component: 'discovery' });
  const scanTimeoutMs = deps.scanTimeoutMs ?? defaultScanTimeoutMs;
  const maxObservations = Math.min(deps.maxObservationsPerScanner ?? defaultMaxObservationsPerScanner, maxObservationsPerScanner);

  const scan = (scanner: SiteScanner, scope: ScanScope, options: ScanOptions): Promise<ScanOutcome> => {
    const settings = deps.scanners ?? {};
    switch (scanner) {
      case 'ws-discovery':
        return scanWsDiscovery(scope, { ...settings['ws-discovery'], ...options });
      case 'mdns':
        return scanMdns(scope, { ...settings.mdns, ...options });
      case 'ssdp':
        return scanSsdp(scope, { ...settings.ssdp, ...options });
      case 'snmp':
        return sweepSnmp(scope, { ...settings.snmp, ...options });
      case 'bacnet':
        return scanBacnet(scope, { ...settings.bacnet, ...options });
    }
  };

  return {
    loadDiscoverySite: provisioningStep(async (input: { tenantId: string; site: string }): Promise<DiscoverySite> => store.getSite(input.tenantId, input.site)),

    /**
     * One scanner over the site's scope, as configured now. Stops at its timeout, or early (with
     * what it has) when the activity is cancelled; heartbeats while it listens.
     */
    async runDiscoveryScanner(input: { tenantId: string; site: string; scanner: SiteScanner }): Promise<ScannerResult> {
      const context = Context.current();
      const site = await store.getSite(input.tenantId, input.site);
      // Checked again here: the site may have been stored before the device networks were narrowed.
      const outside = scopeOutsideNetworks(site.scope, deps.networks);
      if (outside.length > 0) {
        throw ApplicationFailure.nonRetryable(
          `the site's scan scope reaches outside the device networks: ${outside.map((problem) => `scope.${problem.field}: ${problem.message}`).join('; ')}`,
          'PolicyViolationError',
        );
      }
      const heartbeat = setInterval(() => context.heartbeat(), heartbeatIntervalMs);
      try {
        const outcome = await scan(input.scanner, site.scope, { timeoutMs: scanTimeoutMs, maxObservations, signal: context.cancellationSignal, networks: deps.networks });
        const counts = countsOf(input.scanner, outcome.length, outcome.report);
        if (counts.problems.length > 0) log.warn({ tenantId: input.tenantId, site: input.site, scanner: input.scanner, problems: counts.problems }, 'scanner reported problems');
        return { observations: [...outcome], counts };
      } finally {
        clearInterval(heartbeat);
      }
    },

    /**
     * Stores the sweep, then acts on it: sightings to zero-touch (never a device in conflict),
     * an unauthorized-device alert per unknown device no registration expects, a conflict alert
     * per open conflict, and alerts closed for what cleared. Safe to retry: storing is one
     * transaction and alerts are keyed by fingerprint.
     */
    async recordDiscoverySweep(input: { tenantId: string; site: string; observations: DiscoveryObservation[] }): Promise<SweepRecordSummary> {
      const context = Context.current();
      const { tenantId, site } = input;
      const record = await store.recordSweep(tenantId, site, input.observations);
      context.heartbeat();

      const offered = record.devices.filter((row) => !row.inConflict);
      const { matched } = offered.length > 0 ? await deps.zeroTouch.offerSightings(tenantId, offered.map(sightingOf)) : { matched: [] as ZeroTouchMatch[] };
      const expected = await store.markZeroTouchMatches(
        tenantId,
        offered.map((row) => row.identityKey),
        matched,
      );
      context.heartbeat();

      let alertsRaised = 0;
      let alertsResolved = 0;
      const unauthorized = record.unknown.filter((row) => !expected.has(row.identityKey));
      for (const row of unauthorized) {
        const { created } = await deps.alerts.raise({
          tenantId,
          kind: alertKinds.deviceUnauthorized,
          severity: 'warning',
          fingerprint: alertFingerprint(alertKinds.deviceUnauthorized, row.identityKey),
          summary: `unknown device ${describe(row)} seen at site ${site}`,
          details: {
            site,
            identityKey: row.identityKey,
            ...(row.macAddress ? { macAddress: row.macAddress } : {}),
            ...(row.ip ? { ip: row.ip } : {}),
            ...(row.serialNumber ? { serialNumber: row.serialNumber } : {}),
            ...(row.manufacturer ? { manufacturer: row.manufacturer } : {}),
            ...(row.model ? { model: row.model } : {}),
            endpoints: row.endpoints,
            sources: row.sources,
          },
          raisedBy: discoveryActor,
        });
        if (created) alertsRaised++;
      }
      // A device registered since, or one a registration now expects, is no longer unauthorized.
      for (const row of [...record.becameRegistered, ...record.devices.filter((candidate) => expected.has(candidate.identityKey))]) {
        if (await deps.alerts.resolve(tenantId, alertFingerprint(alertKinds.deviceUnauthorized, row.identityKey), discoveryActor)) alertsResolved++;
      }
      for (const conflict of record.conflicts) {
        const { created } = await deps.alerts.raise({
          tenantId,
          kind: alertKinds.discoveryConflict,
          severity: 'warning',
          fingerprint: alertFingerprint(alertKinds.discoveryConflict, conflict.kind, conflict.subject),
          summary:
            conflict.conflict.kind === 'serial-claimed-by-several-macs'
              ? `serial number ${conflict.conflict.serialNumber} is claimed by ${conflict.conflict.macAddresses.length} MAC addresses at site ${site}`
              : `IP ${conflict.conflict.ip} is claimed by ${conflict.conflict.macAddresses.length} MAC addresses at site ${site}`,
          details: { site, ...conflict.conflict },
          raisedBy: discoveryActor,
        });
        if (created) alertsRaised++;
      }
      for (const resolved of record.resolvedConflicts) {
        if (await deps.alerts.resolve(tenantId, alertFingerprint(alertKinds.discoveryConflict, resolved.kind, resolved.subject), discoveryActor)) alertsResolved++;
      }
      context.heartbeat();

      const summary: SweepRecordSummary = {
        devices: record.devices.length,
        unknown: record.unknown.length,
        registered: record.devices.length - record.unknown.length,
        zeroTouchMatched: expected.size,
        conflicts: record.conflicts.length,
        moves: record.moves.length,
        alertsRaised,
        alertsResolved,
        unknownDevices: record.unknown.slice(0, 100).map((row) => row.identityKey),
      };
      await deps.audit.append({
        tenantId,
        actor: discoveryActor,
        actorType: 'system',
        action: 'discovery.sweep_recorded',
        targetType: 'site',
        targetId: site,
        details: { observations: input.observations.length, ...summary, unknownDevices: undefined, resolvedConflicts: record.resolvedConflicts.length, moved: record.moves },
      });
      log.info({ tenantId, site, ...summary, unknownDevices: undefined }, 'discovery sweep recorded');
      return summary;
    },
  };
}

export type DiscoveryActivities = ReturnType<typeof createDiscoveryActivities>;

function countsOf(scanner: SiteScanner, observations: number, report: ScanReport): ScannerCounts {
  return {
    scanner,
    observations,
    datagramsSent: report.datagramsSent,
    datagramsReceived: report.datagramsReceived,
    malformedPackets: report.malformedPackets,
    outOfScopeAnswers: report.outOfScopeAnswers,
    droppedObservations: report.droppedObservations,
    interfacesMissing: report.interfacesMissing,
    problems: report.problems.slice(0, 10),
  };
}

function sightingOf(row: DiscoveredDeviceRecord): DeviceSighting {
  return {
    via: 'discovery',
    observedAt: row.lastSeenAt.toISOString(),
    ...(row.ip ? { ip: row.ip } : {}),
    ...(row.macAddress ? { macAddress: row.macAddress } : {}),
    ...(row.serialNumber ? { serialNumber: row.serialNumber } : {}),
    endpoints: row.endpoints as DeviceSighting['endpoints'],
  };
}

function describe(row: DiscoveredDeviceRecord): string {
  const what = [row.manufacturer, row.model].filter(Boolean).join(' ');
  const who = row.macAddress ?? row.serialNumber ?? row.ip ?? row.identityKey;
  return what ? `${who} (${what})` : who;
}
