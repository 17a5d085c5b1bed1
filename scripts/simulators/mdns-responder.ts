/**
 * A device that advertises DNS-SD services over mDNS (RFC 6762, RFC 6763), as cameras and door
 * controllers do: it joins 224.0.0.251 on one interface, answers PTR/SRV/TXT/A/ANY questions for
 * its services and host name, and announces itself when started.
 *
 * Queries from port 5353 are answered by multicast; queries from any other port are "legacy
 * unicast" (RFC 6762 §6.7) and answered straight to the sender with the query's ID and question,
 * no cache-flush bits and TTLs of at most 10 seconds, which is what a scanner on an ephemeral port
 * relies on. Every datagram received is recorded, so tests can see what a scanner sent.
 */
import dgram from 'node:dgram';
import {
  canonicalName,
  decodeDnsMessage,
  dnsRecordTypes,
  encodeDnsMessage,
  type DnsMessage,
  type DnsQuestion,
  type DnsResourceRecord,
} from '../../discovery/dns-message';

const mdnsGroup = '224.0.0.251';
const mdnsPort = 5353;
const serviceEnumeration = '_services._dns-sd._udp.local';
const hostRecordTtl = 120;
const serviceRecordTtl = 4500;
const legacyUnicastMaxTtl = 10;

export interface AdvertisedServiceOptions {
  /** Instance label, e.g. `AXIS M3045 - 00408C123456`. */
  instance: string;
  /** Service type, e.g. `_axis-video._tcp.local`. */
  type: string;
  port: number;
  /** TXT key/value pairs, written `key=value` in order. */
  txt?: Record<string, string>;
}

export interface MdnsResponderOptions {
  /** Address of the interface to join the group on and advertise in the A record. */
  address: string;
  /** Host name without `.local`. */
  hostname: string;
  services: AdvertisedServiceOptions[];
  /** Port to listen on; 5353 unless a test on loopback needs another. */
  port?: number;
  group?: string;
  /** Send an unsolicited announcement once started. */
  announce?: boolean;
  /**
   * Whether PTR answers carry SRV, TXT and A as additional records (RFC 6763 §12); some devices
   * leave them out, and a querier must then ask for each.
   */
  additionalRecords?: boolean;
}

export interface ReceivedDatagram {
  from: { address: string; port: number };
  bytes: number;
  /** Decoded questions, or undefined when the datagram was not a DNS message. */
  questions?: { name: string; type: number }[];
}

export interface RunningMdnsResponder {
  port: number;
  received: ReceivedDatagram[];
  close(): Promise<void>;
}

export async function startMdnsResponder(options: MdnsResponderOptions): Promise<RunningMdnsResponder> {
  const group = options.group ?? mdnsGroup;
  const hostName = `${options.hostname}.local`;
  const received: ReceivedDatagram[] = [];
  const services = options.services.map((service) => ({ ...service, fullName: `${service.instance}.${canonicalName(service.type)}` }));

  const hostRecord: DnsResourceRecord = { name: hostName, type: 'A', address: options.address, ttl: hostRecordTtl, cacheFlush: true };
  const srvOf = (service: (typeof services)[number]): DnsResourceRecord => ({
    name: service.fullName,
    type: 'SRV',
    priority: 0,
    weight: 0,
    port: service.port,
    target: hostName,
    ttl: hostRecordTtl,
    cacheFlush: true,
  });
  const txtOf = (service: (typeof services)[number]): DnsResourceRecord => ({
    name: service.fullName,
    type: 'TXT',
    strings: Object.entries(service.txt ?? {}).map(([key, value]) => Buffer.from(`${key}=${value}`, 'utf8')),
    ttl: serviceRecordTtl,
    cacheFlush: true,
  });
  const ptrOf = (service: (typeof services)[number]): DnsResourceRecord => ({ name: service.type, type: 'PTR', target: service.fullName, ttl: serviceRecordTtl });

  /** Answers and additional records for one question (RFC 6763 §12 says which additionals help). */
  function answer(question: DnsQuestion): { answers: DnsResourceRecord[]; additionals: DnsResourceRecord[] } {
    const name = canonicalName(question.name);
    const wants = (type: number) => question.type === type || question.type === dnsRecordTypes.ANY;
    const answers: DnsResourceRecord[] = [];
    const additionals: DnsResourceRecord[] = [];
    if (name === serviceEnumeration && wants(dnsRecordTypes.PTR)) {
      for (const type of new Set(services.map((service) => canonicalName(service.type)))) {
        answers.push({ name: serviceEnumeration, type: 'PTR', target: type, ttl: serviceRecordTtl });
      }
    }
    for (const service of services) {
      if (name === canonicalName(service.type) && wants(dnsRecordTypes.PTR)) {
        answers.push(ptrOf(service));
        if (options.additionalRecords ?? true) additionals.push(srvOf(service), txtOf(service), hostRecord);
      }
      if (name === canonicalName(service.fullName)) {
        if (wants(dnsRecordTypes.SRV)) answers.push(srvOf(service));
        if (wants(dnsRecordTypes.TXT)) answers.push(txtOf(service));
        if (wants(dnsRecordTypes.SRV) && (options.additionalRecords ?? true)) additionals.push(hostRecord);
      }
    }
    if (name === canonicalName(hostName) && wants(dnsRecordTypes.A)) answers.push(hostRecord);
    return { answers, additionals };
  }

  const socket = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    // Bound to the wildcard address: Linux hands a socket bound to a unicast address no multicast.
    socket.bind({ port: options.port ?? mdnsPort }, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  socket.addMembership(group, options.address);
  socket.setMulticastInterface(options.address);
  socket.setMulticastTTL(255);
  const port = socket.address().port;

  const sendMulticast = (message: DnsMessage) => socket.send(encodeDnsMessage(message), port, group);

  socket.on('message', (data, remote) => {
    let query: DnsMessage | undefined;
    try {
      query = decodeDnsMessage(data);
    } catch {
      query = undefined;
    }
    received.push({
      from: { address: remote.address, port: remote.port },
      bytes: data.length,
      ...(query ? { questions: query.questions.map(({ name, type }) => ({ name, type })) } : {}),
    });
    if (!query || query.response) return;
    const answers: DnsResourceRecord[] = [];
    const additionals: DnsResourceRecord[] = [];
    for (const question of query.questions) {
      const result = answer(question);
      answers.push(...result.answers);
      additionals.push(...result.additionals);
    }
    if (answers.length === 0) return;
    const unique = (records: DnsResourceRecord[]) => [...new Map(records.map((record) => [JSON.stringify(record), record])).values()];
    const answerKeys = new Set(answers.map((record) => JSON.stringify(record)));
    const extra = unique(additionals).filter((record) => !answerKeys.has(JSON.stringify(record)));
    if (remote.port !== port) {
      const legacy = (records: DnsResourceRecord[]) =>
        records.map((record) => ({ ...record, cacheFlush: false, ttl: Math.min(record.ttl, legacyUnicastMaxTtl) }));
      const response: DnsMessage = {
        id: query.id,
        response: true,
        authoritative: true,
        questions: query.questions,
        answers: legacy(unique(answers)),
        authorities: [],
        additionals: legacy(extra),
      };
      socket.send(encodeDnsMessage(response), remote.port, remote.address);
      return;
    }
    sendMulticast({ id: 0, response: true, authoritative: true, questions: [], answers: unique(answers), authorities: [], additionals: extra });
  });

  if (options.announce) {
    const records = services.flatMap((service) => [ptrOf(service), srvOf(service), txtOf(service)]);
    sendMulticast({ id: 0, response: true, authoritative: true, questions: [], answers: [...records, hostRecord], authorities: [], additionals: [] });
  }

  return {
    port,
    received,
    close: () => new Promise((resolve) => socket.close(() => resolve())),
  };
}
