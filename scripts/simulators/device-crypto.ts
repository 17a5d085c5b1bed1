/**
 * The reference device's own key store and certificate code, as its firmware would have it: keys are
 * made with WebCrypto and certificate structures built with PKI.js. Deliberately independent of the
 * service's `pki/`, so the simulator checks the service rather than agreeing with it by construction.
 */
import { createHash, KeyObject, webcrypto } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';

// pkijs types WebCrypto with the DOM names, which a Node-only build does not declare.
const engine = new pkijs.CryptoEngine({ name: 'reference-device', crypto: webcrypto as never });
type CryptoKey = webcrypto.CryptoKey;

const oid = {
  commonName: '2.5.4.3',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  extensionRequest: '1.2.840.113549.1.9.14',
} as const;

/** GeneralName CHOICE tags (RFC 5280 §4.2.1.6). */
const generalNameTag = { dNSName: 2, uniformResourceIdentifier: 6, iPAddress: 7 } as const;

export type KeyAlgorithm = 'P-256' | 'P-384' | 'RSA-2048';
export const keyAlgorithms = ['P-256', 'P-384', 'RSA-2048'] as const satisfies readonly KeyAlgorithm[];

const keyGeneration: Record<KeyAlgorithm, { params: webcrypto.EcKeyGenParams | webcrypto.RsaHashedKeyGenParams; hash: string }> = {
  'P-256': { params: { name: 'ECDSA', namedCurve: 'P-256' }, hash: 'SHA-256' },
  'P-384': { params: { name: 'ECDSA', namedCurve: 'P-384' }, hash: 'SHA-384' },
  'RSA-2048': {
    params: {
      name: 'RSASSA-PKCS1-v1_5',
      modulusLength: 2048,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: 'SHA-256',
    },
    hash: 'SHA-256',
  },
};

export interface DeviceKey {
  algorithm: KeyAlgorithm;
  publicKey: CryptoKey;
  privateKey: CryptoKey;
  /** The same private key as Node's TLS stack wants it; it stays inside the device process. */
  privateKeyObject: KeyObject;
}

export interface SubjectAltNames {
  dns: string[];
  ip: string[];
  uri: string[];
}

export async function generateDeviceKey(algorithm: KeyAlgorithm): Promise<DeviceKey> {
  // Extractable only so the TLS stack can load it; nothing ever exports it off the device.
  const pair = (await webcrypto.subtle.generateKey(keyGeneration[algorithm].params, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  return {
    algorithm,
    publicKey: pair.publicKey,
    privateKey: pair.privateKey,
    privateKeyObject: KeyObject.from(pair.privateKey),
  };
}

export function privateKeyPem(key: DeviceKey): string {
  return key.privateKeyObject.export({ type: 'pkcs8', format: 'pem' }).toString();
}

/** The factory certificate: self-signed, CN = serial number, for serving TLS before enrolment. */
export async function createFactoryCertificate(key: DeviceKey, serialNumber: string, validityYears = 10): Promise<string> {
  const certificate = new pkijs.Certificate();
  certificate.version = 2;
  certificate.serialNumber = new asn1js.Integer({ valueHex: positiveSerial() });
  certificate.issuer.typesAndValues.push(commonNameOf(serialNumber));
  certificate.subject.typesAndValues.push(commonNameOf(serialNumber));
  const now = Date.now();
  certificate.notBefore.value = new Date(now - 5 * 60_000);
  const notAfter = new Date(now);
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + validityYears);
  certificate.notAfter.value = notAfter;
  await certificate.subjectPublicKeyInfo.importKey(key.publicKey, engine);

  const basicConstraints = new pkijs.BasicConstraints({ cA: false });
  const extKeyUsage = new pkijs.ExtKeyUsage({ keyPurposes: [oid.serverAuth] });
  certificate.extensions = [
    extension(oid.basicConstraints, true, basicConstraints.toSchema()),
    extension(oid.extKeyUsage, false, extKeyUsage.toSchema()),
    extension(oid.subjectAltName, false, subjectAltNames({ dns: [dnsSafe(serialNumber)], ip: [], uri: [] }).toSchema()),
  ];
  await certificate.sign(key.privateKey, keyGeneration[key.algorithm].hash, engine);
  return toPem('CERTIFICATE', certificate.toSchema(true).toBER(false));
}

/** A PKCS#10 request signed by `key`, asking for the given names through an extensionRequest. */
export async function createCertificationRequest(
  key: DeviceKey,
  request: { commonName: string; subjectAltNames: SubjectAltNames },
): Promise<string> {
  const csr = new pkijs.CertificationRequest();
  csr.version = 0;
  csr.subject.typesAndValues.push(commonNameOf(request.commonName));
  await csr.subjectPublicKeyInfo.importKey(key.publicKey, engine);
  const names = request.subjectAltNames;
  if (names.dns.length + names.ip.length + names.uri.length > 0) {
    const extensions = new pkijs.Extensions({
      extensions: [extension(oid.subjectAltName, false, subjectAltNames(names).toSchema())],
    });
    csr.attributes = [new pkijs.Attribute({ type: oid.extensionRequest, values: [extensions.toSchema()] })];
  }
  await csr.sign(key.privateKey, keyGeneration[key.algorithm].hash, engine);
  return toPem('CERTIFICATE REQUEST', csr.toSchema(true).toBER(false));
}

export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export function toPem(label: string, der: ArrayBuffer | Uint8Array): string {
  const base64 = Buffer.from(der instanceof Uint8Array ? der : new Uint8Array(der)).toString('base64');
  const lines = base64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** Splits concatenated PEM text into its blocks. */
export function pemBlocks(text: string): string[] {
  return text.match(/-----BEGIN [A-Z0-9 ]+-----[\s\S]+?-----END [A-Z0-9 ]+-----/g)?.map((b) => `${b}\n`) ?? [];
}

function commonNameOf(value: string): pkijs.AttributeTypeAndValue {
  return new pkijs.AttributeTypeAndValue({ type: oid.commonName, value: new asn1js.Utf8String({ value }) });
}

function extension(extnID: string, critical: boolean, value: asn1js.BaseBlock): pkijs.Extension {
  return new pkijs.Extension({ extnID, critical, extnValue: value.toBER(false) });
}

function subjectAltNames(names: SubjectAltNames): pkijs.GeneralNames {
  return new pkijs.GeneralNames({
    names: [
      ...names.dns.map((value) => new pkijs.GeneralName({ type: generalNameTag.dNSName, value })),
      ...names.ip.map(
        (value) =>
          new pkijs.GeneralName({
            type: generalNameTag.iPAddress,
            value: new asn1js.OctetString({ valueHex: ipAddressBytes(value) }),
          }),
      ),
      ...names.uri.map((value) => new pkijs.GeneralName({ type: generalNameTag.uniformResourceIdentifier, value })),
    ],
  });
}

/** 16 random bytes with the top bit clear, so the DER INTEGER stays positive. */
function positiveSerial(): Uint8Array {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0] & 0x7f) | 0x01;
  return bytes;
}

function dnsSafe(value: string): string {
  return value.toLowerCase().replace(/[^a-z0-9-]/g, '-');
}

/** Network-order bytes of an IPv4 or IPv6 address, as the iPAddress GeneralName carries them. */
export function ipAddressBytes(address: string): Uint8Array {
  if (isIPv4(address)) return Uint8Array.from(address.split('.').map(Number));
  if (!isIPv6(address) || address.includes('%')) throw new Error(`not an IP address: ${address}`);
  let text = address;
  // An embedded IPv4 tail (::ffff:10.0.0.1) becomes the last two 16-bit groups.
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number);
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split('::');
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail === undefined ? [] : tail ? tail.split(':') : [];
  const zeros = tail === undefined ? [] : Array(8 - headGroups.length - tailGroups.length).fill('0');
  const groups = [...headGroups, ...zeros, ...tailGroups];
  const bytes = new Uint8Array(16);
  groups.forEach((group, i) => {
    const value = parseInt(group, 16);
    bytes[i * 2] = value >> 8;
    bytes[i * 2 + 1] = value & 0xff;
  });
  return bytes;
}
