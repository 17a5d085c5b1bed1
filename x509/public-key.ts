/**
 * Public keys in the shapes X.509 and PKCS#11 exchange them: SubjectPublicKeyInfo DER, EC
 * parameters, ECDSA signature encodings.
 */
import { createHash, createPublicKey } from 'node:crypto';
import * as asn1js from 'asn1js';
import { AlgorithmIdentifier, PublicKeyInfo } from 'pkijs';
import { oids } from './oids';

/** The key pairs the CA makes and certifies, by curve or modulus size. */
export type KeyAlgorithm = 'P-256' | 'P-384' | 'RSA-2048' | 'RSA-3072';
export type HashAlgorithm = 'SHA-256' | 'SHA-384';

export type EcCurve = 'P-256' | 'P-384';

export const ecCurves: Record<EcCurve, { oid: string; fieldBytes: number; hash: HashAlgorithm }> = {
  'P-256': { oid: oids.secp256r1, fieldBytes: 32, hash: 'SHA-256' },
  'P-384': { oid: oids.secp384r1, fieldBytes: 48, hash: 'SHA-384' },
};

export type PublicKeyDescription =
  | { kind: 'ec'; curve: EcCurve }
  | { kind: 'rsa'; modulusBits: number }
  /** Anything else (Ed25519, other curves, DSA): described only so it can be named in an error. */
  | { kind: 'unsupported'; name: string };

/** Throws when the bytes are not a SubjectPublicKeyInfo node can load. */
export function describePublicKey(spki: Uint8Array): PublicKeyDescription {
  const key = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec') {
    if (details.namedCurve === 'prime256v1') return { kind: 'ec', curve: 'P-256' };
    if (details.namedCurve === 'secp384r1') return { kind: 'ec', curve: 'P-384' };
    return { kind: 'unsupported', name: `EC ${details.namedCurve ?? 'unknown curve'}` };
  }
  if (key.asymmetricKeyType === 'rsa') return { kind: 'rsa', modulusBits: details.modulusLength ?? 0 };
  return { kind: 'unsupported', name: key.asymmetricKeyType ?? 'unknown' };
}

/** The algorithm of a CA key, from its public key. */
export function keyAlgorithmOf(spki: Uint8Array): KeyAlgorithm {
  const description = describePublicKey(spki);
  if (description.kind === 'ec') return description.curve;
  if (description.kind === 'rsa' && description.modulusBits === 2048) return 'RSA-2048';
  if (description.kind === 'rsa' && description.modulusBits === 3072) return 'RSA-3072';
  throw new Error(`unsupported CA key: ${description.kind === 'rsa' ? `RSA-${description.modulusBits}` : description.kind}`);
}

/** DER of the named-curve OID, as PKCS#11 CKA_EC_PARAMS and X.509 algorithm parameters carry it. */
export function ecParameters(curve: EcCurve): Uint8Array {
  return new Uint8Array(new asn1js.ObjectIdentifier({ value: ecCurves[curve].oid }).toBER());
}

/** The curve named by DER EC parameters, or undefined for any other curve. */
export function curveOfEcParameters(parameters: Uint8Array): EcCurve | undefined {
  const parsed = asn1js.fromBER(parameters);
  if (parsed.offset === -1 || !(parsed.result instanceof asn1js.ObjectIdentifier)) return undefined;
  const oid = parsed.result.getValue();
  return (Object.keys(ecCurves) as EcCurve[]).find((curve) => ecCurves[curve].oid === oid);
}

/** SubjectPublicKeyInfo of an EC key from its uncompressed point (04 | X | Y). */
export function ecSubjectPublicKeyInfo(curve: EcCurve, point: Uint8Array): Uint8Array {
  const info = new PublicKeyInfo({
    algorithm: new AlgorithmIdentifier({
      algorithmId: oids.ecPublicKey,
      algorithmParams: new asn1js.ObjectIdentifier({ value: ecCurves[curve].oid }),
    }),
    subjectPublicKey: new asn1js.BitString({ valueHex: point }),
  });
  return checked(new Uint8Array(info.toSchema().toBER()));
}

/** SubjectPublicKeyInfo of an RSA key from its unsigned big-endian modulus and exponent. */
export function rsaSubjectPublicKeyInfo(modulus: Uint8Array, publicExponent: Uint8Array): Uint8Array {
  const rsaPublicKey = new asn1js.Sequence({
    value: [unsignedInteger(modulus), unsignedInteger(publicExponent)],
  });
  const info = new PublicKeyInfo({
    algorithm: new AlgorithmIdentifier({ algorithmId: oids.rsaEncryption, algorithmParams: new asn1js.Null() }),
    subjectPublicKey: new asn1js.BitString({ valueHex: rsaPublicKey.toBER() }),
  });
  return checked(new Uint8Array(info.toSchema().toBER()));
}

/** Lets node reject what it cannot load (e.g. a point not on the curve) before anyone signs with it. */
function checked(spki: Uint8Array): Uint8Array {
  createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
  return spki;
}

function unsignedInteger(bytes: Uint8Array): asn1js.Integer {
  return asn1js.Integer.fromBigInt(BigInt(`0x${Buffer.from(bytes).toString('hex') || '0'}`));
}

/** PKCS#11 ECDSA gives r | s; X.509 carries ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }. */
export function ecdsaSignatureToDer(raw: Uint8Array): Uint8Array {
  if (raw.length === 0 || raw.length % 2 !== 0) throw new Error(`ECDSA signature of odd length ${raw.length}`);
  const half = raw.length / 2;
  const sequence = new asn1js.Sequence({
    value: [unsignedInteger(raw.subarray(0, half)), unsignedInteger(raw.subarray(half))],
  });
  return new Uint8Array(sequence.toBER());
}

/** The key's subjectPublicKey bits, i.e. the part of the SPKI that key identifiers hash. */
export function subjectPublicKeyBits(spki: Uint8Array): Uint8Array {
  const info = PublicKeyInfo.fromBER(spki);
  return new Uint8Array(info.subjectPublicKey.valueBlock.valueHexView);
}

/** Key identifier per RFC 5280 section 4.2.1.2, method 1: SHA-1 of the subjectPublicKey bits. */
export function keyIdentifier(spki: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha1').update(subjectPublicKeyBits(spki)).digest());
}
