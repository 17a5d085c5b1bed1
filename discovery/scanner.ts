/**
 * What every discovery scanner shares: the call shape, the report of what went wrong without
 * failing the scan, and the per-interface multicast sockets the multicast scanners send from.
 *
 * A scan is bounded: it resolves by `timeoutMs` (or as soon as `signal` aborts, with what it has),
 * keeps at most `maxObservations`, and never throws because of what a peer sent.
 */
import dgram from 'node:dgram';
import type { DeviceNetworks } from '../adapters/device-networks';
import type { DiscoveryObservation, DiscoverySource } from './observation';
import { isAddressInScope, resolveScopeInterfaces, type ScanScope, type ScopeInterface } from './scope';

export interface ScanOptions {
  /** How long the scan may take in all, answers and follow-up fetches included. */
  timeoutMs: number;
  /** Where devices may be reached: nothing outside is probed or fetched, whatever the scope or a peer says. */
  networks: DeviceNetworks;
  signal?: AbortSignal;
  /** Most observations one scan keeps; further ones are counted in `report.droppedObservations`. */
  maxObservations?: number;
}

export const defaultMaxObservations = 1024;
export const maxScanTimeoutMs = 60_000;

/** What happened during a scan beyond the observations, for logs and the operator. */
export interface ScanReport {
  source: DiscoverySource;
  /** Interfaces a query went out of, by name and address. */
  interfacesScanned: { name: string; address: string }[];
  /** Scope interfaces that were absent or had no IPv4 address. */
  interfacesMissing: string[];
  datagramsSent: number;
  datagramsReceived: number;
  /** Datagrams or documents that could not be parsed; counted, never fatal. */
  malformedPackets: number;
  /** Well-formed answers from addresses outside the scope, ignored. */
  outOfScopeAnswers: number;
  /** Observations beyond `maxObservations`. */
  droppedObservations: number;
  /** Per-peer problems worth a log line (a description that would not load, a send that failed). */
  problems: string[];
}

/**
 * The observations of a scan, with its report attached: still a plain `DiscoveryObservation[]`
 * to callers that only want those.
 */
export type ScanOutcome = DiscoveryObservation[] & { readonly report: ScanReport };

export type DiscoveryScan = (scope: ScanScope, options: ScanOptions) => Promise<ScanOutcome>;

export function newScanReport(source: DiscoverySource): ScanReport {
  return {
    source,
    interfacesScanned: [],
    interfacesMissing: [],
    datagramsSent: 0,
    datagramsReceived: 0,
    malformedPackets: 0,
    outOfScopeAnswers: 0,
    droppedObservations: 0,
    problems: [],
  };
}

const maxProblems = 50;

export function noteProblem(report: ScanReport, problem: string): void {
  if (report.problems.length < maxProblems) report.problems.push(problem);
}

export function scanOutcome(observations: DiscoveryObservation[], report: ScanReport, maxObservations: number): ScanOutcome {
  const kept = observations.slice(0, maxObservations);
  report.droppedObservations += observations.length - kept.length;
  return Object.defineProperty(kept, 'report', { value: report, enumerable: false }) as ScanOutcome;
}

export function boundedTimeout(options: ScanOptions): number {
  if (!Number.isFinite(options.timeoutMs) || options.timeoutMs <= 0) throw new RangeError('timeoutMs must be a positive number');
  return Math.min(options.timeoutMs, maxScanTimeoutMs);
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function waitOrAbort(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
  });
}

/** A socket bound to one scope interface's address, sending multicast only out of that interface. */
export interface InterfaceSocket {
  scopeInterface: ScopeInterface;
  socket: dgram.Socket;
  send(message: Buffer, port: number, host: string): Promise<void>;
}

export interface MulticastSocketOptions {
  /** Multicast TTL the protocol asks for. */
  ttl: number;
  onMessage(message: Buffer, remote: dgram.RemoteInfo, via: ScopeInterface): void;
}

/**
 * Opens one UDP socket per IPv4 address of the scope's interfaces. Binding to the interface's own
 * address and naming it as the multicast interface is what keeps queries off every other
 * interface, whatever the routing table's default for multicast says; answers come back unicast
 * to that address.
 */
export async function openInterfaceSockets(scope: ScanScope, report: ScanReport, options: MulticastSocketOptions): Promise<InterfaceSocket[]> {
  const { interfaces, missing } = resolveScopeInterfaces(scope);
  report.interfacesMissing.push(...missing);
  const opened: InterfaceSocket[] = [];
  for (const scopeInterface of interfaces) {
    const socket = dgram.createSocket({ type: 'udp4' });
    socket.on('message', (message, remote) => {
      report.datagramsReceived += 1;
      options.onMessage(message, remote, scopeInterface);
    });
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.bind({ address: scopeInterface.address, port: 0 }, () => {
          socket.off('error', reject);
          resolve();
        });
      });
      socket.on('error', (error) => noteProblem(report, `${scopeInterface.name}: ${error.message}`));
      socket.setMulticastInterface(scopeInterface.address);
      socket.setMulticastTTL(options.ttl);
    } catch (error) {
      noteProblem(report, `${scopeInterface.name} ${scopeInterface.address}: ${(error as Error).message}`);
      socket.close();
      continue;
    }
    report.interfacesScanned.push({ name: scopeInterface.name, address: scopeInterface.address });
    opened.push({
      scopeInterface,
      socket,
      send: (message, port, host) =>
        new Promise((resolve) => {
          socket.send(message, port, host, (error) => {
            if (error) noteProblem(report, `send on ${scopeInterface.name}: ${error.message}`);
            else report.datagramsSent += 1;
            resolve();
          });
        }),
    });
  }
  return opened;
}

export function closeInterfaceSockets(sockets: InterfaceSocket[]): Promise<void> {
  return Promise.all(sockets.map(({ socket }) => new Promise<void>((resolve) => socket.close(() => resolve())))).then(() => undefined);
}

/** Whether an answer's source belongs to the scan; counts it when not. */
export function acceptAnswerFrom(scope: ScanScope, report: ScanReport, address: string, interfaces: ScopeInterface[]): boolean {
  if (isAddressInScope(scope, address, interfaces)) return true;
  report.outOfScopeAnswers += 1;
  return false;
}
