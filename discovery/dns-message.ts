/**
 * DNS message codec (RFC 1035 §4) for the records DNS-SD over mDNS uses (RFC 6762, RFC 6763): A,
 * PTR, TXT, AAAA, SRV, with name compression both ways. Decoding is defensive: every read is
 * bounds-checked, compression pointers may only point backwards and at most `maxPointerJumps`
 * times, so a hostile datagram costs a `DnsFormatError`, never a hang or a crash.
 */
import { isIPv4, isIPv6 } from 'node:net';

export const dnsRecordTypes = { A: 1, PTR: 12, TXT: 16, AAAA: 28, SRV: 33, NSEC: 47, ANY: 255 } as const;
export type DnsRecordTypeName = keyof typeof dnsRecordTypes;
export const dnsClassInternet = 1;
/** mDNS reuses the class's top bit: "unicast response wanted" in questions, "cache flush" in answers. */
export const mdnsClassTopBit = 0x8000;

const headerLength = 12;
const maxLabelLength = 63;
const maxNameLength = 255;
const maxPointerJumps = 32;
const maxRecordsPerSection = 256;
const flagResponse = 0x8000;
const flagAuthoritative = 0x0400;
const compressionPointer = 0xc0;

export class DnsFormatError extends Error {}

export interface DnsQuestion {
  name: string;
  type: number;
  /** mDNS QU bit: ask for a unicast answer. */
  unicastResponse?: boolean;
}

export type DnsRecordData =
  | { type: 'A'; address: string }
  | { type: 'AAAA'; address: string }
  | { type: 'PTR'; target: string }
  | { type: 'SRV'; priority: number; weight: number; port: number; target: string }
  | { type: 'TXT'; strings: Buffer[] }
  | { type: 'OTHER'; code: number; data: Buffer };

export type DnsResourceRecord = {
  name: string;
  ttl: number;
  /** mDNS cache-flush bit: this record replaces what caches hold for the name and type. */
  cacheFlush?: boolean;
} & DnsRecordData;

export interface DnsMessage {
  id: number;
  response: boolean;
  authoritative?: boolean;
  questions: DnsQuestion[];
  answers: DnsResourceRecord[];
  authorities: DnsResourceRecord[];
  additionals: DnsResourceRecord[];
}

/** Names compare case-insensitively and without the trailing dot. */
export function canonicalName(name: string): string {
  return name.replace(/\.$/, '').toLowerCase();
}

// -----------------------------------------------------------------------------------------------
// Encoding

class MessageWriter {
  private readonly chunks: Buffer[] = [];
  private length = 0;
  /** Offsets of names already written, by their canonical suffix, for compression. */
  private readonly nameOffsets = new Map<string, number>();

  bytes(data: Buffer): void {
    this.chunks.push(data);
    this.length += data.length;
  }

  u8(value: number): void {
    this.bytes(Buffer.from([value]));
  }

  u16(value: number): void {
    const data = Buffer.alloc(2);
    data.writeUInt16BE(value);
    this.bytes(data);
  }

  u32(value: number): void {
    const data = Buffer.alloc(4);
    data.writeUInt32BE(value >>> 0);
    this.bytes(data);
  }

  get offset(): number {
    return this.length;
  }

  name(name: string): void {
    const labels = name.replace(/\.$/, '').split('.').filter((label) => label.length > 0);
    if (Buffer.byteLength(labels.join('.'), 'utf8') + 2 > maxNameLength) throw new DnsFormatError(`name too long: ${name}`);
    for (let index = 0; index < labels.length; index += 1) {
      const suffix = labels.slice(index).join('.').toLowerCase();
      const known = this.nameOffsets.get(suffix);
      if (known !== undefined) {
        this.u16((compressionPointer << 8) | known);
        return;
      }
      // Pointers carry 14 bits of offset; later names can only point at the first 16 KiB.
      if (this.offset < 0x3fff) this.nameOffsets.set(suffix, this.offset);
      const label = Buffer.from(labels[index]!, 'utf8');
      if (label.length > maxLabelLength) throw new DnsFormatError(`label longer than ${maxLabelLength} bytes in ${name}`);
      this.u8(label.length);
      this.bytes(label);
    }
    this.u8(0);
  }

  /** Writes a 16-bit length, then `body`, then patches the length (RDATA may hold compressed names). */
  withLength(body: () => void): void {
    const lengthField = Buffer.alloc(2);
    this.bytes(lengthField);
    const start = this.offset;
    body();
    lengthField.writeUInt16BE(this.offset - start);
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.chunks, this.length);
  }
}

function typeCode(record: DnsRecordData): number {
  return record.type === 'OTHER' ? record.code : dnsRecordTypes[record.type];
}

function writeRecord(writer: MessageWriter, record: DnsResourceRecord): void {
  writer.name(record.name);
  writer.u16(typeCode(record));
  writer.u16(dnsClassInternet | (record.cacheFlush ? mdnsClassTopBit : 0));
  writer.u32(record.ttl);
  writer.withLength(() => {
    switch (record.type) {
      case 'A':
        if (!isIPv4(record.address)) throw new DnsFormatError(`not an IPv4 address: ${record.address}`);
        writer.bytes(Buffer.from(record.address.split('.').map(Number)));
        break;
      case 'AAAA':
        writer.bytes(ipv6Bytes(record.address));
        break;
      case 'PTR':
        writer.name(record.target);
        break;
      case 'SRV':
        writer.u16(record.priority);
        writer.u16(record.weight);
        writer.u16(record.port);
        writer.name(record.target);
        break;
      case 'TXT': {
        // An empty TXT record is one empty string (RFC 6763 §6.1).
        const strings = record.strings.length > 0 ? record.strings : [Buffer.alloc(0)];
        for (const text of strings) {
          if (text.length > 255) throw new DnsFormatError('TXT string longer than 255 bytes');
          writer.u8(text.length);
          writer.bytes(text);
        }
        break;
      }
      case 'OTHER':
        writer.bytes(record.data);
        break;
    }
  });
}

function ipv6Bytes(address: string): Buffer {
  if (!isIPv6(address)) throw new DnsFormatError(`not an IPv6 address: ${address}`);
  const [head = '', tail = ''] = address.split('::');
  const groups = (part: string) => (part ? part.split(':') : []);
  const headGroups = groups(head);
  const tailGroups = groups(tail);
  const all = address.includes('::') ? [...headGroups, ...Array(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups] : headGroups;
  const data = Buffer.alloc(16);
  all.forEach((group, index) => data.writeUInt16BE(parseInt(group, 16), index * 2));
  return data;
}

export function encodeDnsMessage(message: DnsMessage): Buffer {
  const writer = new MessageWriter();
  writer.u16(message.id);
  writer.u16((message.response ? flagResponse : 0) | (message.authoritative ? flagAuthoritative : 0));
  writer.u16(message.questions.length);
  writer.u16(message.answers.length);
  writer.u16(message.authorities.length);
  writer.u16(message.additionals.length);
  for (const question of message.questions) {
    writer.name(question.name);
    writer.u16(question.type);
    writer.u16(dnsClassInternet | (question.unicastResponse ? mdnsClassTopBit : 0));
  }
  for (const record of [...message.answers, ...message.authorities, ...message.additionals]) writeRecord(writer, record);
  return writer.toBuffer();
}

// -----------------------------------------------------------------------------------------------
// Decoding

class MessageReader {
  position = 0;

  constructor(readonly data: Buffer) {}

  need(count: number, at = this.position): void {
    if (at + count > this.data.length) throw new DnsFormatError(`truncated at byte ${at}`);
  }

  u8(): number {
    this.need(1);
    return this.data[this.position++]!;
  }

  u16(): number {
    this.need(2);
    const value = this.data.readUInt16BE(this.position);
    this.position += 2;
    return value;
  }

  u32(): number {
    this.need(4);
    const value = this.data.readUInt32BE(this.position);
    this.position += 4;
    return value;
  }

  bytes(count: number): Buffer {
    this.need(count);
    const value = this.data.subarray(this.position, this.position + count);
    this.position += count;
    return value;
  }

  /** Reads a possibly compressed name at the current position and moves past it. */
  name(): string {
    const labels: string[] = [];
    let at = this.position;
    let resumeAt: number | undefined;
    let jumps = 0;
    let length = 0;
    for (;;) {
      this.need(1, at);
      const lengthByte = this.data[at]!;
      if ((lengthByte & compressionPointer) === compressionPointer) {
        this.need(2, at);
        const target = this.data.readUInt16BE(at) & 0x3fff;
        // Only backward pointers: forward ones are how loops are built.
        if (target >= at) throw new DnsFormatError(`compression pointer at ${at} does not point backwards`);
        if (++jumps > maxPointerJumps) throw new DnsFormatError('too many compression pointers');
        resumeAt ??= at + 2;
        at = target;
        continue;
      }
      if ((lengthByte & compressionPointer) !== 0) throw new DnsFormatError(`reserved label type at ${at}`);
      if (lengthByte === 0) {
        at += 1;
        break;
      }
      this.need(1 + lengthByte, at);
      labels.push(this.data.toString('utf8', at + 1, at + 1 + lengthByte));
      length += lengthByte + 1;
      if (length > maxNameLength) throw new DnsFormatError('name longer than 255 bytes');
      at += 1 + lengthByte;
    }
    this.position = resumeAt ?? at;
    return labels.join('.');
  }
}

function readRecord(reader: MessageReader): DnsResourceRecord {
  const name = reader.name();
  const type = reader.u16();
  const recordClass = reader.u16();
  const ttl = reader.u32();
  const dataLength = reader.u16();
  reader.need(dataLength);
  const end = reader.position + dataLength;
  const base = { name, ttl, ...((recordClass & mdnsClassTopBit) !== 0 ? { cacheFlush: true } : {}) };
  let record: DnsResourceRecord;
  switch (type) {
    case dnsRecordTypes.A:
      if (dataLength !== 4) throw new DnsFormatError(`A record of ${dataLength} bytes`);
      record = { ...base, type: 'A', address: [...reader.bytes(4)].join('.') };
      break;
    case dnsRecordTypes.AAAA: {
      if (dataLength !== 16) throw new DnsFormatError(`AAAA record of ${dataLength} bytes`);
      const data = reader.bytes(16);
      const groups = Array.from({ length: 8 }, (_, index) => data.readUInt16BE(index * 2).toString(16));
      record = { ...base, type: 'AAAA', address: compressIpv6(groups) };
      break;
    }
    case dnsRecordTypes.PTR:
      record = { ...base, type: 'PTR', target: reader.name() };
      break;
    case dnsRecordTypes.SRV:
      record = { ...base, type: 'SRV', priority: reader.u16(), weight: reader.u16(), port: reader.u16(), target: reader.name() };
      break;
    case dnsRecordTypes.TXT: {
      const strings: Buffer[] = [];
      while (reader.position < end) {
        const length = reader.u8();
        if (reader.position + length > end) throw new DnsFormatError('TXT string runs past its record');
        strings.push(Buffer.from(reader.bytes(length)));
      }
      record = { ...base, type: 'TXT', strings };
      break;
    }
    default:
      record = { ...base, type: 'OTHER', code: type, data: Buffer.from(reader.bytes(dataLength)) };
  }
  if (reader.position !== end) throw new DnsFormatError(`record data of ${name} does not match its length`);
  return record;
}

function compressIpv6(groups: string[]): string {
  // RFC 5952: the longest run (of two or more) of zero groups becomes '::'.
  let bestStart = -1;
  let bestLength = 0;
  for (let start = 0; start < 8; ) {
    if (groups[start] !== '0') {
      start += 1;
      continue;
    }
    let end = start;
    while (end < 8 && groups[end] === '0') end += 1;
    if (end - start > bestLength && end - start >= 2) [bestStart, bestLength] = [start, end - start];
    start = end;
  }
  if (bestStart < 0) return groups.join(':');
  return `${groups.slice(0, bestStart).join(':')}::${groups.slice(bestStart + bestLength).join(':')}`;
}

export function decodeDnsMessage(data: Buffer): DnsMessage {
  if (data.length < headerLength) throw new DnsFormatError(`message of ${data.length} bytes is shorter than a header`);
  const reader = new MessageReader(data);
  const id = reader.u16();
  const flags = reader.u16();
  const counts = [reader.u16(), reader.u16(), reader.u16(), reader.u16()];
  if (counts.some((count) => count > maxRecordsPerSection)) throw new DnsFormatError('implausible record count');
  const questions: DnsQuestion[] = [];
  for (let index = 0; index < counts[0]!; index += 1) {
    const name = reader.name();
    const type = reader.u16();
    const questionClass = reader.u16();
    questions.push({ name, type, ...((questionClass & mdnsClassTopBit) !== 0 ? { unicastResponse: true } : {}) });
  }
  const section = (count: number) => Array.from({ length: count }, () => readRecord(reader));
  const answers = section(counts[1]!);
  const authorities = section(counts[2]!);
  const additionals = section(counts[3]!);
  return {
    id,
    response: (flags & flagResponse) !== 0,
    ...((flags & flagAuthoritative) !== 0 ? { authoritative: true } : {}),
    questions,
    answers,
    authorities,
    additionals,
  };
}

/** DNS-SD TXT strings as key/value pairs (RFC 6763 §6.3): keys lower-cased, first one wins, `key` alone is `true`. */
export function txtAttributes(strings: Buffer[]): Record<string, string | true> {
  const attributes = new Map<string, string | true>();
  for (const text of strings) {
    const value = text.toString('utf8');
    if (!value || value.startsWith('=')) continue;
    const separator = value.indexOf('=');
    const key = (separator < 0 ? value : value.slice(0, separator)).toLowerCase();
    if (attributes.has(key)) continue;
    attributes.set(key, separator < 0 ? true : value.slice(separator + 1));
  }
  // fromEntries defines own properties, so a key such as `__proto__` stays a plain key.
  return Object.fromEntries(attributes);
}
