/**
 * PKCS#10 certificate signing requests (RFC 2986): parsed, their proof of possession verified and
 * their key held to policy before anything in them is believed. The CA still never copies names
 * from a CSR; it only checks that what was asked for is what the registry allows.
 */
import { createPublicKey, verify } from 'node:crypto';
import { CertificationRequest, Extensions, type Extension } from 'pkijs';
import { BadCsrError } from '../foundation/errors';
import { attributeValues, formatDistinguishedName, summariseName, type SubjectSummary } from '../x509/distinguished-name';
import { readSubjectAltNames, type SubjectAltNames } from '../x509/extensions';
import { oidName, oids } from '../x509/oids';
import { fromPem } from '../x509/pem';
import { describePublicKey, type EcCurve } from '../x509/public-key';

export interface CertificateSigningRequest {
  der: Uint8Array;
  subject: SubjectSummary;
  subjectDn: string;
  /** The single CN of the subject, if it has one. */
  commonName: string | undefined;
  /** DER SubjectPublicKeyInfo of the requester's key. */
  publicKeySpki: Uint8Array;
  publicKey: { kind: 'ec'; curve: EcCurve } | { kind: 'rsa'; modulusBits: number };
  /** Names asked for in the extensionRequest attribute; `other` lists kinds we never issue. */
  requestedSubjectAltNames: SubjectAltNames & { other: string[] };
}

export const minimumRsaBits = 2048;
/** Beyond this an RSA key only costs verification time; no device needs it. */
const maximumRsaBits = 8192;
/** A CSR is a few hundred bytes to a few kilobytes; anything near this is not one. */
const maximumPemLength = 64 * 1024;

const acceptedSignatureAlgorithms = new Map<string, 'sha256' | 'sha384' | 'sha512'>([
  [oids.ecdsaWithSha256, 'sha256'],
  [oids.ecdsaWithSha384, 'sha384'],
  [oids.ecdsaWithSha512, 'sha512'],
  [oids.sha256WithRsaEncryption, 'sha256'],
  [oids.sha384WithRsaEncryption, 'sha384'],
  [oids.sha512WithRsaEncryption, 'sha512'],
]);

/** Throws BadCsrError, with a reason a person can act on, for anything that must not be signed. */
export function parseCertificateSigningRequest(pem: string): CertificateSigningRequest {
  if (typeof pem !== 'string' || pem.length > maximumPemLength) {
    throw new BadCsrError('the CSR is missing or too large to be a certificate signing request');
  }
  const der = fromPem(pem, ['CERTIFICATE REQUEST', 'NEW CERTIFICATE REQUEST']);
  if (!der) throw new BadCsrError('the CSR is not a PEM "CERTIFICATE REQUEST" block');

  let request: CertificationRequest;
  try {
    request = CertificationRequest.fromBER(der);
  } catch (error) {
    throw new BadCsrError('the CSR is not a well-formed PKCS#10 certificate signing request', { cause: error });
  }

  const publicKeySpki = new Uint8Array(request.subjectPublicKeyInfo.toSchema().toBER());
  const publicKey = checkKeyPolicy(publicKeySpki);
  verifyProofOfPossession(request, publicKeySpki);

  const commonNames = attributeValues(request.subject, 'commonName');
  if (commonNames.length > 1) throw new BadCsrError('the CSR subject has more than one common name (CN)');

  return {
    der,
    subject: summariseName(request.subject),
    subjectDn: formatDistinguishedName(request.subject),
    commonName: commonNames[0],
    publicKeySpki,
    publicKey,
    requestedSubjectAltNames: requestedSubjectAltNames(request),
  };
}

function checkKeyPolicy(spki: Uint8Array): CertificateSigningRequest['publicKey'] {
  let description;
  try {
    description = describePublicKey(spki);
  } catch (error) {
    throw new BadCsrError('the CSR public key cannot be read', { cause: error });
  }
  if (description.kind === 'ec') return description;
  if (description.kind === 'rsa') {
    if (description.modulusBits < minimumRsaBits) {
      throw new BadCsrError(
        `the CSR key is RSA-${description.modulusBits}, which is too weak: RSA keys need at least ${minimumRsaBits} bits`,
      );
    }
    if (description.modulusBits > maximumRsaBits) {
      throw new BadCsrError(`the CSR key is RSA-${description.modulusBits}; RSA keys larger than ${maximumRsaBits} bits are not accepted`);
    }
    return description;
  }
  throw new BadCsrError(
    `the CSR key is ${description.name}, which is not accepted: use EC P-256, EC P-384 or RSA with at least ${minimumRsaBits} bits`,
  );
}

/** The CSR's signature over its own content proves the requester holds the private key. */
function verifyProofOfPossession(request: CertificationRequest, spki: Uint8Array) {
  const algorithm = request.signatureAlgorithm.algorithmId;
  const hash = acceptedSignatureAlgorithms.get(algorithm);
  if (!hash) {
    throw new BadCsrError(
      `the CSR is signed with ${oidName(algorithm) ?? algorithm}, which is not accepted: sign with ECDSA or RSA PKCS#1 v1.5 and SHA-256 or stronger`,
    );
  }
  let valid = false;
  try {
    const key = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
    const signature = request.signatureValue.valueBlock.valueHexView;
    valid = verify(hash, request.tbsView, { key, dsaEncoding: 'der' }, signature);
  } catch {
    valid = false;
  }
  if (!valid) {
    throw new BadCsrError('the CSR signature does not verify, so it does not prove possession of the private key');
  }
}

function requestedSubjectAltNames(request: CertificationRequest): CertificateSigningRequest['requestedSubjectAltNames'] {
  const attributes = (request.attributes ?? []).filter((attribute) => attribute.type === oids.extensionRequest);
  if (attributes.length === 0) return { dns: [], ip: [], uri: [], other: [] };
  if (attributes.length > 1 || attributes[0]!.values.length !== 1) {
    throw new BadCsrError('the CSR has more than one extensionRequest attribute');
  }
  let extensions: Extension[];
  try {
    extensions = new Extensions({ schema: attributes[0]!.values[0] }).extensions;
  } catch (error) {
    throw new BadCsrError('the CSR extensionRequest attribute is malformed', { cause: error });
  }
  if (extensions.filter((extension) => extension.extnID === oids.subjectAltName).length > 1) {
    throw new BadCsrError('the CSR requests more than one subjectAltName extension');
  }
  try {
    return readSubjectAltNames(extensions);
  } catch (error) {
    throw new BadCsrError('the CSR subjectAltName extension is malformed', { cause: error });
  }
}
