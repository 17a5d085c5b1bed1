/**
 * SSDP/UPnP scanner (UPnP Device Architecture 1.1 §1.3). An M-SEARCH per search target goes to
 * 239.255.255.250:1900 out of each scope interface; devices answer unicast with an HTTP-over-UDP
 * response whose LOCATION names their description document. Each LOCATION inside the scope is
 * fetched once (plain HTTP, size and time limited) for manufacturer, model, serial number and UDN.
 * A LOCATION outside the scope or the device networks, or naming a host by name, is never fetched:
 * a response must not be able to point the scanner at an arbitrary server.
 */
import http from 'node:http';
import { isIPv4 } from 'node:net';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import type { DeviceNetworks } from '../../adapters/device-networks';
import { authorityOf } from '../../adapters/host-port';
import type { DiscoveryObservation } from '../observation';
import {
  acceptAnswerFrom,
  boundedTimeout,
  closeInterfaceSockets,
  defaultMaxObservations,
  newScanReport,
  noteProblem,
  openInterfaceSockets,
  scanOutcome,
  waitOrAbort,
  type ScanOptions,
  type ScanOutcome,
  type ScanReport,
} from '../scanner';
import { isAddressInScope, type ScanScope, type ScopeInterface } from '../scope';

export const ssdpMulticast = { host: '239.255.255.250', port: 1900 } as const;
/** UDA 1.1 recommends TTL 2 for SSDP multicast. */
const ssdpTtl = 2;
export const defaultSearchTargets = ['ssdp:all', 'upnp:rootdevice'] as const;
/** MX bounds: the spec allows 1 to 5 seconds of random answer delay. */
const minMx = 1;
const maxMx = 5;

export const maxDescriptionBytes = 64 * 1024;
const descriptionTimeoutMs = 2000;
const maxDescriptionFetches = 64;
const maxConcurrentFetches = 4;
const maxLocations = 512;

export interface SsdpScanOptions extends ScanOptions {
  searchTargets?: readonly string[];
  /** Seconds devices may wait before answering; defaults to what fits in half the window. */
  mx?: number;
  /** Where M-SEARCHes go; the standard group unless a test names another port. */
  target?: { host: string; port: number };
}

/** The M-SEARCH request for one search target. */
export function mSearchMessage(searchTarget: string, mx: number, target: { host: string; port: number } = ssdpMulticast): string {
  return [
    'M-SEARCH * HTTP/1.1',
    `HOST: ${authorityOf(target.host, target.port)}`,
    'MAN: "ssdp:discover"',
    `MX: ${mx}`,
    `ST: ${searchTarget}`,
    '',
    '',
  ].join('\r\n');
}

export interface SsdpResponse {
  location: string;
  usn?: string;
  searchTarget?: string;
  server?: string;
  headers: Record<string, string>;
}

/** Reads an M-SEARCH response; undefined when it is not one (wrong start line, no LOCATION). */
export function parseSsdpResponse(text: string): SsdpResponse | undefined {
  const [statusLine, ...lines] = text.split(/\r?\n/);
  if (!statusLine || !/^HTTP\/1\.[01] 200\b/i.test(statusLine)) return undefined;
  const headers: Record<string, string> = {};
  for (const line of lines) {
    if (line === '') break;
    const colon = line.indexOf(':');
    if (colon <= 0) return undefined;
    const name = line.slice(0, colon).trim().toLowerCase();
    if (!/^[a-z0-9!#$%&'*+.^_`|~-]+$/.test(name)) return undefined;
    headers[name] ??= line.slice(colon + 1).trim();
  }
  const location = headers.location;
  if (!location) return undefined;
  return { location, usn: headers.usn, searchTarget: headers.st, server: headers.server, headers };
}

export interface UpnpDeviceDescription {
  deviceType?: string;
  friendlyName?: string;
  manufacturer?: string;
  manufacturerUrl?: string;
  modelName?: string;
  modelNumber?: string;
  modelDescription?: string;
  serialNumber?: string;
  udn?: string;
  presentationUrl?: string;
  urlBase?: string;
}

// Entities are decoded by hand (only XML's five and character references): a description's
// DOCTYPE must not be able to define entities that expand.
const descriptionParser = new XMLParser({ removeNSPrefix: true, ignoreAttributes: true, parseTagValue: false, processEntities: false, trimValues: true });

/** Reads the root device of a UPnP description document; undefined when it has none. */
export function parseDeviceDescription(xml: string): UpnpDeviceDescription | undefined {
  if (XMLValidator.validate(xml) !== true) return undefined;
  const document = descriptionParser.parse(xml) as Record<string, unknown>;
  const root = document.root as Record<string, unknown> | undefined;
  const device = root && typeof root === 'object' ? (root.device as Record<string, unknown> | undefined) : undefined;
  if (!device || typeof device !== 'object' || Array.isArray(device)) return undefined;
  const text = (value: unknown) => (typeof value === 'string' && value.trim() ? decodeXmlText(value.trim()) : undefined);
  const fields: UpnpDeviceDescription = {
    deviceType: text(device.deviceType),
    friendlyName: text(device.friendlyName),
    manufacturer: text(device.manufacturer),
    manufacturerUrl: text(device.manufacturerURL),
    modelName: text(device.modelName),
    modelNumber: text(device.modelNumber),
    modelDescription: text(device.modelDescription),
    serialNumber: text(device.serialNumber),
    udn: text(device.UDN),
    presentationUrl: text(device.presentationURL),
    urlBase: text(root!.URLBase),
  };
  return Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined)) as UpnpDeviceDescription;
}

const predefinedEntities: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

function decodeXmlText(value: string): string {
  return value.replace(/&(#x[0-9a-f]{1,6}|#[0-9]{1,7}|amp|lt|gt|quot|apos);/gi, (entity, body: string) => {
    if (!body.startsWith('#')) return predefinedEntities[body.toLowerCase()] ?? entity;
    const code = body[1] === 'x' || body[1] === 'X' ? parseInt(body.slice(2), 16) : parseInt(body.slice(1), 10);
    return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : entity;
  });
}

/** GETs `url` with a size and time limit; rejects on status, size, time or abort. */
function fetchDescription(url: URL, signal: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    const request = http.get(url, { signal, timeout: descriptionTimeoutMs, headers: { accept: 'text/xml, application/xml' }, agent: false }, (response) => {
      if (response.statusCode !== 200) {
        response.resume();
        reject(new Error(`HTTP ${response.statusCode}`));
        return;
      }
      const declared = Number(response.headers['content-length'] ?? 0);
      if (declared > maxDescriptionBytes) {
        request.destroy();
        reject(new Error(`description of ${declared} bytes exceeds ${maxDescriptionBytes}`));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxDescriptionBytes) {
          request.destroy(new Error(`description exceeds ${maxDescriptionBytes} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      response.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      response.on('error', reject);
    });
    request.on('timeout', () => request.destroy(new Error(`no description within ${descriptionTimeoutMs} ms`)));
    request.on('error', reject);
  });
}

interface HeardLocation {
  location: string;
  from: string;
  via: ScopeInterface;
  responses: SsdpResponse[];
  description?: UpnpDeviceDescription;
  descriptionError?: string;
}

/** Why a LOCATION may not be fetched, or undefined when it may. */
function locationRefusal(location: string, scope: ScanScope, interfaces: ScopeInterface[], networks: DeviceNetworks): string | undefined {
  let url: URL;
  try {
    url = new URL(location);
  } catch {
    return 'is not a URL';
  }
  if (url.protocol !== 'http:') return 'is not plain HTTP';
  if (!isIPv4(url.hostname)) return 'names its host by name, not by an IPv4 address';
  if (!isAddressInScope(scope, url.hostname, interfaces)) return 'is outside the scan scope';
  if (!networks.allows(url.hostname)) return 'is outside the device networks this installation allows';
  return undefined;
}

/** Searches out of each scope interface and returns one observation per description LOCATION. */
export async function scanSsdp(scope: ScanScope, options: SsdpScanOptions): Promise<ScanOutcome> {
  const timeoutMs = boundedTimeout(options);
  const deadline = Date.now() + timeoutMs;
  const report = newScanReport('ssdp');
  const target = options.target ?? ssdpMulticast;
  const mx = Math.max(minMx, Math.min(maxMx, options.mx ?? Math.floor(timeoutMs / 2000)));
  const locations = new Map<string, HeardLocation>();
  const fetches = new Set<Promise<void>>();
  const fetchQueue: HeardLocation[] = [];
  let fetchesStarted = 0;
  let running = 0;
  const stopFetches = new AbortController();
  const onAbort = () => stopFetches.abort();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  let interfaces: ScopeInterface[] = [];

  const pump = () => {
    while (running < maxConcurrentFetches && fetchQueue.length > 0 && !stopFetches.signal.aborted) {
      const heard = fetchQueue.shift()!;
      running += 1;
      const task = describe(heard, report, stopFetches.signal).finally(() => {
        running -= 1;
        fetches.delete(task);
        pump();
      });
      fetches.add(task);
    }
  };

  const sockets = await openInterfaceSockets(scope, report, {
    ttl: ssdpTtl,
    onMessage(data, remote, via) {
      const response = parseSsdpResponse(data.toString('latin1'));
      if (!response) {
        report.malformedPackets += 1;
        return;
      }
      if (!acceptAnswerFrom(scope, report, remote.address, interfaces)) return;
      const known = locations.get(response.location);
      if (known) {
        if (known.responses.length < 16) known.responses.push(response);
        return;
      }
      if (locations.size >= maxLocations) {
        report.droppedObservations += 1;
        return;
      }
      const heard: HeardLocation = { location: response.location, from: remote.address, via, responses: [response] };
      locations.set(response.location, heard);
      const refusal = locationRefusal(response.location, scope, interfaces, options.networks);
      if (refusal) {
        heard.descriptionError = `LOCATION ${refusal}; not fetched`;
        noteProblem(report, `${remote.address}: LOCATION ${response.location} ${refusal}`);
      } else if (fetchesStarted < maxDescriptionFetches) {
        fetchesStarted += 1;
        fetchQueue.push(heard);
        pump();
      }
    },
  });
  interfaces = sockets.map((entry) => entry.scopeInterface);
  try {
    for (const searchTarget of options.searchTargets ?? defaultSearchTargets) {
      const message = Buffer.from(mSearchMessage(searchTarget, mx, target), 'latin1');
      await Promise.all(sockets.map((entry) => entry.send(message, target.port, target.host)));
    }
    // Answers may come up to MX seconds late; descriptions need time after that, so both share the window.
    await waitOrAbort(deadline - Date.now(), options.signal);
  } finally {
    stopFetches.abort();
    options.signal?.removeEventListener('abort', onAbort);
    await Promise.allSettled([...fetches]);
    await closeInterfaceSockets(sockets);
  }
  const observations = [...locations.values()].map((heard) => observationOf(heard, scope, interfaces, options.networks));
  return scanOutcome(observations, report, options.maxObservations ?? defaultMaxObservations);
}

async function describe(heard: HeardLocation, report: ScanReport, signal: AbortSignal): Promise<void> {
  try {
    const xml = await fetchDescription(new URL(heard.location), signal);
    const description = parseDeviceDescription(xml);
    if (!description) {
      report.malformedPackets += 1;
      heard.descriptionError = 'description is not a UPnP device description';
      return;
    }
    heard.description = description;
  } catch (error) {
    heard.descriptionError = signal.aborted ? 'scan window closed before the description arrived' : (error as Error).message;
    noteProblem(report, `${heard.location}: ${heard.descriptionError}`);
  }
}

function observationOf(heard: HeardLocation, scope: ScanScope, interfaces: ScopeInterface[], networks: DeviceNetworks): DiscoveryObservation {
  const description = heard.description;
  const endpoints: DiscoveryObservation['endpoints'] = [{ protocol: 'upnp', address: heard.location }];
  if (description?.presentationUrl) {
    try {
      const presentation = new URL(description.presentationUrl, description.urlBase ?? heard.location);
      // Only a presentation page inside the scope and the device networks is offered to adapters.
      const reachable = isIPv4(presentation.hostname) && isAddressInScope(scope, presentation.hostname, interfaces) && networks.allows(presentation.hostname);
      if (presentation.protocol.startsWith('http') && reachable) {
        const port = Number(presentation.port || (presentation.protocol === 'https:' ? 443 : 80));
        endpoints.push({ protocol: presentation.protocol === 'https:' ? 'https' : 'http', address: authorityOf(presentation.hostname, port) });
      }
    } catch {
      // An unusable presentation URL stays in the evidence only.
    }
  }
  const optional = {
    manufacturer: description?.manufacturer,
    model: description?.modelName ?? description?.modelNumber,
    serialNumber: description?.serialNumber,
  };
  return {
    source: 'ssdp',
    observedAt: new Date().toISOString(),
    ip: heard.from,
    endpoints,
    ...Object.fromEntries(Object.entries(optional).filter(([, value]) => value !== undefined)),
    evidence: {
      location: heard.location,
      searchTargets: [...new Set(heard.responses.map((response) => response.searchTarget).filter(Boolean))],
      usns: [...new Set(heard.responses.map((response) => response.usn).filter(Boolean))],
      ...(heard.responses[0]?.server ? { server: heard.responses[0].server } : {}),
      ...(description ? { description } : {}),
      ...(heard.descriptionError ? { descriptionError: heard.descriptionError } : {}),
      interface: heard.via.name,
    },
  };
}
