/**
 * SNMPv3 engine discovery (RFC 3414 section 4): a request with an empty engine ID and no user,
 * which every SNMPv3 agent must answer with a Report carrying its snmpEngineID, boots and time.
 * It reveals an agent without any credentials, and the engine ID often names the SNMP stack's
 * vendor and sometimes the device's MAC (RFC 3411 SnmpEngineID formats).
 *
 * The net-snmp library keeps its discovery exchange internal, so the two messages are built and
 * read here with a minimal BER codec of their own.
 */
import { randomInt } from 'node:crypto';

const tag = {
  integer: 0x02,
  octetString: 0x04,
  null: 0x05,
  oid: 0x06,
  sequence: 0x30,
  getRequest: 0xa0,
  report: 0xa8,
} as const;

const snmpVersion3 = 3;
const usmSecurityModel = 3;
/** msgFlags: reportable, no authentication, no privacy. */
const reportableNoAuthNoPriv = 0x04;
const maxMessageSize = 65_507;

// ------------------------------------------------------------------------------------- encoding

function length(octets: number): Buffer {
  if (octets < 0x80) return Buffer.from([octets]);
  const bytes: number[] = [];
  for (let rest = octets; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest % 256);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(type: number, content: Buffer): Buffer {
  return Buffer.concat([Buffer.from([type]), length(content.length), content]);
}

function integer(value: number): Buffer {
  const bytes: number[] = [];
  let rest = value;
  do {
    bytes.unshift(rest & 0xff);
    rest = Math.floor(rest / 256);
  } while (rest > 0);
  // A set high bit would read as negative: INTEGER is two's complement.
  if (bytes[0]! & 0x80) bytes.unshift(0);
  return tlv(tag.integer, Buffer.from(bytes));
}

const octets = (value: Buffer = Buffer.alloc(0)) => tlv(tag.octetString, value);
const sequence = (...items: Buffer[]) => tlv(tag.sequence, Buffer.concat(items));

export interface EngineDiscoveryRequest {
  message: Buffer;
  messageId: number;
}

/** The discovery request: GetRequest with no varbinds, empty engine ID and user, reportable. */
export function engineDiscoveryRequest(messageId = randomInt(1, 2 ** 31 - 1)): EngineDiscoveryRequest {
  const requestId = randomInt(1, 2 ** 31 - 1);
  const usmParameters = sequence(octets(), integer(0), integer(0), octets(), octets(), octets());
  const message = sequence(
    integer(snmpVersion3),
    sequence(integer(messageId), integer(maxMessageSize), octets(Buffer.from([reportableNoAuthNoPriv])), integer(usmSecurityModel)),
    octets(usmParameters),
    sequence(octets(), octets(), tlv(tag.getRequest, Buffer.concat([integer(requestId), integer(0), integer(0), sequence()]))),
  );
  return { message, messageId };
}

// ------------------------------------------------------------------------------------- decoding

interface Element {
  type: number;
  content: Buffer;
}

/** Reads the elements of `data` in order; undefined when a length runs past the end. */
function elements(data: Buffer): Element[] | undefined {
  const found: Element[] = [];
  let offset = 0;
  while (offset < data.length) {
    if (offset + 2 > data.length) return undefined;
    const type = data[offset]!;
    let size = data[offset + 1]!;
    offset += 2;
    if (size & 0x80) {
      const count = size & 0x7f;
      if (count === 0 || count > 4 || offset + count > data.length) return undefined;
      size = 0;
      for (let i = 0; i < count; i += 1) size = size * 256 + data[offset + i]!;
      offset += count;
    }
    if (offset + size > data.length) return undefined;
    found.push({ type, content: data.subarray(offset, offset + size) });
    offset += size;
  }
  return found;
}

function readInteger(element: Element | undefined): number | undefined {
  if (element?.type !== tag.integer || element.content.length === 0 || element.content.length > 6) return undefined;
  let value = element.content[0]! & 0x80 ? -1 : 0;
  for (const byte of element.content) value = value * 256 + byte;
  return value;
}

export interface SnmpEngine {
  /** snmpEngineID as hex. */
  engineId: string;
  engineBoots: number;
  engineTime: number;
  /** The enterprise number in an RFC 3411 engine ID (high bit set): the SNMP stack's vendor. */
  enterpriseNumber?: number;
  /** RFC 3411 format 3: the engine ID carries a MAC address. */
  macAddress?: string;
}

/** The engine an agent reported in answer to `messageId`, or undefined for anything else. */
export function readEngineDiscoveryReport(datagram: Buffer, messageId: number): SnmpEngine | undefined {
  const [message] = elements(datagram) ?? [];
  if (message?.type !== tag.sequence) return undefined;
  const [version, header, securityParameters, scopedPdu] = elements(message.content) ?? [];
  if (readInteger(version) !== snmpVersion3 || header?.type !== tag.sequence || securityParameters?.type !== tag.octetString) return undefined;
  if (readInteger(elements(header.content)?.[0]) !== messageId) return undefined;
  if (scopedPdu?.type !== tag.sequence || elements(scopedPdu.content)?.[2]?.type !== tag.report) return undefined;
  const [usm] = elements(securityParameters.content) ?? [];
  if (usm?.type !== tag.sequence) return undefined;
  const [engineId, boots, time] = elements(usm.content) ?? [];
  const engineBoots = readInteger(boots);
  const engineTime = readInteger(time);
  if (engineId?.type !== tag.octetString || engineId.content.length < 5 || engineBoots === undefined || engineTime === undefined) return undefined;
  return { engineId: engineId.content.toString('hex'), engineBoots, engineTime, ...engineIdFacts(engineId.content) };
}

/** RFC 3411 SnmpEngineID: with the high bit set, 4 octets of enterprise number, a format octet, data. */
function engineIdFacts(id: Buffer): Pick<SnmpEngine, 'enterpriseNumber' | 'macAddress'> {
  if (!(id[0]! & 0x80)) return {};
  const enterpriseNumber = id.readUInt32BE(0) & 0x7fffffff;
  const format = id[4];
  const macFormat = 3;
  if (format === macFormat && id.length === 11) {
    return { enterpriseNumber, macAddress: [...id.subarray(5)].map((byte) => byte.toString(16).padStart(2, '0')).join(':') };
  }
  return { enterpriseNumber };
}
