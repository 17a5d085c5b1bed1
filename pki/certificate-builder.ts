/**
 * Assembles and signs X.509 v3 certificates. pkijs' own sign() wants a WebCrypto private key, but
 * CA keys may live in an HSM, so the TBSCertificate is encoded here and signed through KeyCustody.
 */
import { createPublicKey, randomBytes, verify, type KeyObject } from 'node:crypto';
import * as asn1js from 'asn1js';
import {
  AlgorithmIdentifier,
  Certificate,
  PublicKeyInfo,
  Time,
  TimeType,
  type Extension,
  type RelativeDistinguishedNames,
} from 'pkijs';
import type { HashAlgorithm, KeyAlgorithm, KeyCustody } from '../custody/key-custody';
import { oids } from '../x509/oids';

export interface CertificateTemplate {
  serialNumber: bigint;
  issuer: RelativeDistinguishedNames;
  subject: RelativeDistinguishedNames;
  notBefore: Date;
  notAfter: Date;
  /** DER SubjectPublicKeyInfo of the key being certified. */
  subjectPublicKeySpki: Uint8Array;
  extensions: Extension[];
}

/** The issuing key, wherever custody keeps it. */
export interface CertificateSigner {
  custody: KeyCustody;
  location: string;
  algorithm: KeyAlgorithm;
  /** Used to check each signature before the certificate leaves the CA. */
  publicKeySpki: Uint8Array;
}

/** P-384 pairs with SHA-384 (RFC 5480 section 4); P-256 and RSA with SHA-256. */
export function signatureAlgorithmFor(keyAlgorithm: KeyAlgorithm): { hash: HashAlgorithm; identifier: AlgorithmIdentifier } {
  switch (keyAlgorithm) {
    case 'P-256':
      return { hash: 'SHA-256', identifier: new AlgorithmIdentifier({ algorithmId: oids.ecdsaWithSha256 }) };
    case 'P-384':
      return { hash: 'SHA-384', identifier: new AlgorithmIdentifier({ algorithmId: oids.ecdsaWithSha384 }) };
    case 'RSA-2048':
    case 'RSA-3072':
      // RSA signature algorithms carry an explicit NULL parameter (RFC 4055 section 5).
      return {
        hash: 'SHA-256',
        identifier: new AlgorithmIdentifier({ algorithmId: oids.sha256WithRsaEncryption, algorithmParams: new asn1js.Null() }),
      };
  }
}

/** Signs the template with the issuer's key; returns the certificate's DER. */
/** A certificate just signed: its DER, and the certificate that DER encodes, so nobody parses it again. */
export interface SignedCertificate {
  der: Uint8Array;
  certificate: Certificate;
}

export async function signCertificate(template: CertificateTemplate, signer: CertificateSigner): Promise<SignedCertificate> {
  const { hash, identifier } = signatureAlgorithmFor(signer.algorithm);
  const certificate = new Certificate({
    version: 2, // v3
    serialNumber: asn1js.Integer.fromBigInt(template.serialNumber),
    signature: identifier,
    issuer: template.issuer,
    notBefore: timeOf(template.notBefore),
    notAfter: timeOf(template.notAfter),
    subject: template.subject,
    subjectPublicKeyInfo: PublicKeyInfo.fromBER(template.subjectPublicKeySpki),
    extensions: template.extensions,
    signatureAlgorithm: identifier,
  });
  const tbs = new Uint8Array(certificate.encodeTBS().toBER());
  const signature = await signer.custody.sign(signer.location, hash, tbs);

  // A faulty signer (HSM glitch, wrong key behind a location) must not yield a broken certificate.
  const issuerKey = publicKeyOf(signer);
  if (!verify(hash === 'SHA-384' ? 'sha384' : 'sha256', tbs, { key: issuerKey, dsaEncoding: 'der' }, signature)) {
    throw new Error(`the signature made with ${signer.location} does not verify against its public key`);
  }

  certificate.tbsView = tbs;
  certificate.signatureValue = new asn1js.BitString({ valueHex: signature });
  return { der: new Uint8Array(certificate.toSchema().toBER()), certificate };
}

const issuerKeys = new WeakMap<Uint8Array, KeyObject>();

/** The signer's public key, read once per signer rather than once per signature. */
function publicKeyOf(signer: CertificateSigner): KeyObject {
  let key = issuerKeys.get(signer.publicKeySpki);
  if (!key) {
    key = createPublicKey({ key: Buffer.from(signer.publicKeySpki), format: 'der', type: 'spki' });
    issuerKeys.set(signer.publicKeySpki, key);
  }
  return key;
}

/**
 * A random positive serial of 128 bits. RFC 5280 allows up to 20 octets and asks for unpredictable
 * serials; 16 random octets fit with room for the sign octet DER adds when the top bit is set.
 */
export function randomSerialNumber(): bigint {
  let serial = 0n;
  while (serial === 0n) serial = BigInt(`0x${randomBytes(16).toString('hex')}`);
  return serial;
}

/** Certificate times have whole seconds; dropping the fraction keeps stored and encoded times equal. */
export function wholeSeconds(date: Date): Date {
  return new Date(Math.floor(date.getTime() / 1000) * 1000);
}

/** UTCTime through 2049 and GeneralizedTime from 2050, as RFC 5280 section 4.1.2.5 requires. */
function timeOf(date: Date): Time {
  const value = wholeSeconds(date);
  return new Time({ type: value.getUTCFullYear() < 2050 ? TimeType.UTCTime : TimeType.GeneralizedTime, value });
}

export function addDays(date: Date, days: number): Date {
  return new Date(date.getTime() + days * 24 * 60 * 60 * 1000);
}

export function earliest(...dates: Date[]): Date {
  return new Date(Math.min(...dates.map((date) => date.getTime())));
}
