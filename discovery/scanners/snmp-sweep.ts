/**
 * SNMP sweep: every address of the scope's ranges is asked for its system group (sysDescr,
 * sysObjectID, sysName), a bounded number of hosts at a time, each with a short timeout.
 *
 * Two ways in, both optional and combinable:
 * - SNMPv3 engine discovery, which every v3 agent answers without credentials: it proves an agent
 *   is there and yields its engine ID (sometimes its MAC). With a configured discovery user the
 *   system group is then read over v3 (SHA-256/AES, as the SNMP adapter speaks).
 * - v1/v2c read communities, tried in order; an agent drops a wrong community silently, so each
 *   costs one host timeout.
 * Silence is the common case in a sweep (most addresses hold nothing) and is not a problem.
 */
import dgram from 'node:dgram';
import { DeviceUnavailableError } from '../../foundation/errors';
import { defaultSnmpPort, type SnmpEndpoint } from '../../adapters/snmp/addresses';
import { enterpriseNumber, enterpriseVendors } from '../../adapters/snmp/enterprises';
import { systemGroup } from '../../adapters/snmp/mib';
import { withSnmpSession, type SnmpSecurity, type SnmpVarbind } from '../../adapters/snmp/snmp-session';
import type { DiscoveryObservation } from '../observation';
import { boundedTimeout, defaultMaxObservations, newScanReport, noteProblem, scanOutcome, type ScanOptions, type ScanOutcome, type ScanReport } from '../scanner';
import { sweepAddresses, type ScanScope } from '../scope';
import { engineDiscoveryRequest, readEngineDiscoveryReport, type SnmpEngine } from '../snmp-engine-discovery';

export const defaultSnmpSweepConcurrency = 32;
export const maxSnmpSweepConcurrency = 256;
export const defaultSnmpHostTimeoutMs = 800;
/** More communities than this makes a silent address cost too long; configuration should choose. */
export const maxSweepCommunities = 4;

export interface SnmpDiscoveryUser {
  userName: string;
  authPassphrase: string;
  privPassphrase: string;
}

export interface SnmpSweepOptions extends ScanOptions {
  /** v2c read communities, tried in order until one answers. */
  communities?: string[];
  /** Send an SNMPv3 engine discovery to every address (default true). */
  engineDiscovery?: boolean;
  /** Read the system group over SNMPv3 as this user where an engine answered. */
  discoveryUser?: SnmpDiscoveryUser;
  /** UDP port to ask at (161 by default); must be one of the scope's ports when it lists any. */
  port?: number;
  /** Hosts in flight at once. */
  concurrency?: number;
  /** Wait for one answer from one host, per request; no retries. */
  hostTimeoutMs?: number;
}

export interface SnmpSweepReport extends ScanReport {
  addressesProbed: number;
  /** Addresses that answered nothing at all. */
  addressesSilent: number;
  /** Addresses left unprobed because the scan's time ran out. */
  addressesSkipped: number;
}

interface SystemGroup {
  sysDescr?: string;
  sysObjectID?: string;
  sysName?: string;
}

/** Sweeps the scope's ranges and returns one observation per answering agent. */
export async function sweepSnmp(scope: ScanScope, options: SnmpSweepOptions): Promise<ScanOutcome> {
  const timeoutMs = boundedTimeout(options);
  const communities = options.communities ?? [];
  const engineDiscovery = options.engineDiscovery ?? true;
  if (communities.length > maxSweepCommunities) throw new RangeError(`at most ${maxSweepCommunities} communities per sweep`);
  if (communities.length === 0 && !engineDiscovery) throw new RangeError('an SNMP sweep needs a community or engine discovery');
  const concurrency = Math.min(Math.max(1, options.concurrency ?? defaultSnmpSweepConcurrency), maxSnmpSweepConcurrency);
  const hostTimeoutMs = Math.min(options.hostTimeoutMs ?? defaultSnmpHostTimeoutMs, timeoutMs);
  const port = options.port ?? defaultSnmpPort;
  if (scope.ports.length > 0 && !scope.ports.includes(port)) throw new RangeError(`port ${port} is not among the scope's ports`);
  const report: SnmpSweepReport = { ...newScanReport('snmp'), addressesProbed: 0, addressesSilent: 0, addressesSkipped: 0 };
  const deadline = Date.now() + timeoutMs;
  const observations: DiscoveryObservation[] = [];

  const addresses = sweepAddresses(scope, options.networks);
  const worker = async () => {
    for (let next = addresses.next(); !next.done; next = addresses.next()) {
      // A host needs up to one timeout per way in; do not start one that cannot finish in time.
      if (options.signal?.aborted || Date.now() + hostTimeoutMs > deadline) {
        report.addressesSkipped += 1;
        continue;
      }
      report.addressesProbed += 1;
      const observation = await probeHost({ host: next.value, port, transport: 'udp4' }, { communities, engineDiscovery, discoveryUser: options.discoveryUser, hostTimeoutMs }, report);
      if (observation) observations.push(observation);
      else report.addressesSilent += 1;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return scanOutcome(observations, report, options.maxObservations ?? defaultMaxObservations);
}

interface HostProbe {
  communities: string[];
  engineDiscovery: boolean;
  discoveryUser?: SnmpDiscoveryUser;
  hostTimeoutMs: number;
}

async function probeHost(endpoint: SnmpEndpoint, probe: HostProbe, report: SnmpSweepReport): Promise<DiscoveryObservation | undefined> {
  const engineAnswer = probe.engineDiscovery ? discoverEngine(endpoint, probe.hostTimeoutMs, report) : Promise.resolve(undefined);
  let system: SystemGroup | undefined;
  let version: 'v2c' | 'v3' | undefined;
  let communityIndex: number | undefined;
  for (const [index, community] of probe.communities.entries()) {
    system = await readSystemGroup(endpoint, { kind: 'community', version: 'v2c', community }, probe.hostTimeoutMs, report);
    if (system) {
      version = 'v2c';
      communityIndex = index;
      break;
    }
  }
  const engine = await engineAnswer;
  if (!system && engine && probe.discoveryUser) {
    system = await readSystemGroup(endpoint, { kind: 'usm', ...probe.discoveryUser }, probe.hostTimeoutMs, report);
    if (system) version = 'v3';
  }
  if (!system && !engine) return undefined;

  const pen = system?.sysObjectID ? enterpriseNumber(system.sysObjectID) : undefined;
  const vendor = pen === undefined ? undefined : enterpriseVendors.get(pen);
  return {
    source: 'snmp',
    observedAt: new Date().toISOString(),
    ip: endpoint.host,
    ...(engine?.macAddress ? { macAddress: engine.macAddress } : {}),
    endpoints: [{ protocol: 'snmp', address: `${endpoint.host}:${endpoint.port}` }],
    ...(vendor ? { manufacturer: vendor.manufacturer } : {}),
    ...(system?.sysName ? { hostname: system.sysName } : {}),
    evidence: {
      ...(system ?? {}),
      ...(pen !== undefined ? { enterpriseNumber: pen } : {}),
      ...(version ? { snmpVersion: version } : { snmpVersion: 'v3', credentialsAccepted: false }),
      // Which configured community answered, never the community itself.
      ...(communityIndex !== undefined ? { communityIndex } : {}),
      ...(engine ? { engine } : {}),
    },
  };
}

async function readSystemGroup(endpoint: SnmpEndpoint, security: SnmpSecurity, timeoutMs: number, report: ScanReport): Promise<SystemGroup | undefined> {
  const oids = [systemGroup.sysDescr, systemGroup.sysObjectID, systemGroup.sysName];
  report.datagramsSent += 1;
  try {
    const [descr, objectId, name] = await withSnmpSession(endpoint, security, { timeoutMs, retries: 0 }, (session) => session.get(oids, 'read its system group'));
    report.datagramsReceived += 1;
    return {
      ...optionalText('sysDescr', descr),
      ...optionalText('sysObjectID', objectId),
      ...optionalText('sysName', name),
    };
  } catch (error) {
    // Silence is what most addresses of a sweep give; anything else is worth a line.
    if (!(error instanceof DeviceUnavailableError && / did not answer /.test(error.message))) {
      noteProblem(report, `${endpoint.host}:${endpoint.port}: ${(error as Error).message}`);
    }
    return undefined;
  }
}

function optionalText(key: keyof SystemGroup, varbind: SnmpVarbind | undefined): SystemGroup {
  if (varbind === undefined || varbind.value === null || varbind.value === undefined) return {};
  const text = Buffer.isBuffer(varbind.value) ? varbind.value.toString('utf8') : String(varbind.value);
  return text.trim() ? { [key]: text.trim() } : {};
}

/** One engine discovery exchange on a socket of its own; undefined on silence or nonsense. */
function discoverEngine(endpoint: SnmpEndpoint, timeoutMs: number, report: ScanReport): Promise<SnmpEngine | undefined> {
  const { message, messageId } = engineDiscoveryRequest();
  const socket = dgram.createSocket(endpoint.transport);
  return new Promise((resolve) => {
    let finished = false;
    const finish = (engine: SnmpEngine | undefined) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      socket.close();
      resolve(engine);
    };
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    // ICMP port unreachable and the like: nothing listens there.
    socket.on('error', () => finish(undefined));
    socket.on('message', (datagram, remote) => {
      if (remote.address !== endpoint.host || remote.port !== endpoint.port) return;
      report.datagramsReceived += 1;
      const engine = readEngineDiscoveryReport(datagram, messageId);
      if (engine) finish(engine);
      else report.malformedPackets += 1;
    });
    socket.send(message, endpoint.port, endpoint.host, (error) => {
      if (error) finish(undefined);
      else report.datagramsSent += 1;
    });
  });
}
