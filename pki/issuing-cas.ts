/**
 * The CAs as issuers: what signs as a CA (its certificate, its key in custody, its key identifier),
 * and the signing of a certificate by one, shaped into the row the store keeps. Which certificate
 * says what (the profiles) is for the hierarchy, the service identities and the device
 * certificates to decide; this only signs and records.
 */
import { Certificate, type Extension } from 'pkijs';
import type { KeyCustody, KeyHandle } from '../custody/key-custody';
import { ValidationError } from '../foundation/errors';
import { buildName, fittedValue, formatDistinguishedName, summariseName, type NameAttribute } from '../x509/distinguished-name';
import { readSubjectKeyIdentifier, summariseExtensions } from '../x509/extensions';
import { fingerprintOf, fromPem, toPem } from '../x509/pem';
import { keyAlgorithmOf, keyIdentifier } from '../x509/public-key';
import { addDays, earliest, randomSerialNumber, signCertificate, wholeSeconds, type CertificateSigner, type SignedCertificate } from './certificate-builder';
import type { CertificateRow, NewCertificateRow } from './certificate-store';

/** What signs as a CA: its certificate, its key in custody, and its key identifier. */
export interface IssuingCa {
  row: CertificateRow;
  certificate: Certificate;
  signer: CertificateSigner;
  keyId: Uint8Array;
}

/** The columns of a certificate's row that its DER does not say. */
export type CertificateRecordFields = Pick<NewCertificateRow, 'tenantId' | 'certificateType' | 'privateKeyLocation'> &
  Partial<Pick<NewCertificateRow, 'deviceId' | 'site' | 'issuanceKey' | 'renewalOfCertificateId'>>;

/** Devices whose clocks run a little behind still accept a certificate issued just now. */
const clockSkewAllowanceMs = 5 * 60 * 1000;
/** CAs whose parsed certificates are kept; a tenant has a root, a services CA and one per site. */
const maxKnownIssuers = 1000;

export class IssuingCas {
  readonly #custody: KeyCustody;
  /** Certificate id → what its stored certificate says, parsed once: a CA's certificate never changes under its id. */
  readonly #parsed = new Map<string, Omit<IssuingCa, 'row'> & { fingerprint: string }>();

  constructor(custody: KeyCustody) {
    this.#custody = custody;
  }

  /** What signs as the CA of `row`: its certificate, its key wherever custody keeps it, its key identifier. */
  identityOf(row: CertificateRow): IssuingCa {
    let parsed = this.#parsed.get(row.id);
    if (!parsed || parsed.fingerprint !== row.fingerprint || parsed.signer.location !== row.privateKeyLocation) {
      const certificate = parseStoredCertificate(row);
      const publicKeySpki = new Uint8Array(certificate.subjectPublicKeyInfo.toSchema().toBER());
      parsed = {
        fingerprint: row.fingerprint,
        certificate,
        keyId: readSubjectKeyIdentifier(certificate.extensions) ?? keyIdentifier(publicKeySpki),
        signer: this.signerOf({ location: row.privateKeyLocation, algorithm: keyAlgorithmOf(publicKeySpki), publicKeySpki }),
      };
      this.#parsed.delete(row.id);
      this.#parsed.set(row.id, parsed);
      if (this.#parsed.size > maxKnownIssuers) this.#parsed.delete(this.#parsed.keys().next().value!);
    }
    return { row, certificate: parsed.certificate, keyId: parsed.keyId, signer: parsed.signer };
  }

  signerOf(key: KeyHandle): CertificateSigner {
    return { custody: this.#custody, location: key.location, algorithm: key.algorithm, publicKeySpki: key.publicKeySpki };
  }

  /**
   * A certificate for `subjectPublicKeySpki` signed by the CA `issuer`, valid from now (back-dated
   * for clock skew) for `validityDays` but never past the issuer's own expiry. `extensions` are
   * made knowing the issuer (its key identifier goes into the authority key identifier).
   */
  async issue(spec: {
    issuer: CertificateRow;
    subject: NameAttribute[];
    subjectPublicKeySpki: Uint8Array;
    validityDays: number;
    extensions: (issuer: IssuingCa) => Extension[];
    row: CertificateRecordFields;
  }): Promise<NewCertificateRow> {
    const issuer = this.identityOf(spec.issuer);
    const signed = await signCertificate(
      {
        serialNumber: randomSerialNumber(),
        issuer: issuer.certificate.subject,
        subject: buildName(spec.subject),
        ...validity(spec.validityDays, issuer.certificate),
        subjectPublicKeySpki: spec.subjectPublicKeySpki,
        extensions: spec.extensions(issuer),
      },
      issuer.signer,
    );
    return certificateRow(signed, { ...spec.row, issuerCertificateId: spec.issuer.id });
  }

  /** A certificate `key` signs for itself: a root. */
  async selfSign(spec: { key: KeyHandle; subject: NameAttribute[]; validityDays: number; extensions: Extension[]; row: CertificateRecordFields }) {
    const name = buildName(spec.subject);
    const signed = await signCertificate(
      {
        serialNumber: randomSerialNumber(),
        issuer: name,
        subject: name,
        ...validity(spec.validityDays),
        subjectPublicKeySpki: spec.key.publicKeySpki,
        extensions: spec.extensions,
      },
      this.signerOf(spec.key),
    );
    return certificateRow(signed, spec.row);
  }
}

/**
 * A subject in the tenant's organisation (and site's unit): the tenant and site ids are cut to
 * their attributes' bounds, and the common name says what the certificate is.
 */
export function tenantSubject(tenantId: string, commonName: string, site?: string | null): NameAttribute[] {
  return [
    { type: 'organization', value: fittedValue('organization', tenantId) },
    ...(site ? [{ type: 'organizationalUnit' as const, value: fittedValue('organizationalUnit', site) }] : []),
    { type: 'commonName', value: commonName },
  ];
}

export function parseStoredCertificate(row: CertificateRow): Certificate {
  const der = fromPem(row.pem, ['CERTIFICATE']);
  if (!der) throw new Error(`certificate ${row.id} has no PEM certificate stored`);
  return Certificate.fromBER(der);
}

export function requireText(value: unknown, field: string) {
  if (typeof value !== 'string' || value.trim() === '') {
    throw new ValidationError(`${field} is required`, { fields: [{ field, reason: 'must be a non-empty string' }] });
  }
}

/** The row of a certificate just signed, read from the certificate built for it rather than by parsing its DER again. */
function certificateRow(
  { der, certificate }: SignedCertificate,
  fields: CertificateRecordFields & Pick<NewCertificateRow, 'issuerCertificateId'>,
): NewCertificateRow {
  const publicKeySpki = new Uint8Array(certificate.subjectPublicKeyInfo.toSchema().toBER());
  return {
    deviceId: null,
    site: null,
    issuerCertificateId: null,
    issuanceKey: null,
    ...fields,
    serialNumber: serialNumberHex(certificate),
    fingerprint: fingerprintOf(der),
    publicKey: toPem(publicKeySpki, 'PUBLIC KEY'),
    issuedAt: new Date(),
    expiresAt: certificate.notAfter.value,
    subjectDn: formatDistinguishedName(certificate.subject),
    issuerDn: formatDistinguishedName(certificate.issuer),
    subject: summariseName(certificate.subject),
    extensions: summariseExtensions(certificate.extensions),
    pem: toPem(der),
  };
}

/** Lower-case hex of the serial, an even number of digits, as OpenSSL and most tools print it. */
function serialNumberHex(certificate: Certificate): string {
  const hex = certificate.serialNumber.toBigInt().toString(16);
  return hex.length % 2 === 0 ? hex : `0${hex}`;
}

/** Back-dated for clock skew; never past the issuer's own expiry. */
function validity(days: number, issuer?: Certificate): { notBefore: Date; notAfter: Date } {
  const now = new Date();
  const notBefore = wholeSeconds(new Date(now.getTime() - clockSkewAllowanceMs));
  const wanted = wholeSeconds(addDays(now, days));
  const notAfter = issuer ? earliest(wanted, issuer.notAfter.value) : wanted;
  if (notAfter <= now) throw new Error('the issuing CA has expired');
  return { notBefore, notAfter };
}
