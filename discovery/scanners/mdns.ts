/**
 * DNS-SD over mDNS scanner (RFC 6762, RFC 6763). Queries go to 224.0.0.251:5353 out of each scope
 * interface from an ephemeral port, which makes them "legacy unicast" queries (RFC 6762 §6.7):
 * responders answer straight back to the querying socket, so the scan needs neither port 5353
 * (often held by the host's own responder) nor group membership.
 *
 * The first query asks for the service-type enumeration (`_services._dns-sd._udp.local`) and the
 * camera and access-control service types we know; answers lead to follow-up questions (PTR for
 * newly learnt types, SRV/TXT for instances without them, A for hosts without an address), each
 * asked once, until the window closes. Observations are one per host (SRV target).
 */
import { randomInt } from 'node:crypto';
import { authorityOf } from '../../adapters/host-port';
import { normaliseMacAddress } from '../../foundation/mac-address';
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
  type InterfaceSocket,
  type ScanOptions,
  type ScanOutcome,
} from '../scanner';
import { isAddressInScope, type ScanScope, type ScopeInterface } from '../scope';
import {
  canonicalName,
  decodeDnsMessage,
  dnsRecordTypes,
  encodeDnsMessage,
  txtAttributes,
  type DnsMessage,
  type DnsQuestion,
  type DnsResourceRecord,
} from '../dns-message';

export const mdnsMulticast = { host: '224.0.0.251', port: 5353 } as const;
/** RFC 6762 §11: mDNS is sent with IP TTL 255 (receivers may check it to reject off-link packets). */
const mdnsTtl = 255;
export const serviceEnumerationName = '_services._dns-sd._udp.local';

/**
 * Service types asked for directly, since not every device answers the enumeration. ONVIF defines
 * no DNS-SD service type of its own; its cameras show up under `_http._tcp` or vendor types.
 */
export const defaultMdnsServiceTypes = [
  '_axis-video._tcp.local',
  '_http._tcp.local',
  '_https._tcp.local',
  '_rtsp._tcp.local',
  '_psia._tcp.local',
] as const;

/** Caps that keep a chatty or hostile link from growing the scan without bound. */
const maxRecords = 4096;
const maxQuestions = 256;
const maxServiceTypes = 64;
const questionsPerQuery = 32;
const followUpDelayMs = 20;

/** TXT keys devices use for the facts an observation carries, most specific first. */
const txtKeys = {
  manufacturer: ['manufacturer', 'mfg', 'vendor', 'mf'],
  model: ['model', 'modelname', 'mdl', 'md'],
  serialNumber: ['serialnumber', 'serial', 'sn'],
  firmwareVersion: ['firmwareversion', 'firmware', 'fwversion', 'fw'],
  macAddress: ['macaddress', 'mac', 'hwaddr'],
} as const;

export interface MdnsScanOptions extends ScanOptions {
  /** Service types to ask for besides the enumeration; defaults to `defaultMdnsServiceTypes`. */
  serviceTypes?: readonly string[];
  /** Where queries go; the standard group unless a test names another port. */
  target?: { host: string; port: number };
}

interface HeardRecord {
  record: DnsResourceRecord;
  from: string;
  via: ScopeInterface;
}

/** Every record heard, indexed by canonical owner name. */
class RecordStore {
  private readonly byName = new Map<string, HeardRecord[]>();
  size = 0;

  add(heard: HeardRecord): boolean {
    const key = canonicalName(heard.record.name);
    const list = this.byName.get(key) ?? [];
    const duplicate = list.some((known) => known.from === heard.from && sameRecord(known.record, heard.record));
    if (duplicate) return true;
    if (this.size >= maxRecords) return false;
    list.push(heard);
    this.byName.set(key, list);
    this.size += 1;
    return true;
  }

  get<T extends DnsResourceRecord['type']>(name: string, type: T): (HeardRecord & { record: Extract<DnsResourceRecord, { type: T }> })[] {
    return (this.byName.get(canonicalName(name)) ?? []).filter(
      (heard): heard is HeardRecord & { record: Extract<DnsResourceRecord, { type: T }> } => heard.record.type === type,
    );
  }
}

function sameRecord(a: DnsResourceRecord, b: DnsResourceRecord): boolean {
  const { ttl: _a, ...restA } = a;
  const { ttl: _b, ...restB } = b;
  return JSON.stringify(restA) === JSON.stringify(restB);
}

/** `Camera One._axis-video._tcp.local` → `_axis-video._tcp.local`. */
function serviceTypeOf(instance: string, serviceTypes: Set<string>): string | undefined {
  const labels = canonicalName(instance).split('.');
  for (let index = 1; index < labels.length; index += 1) {
    const candidate = labels.slice(index).join('.');
    if (serviceTypes.has(candidate)) return candidate;
  }
  return undefined;
}

/** `_axis-video._tcp.local` → `axis-video`: the endpoint protocol name. */
export function serviceProtocolOf(serviceType: string): string {
  return canonicalName(serviceType).split('.')[0]!.replace(/^_/, '');
}

function hostnameOf(target: string): string {
  return canonicalName(target).replace(/\.local$/, '');
}

/** Sends DNS-SD questions over mDNS and returns one observation per advertised host. */
export async function scanMdns(scope: ScanScope, options: MdnsScanOptions): Promise<ScanOutcome> {
  const timeoutMs = boundedTimeout(options);
  const report = newScanReport('mdns');
  const target = options.target ?? mdnsMulticast;
  const store = new RecordStore();
  const serviceTypes = new Set<string>([...(options.serviceTypes ?? defaultMdnsServiceTypes)].map(canonicalName));
  const asked = new Set<string>();
  const pending = new Map<InterfaceSocket, DnsQuestion[]>();
  let followUpTimer: NodeJS.Timeout | undefined;
  let interfaces: ScopeInterface[] = [];
  let sockets: InterfaceSocket[] = [];
  let closed = false;
  let recordLimitNoted = false;

  const ask = (socket: InterfaceSocket, name: string, type: number) => {
    const key = `${socket.scopeInterface.address} ${canonicalName(name)} ${type}`;
    if (asked.has(key) || asked.size >= maxQuestions) return;
    asked.add(key);
    pending.set(socket, [...(pending.get(socket) ?? []), { name, type }]);
    followUpTimer ??= setTimeout(flush, followUpDelayMs);
  };

  const flush = () => {
    followUpTimer = undefined;
    if (closed) return;
    for (const [socket, questions] of pending) {
      for (let start = 0; start < questions.length; start += questionsPerQuery) {
        const query: DnsMessage = {
          id: randomInt(1, 0xffff),
          response: false,
          questions: questions.slice(start, start + questionsPerQuery),
          answers: [],
          authorities: [],
          additionals: [],
        };
        void socket.send(encodeDnsMessage(query), target.port, target.host);
      }
    }
    pending.clear();
  };

  const followUp = (socket: InterfaceSocket) => {
    for (const type of serviceTypes) {
      for (const { record } of store.get(type, 'PTR')) {
        if (store.get(record.target, 'SRV').length === 0) ask(socket, record.target, dnsRecordTypes.SRV);
        if (store.get(record.target, 'TXT').length === 0) ask(socket, record.target, dnsRecordTypes.TXT);
        for (const srv of store.get(record.target, 'SRV')) {
          if (store.get(srv.record.target, 'A').length === 0) ask(socket, srv.record.target, dnsRecordTypes.A);
        }
      }
    }
  };

  sockets = await openInterfaceSockets(scope, report, {
    ttl: mdnsTtl,
    onMessage(data, remote, via) {
      let message: DnsMessage;
      try {
        message = decodeDnsMessage(data);
      } catch {
        report.malformedPackets += 1;
        return;
      }
      if (!message.response) return;
      if (!acceptAnswerFrom(scope, report, remote.address, interfaces)) return;
      const socket = sockets.find((entry) => entry.scopeInterface === via)!;
      for (const record of [...message.answers, ...message.additionals]) {
        if (!store.add({ record, from: remote.address, via })) {
          if (!recordLimitNoted) noteProblem(report, `more than ${maxRecords} records heard; later ones ignored`);
          recordLimitNoted = true;
          break;
        }
        if (record.type === 'PTR' && canonicalName(record.name) === serviceEnumerationName) {
          const serviceType = canonicalName(record.target);
          if (!serviceTypes.has(serviceType) && serviceTypes.size < maxServiceTypes) serviceTypes.add(serviceType);
          if (serviceTypes.has(serviceType)) ask(socket, serviceType, dnsRecordTypes.PTR);
        }
      }
      followUp(socket);
    },
  });
  interfaces = sockets.map((entry) => entry.scopeInterface);
  try {
    for (const socket of sockets) {
      ask(socket, serviceEnumerationName, dnsRecordTypes.PTR);
      for (const type of serviceTypes) ask(socket, type, dnsRecordTypes.PTR);
    }
    flush();
    await waitOrAbort(timeoutMs, options.signal);
  } finally {
    closed = true;
    if (followUpTimer) clearTimeout(followUpTimer);
    await closeInterfaceSockets(sockets);
  }
  return scanOutcome(observationsOf(store, serviceTypes, scope, interfaces), report, options.maxObservations ?? defaultMaxObservations);
}

interface AdvertisedService {
  instance: string;
  serviceType: string;
  port: number;
  txt: Record<string, string | true>;
}

function observationsOf(store: RecordStore, serviceTypes: Set<string>, scope: ScanScope, interfaces: ScopeInterface[]): DiscoveryObservation[] {
  const hosts = new Map<string, { services: AdvertisedService[]; from: string; via: ScopeInterface }>();
  for (const type of serviceTypes) {
    for (const ptr of store.get(type, 'PTR')) {
      const instance = ptr.record.target;
      if (serviceTypeOf(instance, serviceTypes) !== type) continue;
      const txtRecord = store.get(instance, 'TXT')[0];
      for (const srv of store.get(instance, 'SRV')) {
        const host = canonicalName(srv.record.target);
        const entry = hosts.get(host) ?? { services: [], from: srv.from, via: srv.via };
        if (!entry.services.some((known) => canonicalName(known.instance) === canonicalName(instance) && known.port === srv.record.port)) {
          entry.services.push({ instance, serviceType: type, port: srv.record.port, txt: txtRecord ? txtAttributes(txtRecord.record.strings) : {} });
        }
        hosts.set(host, entry);
      }
    }
  }
  const observations: DiscoveryObservation[] = [];
  for (const [host, { services, from, via }] of hosts) {
    const ipv4 = [...new Set(store.get(host, 'A').map((heard) => heard.record.address))];
    const ipv6 = [...new Set(store.get(host, 'AAAA').map((heard) => heard.record.address))];
    // The advertised address the scope allows, preferring the one the answer came from.
    const inScope = ipv4.filter((address) => isAddressInScope(scope, address, interfaces));
    const ip = inScope.includes(from) ? from : (inScope[0] ?? from);
    const fact = (keys: readonly string[]) => {
      for (const key of keys) {
        for (const service of services) {
          const value = service.txt[key];
          if (typeof value === 'string' && value.trim()) return value.trim();
        }
      }
      return undefined;
    };
    const macText = fact(txtKeys.macAddress);
    const macAddress = macText ? normaliseMacAddress(macText) : undefined;
    const optional = {
      manufacturer: fact(txtKeys.manufacturer),
      model: fact(txtKeys.model),
      serialNumber: fact(txtKeys.serialNumber),
      firmwareVersion: fact(txtKeys.firmwareVersion),
      macAddress,
    };
    observations.push({
      source: 'mdns',
      observedAt: new Date().toISOString(),
      ip,
      hostname: hostnameOf(host),
      endpoints: services.map((service) => ({ protocol: serviceProtocolOf(service.serviceType), address: authorityOf(ip, service.port) })),
      ...Object.fromEntries(Object.entries(optional).filter(([, value]) => value !== undefined)),
      evidence: {
        services: services.map((service) => ({ instance: service.instance, type: service.serviceType, port: service.port, txt: service.txt })),
        addresses: { ipv4, ipv6 },
        answeredFrom: from,
        interface: via.name,
      },
    });
  }
  return observations;
}
