import { describe, expect, it } from 'vitest';
import { checksum, crc16, decodePacket, encodePacket, PacketReader, securityBlockTypes } from './frame';

const hex = (text: string) => Buffer.from(text.replace(/\s+/g, ''), 'hex');
const poll = hex('53 65 08 00 04 60 60 90');
const identify = hex('53 65 09 00 04 61 00 d9 7a');

describe('OSDP packet codec', () => {
  it('encodes POLL and ID to address 0x65 exactly as the golden vectors', () => {
    expect(encodePacket({ address: 0x65, reply: false, sequence: 0, integrity: 'crc16', code: 0x60, data: new Uint8Array() })).toEqual(poll);
    expect(encodePacket({ address: 0x65, reply: false, sequence: 0, integrity: 'crc16', code: 0x61, data: Uint8Array.of(0) })).toEqual(identify);
  });

  it('computes CRC-16 with polynomial 0x1021 and initial value 0x1D0F (check value 0xE5CC)', () => {
    expect(crc16(Buffer.from('123456789'))).toBe(0xe5cc);
    expect(crc16(poll.subarray(0, 6))).toBe(0x9060);
  });

  it('appends a checksum that makes the byte sum zero when CRC is not asked for', () => {
    const packet = encodePacket({ address: 0x65, reply: false, sequence: 0, integrity: 'checksum', code: 0x60, data: new Uint8Array() });
    expect(packet).toEqual(hex('53 65 07 00 00 60 e1'));
    expect(checksum(packet)).toBe(0);
    const decoded = decodePacket(packet);
    expect('packet' in decoded && decoded.packet.integrity).toBe('checksum');
  });

  it('decodes the golden ID vector into address, sequence, code and data', () => {
    const result = decodePacket(identify);
    if (!('packet' in result)) throw new Error(result.rejected.detail);
    expect(result.packet).toMatchObject({ address: 0x65, reply: false, sequence: 0, integrity: 'crc16', code: 0x61 });
    expect([...result.packet.data]).toEqual([0]);
  });

  it('sets the reply bit and sequence in the control byte and reads them back', () => {
    const packet = encodePacket({ address: 0x22, reply: true, sequence: 3, integrity: 'crc16', code: 0x40, data: new Uint8Array() });
    expect(packet[1]).toBe(0xa2);
    expect(packet[4]).toBe(0x07);
    const result = decodePacket(packet);
    expect('packet' in result && result.packet).toMatchObject({ address: 0x22, reply: true, sequence: 3 });
  });

  it('carries a security block and a 4-byte MAC computed over SOM..data with the final length', () => {
    let covered: Uint8Array | undefined;
    const packet = encodePacket(
      { address: 0x01, reply: false, sequence: 1, integrity: 'crc16', securityBlock: { type: securityBlockTypes.commandMac, data: new Uint8Array() }, code: 0x60, data: new Uint8Array() },
      { mac: (authenticated) => ((covered = authenticated), Buffer.alloc(16, 0xab)) },
    );
    expect(packet.readUInt16LE(2)).toBe(packet.length);
    expect(packet.length).toBe(5 + 2 + 1 + 4 + 2);
    expect(packet[4] & 0x08).toBe(0x08);
    const result = decodePacket(packet);
    if (!('packet' in result)) throw new Error(result.rejected.detail);
    expect(result.packet.securityBlock?.type).toBe(securityBlockTypes.commandMac);
    expect([...result.packet.mac!]).toEqual([0xab, 0xab, 0xab, 0xab]);
    expect(Buffer.from(result.packet.authenticated)).toEqual(Buffer.from(covered!));
  });

  it('rejects a packet whose CRC or length field does not match', () => {
    const corrupted = Buffer.from(poll);
    corrupted[7] ^= 0x01;
    expect(decodePacket(corrupted)).toMatchObject({ rejected: { reason: 'crc' } });
    expect(decodePacket(poll.subarray(0, 7))).toMatchObject({ rejected: { reason: 'structure' } });
  });
});

describe('OSDP packet reader', () => {
  it('finds packets split into single bytes and packets joined in one read', () => {
    const reader = new PacketReader();
    const found = [...poll].flatMap((byte) => reader.push(Uint8Array.of(byte)));
    expect(found.map((p) => p.code)).toEqual([0x60]);
    expect(reader.push(Buffer.concat([poll, identify])).map((p) => p.code)).toEqual([0x60, 0x61]);
  });

  it('resynchronises after noise, the 0xFF mark and a SOM with an impossible length', () => {
    const reader = new PacketReader();
    const noise = hex('00 17 ff 53 ff ff 12 ff');
    expect(reader.push(Buffer.concat([noise, poll])).map((p) => p.code)).toEqual([0x60]);
  });

  it('skips a packet with a bad CRC, reports it and still finds the packet behind it', () => {
    const reader = new PacketReader();
    const corrupted = Buffer.from(identify);
    corrupted[8] ^= 0xff;
    expect(reader.push(Buffer.concat([corrupted, poll])).map((p) => p.code)).toEqual([0x60]);
    expect(reader.takeRejections()).toMatchObject([{ reason: 'crc' }]);
  });

  it('holds a truncated packet as incomplete instead of inventing one', () => {
    const reader = new PacketReader();
    expect(reader.push(identify.subarray(0, 6))).toEqual([]);
    expect(reader.incompleteBytes).toBe(6);
    expect(reader.push(identify.subarray(6)).map((p) => p.code)).toEqual([0x61]);
    expect(reader.incompleteBytes).toBe(0);
  });
});
