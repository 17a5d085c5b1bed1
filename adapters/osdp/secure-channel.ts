/**
 * OSDP v2.2 Secure Channel (Annex D): session keys from the SCBK and the CP's random, the
 * client/server cryptograms that authenticate each side, MAC chaining over every message and
 * AES-128-CBC data encryption. The adapter (the CP) and the reader simulator (the PD) share this
 * code, so its tests check it against node:crypto computations written out separately.
 */
import { createCipheriv, createDecipheriv, timingSafeEqual } from 'node:crypto';

const blockSize = 16;

/** SCBK-D: the well-known key a PD accepts only while in install mode. */
export const defaultScbk: Uint8Array = Uint8Array.from({ length: 16 }, (_, i) => 0x30 + i);

/** Which base key a CHLNG asks the PD to use (the data byte of its SCS_11 block). */
export const scbkKinds = { defaultKey: 0x00, deviceKey: 0x01 } as const;
export type ScbkKind = (typeof scbkKinds)[keyof typeof scbkKinds];

export interface SessionKeys {
  encryption: Buffer;
  mac1: Buffer;
  mac2: Buffer;
}

function aesBlock(key: Uint8Array, block: Uint8Array): Buffer {
  const cipher = createCipheriv('aes-128-ecb', key, null).setAutoPadding(false);
  return Buffer.concat([cipher.update(block), cipher.final()]);
}

function aesCbc(key: Uint8Array, iv: Uint8Array, data: Uint8Array, direction: 'encrypt' | 'decrypt'): Buffer {
  const cipher = (direction === 'encrypt' ? createCipheriv : createDecipheriv)('aes-128-cbc', key, iv).setAutoPadding(false);
  return Buffer.concat([cipher.update(data), cipher.final()]);
}

function complement(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.map((byte) => ~byte & 0xff));
}

function requireLength(name: string, bytes: Uint8Array, length: number) {
  if (bytes.length !== length) throw new RangeError(`${name} must be ${length} bytes, not ${bytes.length}`);
}

/** S-ENC, S-MAC1, S-MAC2 = AES-128(SCBK, 01 ‖ 82/01/02 ‖ RND.A[0..5] ‖ 00×8). */
export function deriveSessionKeys(scbk: Uint8Array, challenge: Uint8Array): SessionKeys {
  requireLength('SCBK', scbk, 16);
  requireLength('RND.A', challenge, 8);
  const derive = (purpose: number) => aesBlock(scbk, Buffer.concat([Buffer.from([0x01, purpose]), challenge.subarray(0, 6), Buffer.alloc(8)]));
  return { encryption: derive(0x82), mac1: derive(0x01), mac2: derive(0x02) };
}

/** What the PD proves it holds the SCBK with: AES(S-ENC, RND.A ‖ RND.B). */
export function clientCryptogram(keys: SessionKeys, challenge: Uint8Array, pdRandom: Uint8Array): Buffer {
  return aesBlock(keys.encryption, Buffer.concat([challenge, pdRandom]));
}

/** What the CP proves it holds the SCBK with: AES(S-ENC, RND.B ‖ RND.A). */
export function serverCryptogram(keys: SessionKeys, challenge: Uint8Array, pdRandom: Uint8Array): Buffer {
  return aesBlock(keys.encryption, Buffer.concat([pdRandom, challenge]));
}

/** R-MAC-I = AES(S-MAC2, AES(S-MAC1, server cryptogram)): the first link of the MAC chain. */
export function initialReplyMac(keys: SessionKeys, serverCryptogramBytes: Uint8Array): Buffer {
  return aesBlock(keys.mac2, aesBlock(keys.mac1, serverCryptogramBytes));
}

/** Constant-time equality for cryptograms and MACs. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * AES-128 CBC-MAC as OSDP defines it: the message is padded with 0x80 then zeros when it is not a
 * multiple of 16 bytes; all blocks but the last are chained under S-MAC1 and the last one under
 * S-MAC2, starting from the previous MAC of the other direction.
 */
export function messageMac(keys: SessionKeys, iv: Uint8Array, message: Uint8Array): Buffer {
  let padded = Buffer.from(message);
  if (padded.length === 0 || padded.length % blockSize !== 0) {
    const padding = Buffer.alloc(blockSize - (padded.length % blockSize));
    padding[0] = 0x80;
    padded = Buffer.concat([padded, padding]);
  }
  const leading = padded.subarray(0, padded.length - blockSize);
  const lastIv = leading.length > 0 ? aesCbc(keys.mac1, iv, leading, 'encrypt').subarray(-blockSize) : Buffer.from(iv);
  return aesCbc(keys.mac2, lastIv, padded.subarray(-blockSize), 'encrypt');
}

/** Data is always padded (0x80 then zeros) so the receiver can find its end. */
function padData(data: Uint8Array): Buffer {
  const padding = Buffer.alloc(blockSize - (data.length % blockSize));
  padding[0] = 0x80;
  return Buffer.concat([data, padding]);
}

function unpadData(padded: Buffer): Buffer | undefined {
  let end = padded.length - 1;
  while (end >= 0 && padded[end] === 0x00) end--;
  return end >= 0 && padded[end] === 0x80 ? padded.subarray(0, end) : undefined;
}

export type Direction = 'command' | 'reply';

/**
 * One established session, kept by both ends. Each message's MAC starts from the last MAC of the
 * other direction (commands from the last R-MAC, replies from the C-MAC of the command they answer),
 * so a replayed, dropped or reordered message breaks the chain; encrypted data uses the complement
 * of that same MAC as its IV.
 */
export class SecureChannelSession {
  private commandMacValue: Buffer = Buffer.alloc(blockSize);
  private replyMacValue: Buffer;

  constructor(
    private readonly keys: SessionKeys,
    initialMac: Uint8Array,
  ) {
    this.replyMacValue = Buffer.from(initialMac);
  }

  /** Handshake from the CP's side once CCRYPT arrived: the keys and whether the PD's cryptogram verifies. */
  static fromClientCryptogram(scbk: Uint8Array, challenge: Uint8Array, pdRandom: Uint8Array, cryptogram: Uint8Array) {
    const keys = deriveSessionKeys(scbk, challenge);
    return { keys, verified: sameBytes(clientCryptogram(keys, challenge, pdRandom), cryptogram) };
  }

  private chainIv(direction: Direction): Buffer {
    return direction === 'command' ? this.replyMacValue : this.commandMacValue;
  }

  /** MAC for an outgoing message; the full 16 bytes become the next link of the chain. */
  sign(direction: Direction, message: Uint8Array): Buffer {
    const mac = messageMac(this.keys, this.chainIv(direction), message);
    this.remember(direction, mac);
    return mac.subarray(0, 4);
  }

  /** Checks the 4-byte MAC of an incoming message; only a verified message advances the chain. */
  verify(direction: Direction, message: Uint8Array, mac: Uint8Array | undefined): boolean {
    if (!mac || mac.length !== 4) return false;
    const expected = messageMac(this.keys, this.chainIv(direction), message);
    if (!sameBytes(expected.subarray(0, 4), mac)) return false;
    this.remember(direction, expected);
    return true;
  }

  /** Encrypts data about to be sent in `direction` (call before `sign`: the IV is the other side's last MAC). */
  encrypt(direction: Direction, data: Uint8Array): Buffer {
    return aesCbc(this.keys.encryption, complement(this.chainIv(direction)), padData(data), 'encrypt');
  }

  /** Decrypts data received in `direction` (call before `verify` advances the chain); undefined if malformed. */
  decrypt(direction: Direction, data: Uint8Array): Buffer | undefined {
    if (data.length === 0 || data.length % blockSize !== 0) return undefined;
    return unpadData(aesCbc(this.keys.encryption, complement(this.chainIv(direction)), data, 'decrypt'));
  }

  private remember(direction: Direction, mac: Buffer) {
    if (direction === 'command') this.commandMacValue = mac;
    else this.replyMacValue = mac;
  }
}
