/**
 * SNMPv3 User-based Security Model key arithmetic (RFC 3414, with the SHA-2 variants of RFC 7860):
 * turning a passphrase into a key localized to one agent's engine, and the KeyChange encoding the
 * agent expects when a user's key is replaced over the wire. Net-snmp does the first internally but
 * exposes neither, and the second not at all.
 */
import { createHash, randomBytes } from 'node:crypto';

/**
 * The hash behind an authentication protocol; also the hash KeyChange uses for that user. Devices
 * are provisioned with SHA-256 only; SHA-1 is here for the RFC 3414 test vectors.
 */
export type UsmHash = 'sha1' | 'sha256';

const digestLength: Record<UsmHash, number> = { sha1: 20, sha256: 32 };

/** RFC 3414 A.2: the passphrase is repeated to fill one megabyte (2^20 octets) before hashing. */
const passphraseStretchOctets = 1_048_576;

/** RFC 3414 section 11.2 asks agents to refuse shorter passphrases; so do we. */
export const minimumPassphraseLength = 8;

/** Ku: the engine-independent key of a passphrase (RFC 3414 A.2.1, hash generalised per RFC 7860). */
export function passphraseToKey(hash: UsmHash, passphrase: string): Buffer {
  const octets = Buffer.from(passphrase, 'utf8');
  if (octets.length === 0) throw new RangeError('a USM passphrase must not be empty');
  return createHash(hash).update(Buffer.alloc(passphraseStretchOctets, octets)).digest();
}

/** Kul = H(Ku || engineID || Ku): a key only valid at the agent with `engineId` (RFC 3414 A.2.2). */
export function localizeKey(hash: UsmHash, key: Buffer, engineId: Buffer): Buffer {
  return createHash(hash).update(key).update(engineId).update(key).digest();
}

export function localizedKeyFromPassphrase(hash: UsmHash, passphrase: string, engineId: Buffer): Buffer {
  return localizeKey(hash, passphraseToKey(hash, passphrase), engineId);
}

/**
 * Keys of a user of the SHA-256 / AES-128 kind: the authentication key is the full localized key,
 * the privacy key its first 16 octets (RFC 3826 section 1.2.1; what snmpusm and snmpd do too).
 */
export interface UsmLocalizedKeys {
  authKey: Buffer;
  privKey: Buffer;
}

export const aes128KeyLength = 16;

export function sha256Aes128Keys(authPassphrase: string, privPassphrase: string, engineId: Buffer): UsmLocalizedKeys {
  return {
    authKey: localizedKeyFromPassphrase('sha256', authPassphrase, engineId),
    privKey: localizedKeyFromPassphrase('sha256', privPassphrase, engineId).subarray(0, aes128KeyLength),
  };
}

/**
 * KeyChange (RFC 3414 section 5): random || delta, where delta XORs the new key with a digest
 * chain seeded by the old key and the random value. Only someone who knows the old key can derive
 * the new one from it, so the value may cross the wire in a set. `random` defaults to fresh octets
 * of the key's length; tests pass a fixed one.
 */
export function encodeKeyChange(hash: UsmHash, oldKey: Buffer, newKey: Buffer, random?: Buffer): Buffer {
  if (oldKey.length !== newKey.length) throw new RangeError('old and new USM keys must have the same length');
  const keyLength = newKey.length;
  const salt = random ?? randomBytes(keyLength);
  if (salt.length !== keyLength) throw new RangeError('the KeyChange random value must be as long as the key');
  const delta = Buffer.alloc(keyLength);
  keyChangeDigests(hash, oldKey, salt, keyLength, (digest, offset) => {
    for (let i = 0; i < digest.length && offset + i < keyLength; i += 1) delta[offset + i] = digest[i] ^ newKey[offset + i];
  });
  return Buffer.concat([salt, delta]);
}

/** What the agent does with a KeyChange value (RFC 3414 section 5, receiving side). */
export function decodeKeyChange(hash: UsmHash, oldKey: Buffer, keyChange: Buffer): Buffer {
  const keyLength = oldKey.length;
  if (keyChange.length !== 2 * keyLength) throw new RangeError('a KeyChange value is twice as long as the key');
  const salt = keyChange.subarray(0, keyLength);
  const delta = keyChange.subarray(keyLength);
  const newKey = Buffer.alloc(keyLength);
  keyChangeDigests(hash, oldKey, salt, keyLength, (digest, offset) => {
    for (let i = 0; i < digest.length && offset + i < keyLength; i += 1) newKey[offset + i] = digest[i] ^ delta[offset + i];
  });
  return newKey;
}

/**
 * The digest chain both directions share: temp = oldKey; then, for each digest-sized slice of the
 * key, temp = H(temp || random). The last slice takes only as many octets as remain.
 */
function keyChangeDigests(
  hash: UsmHash,
  oldKey: Buffer,
  random: Buffer,
  keyLength: number,
  apply: (digest: Buffer, offset: number) => void,
): void {
  const slices = Math.ceil(keyLength / digestLength[hash]);
  let temp = oldKey;
  for (let slice = 0; slice < slices; slice += 1) {
    temp = createHash(hash).update(temp).update(random).digest();
    apply(temp, slice * digestLength[hash]);
  }
}
