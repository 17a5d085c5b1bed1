/**
 * OSDP v2.2 packet codec: building and parsing the bytes on the RS-485 line, and a reader that
 * finds packets in a byte stream that may split, join or garble them (a shared bus sees noise,
 * partial writes and other devices' traffic).
 *
 * Layout: SOM 0x53, address (bit 0x80 set on replies), length LSB/MSB (whole packet), control
 * (bits 0-1 sequence, 0x04 CRC-16 else checksum, 0x08 security block present), [security block:
 * length, type, data], command/reply code, data, [4-byte MAC], CRC-16 LE or 1-byte checksum.
 */

export const startOfMessage = 0x53;
export const broadcastAddress = 0x7f;
const replyFlag = 0x80;
const controlSequenceMask = 0x03;
const controlCrc = 0x04;
const controlSecurityBlock = 0x08;
const headerLength = 5;
export const macLength = 4;
/** Larger than any packet this adapter or a reader's receive buffer deals in; longer lengths are noise. */
export const maxPacketLength = 1440;

export type Sequence = 0 | 1 | 2 | 3;
export type IntegrityCheck = 'crc16' | 'checksum';

/** Security block types (SCS_xx in the specification). */
export const securityBlockTypes = {
  /** CP→PD challenge (CHLNG); data byte says which key: 0 = SCBK-D, 1 = SCBK. */
  challenge: 0x11,
  /** PD→CP client cryptogram (CCRYPT). */
  clientCryptogram: 0x12,
  /** CP→PD server cryptogram (SCRYPT). */
  serverCryptogram: 0x13,
  /** PD→CP initial R-MAC (RMAC_I); data byte 0x01 = server cryptogram accepted. */
  initialReplyMac: 0x14,
  /** CP→PD, MAC, data in clear (used for commands without data). */
  commandMac: 0x15,
  /** PD→CP, MAC, data in clear. */
  replyMac: 0x16,
  /** CP→PD, MAC, data encrypted. */
  commandMacEncrypted: 0x17,
  /** PD→CP, MAC, data encrypted. */
  replyMacEncrypted: 0x18,
} as const;

export interface SecurityBlock {
  type: number;
  data: Uint8Array;
}

export interface OsdpPacket {
  /** PD address 0x00–0x7E, 0x7F broadcast (without the reply bit). */
  address: number;
  reply: boolean;
  sequence: Sequence;
  integrity: IntegrityCheck;
  securityBlock?: SecurityBlock;
  code: number;
  data: Uint8Array;
  /** The first 4 bytes of the message's MAC, for SCS_15–SCS_18 packets. */
  mac?: Uint8Array;
}

export interface DecodedPacket extends OsdpPacket {
  /** SOM up to the end of the data: what the MAC covers. */
  authenticated: Uint8Array;
}

/** Whether packets of this security block type carry a MAC (the ones sent inside an established channel). */
export function carriesMac(securityBlockType: number | undefined): boolean {
  return securityBlockType !== undefined && securityBlockType >= securityBlockTypes.commandMac && securityBlockType <= securityBlockTypes.replyMacEncrypted;
}

/** CRC-16/AUG-CCITT as OSDP uses it: polynomial 0x1021, initial value 0x1D0F, no reflection. */
export function crc16(bytes: Uint8Array): number {
  let crc = 0x1d0f;
  for (const byte of bytes) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** Two's complement of the byte sum: adding it to all the other bytes gives 0 mod 256. */
export function checksum(bytes: Uint8Array): number {
  let sum = 0;
  for (const byte of bytes) sum = (sum + byte) & 0xff;
  return (0x100 - sum) & 0xff;
}

export interface EncodeOptions {
  /** Computes the MAC over SOM..data (length already final); required for SCS_15–SCS_18 packets. */
  mac?: (authenticated: Uint8Array) => Uint8Array;
}

export function encodePacket(packet: Omit<OsdpPacket, 'mac'>, options: EncodeOptions = {}): Buffer {
  if (!Number.isInteger(packet.address) || packet.address < 0 || packet.address > broadcastAddress) {
    throw new RangeError(`OSDP address ${packet.address} is outside 0x00–0x7F`);
  }
  const withMac = carriesMac(packet.securityBlock?.type);
  if (withMac && !options.mac) throw new Error(`security block 0x${packet.securityBlock!.type.toString(16)} needs a MAC`);
  const block = packet.securityBlock ? Buffer.from([packet.securityBlock.data.length + 2, packet.securityBlock.type, ...packet.securityBlock.data]) : Buffer.alloc(0);
  const trailer = packet.integrity === 'crc16' ? 2 : 1;
  const length = headerLength + block.length + 1 + packet.data.length + (withMac ? macLength : 0) + trailer;
  if (length > maxPacketLength) throw new RangeError(`OSDP packet of ${length} bytes exceeds ${maxPacketLength}`);
  const control =
    (packet.sequence & controlSequenceMask) | (packet.integrity === 'crc16' ? controlCrc : 0) | (packet.securityBlock ? controlSecurityBlock : 0);
  const authenticated = Buffer.concat([
    Buffer.from([startOfMessage, packet.address | (packet.reply ? replyFlag : 0), length & 0xff, length >> 8, control]),
    block,
    Buffer.from([packet.code]),
    packet.data,
  ]);
  const mac = withMac ? Buffer.from(options.mac!(authenticated)).subarray(0, macLength) : Buffer.alloc(0);
  const body = Buffer.concat([authenticated, mac]);
  if (packet.integrity === 'checksum') return Buffer.concat([body, Buffer.from([checksum(body)])]);
  const crc = crc16(body);
  return Buffer.concat([body, Buffer.from([crc & 0xff, crc >> 8])]);
}

/** Why a complete-looking packet was refused; the reader skips it and keeps looking. */
export interface RejectedPacket {
  reason: 'crc' | 'checksum' | 'structure';
  detail: string;
}

/**
 * Parses one complete packet (exactly `bytes`); undefined plus a reason when it fails its check
 * character or its internal lengths do not add up.
 */
export function decodePacket(bytes: Uint8Array): { packet: DecodedPacket } | { rejected: RejectedPacket } {
  const buffer = Buffer.from(bytes);
  const structure = (detail: string) => ({ rejected: { reason: 'structure' as const, detail } });
  if (buffer.length < headerLength + 2 || buffer[0] !== startOfMessage) return structure('not an OSDP packet');
  const length = buffer.readUInt16LE(2);
  if (length !== buffer.length) return structure(`length field says ${length}, packet has ${buffer.length} bytes`);
  const control = buffer[4];
  const integrity: IntegrityCheck = control & controlCrc ? 'crc16' : 'checksum';
  const trailer = integrity === 'crc16' ? 2 : 1;
  const body = buffer.subarray(0, length - trailer);
  if (integrity === 'crc16') {
    const expected = crc16(body);
    const actual = buffer.readUInt16LE(length - 2);
    if (expected !== actual) return { rejected: { reason: 'crc', detail: `CRC 0x${actual.toString(16)} should be 0x${expected.toString(16)}` } };
  } else if (checksum(body) !== buffer[length - 1]) {
    return { rejected: { reason: 'checksum', detail: 'checksum does not match' } };
  }
  let offset = headerLength;
  let securityBlock: SecurityBlock | undefined;
  if (control & controlSecurityBlock) {
    const blockLength = body[offset];
    if (blockLength === undefined || blockLength < 2 || offset + blockLength >= body.length) return structure('security block overruns the packet');
    securityBlock = { type: body[offset + 1], data: new Uint8Array(body.subarray(offset + 2, offset + blockLength)) };
    offset += blockLength;
  }
  const withMac = carriesMac(securityBlock?.type);
  const dataEnd = body.length - (withMac ? macLength : 0);
  if (offset >= dataEnd) return structure('packet has no command or reply code');
  return {
    packet: {
      address: buffer[1] & ~replyFlag,
      reply: (buffer[1] & replyFlag) !== 0,
      sequence: (control & controlSequenceMask) as Sequence,
      integrity,
      ...(securityBlock ? { securityBlock } : {}),
      code: body[offset],
      data: new Uint8Array(body.subarray(offset + 1, dataEnd)),
      ...(withMac ? { mac: new Uint8Array(body.subarray(dataEnd)) } : {}),
      authenticated: new Uint8Array(body.subarray(0, dataEnd)),
    },
  };
}

/**
 * Finds packets in a byte stream. Bytes before a SOM are noise (including the optional 0xFF mark);
 * a SOM whose length field is implausible, or whose packet fails its check, is taken for noise too
 * and the search resumes at the next byte, so a real packet right behind garbage is still found.
 */
export class PacketReader {
  private pending = Buffer.alloc(0);
  private readonly rejections: RejectedPacket[] = [];

  /** Adds received bytes; returns every packet they complete. */
  push(chunk: Uint8Array): DecodedPacket[] {
    this.pending = Buffer.concat([this.pending, chunk]);
    const packets: DecodedPacket[] = [];
    for (;;) {
      const start = this.pending.indexOf(startOfMessage);
      if (start < 0) {
        this.pending = Buffer.alloc(0);
        break;
      }
      if (start > 0) this.pending = this.pending.subarray(start);
      if (this.pending.length < 4) break;
      const length = this.pending.readUInt16LE(2);
      if (length < headerLength + 2 || length > maxPacketLength) {
        this.pending = this.pending.subarray(1);
        continue;
      }
      if (this.pending.length < length) break;
      const result = decodePacket(this.pending.subarray(0, length));
      if ('packet' in result) {
        packets.push(result.packet);
        this.pending = this.pending.subarray(length);
      } else {
        this.rejections.push(result.rejected);
        this.pending = this.pending.subarray(1);
      }
    }
    return packets;
  }

  /** Bytes of a packet that has started but not finished: a truncated packet if nothing more comes. */
  get incompleteBytes(): number {
    return this.pending.length;
  }

  /** Packets refused since the last call (for diagnostics: a corrupted reply versus silence). */
  takeRejections(): RejectedPacket[] {
    return this.rejections.splice(0);
  }
}
