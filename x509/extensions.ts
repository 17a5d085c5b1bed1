/**
 * The certificate extensions this CA writes (RFC 5280 section 4.2), built with the pkijs/asn1js
 * types, and readers that turn them back into plain values for storage and checks.
 */
import * as asn1js from 'asn1js';
import {
  AccessDescription,
  AuthorityKeyIdentifier,
  BasicConstraints,
  CRLDistributionPoints,
  DistributionPoint,
  InfoAccess,
  ExtKeyUsage,
  Extension,
  GeneralName,
  GeneralNames,
} from 'pkijs';
import { formatIpAddress, ipAddressBytes } from './ip-address';
import { objectIdentifierText, oidName, oids } from './oids';

/** Requested or issued alternative names, in the shape device adapters and the registry use. */
export interface SubjectAltNames {
  dns: string[];
  ip: string[];
  uri: string[];
}

export const keyUsageBits = [
  'digitalSignature',
  'nonRepudiation',
  'keyEncipherment',
  'dataEncipherment',
  'keyAgreement',
  'keyCertSign',
  'cRLSign',
  'encipherOnly',
  'decipherOnly',
] as const;
export type KeyUsage = (typeof keyUsageBits)[number];

export type ExtendedKeyUsage = 'serverAuth' | 'clientAuth' | 'ocspSigning' | 'documentSigning';

/** GeneralName CHOICE tags (RFC 5280 section 4.2.1.6). */
const generalNameTag = {
  otherName: 0,
  rfc822Name: 1,
  dNSName: 2,
  x400Address: 3,
  directoryName: 4,
  ediPartyName: 5,
  uniformResourceIdentifier: 6,
  iPAddress: 7,
  registeredID: 8,
} as const;

/** The extensions of a certificate, as stored in the certificates table. */
export interface ExtensionsSummary {
  basicConstraints: { ca: boolean; pathLength?: number } | null;
  keyUsage: KeyUsage[];
  extendedKeyUsage: string[];
  /** `DNS:<name>`, `IP:<address>`, `URI:<uri>`, as OpenSSL prints them. */
  subjectAltNames: string[];
}

function extension(oid: string, critical: boolean, value: asn1js.BaseBlock | { toSchema(): asn1js.BaseBlock }) {
  const schema = value instanceof asn1js.BaseBlock ? value : value.toSchema();
  return new Extension({ extnID: oid, critical, extnValue: schema.toBER() });
}

export function basicConstraintsExtension(options: { ca: boolean; pathLength?: number }): Extension {
  const constraints = new BasicConstraints({
    cA: options.ca,
    ...(options.pathLength !== undefined ? { pathLenConstraint: options.pathLength } : {}),
  });
  return extension(oids.basicConstraints, true, constraints);
}

export function keyUsageExtension(usages: readonly KeyUsage[]): Extension {
  const positions = usages.map((usage) => keyUsageBits.indexOf(usage));
  const highest = Math.max(...positions);
  const bytes = new Uint8Array(Math.floor(highest / 8) + 1);
  for (const position of positions) bytes[position >> 3]! |= 0x80 >> (position & 7);
  // DER drops trailing zero bits of a named bit list; they are announced as unused.
  const unusedBits = bytes.length * 8 - 1 - highest;
  return extension(oids.keyUsage, true, new asn1js.BitString({ valueHex: bytes, unusedBits }));
}

export function extendedKeyUsageExtension(purposes: readonly ExtendedKeyUsage[]): Extension {
  return extension(oids.extKeyUsage, false, new ExtKeyUsage({ keyPurposes: purposes.map((purpose) => oids[purpose]) }));
}

/** Non-critical: our subjects are never empty (RFC 5280 section 4.2.1.6). */
export function subjectAltNameExtension(names: SubjectAltNames): Extension {
  const generalNames = new GeneralNames({
    names: [
      ...names.dns.map((dns) => new GeneralName({ type: generalNameTag.dNSName, value: dns })),
      ...names.ip.map((ip) => {
        const bytes = ipAddressBytes(ip);
        if (!bytes) throw new Error(`"${ip}" is not an IP address`);
        return new GeneralName({ type: generalNameTag.iPAddress, value: new asn1js.OctetString({ valueHex: bytes }) });
      }),
      ...names.uri.map((uri) => new GeneralName({ type: generalNameTag.uniformResourceIdentifier, value: uri })),
    ],
  });
  return extension(oids.subjectAltName, false, generalNames);
}

export function subjectKeyIdentifierExtension(keyId: Uint8Array): Extension {
  return extension(oids.subjectKeyIdentifier, false, new asn1js.OctetString({ valueHex: keyId }));
}

export function authorityKeyIdentifierExtension(issuerKeyId: Uint8Array): Extension {
  const identifier = new AuthorityKeyIdentifier({ keyIdentifier: new asn1js.OctetString({ valueHex: issuerKeyId }) });
  return extension(oids.authorityKeyIdentifier, false, identifier);
}

/** Where relying parties fetch the issuer's CRL (RFC 5280 section 4.2.1.13): one full-name URI. */
export function crlDistributionPointsExtension(crlUrl: string): Extension {
  const point = new DistributionPoint({
    distributionPoint: [new GeneralName({ type: generalNameTag.uniformResourceIdentifier, value: crlUrl })],
  });
  return extension(oids.cRLDistributionPoints, false, new CRLDistributionPoints({ distributionPoints: [point] }));
}

/** OCSP responder and issuer certificate locations (RFC 5280 section 4.2.2.1); never critical. */
export function authorityInfoAccessExtension(access: { ocspUrl?: string; caIssuersUrl?: string }): Extension {
  const descriptions: AccessDescription[] = [];
  const uri = (value: string) => new GeneralName({ type: generalNameTag.uniformResourceIdentifier, value });
  if (access.ocspUrl) descriptions.push(new AccessDescription({ accessMethod: oids.ocsp, accessLocation: uri(access.ocspUrl) }));
  if (access.caIssuersUrl) {
    descriptions.push(new AccessDescription({ accessMethod: oids.caIssuers, accessLocation: uri(access.caIssuersUrl) }));
  }
  return extension(oids.authorityInfoAccess, false, new InfoAccess({ accessDescriptions: descriptions }));
}

/** id-pkix-ocsp-nocheck (RFC 6960 section 4.2.2.2.1): its value is NULL. */
export function ocspNoCheckExtension(): Extension {
  return extension(oids.ocspNoCheck, false, new asn1js.Null());
}

function valueOf(extensionValue: Extension): asn1js.BaseBlock {
  const parsed = asn1js.fromBER(extensionValue.extnValue.valueBlock.valueHexView);
  if (parsed.offset === -1) throw new Error(`extension ${extensionValue.extnID} is not valid DER`);
  return parsed.result as asn1js.BaseBlock;
}

function find(extensions: readonly Extension[] | undefined, oid: string): Extension | undefined {
  return extensions?.find((candidate) => candidate.extnID === oid);
}

/** The key identifier a certificate states for its own key, if it has one. */
export function readSubjectKeyIdentifier(extensions: readonly Extension[] | undefined): Uint8Array | undefined {
  const found = find(extensions, oids.subjectKeyIdentifier);
  if (!found) return undefined;
  const value = valueOf(found);
  return value instanceof asn1js.OctetString ? new Uint8Array(value.valueBlock.valueHexView) : undefined;
}

/** Names of a subjectAltName extension; `other` lists kinds we never issue, by their CHOICE name. */
export function readSubjectAltNames(extensions: readonly Extension[] | undefined): SubjectAltNames & { other: string[] } {
  const names: SubjectAltNames & { other: string[] } = { dns: [], ip: [], uri: [], other: [] };
  const found = find(extensions, oids.subjectAltName);
  if (!found) return names;
  const generalNames = GeneralNames.fromBER(found.extnValue.valueBlock.valueHexView);
  for (const name of generalNames.names) {
    if (name.type === generalNameTag.dNSName) names.dns.push(String(name.value));
    else if (name.type === generalNameTag.uniformResourceIdentifier) names.uri.push(String(name.value));
    else if (name.type === generalNameTag.iPAddress) {
      const bytes = new Uint8Array((name.value as asn1js.OctetString).valueBlock.valueHexView);
      if (bytes.length === 4 || bytes.length === 16) names.ip.push(formatIpAddress(bytes));
      else names.other.push(`iPAddress of ${bytes.length} octets`);
    } else {
      const kind = Object.entries(generalNameTag).find(([, tag]) => tag === name.type)?.[0] ?? `[${name.type}]`;
      names.other.push(kind);
    }
  }
  return names;
}

export function summariseExtensions(extensions: readonly Extension[] | undefined): ExtensionsSummary {
  const summary: ExtensionsSummary = { basicConstraints: null, keyUsage: [], extendedKeyUsage: [], subjectAltNames: [] };

  const constraints = find(extensions, oids.basicConstraints);
  if (constraints) {
    const parsed = new BasicConstraints({ schema: valueOf(constraints) });
    const pathLength = parsed.pathLenConstraint;
    summary.basicConstraints = {
      ca: parsed.cA,
      ...(pathLength === undefined
        ? {}
        : { pathLength: typeof pathLength === 'number' ? pathLength : Number(pathLength.toBigInt()) }),
    };
  }

  const keyUsage = find(extensions, oids.keyUsage);
  if (keyUsage) {
    const bits = valueOf(keyUsage) as asn1js.BitString;
    const bytes = bits.valueBlock.valueHexView;
    summary.keyUsage = keyUsageBits.filter((_, position) => ((bytes[position >> 3] ?? 0) & (0x80 >> (position & 7))) !== 0);
  }

  const extendedKeyUsage = find(extensions, oids.extKeyUsage);
  if (extendedKeyUsage) {
    // Read from the DER rather than through ExtKeyUsage: the legacy purpose under a UUID arc has
    // sub-identifiers asn1js cannot print in decimal.
    const purposes = (valueOf(extendedKeyUsage) as asn1js.Sequence).valueBlock.value
      .filter((purpose): purpose is asn1js.ObjectIdentifier => purpose instanceof asn1js.ObjectIdentifier)
      .map((purpose) =>
        objectIdentifierText(purpose.valueBeforeDecodeView.subarray(purpose.idBlock.blockLength + purpose.lenBlock.blockLength)),
      );
    summary.extendedKeyUsage = purposes.map((oid) => oidName(oid) ?? oid);
  }

  const names = readSubjectAltNames(extensions);
  summary.subjectAltNames = [
    ...names.dns.map((dns) => `DNS:${dns}`),
    ...names.ip.map((ip) => `IP:${ip}`),
    ...names.uri.map((uri) => `URI:${uri}`),
  ];
  return summary;
}
