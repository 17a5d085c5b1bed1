/**
 * Every object identifier the certificate authority uses, named once. Code elsewhere refers to
 * these names, never to dotted strings.
 */

export const oids = {
  // Public key types and curves (RFC 5480, RFC 8017)
  ecPublicKey: '1.2.840.10045.2.1',
  secp256r1: '1.2.840.10045.3.1.7',
  secp384r1: '1.3.132.0.34',
  rsaEncryption: '1.2.840.113549.1.1.1',

  // Signature algorithms (RFC 5758, RFC 8017)
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  ecdsaWithSha384: '1.2.840.10045.4.3.3',
  ecdsaWithSha512: '1.2.840.10045.4.3.4',
  sha256WithRsaEncryption: '1.2.840.113549.1.1.11',
  sha384WithRsaEncryption: '1.2.840.113549.1.1.12',
  sha512WithRsaEncryption: '1.2.840.113549.1.1.13',

  // Name attributes (X.520)
  commonName: '2.5.4.3',
  serialNumber: '2.5.4.5',
  country: '2.5.4.6',
  locality: '2.5.4.7',
  state: '2.5.4.8',
  street: '2.5.4.9',
  organization: '2.5.4.10',
  organizationalUnit: '2.5.4.11',
  domainComponent: '0.9.2342.19200300.100.1.25',
  userId: '0.9.2342.19200300.100.1.1',
  emailAddress: '1.2.840.113549.1.9.1',

  // PKCS#10 attributes (RFC 2985)
  extensionRequest: '1.2.840.113549.1.9.14',

  // Certificate extensions (RFC 5280)
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  cRLDistributionPoints: '2.5.29.31',
  authorityInfoAccess: '1.3.6.1.5.5.7.1.1',

  // CRL extensions and entry extensions (RFC 5280 section 5.2, 5.3)
  cRLNumber: '2.5.29.20',
  cRLReason: '2.5.29.21',
  invalidityDate: '2.5.29.24',

  // Access methods (RFC 5280 section 4.2.2.1)
  ocsp: '1.3.6.1.5.5.7.48.1',
  caIssuers: '1.3.6.1.5.5.7.48.2',

  // OCSP (RFC 6960)
  ocspBasic: '1.3.6.1.5.5.7.48.1.1',
  ocspNonce: '1.3.6.1.5.5.7.48.1.2',
  ocspNoCheck: '1.3.6.1.5.5.7.48.1.5',

  // Hash algorithms (for OCSP CertIDs)
  sha1: '1.3.14.3.2.26',
  sha256: '2.16.840.1.101.3.4.2.1',

  // Extended key usages (RFC 5280, RFC 9336)
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  ocspSigning: '1.3.6.1.5.5.7.3.9',
  // Configuration signers carry id-kp-documentSigning rather than id-kp-codeSigning, so a
  // firmware-signing key can never pass for a configuration signer, nor the other way round.
  documentSigning: '1.3.6.1.5.5.7.3.36',

  // What configuration signers carried before id-kp-documentSigning: a purpose under a UUID arc
  // (2.25.<UUID 5654c625-071f-4958-b67d-70d454f684a6>.1.1), whose arc of over 32 bits many X.509
  // parsers refuse. Never issued any more; devices accept it until those signers expire.
  legacyConfigurationSigning: '2.25.114753779424367444787422388892927952038.1.1',
} as const;

export type OidName = keyof typeof oids;

const namesByOid = new Map<string, OidName>(
  Object.entries(oids).map(([name, oid]) => [oid, name as OidName]),
);

/**
 * The dotted decimal form of a DER-encoded OBJECT IDENTIFIER. asn1js prints sub-identifiers above
 * 2^53 (which UUID arcs have) as `{hex}`, so OIDs that may carry them are read with this instead.
 */
export function objectIdentifierText(der: Uint8Array): string {
  const arcs: bigint[] = [];
  let current = 0n;
  for (const octet of der) {
    current = (current << 7n) | BigInt(octet & 0x7f);
    if ((octet & 0x80) === 0) {
      arcs.push(current);
      current = 0n;
    }
  }
  const [first = 0n, ...rest] = arcs;
  const root = first < 40n ? [0n, first] : first < 80n ? [1n, first - 40n] : [2n, first - 80n];
  return [...root, ...rest].join('.');
}

/** The name of a known OID, or undefined. */
export function oidName(oid: string): OidName | undefined {
  return namesByOid.get(oid);
}
