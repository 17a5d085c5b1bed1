/**
 * X.501 names: building them one attribute per RDN (as every CA does), reading them back, and
 * formatting them as RFC 4514 strings.
 */
import * as asn1js from 'asn1js';
import { AttributeTypeAndValue, RelativeDistinguishedNames } from 'pkijs';
import { oidName, oids, type OidName } from './oids';

export type NameAttributeType = 'country' | 'state' | 'locality' | 'organization' | 'organizationalUnit' | 'commonName' | 'serialNumber';

export interface NameAttribute {
  type: NameAttributeType;
  value: string;
}

/** The subject as stored with a certificate; absent attributes are null. */
export interface SubjectSummary {
  commonName: string | null;
  organizationalUnit: string | null;
  organization: string | null;
  locality: string | null;
  state: string | null;
  country: string | null;
  serialNumber: string | null;
}

const printable = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

/** Upper bounds of the attribute values, in characters (RFC 5280 Appendix A.1, ub-*). */
const upperBounds: Record<NameAttributeType, number> = {
  country: 2,
  state: 128,
  locality: 128,
  organization: 64,
  organizationalUnit: 64,
  commonName: 64,
  serialNumber: 64,
};

/** Whether `value` can be an X520SerialNumber, which RFC 5280 makes a PrintableString of 1 to 64 characters. */
export function fitsSerialNumberAttribute(value: string): boolean {
  return value.length > 0 && value.length <= upperBounds.serialNumber && printable.test(value);
}

/**
 * `value` cut to the upper bound of its attribute: for values made from ids of any length, in names
 * whose other attributes keep them apart.
 */
export function fittedValue(type: NameAttributeType, value: string): string {
  return Array.from(value).slice(0, upperBounds[type]).join('').trimEnd();
}

/** `<label> <role>` as a common name, e.g. `hq Intermediate CA`, the label shortened until the whole fits. */
export function roleCommonName(label: string, role: string): string {
  const room = upperBounds.commonName - Array.from(role).length - 1;
  return `${Array.from(label).slice(0, room).join('').trimEnd()} ${role}`;
}

/**
 * A Name with one attribute per RDN, in the order given (most significant first). pkijs' own
 * encoder would put all attributes into one multi-valued RDN, so the SEQUENCE is built here. A
 * value that RFC 5280 does not allow in its attribute is refused, never encoded.
 */
export function buildName(attributes: readonly NameAttribute[]): RelativeDistinguishedNames {
  for (const attribute of attributes) checkAttribute(attribute);
  const sequence = new asn1js.Sequence({
    value: attributes.map(
      (attribute) =>
        new asn1js.Set({
          value: [
            new AttributeTypeAndValue({ type: oids[attribute.type], value: stringValue(attribute) }).toSchema(),
          ],
        }),
    ),
  });
  return RelativeDistinguishedNames.fromBER(sequence.toBER());
}

function checkAttribute({ type, value }: NameAttribute) {
  const length = Array.from(value).length;
  if (length === 0 || length > upperBounds[type]) {
    throw new Error(`a ${type} attribute holds 1 to ${upperBounds[type]} characters, not ${length} ("${value}")`);
  }
  if (type === 'country' && !/^[A-Z]{2}$/.test(value)) throw new Error(`country must be two upper-case letters, got "${value}"`);
  if (type === 'serialNumber' && !printable.test(value)) {
    throw new Error(`a serialNumber attribute is a PrintableString, which cannot hold "${value}"`);
  }
}

/** X.520 makes these PrintableString; everything else is UTF8String, as RFC 5280 asks. */
function stringValue(attribute: NameAttribute) {
  if (attribute.type === 'country' || attribute.type === 'serialNumber') return new asn1js.PrintableString({ value: attribute.value });
  return new asn1js.Utf8String({ value: attribute.value });
}

interface ParsedAttribute {
  oid: string;
  /** The string value, or undefined for a value that is not a string type. */
  text: string | undefined;
  der: ArrayBuffer;
}

/** The RDNs of a name, each a list of its attributes (more than one only for multi-valued RDNs). */
function relativeNames(name: RelativeDistinguishedNames): ParsedAttribute[][] {
  const sequence = name.toSchema();
  return sequence.valueBlock.value.map((set) =>
    ((set as asn1js.Set).valueBlock.value as asn1js.Sequence[]).map((pair) => {
      const [type, value] = pair.valueBlock.value as [asn1js.ObjectIdentifier, asn1js.BaseBlock];
      const text = value instanceof asn1js.BaseStringBlock ? value.getValue() : undefined;
      return { oid: type.getValue(), text, der: value.toBER() };
    }),
  );
}

/** Short names RFC 4514 defines, then other well-known descriptors; others print as dotted OIDs. */
const shortNames: Partial<Record<OidName, string>> = {
  commonName: 'CN',
  locality: 'L',
  state: 'ST',
  organization: 'O',
  organizationalUnit: 'OU',
  country: 'C',
  street: 'STREET',
  domainComponent: 'DC',
  userId: 'UID',
  serialNumber: 'serialNumber',
  emailAddress: 'emailAddress',
};

/** RFC 4514 string: RDNs in reverse order (least significant first), e.g. `CN=cam-1,OU=hq,O=acme`. */
export function formatDistinguishedName(name: RelativeDistinguishedNames): string {
  return relativeNames(name)
    .reverse()
    .map((rdn) =>
      rdn
        .map((attribute) => {
          const known = oidName(attribute.oid);
          const type = (known && shortNames[known]) ?? attribute.oid;
          const value =
            attribute.text === undefined
              ? `#${Buffer.from(attribute.der).toString('hex')}`
              : escapeAttributeValue(attribute.text);
          return `${type}=${value}`;
        })
        .join('+'),
    )
    .join(',');
}

function escapeAttributeValue(value: string): string {
  return value.replace(/["+,;<>\\\0]|^[ #]| $/g, (match) => (match === '\0' ? '\\00' : `\\${match}`));
}

/** The values of one attribute type, most significant RDN first. */
export function attributeValues(name: RelativeDistinguishedNames, type: NameAttributeType): string[] {
  const oid = oids[type];
  return relativeNames(name)
    .flat()
    .filter((attribute) => attribute.oid === oid && attribute.text !== undefined)
    .map((attribute) => attribute.text!);
}

export function summariseName(name: RelativeDistinguishedNames): SubjectSummary {
  // Read the name once; each attribute is looked up in what was read.
  const attributes = relativeNames(name).flat();
  const first = (type: NameAttributeType) => attributes.find((attribute) => attribute.oid === oids[type] && attribute.text !== undefined)?.text ?? null;
  return {
    commonName: first('commonName'),
    organizationalUnit: first('organizationalUnit'),
    organization: first('organization'),
    locality: first('locality'),
    state: first('state'),
    country: first('country'),
    serialNumber: first('serialNumber'),
  };
}

/** Byte-wise equality, which is what certificate path building compares issuer and subject by. */
export function sameName(a: RelativeDistinguishedNames, b: RelativeDistinguishedNames): boolean {
  return Buffer.from(a.toSchema().toBER()).equals(Buffer.from(b.toSchema().toBER()));
}
