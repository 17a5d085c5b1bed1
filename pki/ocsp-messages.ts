/**
 * OCSP messages (RFC 6960 section 4): reading an OCSPRequest and building the OCSPResponse around a
 * BasicOCSPResponse, with the pkijs/asn1js types. The responder decides what to say; this module
 * only says it in DER.
 */
import { createHash } from 'node:crypto';
import * as asn1js from 'asn1js';
import { type AlgorithmIdentifier, Certificate, Extension } from 'pkijs';
import { oids } from '../x509/oids';

/** OCSPResponseStatus (RFC 6960 section 4.2.1); 4 is not used. */
export const ocspResponseStatusCodes = {
  successful: 0,
  malformedRequest: 1,
  internalError: 2,
  tryLater: 3,
  sigRequired: 5,
  unauthorized: 6,
} as const;
export type OcspResponseStatus = keyof typeof ocspResponseStatusCodes;

/** Hash algorithms a CertID may use here: SHA-1 (what RFC 5019 clients send) and SHA-256. */
export type CertIdHash = 'sha1' | 'sha256';
const certIdHashByOid = new Map<string, CertIdHash>([
  [oids.sha1, 'sha1'],
  [oids.sha256, 'sha256'],
]);
export const certIdHashes: readonly CertIdHash[] = ['sha1', 'sha256'];

/** RFC 8954: a nonce of 1 to 32 octets; anything else is refused as malformed. */
const maximumNonceOctets = 32;

export class MalformedOcspRequestError extends Error {
  override name = 'MalformedOcspRequestError';
}

export interface RequestedCertificate {
  /** Undefined when the request hashes with an algorithm this responder does not support. */
  hash: CertIdHash | undefined;
  issuerNameHash: string;
  issuerKeyHash: string;
  /** Lower-case hex, even number of digits, as stored; undefined for a serial no CA issues (zero or negative). */
  serialNumber: string | undefined;
  /** The CertID as received: the response must name the certificate exactly so. */
  certId: asn1js.Sequence;
}

export interface ParsedOcspRequest {
  certificates: RequestedCertificate[];
  /** extnValue of the nonce extension as received, echoed verbatim in the response. */
  nonce?: Uint8Array;
}

/**
 * MalformedOcspRequestError for anything that is not one DER OCSPRequest with 1..maxCertIds CertIDs.
 * Walks the asn1js tree directly: pkijs' schema matching costs several times the whole answer.
 */
export function parseOcspRequest(der: Uint8Array, options: { maxCertIds: number }): ParsedOcspRequest {
  const parsed = asn1js.fromBER(der);
  if (parsed.offset === -1 || parsed.offset !== der.byteLength) throw new MalformedOcspRequestError('not a single DER value');
  // OCSPRequest ::= SEQUENCE { tbsRequest TBSRequest, optionalSignature [0] EXPLICIT Signature OPTIONAL }
  const [tbsRequest] = sequenceItems(parsed.result, 'OCSPRequest', 1, 2);
  // TBSRequest ::= SEQUENCE { version [0] EXPLICIT DEFAULT v1, requestorName [1] EXPLICIT OPTIONAL,
  //   requestList SEQUENCE OF Request, requestExtensions [2] EXPLICIT Extensions OPTIONAL }
  const items = sequenceItems(tbsRequest!, 'TBSRequest', 1, 4);
  let index = 0;
  if (isContextTag(items[index], 0)) {
    const version = (items[index] as asn1js.Constructed).valueBlock.value[0];
    if (!(version instanceof asn1js.Integer) || version.valueBlock.valueDec !== 0) throw new MalformedOcspRequestError('unsupported request version');
    index += 1;
  }
  if (isContextTag(items[index], 1)) index += 1;
  const requestList = sequenceItems(items[index], 'requestList', 1, Number.MAX_SAFE_INTEGER);
  index += 1;
  let extensions: asn1js.BaseBlock[] = [];
  if (isContextTag(items[index], 2)) {
    extensions = sequenceItems((items[index] as asn1js.Constructed).valueBlock.value[0], 'requestExtensions', 1, 64);
    index += 1;
  }
  if (index !== items.length) throw new MalformedOcspRequestError('unexpected fields in TBSRequest');
  if (requestList.length > options.maxCertIds) {
    throw new MalformedOcspRequestError(`the request names ${requestList.length} certificates; at most ${options.maxCertIds} are answered at once`);
  }

  const certificates = requestList.map((request) => {
    // Request ::= SEQUENCE { reqCert CertID, singleRequestExtensions [0] EXPLICIT Extensions OPTIONAL }
    const [certId] = sequenceItems(request, 'Request', 1, 2);
    // CertID ::= SEQUENCE { hashAlgorithm AlgorithmIdentifier, issuerNameHash OCTET STRING,
    //   issuerKeyHash OCTET STRING, serialNumber CertificateSerialNumber }
    const [algorithm, nameHash, keyHash, serial] = sequenceItems(certId, 'CertID', 4, 4);
    const [algorithmId] = sequenceItems(algorithm, 'AlgorithmIdentifier', 1, 2);
    if (!(algorithmId instanceof asn1js.ObjectIdentifier)) throw new MalformedOcspRequestError('CertID hash algorithm is not an OID');
    if (!(nameHash instanceof asn1js.OctetString) || !(keyHash instanceof asn1js.OctetString) || !(serial instanceof asn1js.Integer)) {
      throw new MalformedOcspRequestError('CertID fields have the wrong types');
    }
    return {
      hash: certIdHashByOid.get(algorithmId.getValue()),
      issuerNameHash: hexOf(nameHash.valueBlock.valueHexView),
      issuerKeyHash: hexOf(keyHash.valueBlock.valueHexView),
      serialNumber: serialHexOf(serial),
      certId: certId as asn1js.Sequence,
    };
  });

  let nonce: Uint8Array | undefined;
  for (const extension of extensions) {
    // Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
    const fields = sequenceItems(extension, 'Extension', 2, 3);
    const [extnId] = fields;
    const extnValue = fields.at(-1);
    if (!(extnId instanceof asn1js.ObjectIdentifier) || !(extnValue instanceof asn1js.OctetString)) {
      throw new MalformedOcspRequestError('malformed request extension');
    }
    if (extnId.getValue() !== oids.ocspNonce) continue;
    nonce = new Uint8Array(extnValue.valueBlock.valueHexView);
    const length = nonceLength(nonce);
    if (length < 1 || length > maximumNonceOctets) {
      throw new MalformedOcspRequestError(`the nonce has ${length} octets; 1 to ${maximumNonceOctets} are accepted`);
    }
  }
  return { certificates, ...(nonce ? { nonce } : {}) };
}

function sequenceItems(block: asn1js.BaseBlock | undefined, what: string, min: number, max: number): asn1js.BaseBlock[] {
  if (!(block instanceof asn1js.Sequence)) throw new MalformedOcspRequestError(`${what} is not a SEQUENCE`);
  const items = block.valueBlock.value;
  if (items.length < min || items.length > max) throw new MalformedOcspRequestError(`${what} has ${items.length} fields`);
  return items;
}

function isContextTag(block: asn1js.BaseBlock | undefined, tagNumber: number): boolean {
  return block !== undefined && block.idBlock.tagClass === 3 && block.idBlock.tagNumber === tagNumber && block instanceof asn1js.Constructed;
}

/** Octets of the nonce: RFC 8954 wraps them in an OCTET STRING; older clients send them bare. */
function nonceLength(value: Uint8Array): number {
  const inner = asn1js.fromBER(value);
  if (inner.offset === value.byteLength && inner.result instanceof asn1js.OctetString) {
    return inner.result.valueBlock.valueHexView.byteLength;
  }
  return value.byteLength;
}

/** How a CertID names an issuer: the hashes of its subject name and of its public key bits. */
export function issuerHashes(issuer: Certificate, hash: CertIdHash): { issuerNameHash: string; issuerKeyHash: string } {
  const name = new Uint8Array(issuer.subject.toSchema().toBER());
  const keyBits = issuer.subjectPublicKeyInfo.subjectPublicKey.valueBlock.valueHexView;
  return {
    issuerNameHash: createHash(hash).update(name).digest('hex'),
    issuerKeyHash: createHash(hash).update(keyBits).digest('hex'),
  };
}

export type CertificateStatus =
  | { status: 'good' }
  | { status: 'revoked'; revocationTime: Date; /** CRLReason code; absent when unspecified. */ reasonCode?: number }
  | { status: 'unknown' };

export interface SingleStatus {
  certId: asn1js.Sequence;
  status: CertificateStatus;
}

/** What identifies and signs as a delegated responder, with its constant DER parts encoded once. */
export interface ResponderSigningIdentity {
  /** SHA-1 of the responder's public key bits: ResponderID byKey. */
  keyHash: Uint8Array;
  /** DER AlgorithmIdentifier of the signatures made by `sign`. */
  signatureAlgorithmDer: Uint8Array;
  /** DER of `certs [0] EXPLICIT SEQUENCE OF Certificate` carrying the responder certificate. */
  certsFieldDer: Uint8Array;
  sign(tbs: Uint8Array): Promise<Uint8Array>;
}

/** The constant parts of a responder's responses, from its certificate DER and signature algorithm. */
export function responderSigningIdentity(
  certificateDer: Uint8Array,
  signatureAlgorithm: AlgorithmIdentifier,
  sign: (tbs: Uint8Array) => Promise<Uint8Array>,
): ResponderSigningIdentity {
  const certificate = Certificate.fromBER(certificateDer);
  const keyBits = certificate.subjectPublicKeyInfo.subjectPublicKey.valueBlock.valueHexView;
  return {
    keyHash: new Uint8Array(createHash('sha1').update(keyBits).digest()),
    signatureAlgorithmDer: new Uint8Array(signatureAlgorithm.toSchema().toBER()),
    certsFieldDer: der(0xa0, der(0x30, certificateDer)),
    sign,
  };
}

/**
 * The signed, successful OCSPResponse DER for `statuses`, all under one issuer. ResponseData is
 * built with asn1js; the envelope around it is constant per responder apart from the signature, so
 * it is joined from DER parts rather than re-encoding the responder certificate every time.
 */
export async function buildSuccessfulResponse(options: {
  responder: ResponderSigningIdentity;
  producedAt: Date;
  thisUpdate: Date;
  nextUpdate: Date;
  statuses: SingleStatus[];
  nonce?: Uint8Array;
}): Promise<Uint8Array> {
  // ResponseData ::= SEQUENCE { version [0] DEFAULT v1 (absent), responderID, producedAt, responses, responseExtensions [1] }
  const responseData = new asn1js.Sequence({
    value: [
      // ResponderID byKey [2] EXPLICIT KeyHash: it survives the responder certificate being re-issued.
      new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber: 2 }, value: [new asn1js.OctetString({ valueHex: options.responder.keyHash })] }),
      new asn1js.GeneralizedTime({ valueDate: options.producedAt }),
      new asn1js.Sequence({
        value: options.statuses.map(
          ({ certId, status }) =>
            // SingleResponse ::= SEQUENCE { certID, certStatus, thisUpdate, nextUpdate [0] EXPLICIT OPTIONAL }
            new asn1js.Sequence({
              value: [
                certId,
                certStatusOf(status),
                new asn1js.GeneralizedTime({ valueDate: options.thisUpdate }),
                new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber: 0 }, value: [new asn1js.GeneralizedTime({ valueDate: options.nextUpdate })] }),
              ],
            }),
        ),
      }),
      ...(options.nonce
        ? [
            new asn1js.Constructed({
              idBlock: { tagClass: 3, tagNumber: 1 },
              value: [
                new asn1js.Sequence({
                  value: [new Extension({ extnID: oids.ocspNonce, critical: false, extnValue: new Uint8Array(options.nonce).buffer }).toSchema()],
                }),
              ],
            }),
          ]
        : []),
    ],
  });
  const tbs = new Uint8Array(responseData.toBER());
  const signature = await options.responder.sign(tbs);
  // BasicOCSPResponse ::= SEQUENCE { tbsResponseData, signatureAlgorithm, signature BIT STRING, certs [0] }
  const basic = der(0x30, tbs, options.responder.signatureAlgorithmDer, der(0x03, Uint8Array.of(0), signature), options.responder.certsFieldDer);
  return ocspResponse('successful', basic);
}

/** An unsuccessful OCSPResponse carries only its status (RFC 6960 section 4.2.1). */
export function statusOnlyResponse(status: Exclude<OcspResponseStatus, 'successful'>): Uint8Array {
  return ocspResponse(status);
}

function ocspResponse(status: OcspResponseStatus, basicResponse?: Uint8Array): Uint8Array {
  const responseStatus = new Uint8Array(new asn1js.Enumerated({ value: ocspResponseStatusCodes[status] }).toBER());
  if (!basicResponse) return der(0x30, responseStatus);
  // responseBytes [0] EXPLICIT ResponseBytes ::= SEQUENCE { responseType OID, response OCTET STRING }
  return der(0x30, responseStatus, der(0xa0, der(0x30, ocspBasicOidDer, der(0x04, basicResponse))));
}

const ocspBasicOidDer = new Uint8Array(new asn1js.ObjectIdentifier({ value: oids.ocspBasic }).toBER());

/** One DER TLV of `tag` around already-encoded contents (definite length, as DER requires). */
function der(tag: number, ...contents: Uint8Array[]): Uint8Array {
  const length = contents.reduce((sum, part) => sum + part.byteLength, 0);
  const lengthOctets: number[] = [];
  if (length < 0x80) lengthOctets.push(length);
  else {
    for (let rest = length; rest > 0; rest >>>= 8) lengthOctets.unshift(rest & 0xff);
    lengthOctets.unshift(0x80 | lengthOctets.length);
  }
  const out = new Uint8Array(1 + lengthOctets.length + length);
  out[0] = tag;
  out.set(lengthOctets, 1);
  let offset = 1 + lengthOctets.length;
  for (const part of contents) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}

/** CertStatus CHOICE: good [0] IMPLICIT NULL, revoked [1] IMPLICIT RevokedInfo, unknown [2] IMPLICIT NULL. */
function certStatusOf(status: CertificateStatus): asn1js.BaseBlock {
  switch (status.status) {
    case 'good':
      return new asn1js.Primitive({ idBlock: { tagClass: 3, tagNumber: 0 } });
    case 'unknown':
      return new asn1js.Primitive({ idBlock: { tagClass: 3, tagNumber: 2 } });
    case 'revoked':
      return new asn1js.Constructed({
        idBlock: { tagClass: 3, tagNumber: 1 },
        value: [
          new asn1js.GeneralizedTime({ valueDate: status.revocationTime }),
          ...(status.reasonCode === undefined
            ? []
            : [
                new asn1js.Constructed({
                  idBlock: { tagClass: 3, tagNumber: 0 },
                  value: [new asn1js.Enumerated({ value: status.reasonCode })],
                }),
              ]),
        ],
      });
  }
}

function serialHexOf(serial: asn1js.Integer): string | undefined {
  const value = serial.toBigInt();
  if (value <= 0n) return undefined;
  const hex = value.toString(16);
  return hex.length % 2 === 0 ? hex : `0${hex}`;
}

function hexOf(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}
