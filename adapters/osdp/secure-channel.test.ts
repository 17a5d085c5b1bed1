import { createCipheriv } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  clientCryptogram,
  defaultScbk,
  deriveSessionKeys,
  initialReplyMac,
  messageMac,
  SecureChannelSession,
  serverCryptogram,
} from './secure-channel';

// Written out here with node:crypto alone, independently of the module under test.
const hex = (text: string) => Buffer.from(text.replace(/\s+/g, ''), 'hex');
function aes(key: Buffer, block: Buffer): Buffer {
  const cipher = createCipheriv('aes-128-ecb', key, null).setAutoPadding(false);
  return Buffer.concat([cipher.update(block), cipher.final()]);
}
function cbc(key: Buffer, iv: Buffer, data: Buffer): Buffer {
  const cipher = createCipheriv('aes-128-cbc', key, iv).setAutoPadding(false);
  return Buffer.concat([cipher.update(data), cipher.final()]);
}
const xor = (a: Buffer, b: Buffer) => Buffer.from(a.map((byte, i) => byte ^ b[i]));

const scbkD = hex('303132333435363738393a3b3c3d3e3f');
const rndA = hex('b0 b1 b2 b3 b4 b5 b6 b7');
const rndB = hex('a0 a1 a2 a3 a4 a5 a6 a7');
const expectedKeys = {
  encryption: aes(scbkD, hex('01 82 b0 b1 b2 b3 b4 b5 0000000000000000')),
  mac1: aes(scbkD, hex('01 01 b0 b1 b2 b3 b4 b5 0000000000000000')),
  mac2: aes(scbkD, hex('01 02 b0 b1 b2 b3 b4 b5 0000000000000000')),
};

describe('OSDP secure channel', () => {
  it('uses 0x30..0x3F as SCBK-D', () => {
    expect(Buffer.from(defaultScbk)).toEqual(scbkD);
  });

  it('derives S-ENC, S-MAC1 and S-MAC2 from the SCBK and the first six bytes of RND.A', () => {
    const keys = deriveSessionKeys(scbkD, rndA);
    expect(keys).toEqual(expectedKeys);
    // Only RND.A[0..5] enters the derivation.
    expect(deriveSessionKeys(scbkD, hex('b0 b1 b2 b3 b4 b5 ff ff'))).toEqual(expectedKeys);
  });

  it('computes the client cryptogram over RND.A‖RND.B and the server cryptogram over RND.B‖RND.A', () => {
    const keys = deriveSessionKeys(scbkD, rndA);
    expect(clientCryptogram(keys, rndA, rndB)).toEqual(aes(expectedKeys.encryption, Buffer.concat([rndA, rndB])));
    expect(serverCryptogram(keys, rndA, rndB)).toEqual(aes(expectedKeys.encryption, Buffer.concat([rndB, rndA])));
  });

  it('derives the initial R-MAC by enciphering the server cryptogram under S-MAC1 then S-MAC2', () => {
    const keys = deriveSessionKeys(scbkD, rndA);
    const server = aes(expectedKeys.encryption, Buffer.concat([rndB, rndA]));
    expect(initialReplyMac(keys, server)).toEqual(aes(expectedKeys.mac2, aes(expectedKeys.mac1, server)));
  });

  it('MACs with S-MAC1 over all blocks but the last, S-MAC2 over the last, after 0x80 padding', () => {
    const keys = deriveSessionKeys(scbkD, rndA);
    const iv = hex('00112233445566778899aabbccddeeff');
    const message = Buffer.from(Array.from({ length: 20 }, (_, i) => i));
    const padded = Buffer.concat([message, hex('80'), Buffer.alloc(11)]);
    const first = aes(expectedKeys.mac1, xor(padded.subarray(0, 16), iv));
    const expected = aes(expectedKeys.mac2, xor(padded.subarray(16), first));
    expect(messageMac(keys, iv, message)).toEqual(expected);
  });

  it('MACs a single-block message with S-MAC2 alone and adds no padding to a whole block', () => {
    const keys = deriveSessionKeys(scbkD, rndA);
    const iv = Buffer.alloc(16, 0x11);
    const short = hex('53 65 0e 00 0d 02 15 60');
    expect(messageMac(keys, iv, short)).toEqual(aes(expectedKeys.mac2, xor(Buffer.concat([short, hex('80'), Buffer.alloc(7)]), iv)));
    const whole = Buffer.alloc(16, 0x42);
    expect(messageMac(keys, iv, whole)).toEqual(aes(expectedKeys.mac2, xor(whole, iv)));
  });

  it('chains MACs across both directions and refuses a replayed command', () => {
    const keys = deriveSessionKeys(scbkD, rndA);
    const rmacI = initialReplyMac(keys, serverCryptogram(keys, rndA, rndB));
    const controlPanel = new SecureChannelSession(keys, rmacI);
    const reader = new SecureChannelSession(keys, rmacI);
    const command = hex('53 65 0e 00 0d 02 15 60');
    const commandMac = controlPanel.sign('command', command);
    // The first command is chained from R-MAC-I.
    expect(commandMac).toEqual(messageMac(keys, rmacI, command).subarray(0, 4));
    expect(reader.verify('command', command, commandMac)).toBe(true);
    const reply = hex('53 e5 0e 00 0d 02 16 40');
    const replyMac = reader.sign('reply', reply);
    // A reply is chained from the full C-MAC of the command it answers.
    expect(replyMac).toEqual(messageMac(keys, messageMac(keys, rmacI, command), reply).subarray(0, 4));
    expect(controlPanel.verify('reply', reply, replyMac)).toBe(true);
    expect(reader.verify('command', command, commandMac)).toBe(false);
  });

  it('encrypts data with AES-CBC under S-ENC, IV = complement of the last MAC, 0x80-padded', () => {
    const keys = deriveSessionKeys(scbkD, rndA);
    const rmacI = initialReplyMac(keys, serverCryptogram(keys, rndA, rndB));
    const controlPanel = new SecureChannelSession(keys, rmacI);
    const reader = new SecureChannelSession(keys, rmacI);
    const keyset = Buffer.concat([hex('01 10'), Buffer.alloc(16, 0x5c)]);
    const encrypted = controlPanel.encrypt('command', keyset);
    const iv = Buffer.from(rmacI.map((byte) => ~byte & 0xff));
    expect(encrypted).toEqual(cbc(expectedKeys.encryption, iv, Buffer.concat([keyset, hex('80'), Buffer.alloc(13)])));
    expect(reader.decrypt('command', encrypted)).toEqual(keyset);
  });

  it('reports that a cryptogram made with another SCBK does not verify', () => {
    const otherKey = Buffer.alloc(16, 0x77);
    const proof = clientCryptogram(deriveSessionKeys(otherKey, rndA), rndA, rndB);
    expect(SecureChannelSession.fromClientCryptogram(scbkD, rndA, rndB, proof).verified).toBe(false);
    expect(SecureChannelSession.fromClientCryptogram(otherKey, rndA, rndB, proof).verified).toBe(true);
  });
});
