/**
 * How the reference device checks a configuration signature before applying anything, as its
 * firmware would: the signer must chain to the trust anchors installed with the device's
 * certificate, be meant for signing configurations, and have signed exactly this configuration
 * for this device, recently. Written from the format (`ConfigurationSignature` in
 * adapters/device-adapter.ts) and deliberately independent of the service's `pki/` and
 * `configuration/`, so the device checks the service rather than agreeing with it by construction.
 */
import { verify, X509Certificate } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { anchorOf, outsideValidity } from './certificate-path';

const oid = {
  keyUsage: '2.5.29.15',
  /** id-kp-documentSigning (RFC 9336), which configuration signers carry. */
  documentSigning: '1.3.6.1.5.5.7.3.36',
  /** What signers carried before; accepted as long as such a signer is valid. */
  legacyConfigurationSigning: '2.25.114753779424367444787422388892927952038.1.1',
} as const;

/** A device clock a little ahead of the service's still accepts a configuration signed just now. */
const clockSkewMs = 5 * 60_000;

export const signatureAlgorithm = 'ecdsa-with-SHA256';

export interface ReceivedSignature {
  algorithm: string;
  value: string;
  signerCertificatePem: string;
  signerChainPem: string[];
  tenant: string;
  deviceId: string;
  serialNumber: string;
  signedAt: string;
  expiresAt: string;
  nonce: string;
}

export interface ReceivedConfiguration {
  templateId: string;
  version: number;
  settings: Record<string, unknown>;
}

export interface VerifiedSignature {
  signer: X509Certificate;
  signedAt: Date;
  expiresAt: Date;
  nonce: string;
}

/** Why a signature was not accepted; the device answers with it. */
export class SignatureRefused extends Error {}

export function verifyConfigurationSignature(
  configuration: ReceivedConfiguration,
  signature: ReceivedSignature,
  device: { serialNumber: string; trustAnchorsPem: string[]; now?: Date },
): VerifiedSignature {
  const now = (device.now ?? new Date()).getTime();
  if (signature.algorithm !== signatureAlgorithm) {
    throw new SignatureRefused(`algorithm ${signature.algorithm} is not supported; only ${signatureAlgorithm} is`);
  }
  if (signature.serialNumber !== device.serialNumber) {
    throw new SignatureRefused(`it was signed for the device with serial number ${signature.serialNumber}, not this one`);
  }
  const signedAt = timestamp(signature.signedAt, 'signedAt');
  const expiresAt = timestamp(signature.expiresAt, 'expiresAt');
  if (expiresAt.getTime() <= signedAt.getTime()) throw new SignatureRefused('it expires before it was signed');
  if (now >= expiresAt.getTime()) throw new SignatureRefused(`it expired at ${signature.expiresAt}`);
  if (signedAt.getTime() > now + clockSkewMs) throw new SignatureRefused(`it claims to be signed in the future (${signature.signedAt})`);

  const signer = certificate(signature.signerCertificatePem, 'signer certificate');
  checkSigner(signer, now);
  const path = anchorOf(
    signer,
    signature.signerChainPem.map((pem, index) => certificate(pem, `signer chain certificate ${index + 1}`)),
    device.trustAnchorsPem.map((pem, index) => certificate(pem, `trust anchor ${index + 1}`)),
    { now, what: 'the signer certificate' },
  );
  if ('refusal' in path) throw new SignatureRefused(path.refusal);

  const payload = canonicalJson({
    purpose: 'device-configuration',
    tenant: signature.tenant,
    deviceId: signature.deviceId,
    serialNumber: signature.serialNumber,
    templateId: configuration.templateId,
    version: configuration.version,
    settings: configuration.settings,
    signedAt: signature.signedAt,
    expiresAt: signature.expiresAt,
    nonce: signature.nonce,
  });
  const value = Buffer.from(signature.value, 'base64');
  let valid = false;
  try {
    valid = verify('sha256', Buffer.from(payload, 'utf8'), { key: signer.publicKey, dsaEncoding: 'der' }, value);
  } catch {
    valid = false;
  }
  if (!valid) throw new SignatureRefused('the signature does not match the configuration as received');
  return { signer, signedAt, expiresAt, nonce: signature.nonce };
}

/** Sorted keys, no whitespace: the same settings always hash and sign the same. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** A P-256 end-entity certificate, valid now, for digital signatures and configuration signing. */
function checkSigner(signer: X509Certificate, now: number): void {
  if (signer.ca) throw new SignatureRefused('the signer certificate is a CA certificate');
  const expired = outsideValidity(signer, 'the signer certificate', now);
  if (expired) throw new SignatureRefused(expired);
  if (!signer.keyUsage?.some((purpose) => purpose === oid.documentSigning || purpose === oid.legacyConfigurationSigning)) {
    throw new SignatureRefused('the signer certificate is not valid for configuration signing');
  }
  if (!allowsDigitalSignature(signer)) {
    throw new SignatureRefused('the signer certificate does not allow digital signatures');
  }
  const key = signer.publicKey;
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new SignatureRefused('the signer key is not a P-256 key');
  }
}

/** Node does not expose the keyUsage bits, so they are read from the extension itself. */
function allowsDigitalSignature(certificate: X509Certificate): boolean {
  const parsed = pkijs.Certificate.fromBER(certificate.raw);
  const keyUsage = parsed.extensions?.find((extension) => extension.extnID === oid.keyUsage);
  if (!keyUsage) return false;
  const bits = asn1js.fromBER(keyUsage.extnValue.valueBlock.valueHexView).result;
  if (!(bits instanceof asn1js.BitString)) return false;
  return ((bits.valueBlock.valueHexView[0] ?? 0) & 0x80) !== 0;
}

function certificate(pem: string, what: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch {
    throw new SignatureRefused(`the ${what} is not a PEM X.509 certificate`);
  }
}

function timestamp(value: string, field: string): Date {
  const parsed = new Date(value);
  if (Number.isNaN(parsed.getTime())) throw new SignatureRefused(`${field} is not a timestamp`);
  return parsed;
}
