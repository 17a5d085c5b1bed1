/**
 * WS-Discovery scanner for ONVIF devices: multicast Probes to 239.255.255.250:3702 out of each
 * scope interface, ProbeMatches collected (unicast back to the probing socket) until the window
 * closes. SOAP building and reading are the ONVIF adapter's; what this adds is a Probe per ONVIF
 * type, the choice of interface, the scope filter and turning scopes into observation fields.
 */
import { randomUUID } from 'node:crypto';
import type dgram from 'node:dgram';
import { isIPv4 } from 'node:net';
import { URL } from 'node:url';
import { authorityOf } from '../../adapters/host-port';
import { wsDiscoveryMulticast } from '../../adapters/onvif/discovery';
import { el, firstText, isObject, listOf, readSoapEnvelope, soapEnvelope, textOf, withAttributes, type XmlObject } from '../../adapters/onvif/soap';
import { normaliseMacAddress } from '../../foundation/mac-address';
import type { DiscoveryObservation } from '../observation';
import {
  acceptAnswerFrom,
  boundedTimeout,
  closeInterfaceSockets,
  defaultMaxObservations,
  newScanReport,
  openInterfaceSockets,
  scanOutcome,
  waitOrAbort,
  type ScanOptions,
  type ScanOutcome,
} from '../scanner';
import { isAddressInScope, type ScanScope, type ScopeInterface } from '../scope';

/** SOAP-over-UDP asks for TTL 1: discovery stays on the local link. */
const wsDiscoveryTtl = 1;
/** SOAP-over-UDP repeats multicast sends because UDP may lose them; answers are deduplicated. */
const probeRepeats = 2;
const probeRepeatGapMs = 100;
const onvifScopePrefix = 'onvif://www.onvif.org/';
const probeAction = 'http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe';
const discoveryTo = 'urn:schemas-xmlsoap-org:ws:2005:04:discovery';
const anonymousReplyTo = 'http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous';

/**
 * A target matches a Probe only if it has every listed type (WS-Discovery §5.1), so one Probe
 * naming both would miss access controllers, which are `tds:Device` but no video transmitter.
 * One Probe per type finds both; some older cameras answer only the NVT one.
 */
export const onvifProbeTypes = ['tds:Device', 'dn:NetworkVideoTransmitter'] as const;
export type OnvifProbeType = (typeof onvifProbeTypes)[number];

/** A WS-Discovery Probe for one ONVIF type (prefixes declared by the ONVIF envelope). */
export function wsDiscoveryProbe(messageId: string, type: OnvifProbeType): string {
  return soapEnvelope(el('wsd:Probe', el('wsd:Types', type)), [
    withAttributes(el('wsa:Action', probeAction), { 'soap:mustUnderstand': 'true' }),
    el('wsa:MessageID', messageId),
    el('wsa:ReplyTo', el('wsa:Address', anonymousReplyTo)),
    withAttributes(el('wsa:To', discoveryTo), { 'soap:mustUnderstand': 'true' }),
  ]);
}

/** What the ONVIF scopes of a ProbeMatch say, decoded. */
export interface OnvifScopeFacts {
  hardware?: string;
  name?: string;
  location?: string;
  macAddress?: string;
  profiles: string[];
  types: string[];
}

/** Reads `onvif://www.onvif.org/<kind>/<value>` scopes; unknown kinds stay in the evidence only. */
export function readOnvifScopes(scopes: string[]): OnvifScopeFacts {
  const facts: OnvifScopeFacts = { profiles: [], types: [] };
  for (const scope of scopes) {
    if (!scope.toLowerCase().startsWith(onvifScopePrefix)) continue;
    const [kind = '', ...rest] = scope.slice(onvifScopePrefix.length).split('/');
    let value: string;
    try {
      value = decodeURIComponent(rest.join('/'));
    } catch {
      value = rest.join('/');
    }
    if (!value) continue;
    switch (kind.toLowerCase()) {
      case 'hardware':
        facts.hardware = value;
        break;
      case 'name':
        // Cameras write spaces in names as underscores or %20.
        facts.name = value.replace(/_/g, ' ');
        break;
      case 'location':
        facts.location = value;
        break;
      case 'mac':
        facts.macAddress = normaliseMacAddress(value) ?? facts.macAddress;
        break;
      case 'profile':
        facts.profiles.push(value);
        break;
      case 'type':
        facts.types.push(value);
        break;
    }
  }
  return facts;
}

interface ProbeMatchFacts {
  endpointReference: string;
  types: string[];
  scopes: string[];
  xaddrs: string[];
  metadataVersion?: string;
}

function words(value: string | undefined): string[] {
  return (value ?? '').split(/\s+/).filter(Boolean);
}

function probeMatchesOf(body: XmlObject): ProbeMatchFacts[] | undefined {
  if (!isObject(body.ProbeMatches)) return undefined;
  const matches: ProbeMatchFacts[] = [];
  for (const match of listOf(body.ProbeMatches.ProbeMatch)) {
    if (!isObject(match)) return undefined;
    const endpointReference = isObject(match.EndpointReference) ? textOf(match.EndpointReference.Address) : undefined;
    if (!endpointReference) return undefined;
    matches.push({
      endpointReference,
      types: words(firstText(match.Types)),
      scopes: listOf(match.Scopes).flatMap((scopes) => words(textOf(scopes))),
      xaddrs: words(firstText(match.XAddrs)),
      metadataVersion: firstText(match.MetadataVersion),
    });
  }
  return matches;
}

function observationOf(match: ProbeMatchFacts, from: dgram.RemoteInfo, via: ScopeInterface, inScope: (host: string) => boolean): DiscoveryObservation {
  const scopeFacts = readOnvifScopes(match.scopes);
  const endpoints: DiscoveryObservation['endpoints'] = [];
  for (const xaddr of match.xaddrs) {
    let url: URL;
    try {
      url = new URL(xaddr);
    } catch {
      continue;
    }
    const host = url.hostname.replace(/^\[|\]$/g, '');
    // An XAddr outside the scope (or by name) is evidence only: no adapter is pointed at it.
    if (!inScope(host)) continue;
    const defaultPort = url.protocol === 'https:' ? 443 : 80;
    // The adapter's address is `host:port` of the device service over HTTP; HTTPS ones are kept as such.
    endpoints.push({ protocol: url.protocol === 'https:' ? 'onvif-https' : 'onvif', address: authorityOf(host, Number(url.port || defaultPort)) });
  }
  return {
    source: 'ws-discovery',
    observedAt: new Date().toISOString(),
    ip: from.address,
    ...(scopeFacts.macAddress ? { macAddress: scopeFacts.macAddress } : {}),
    endpoints,
    ...(scopeFacts.hardware ? { model: scopeFacts.hardware } : {}),
    evidence: {
      endpointReference: match.endpointReference,
      types: match.types,
      scopes: match.scopes,
      xaddrs: match.xaddrs,
      ...(match.metadataVersion ? { metadataVersion: match.metadataVersion } : {}),
      ...(scopeFacts.name ? { name: scopeFacts.name } : {}),
      ...(scopeFacts.location ? { location: scopeFacts.location } : {}),
      ...(scopeFacts.hardware ? { hardware: scopeFacts.hardware } : {}),
      profiles: scopeFacts.profiles,
      interface: via.name,
    },
  };
}

export interface WsDiscoveryScanOptions extends ScanOptions {
  /** Where Probes go; the standard group unless a test names another port. */
  target?: { host: string; port: number };
}

/** Probes out of each scope interface and returns one observation per endpoint reference. */
export async function scanWsDiscovery(scope: ScanScope, options: WsDiscoveryScanOptions): Promise<ScanOutcome> {
  const timeoutMs = boundedTimeout(options);
  const report = newScanReport('ws-discovery');
  const target = options.target ?? wsDiscoveryMulticast;
  const probes = onvifProbeTypes.map((type) => {
    const messageId = `urn:uuid:${randomUUID()}`;
    return { messageId, message: Buffer.from(wsDiscoveryProbe(messageId, type), 'utf8') };
  });
  const messageIds = new Set(probes.map((probe) => probe.messageId));
  const maxObservations = options.maxObservations ?? defaultMaxObservations;
  const byReference = new Map<string, DiscoveryObservation>();
  let interfaces: ScopeInterface[] = [];

  const sockets = await openInterfaceSockets(scope, report, {
    ttl: wsDiscoveryTtl,
    onMessage(message, remote, via) {
      let envelope;
      try {
        envelope = readSoapEnvelope(message.toString('utf8'));
      } catch {
        report.malformedPackets += 1;
        return;
      }
      // Other probers' traffic and late answers to earlier probes are not ours.
      if (!messageIds.has(textOf(envelope.header.RelatesTo) ?? '')) return;
      const matches = probeMatchesOf(envelope.body);
      if (!matches) {
        report.malformedPackets += 1;
        return;
      }
      if (!acceptAnswerFrom(scope, report, remote.address, interfaces)) return;
      for (const match of matches) {
        if (!byReference.has(match.endpointReference) && byReference.size >= maxObservations) {
          report.droppedObservations += 1;
          continue;
        }
        byReference.set(match.endpointReference, observationOf(match, remote, via, (host) => isIPv4(host) && isAddressInScope(scope, host, interfaces)));
      }
    },
  });
  interfaces = sockets.map((entry) => entry.scopeInterface);
  try {
    for (let repeat = 0; repeat < probeRepeats && !options.signal?.aborted; repeat += 1) {
      for (const probe of probes) await Promise.all(sockets.map((entry) => entry.send(probe.message, target.port, target.host)));
      if (repeat + 1 < probeRepeats) await waitOrAbort(Math.min(probeRepeatGapMs, timeoutMs / 4), options.signal);
    }
    await waitOrAbort(timeoutMs - Math.min(probeRepeatGapMs, timeoutMs / 4), options.signal);
  } finally {
    await closeInterfaceSockets(sockets);
  }
  return scanOutcome([...byReference.values()], report, maxObservations);
}
