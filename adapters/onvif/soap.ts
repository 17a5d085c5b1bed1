/**
 * SOAP 1.2 as ONVIF devices speak it: typed XML builders that escape every value, the
 * WS-Security UsernameToken (PasswordDigest profile), and a strict reader for answers and faults.
 * Both the adapter and the device simulator name the ONVIF namespaces from here.
 */
import { createHash, randomBytes } from 'node:crypto';
import { XMLParser, XMLValidator } from 'fast-xml-parser';

export const onvifNamespaces = {
  soap: 'http://www.w3.org/2003/05/soap-envelope',
  tds: 'http://www.onvif.org/ver10/device/wsdl',
  tt: 'http://www.onvif.org/ver10/schema',
  tas: 'http://www.onvif.org/ver10/advancedsecurity/wsdl',
  ter: 'http://www.onvif.org/ver10/error',
  wsse: 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd',
  wsu: 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd',
  wsa: 'http://schemas.xmlsoap.org/ws/2004/08/addressing',
  wsd: 'http://schemas.xmlsoap.org/ws/2005/04/discovery',
  dn: 'http://www.onvif.org/ver10/network/wsdl',
} as const;

export type NamespacePrefix = keyof typeof onvifNamespaces;

export const usernameTokenTypes = {
  passwordDigest: 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest',
  base64Binary: 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary',
} as const;

/** Where the device service lives on every ONVIF device (ONVIF Core, "Device management"). */
export const deviceServicePath = '/onvif/device_service';

// ---------------------------------------------------------------------------------------------
// Building

/** An element with a namespace-prefixed name; text children are escaped when rendered. */
export interface XmlElement {
  name: `${NamespacePrefix}:${string}`;
  attributes?: Record<string, string>;
  children: XmlContent[];
}
export type XmlContent = XmlElement | string;

export class XmlValueError extends Error {}

export function el(
  name: XmlElement['name'],
  ...children: (XmlContent | XmlContent[] | undefined | false)[]
): XmlElement {
  return { name, children: children.flat().filter((c): c is XmlContent => c !== undefined && c !== false) };
}

export function withAttributes(element: XmlElement, attributes: Record<string, string>): XmlElement {
  return { ...element, attributes: { ...element.attributes, ...attributes } };
}

// XML 1.0 allows neither most C0 controls nor lone surrogates; escaping cannot fix them.
const notXmlChar = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function escapeXml(value: string): string {
  if (notXmlChar.test(value)) throw new XmlValueError('value contains characters XML cannot carry');
  return value
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;')
    // Keep CR and TAB from being normalised away by the reader.
    .replace(/\r/g, '&#13;')
    .replace(/\t/g, '&#9;');
}

export function renderXml(content: XmlContent): string {
  if (typeof content === 'string') return escapeXml(content);
  const attributes = Object.entries(content.attributes ?? {})
    .map(([name, value]) => ` ${name}="${escapeXml(value)}"`)
    .join('');
  if (content.children.length === 0) return `<${content.name}${attributes}/>`;
  return `<${content.name}${attributes}>${content.children.map(renderXml).join('')}</${content.name}>`;
}

/** A SOAP 1.2 envelope declaring every ONVIF prefix, so bodies can use any of them. */
export function soapEnvelope(body: XmlElement, header: XmlElement[] = []): string {
  const declarations = Object.entries(onvifNamespaces)
    .map(([prefix, uri]) => ` xmlns:${prefix}="${uri}"`)
    .join('');
  const headerXml = header.length > 0 ? `<soap:Header>${header.map(renderXml).join('')}</soap:Header>` : '';
  return `<?xml version="1.0" encoding="UTF-8"?><soap:Envelope${declarations}>${headerXml}<soap:Body>${renderXml(body)}</soap:Body></soap:Envelope>`;
}

// ---------------------------------------------------------------------------------------------
// WS-Security UsernameToken

/** Base64(SHA-1(nonce ‖ created ‖ password)), per the WS-Security UsernameToken profile 1.0. */
export function passwordDigest(nonce: Uint8Array, created: string, password: string): string {
  return createHash('sha1')
    .update(nonce)
    .update(Buffer.from(created, 'utf8'))
    .update(Buffer.from(password, 'utf8'))
    .digest('base64');
}

/** `Created` as devices parse it: UTC, whole seconds. */
export function createdTimestamp(at: Date): string {
  return at.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function usernameTokenHeader(
  credentials: { username: string; password: string },
  deviceNow: Date,
  nonce: Uint8Array = randomBytes(16),
): XmlElement {
  const created = createdTimestamp(deviceNow);
  return withAttributes(
    el(
      'wsse:Security',
      el(
        'wsse:UsernameToken',
        el('wsse:Username', credentials.username),
        withAttributes(el('wsse:Password', passwordDigest(nonce, created, credentials.password)), {
          Type: usernameTokenTypes.passwordDigest,
        }),
        withAttributes(el('wsse:Nonce', Buffer.from(nonce).toString('base64')), {
          EncodingType: usernameTokenTypes.base64Binary,
        }),
        el('wsu:Created', created),
      ),
    ),
    { 'soap:mustUnderstand': 'true' },
  );
}

// ---------------------------------------------------------------------------------------------
// Reading

/** A parsed element: prefixes removed, attributes as `@_name`, text as `#text` when mixed. */
export type XmlObject = { [name: string]: XmlValue };
export type XmlValue = string | XmlObject | XmlValue[];

export interface SoapFault {
  /** Local names: `Sender` or `Receiver`, then the ONVIF subcodes, outermost first. */
  code: string;
  subcodes: string[];
  reason: string;
}

export class MalformedSoapError extends Error {}

// Elements that may repeat, read as arrays even when a device sends one.
const repeatable = new Set([
  'Scopes',
  'User',
  'NetworkProtocols',
  'Port',
  'NTPManual',
  'NetworkInterfaces',
  'Service',
  'CertificationPathID',
  'CertificateID',
  'Certificate',
  'CSRAttribute',
  'ProbeMatch',
]);

const parser = new XMLParser({
  removeNSPrefix: true,
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  processEntities: true,
  htmlEntities: false,
  isArray: (name, _path, _isLeaf, isAttribute) => !isAttribute && repeatable.has(name),
});

/** The envelope's header and body; throws MalformedSoapError for anything that is not SOAP. */
export function readSoapEnvelope(xml: string): { header: XmlObject; body: XmlObject } {
  const validation = XMLValidator.validate(xml);
  if (validation !== true) {
    throw new MalformedSoapError(`not well-formed XML (line ${validation.err.line}: ${validation.err.msg})`);
  }
  const document = parser.parse(xml) as XmlObject;
  const envelope = document.Envelope;
  if (!isObject(envelope) || !isObject(envelope.Body)) throw new MalformedSoapError('not a SOAP envelope with a Body');
  return { header: isObject(envelope.Header) ? envelope.Header : {}, body: envelope.Body };
}

/** The fault in a body, if it carries one. */
export function soapFaultOf(body: XmlObject): SoapFault | undefined {
  const fault = body.Fault;
  if (fault === undefined) return undefined;
  if (!isObject(fault)) return { code: 'Receiver', subcodes: [], reason: '' };
  const code = isObject(fault.Code) ? fault.Code : {};
  const subcodes: string[] = [];
  let subcode = code.Subcode;
  while (isObject(subcode)) {
    const value = textOf(subcode.Value);
    if (value) subcodes.push(localName(value));
    subcode = subcode.Subcode;
  }
  const reasons = isObject(fault.Reason) ? fault.Reason.Text : undefined;
  const reason = Array.isArray(reasons) ? textOf(reasons[0]) : textOf(reasons);
  return { code: localName(textOf(code.Value) ?? 'Receiver'), subcodes, reason: reason ?? '' };
}

export function isObject(value: XmlValue | undefined): value is XmlObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Text of a leaf, whether or not it carried attributes. */
export function textOf(value: XmlValue | undefined): string | undefined {
  if (typeof value === 'string') return value;
  if (isObject(value)) {
    const text = value['#text'];
    return typeof text === 'string' ? text : Object.keys(value).every((k) => k.startsWith('@_')) ? '' : undefined;
  }
  return undefined;
}

/** Text of an element that may have been read as a list (repeatable names); the first counts. */
export function firstText(value: XmlValue | undefined): string | undefined {
  return textOf(listOf(value)[0]);
}

export function listOf(value: XmlValue | undefined): XmlValue[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}

export function localName(qualified: string): string {
  return qualified.slice(qualified.indexOf(':') + 1);
}
