/**
 * A simulated ONVIF device (an IP camera's device service and Advanced Security service) for tests
 * and demos. It is strict where devices are strict: UsernameToken digests with a created-time window
 * and nonce replay protection, HTTP digest with nonce counts, ONVIF access classes, real on-device
 * keys and PKCS#10 CSRs, uploaded certificates checked against those keys, and a real TLS listener
 * with the assigned certificate once HTTPS is switched on. A WS-Discovery responder answers Probes.
 *
 * It reads requests with its own parser and builds answers with its own templates, sharing only
 * namespace names with the adapter, so a test passing means both sides speak ONVIF, not merely
 * agree with each other.
 */
import {
  createHash,
  createPublicKey,
  randomBytes,
  randomUUID,
  timingSafeEqual,
  X509Certificate,
} from 'node:crypto';
import dgram from 'node:dgram';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import { isIPv4, isIPv6, type AddressInfo, type Socket } from 'node:net';
import * as asn1js from 'asn1js';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import * as pkijs from 'pkijs';
import type { DeviceCredentials } from '../../adapters/device-adapter';
import { deviceServicePath, onvifNamespaces, usernameTokenTypes } from '../../adapters/onvif/soap';
import { createCertificationRequest, generateDeviceKey, privateKeyPem, type DeviceKey, type KeyAlgorithm } from './device-crypto';

export const advancedSecurityPath = '/onvif/security_service';

export type OnvifAuthentication = 'ws-security' | 'http-digest' | 'both';

export interface OnvifDeviceFaults {
  /** Serial number GetDeviceInformation reports instead of the real one. */
  reportedSerialNumber?: string;
  /** Extra delay before an operation (e.g. `GetDeviceInformation`) is answered. */
  delayMs?: Record<string, number>;
  /** Operations whose requests are never answered. */
  hang?: string[];
  /** Operations answered with XML that is not well-formed. */
  malformed?: string[];
  /** Operations whose answer is cut off mid-body (the connection drops). */
  truncated?: string[];
  /** Refuse every login, as a device with a locked or changed password does. */
  refuseCredentials?: boolean;
  /** Operations refused with `env:Sender ter:InvalidArgVal ter:<subcode>`, like a device whose policy forbids a setting. */
  refuse?: Record<string, string>;
}

export interface OnvifDeviceOptions {
  /** A loopback address of its own, e.g. 127.77.0.5 (Linux routes all of 127/8 to lo). */
  host?: string;
  /** Port of the device service over HTTP; 0 picks a free one. */
  port?: number;
  serialNumber: string;
  /** As the device writes it in GetNetworkInterfaces, e.g. `02:00:5e:00:00:01`. */
  macAddress: string;
  manufacturer?: string;
  model?: string;
  firmwareVersion?: string;
  hardwareId?: string;
  /** The factory administrator. */
  credentials: DeviceCredentials;
  authentication?: OnvifAuthentication;
  /** HTTP digest algorithm offered in challenges. */
  digestAlgorithm?: 'MD5' | 'SHA-256';
  /**
   * Many cameras answer GetDeviceInformation, GetScopes and GetNetworkInterfaces without
   * credentials; false applies the ONVIF access classes strictly (READ_SYSTEM needs a user).
   */
  anonymousIdentity?: boolean;
  /** Whether the Advanced Security service exists (older cameras lack it). */
  advancedSecurity?: boolean;
  /** How far the device's clock is from the host's, to check that clients correct for it. */
  clockOffsetMs?: number;
  /** How many GetKeyStatus polls report `generating` before `ok`. */
  keyGenerationPolls?: number;
  name?: string;
  location?: string;
  /** WS-Discovery responder; off unless given. */
  discovery?: { host?: string; port?: number; multicastGroup?: string };
  /** Lists the MAC address among the fixed scopes (`onvif://www.onvif.org/MAC/...`), as many cameras do. */
  macAddressScope?: boolean;
  faults?: OnvifDeviceFaults;
}

export interface OnvifDeviceState {
  users: { username: string; userLevel: UserLevel }[];
  hostname: string;
  ntpServers: string[];
  timezone: string;
  protocols: { http: { enabled: boolean; port: number }; https: { enabled: boolean; port: number } };
  scopes: string[];
  keys: { keyId: string; algorithm: KeyAlgorithm; status: KeyStatus }[];
  certificates: { certificateId: string; fingerprint: string; keyId?: string }[];
  certificationPaths: { pathId: string; certificateIds: string[] }[];
  assignedServerCertificationPaths: string[];
  /** SHA-256 of the certificate the TLS listener presents, while it runs. */
  servingCertificateFingerprint?: string;
  refusedLogins: number;
}

export interface RunningOnvifDevice {
  /** `host:port` of the device service over HTTP: the adapter's address format. */
  address: string;
  host: string;
  httpPort: number;
  /** Port of the TLS listener while it runs. */
  readonly httpsPort: number | undefined;
  /** Port of the WS-Discovery responder, when started. */
  discoveryPort?: number;
  endpointReference: string;
  faults: OnvifDeviceFaults;
  state(): OnvifDeviceState;
  /** Whether `password` is the one the device holds for `username`. */
  passwordMatches(username: string, password: string): boolean;
  close(): Promise<void>;
}

type UserLevel = 'Administrator' | 'Operator' | 'User';
type KeyStatus = 'ok' | 'generating' | 'corrupt';
type AccessClass = 'preAuth' | 'identity' | 'read' | 'write';

interface DeviceUser {
  password: string;
  level: UserLevel;
}

interface StoredKey {
  algorithm: KeyAlgorithm;
  alias: string;
  key?: DeviceKey;
  pollsLeft: number;
  failed: boolean;
}

interface StoredCertificate {
  der: Buffer;
  certificate: X509Certificate;
  alias: string;
  keyId?: string;
}

type Obj = { [name: string]: Val };
type Val = string | Obj | Val[];

/** A SOAP fault the device answers with. */
class OnvifFault extends Error {
  constructor(
    readonly code: 'Sender' | 'Receiver',
    readonly subcodes: string[],
    reason: string,
    readonly httpStatus = code === 'Sender' ? 400 : 500,
  ) {
    super(reason);
  }
}

const invalidArg = (subcode: string, reason: string) => new OnvifFault('Sender', ['ter:InvalidArgVal', `ter:${subcode}`], reason);

const createdWindowMs = 5 * 60_000;
const maxRequestBytes = 256 * 1024;

/** GeneralName CHOICE tags (RFC 5280 §4.2.1.6) the device understands in a CSR attribute. */
const generalNameTag = { dNSName: 2, uniformResourceIdentifier: 6, iPAddress: 7 } as const;

const signatureAlgorithmFor: Record<KeyAlgorithm, string> = {
  'P-256': '1.2.840.10045.4.3.2',
  'P-384': '1.2.840.10045.4.3.3',
  'RSA-2048': '1.2.840.113549.1.1.11',
};
const curveNames: Record<string, KeyAlgorithm> = {
  secp256r1: 'P-256',
  prime256v1: 'P-256',
  'P-256': 'P-256',
  secp384r1: 'P-384',
  'P-384': 'P-384',
};

const requestParser = new XMLParser({
  removeNSPrefix: true,
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  htmlEntities: false,
  isArray: (name, _path, _leaf, isAttribute) =>
    !isAttribute && ['User', 'Scopes', 'NTPManual', 'NetworkProtocols', 'Port', 'CertificateID', 'CSRAttribute'].includes(name),
});

function obj(value: Val | undefined): Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? value : {};
}
function text(value: Val | undefined): string | undefined {
  if (typeof value === 'string') return value;
  const o = obj(value);
  return typeof o['#text'] === 'string' ? o['#text'] : value === undefined ? undefined : Object.keys(o).every((k) => k.startsWith('@_')) ? '' : undefined;
}
function list(value: Val | undefined): Val[] {
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}

function esc(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}
/** An element whose content is already XML. */
function x(name: string, content = ''): string {
  return content === '' ? `<${name}/>` : `<${name}>${content}</${name}>`;
}
/** An element holding text. */
function t(name: string, value: string | number | boolean): string {
  return `<${name}>${esc(String(value))}</${name}>`;
}

function envelope(body: string, header = ''): string {
  const declarations = (['tds', 'tt', 'tas', 'ter', 'wsa', 'wsd', 'dn'] as const)
    .map((prefix) => ` xmlns:${prefix}="${onvifNamespaces[prefix]}"`)
    .join('');
  return `<?xml version="1.0" encoding="UTF-8"?><env:Envelope xmlns:env="${onvifNamespaces.soap}"${declarations}>${header ? x('env:Header', header) : ''}${x('env:Body', body)}</env:Envelope>`;
}

function faultXml(fault: OnvifFault): string {
  const subcode = fault.subcodes.reduceRight((inner, value) => x('env:Subcode', t('env:Value', value) + inner), '');
  return x(
    'env:Fault',
    x('env:Code', t('env:Value', `env:${fault.code}`) + subcode) +
      x('env:Reason', `<env:Text xml:lang="en">${esc(fault.message)}</env:Text>`),
  );
}

const hostnamePattern = /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$/;
const dnsNamePattern = /^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$/;
const posixTzPattern = /^(?:[A-Za-z]{3,}|<[A-Za-z0-9+-]{3,}>)[+-]?\d{1,2}(?::\d{2}){0,2}\S{0,48}$/;

export async function startOnvifDevice(options: OnvifDeviceOptions): Promise<RunningOnvifDevice> {
  const host = options.host ?? '127.0.0.1';
  const authentication = options.authentication ?? 'both';
  const anonymousIdentity = options.anonymousIdentity ?? true;
  const advancedSecurity = options.advancedSecurity ?? true;
  const clockOffsetMs = options.clockOffsetMs ?? 0;
  const digestAlgorithm = options.digestAlgorithm ?? 'MD5';
  const faults: OnvifDeviceFaults = { ...options.faults };
  const manufacturer = options.manufacturer ?? 'Simulated Optics';
  const model = options.model ?? 'SO-CAM-4K';
  const endpointReference = `urn:uuid:${uuidFrom(options.serialNumber)}`;
  const realm = `onvif-${options.serialNumber}`;

  const users = new Map<string, DeviceUser>([[options.credentials.username, { password: options.credentials.password, level: 'Administrator' }]]);
  let hostname = `cam-${options.serialNumber.toLowerCase().replace(/[^a-z0-9-]/g, '-')}`.slice(0, 63);
  let ntpServers: { type: 'DNS' | 'IPv4' | 'IPv6'; value: string }[] = [];
  let timezone = 'UTC0';
  const protocols = { http: { enabled: true, port: 0 }, https: { enabled: false, port: 443 } };
  const fixedScopes = [
    'onvif://www.onvif.org/type/video_encoder',
    'onvif://www.onvif.org/type/Network_Video_Transmitter',
    'onvif://www.onvif.org/Profile/Streaming',
    `onvif://www.onvif.org/hardware/${encodeURIComponent(model)}`,
    ...(options.macAddressScope ? [`onvif://www.onvif.org/MAC/${options.macAddress.toLowerCase().replace(/[:-]/g, '')}`] : []),
  ];
  let configurableScopes = [
    `onvif://www.onvif.org/name/${encodeURIComponent(options.name ?? `${manufacturer} ${model}`).replace(/%20/g, '_')}`,
    `onvif://www.onvif.org/location/${encodeURIComponent(options.location ?? 'unassigned')}`,
  ];
  const keys = new Map<string, StoredKey>();
  const certificates = new Map<string, StoredCertificate>();
  const certificationPaths = new Map<string, { certificateIds: string[]; alias: string }>();
  let assignedPaths: string[] = [];
  let refusedLogins = 0;
  const seenTokenNonces = new Map<string, number>();
  const digestNonces = new Map<string, { expires: number; lastCount: number }>();
  const openSockets = new Set<Socket>();
  let nextId = 1;
  const newId = (prefix: string) => `${prefix}-${nextId++}`;

  const deviceNow = () => Date.now() + clockOffsetMs;

  // -----------------------------------------------------------------------------------------
  // Authentication

  function verifyUsernameToken(security: Obj): string | undefined {
    const token = obj(security.UsernameToken);
    const username = text(token.Username);
    const passwordNode = obj(token.Password);
    const digest = text(token.Password);
    const nonceText = text(token.Nonce);
    const created = text(token.Created);
    if (!username || !digest || !nonceText || !created) return undefined;
    if (typeof token.Password === 'object' && passwordNode['@_Type'] !== usernameTokenTypes.passwordDigest) return undefined;
    const createdAt = Date.parse(created);
    if (!Number.isFinite(createdAt) || Math.abs(deviceNow() - createdAt) > createdWindowMs) return undefined;
    const now = Date.now();
    for (const [nonce, expires] of seenTokenNonces) if (expires < now) seenTokenNonces.delete(nonce);
    if (seenTokenNonces.has(nonceText)) return undefined;
    seenTokenNonces.set(nonceText, now + 2 * createdWindowMs);
    const user = users.get(username);
    if (!user) return undefined;
    const expected = createHash('sha1')
      .update(Buffer.from(nonceText, 'base64'))
      .update(created, 'utf8')
      .update(user.password, 'utf8')
      .digest();
    const presented = Buffer.from(digest, 'base64');
    return presented.length === expected.length && timingSafeEqual(presented, expected) ? username : undefined;
  }

  function verifyHttpDigest(header: string, method: string, uri: string): string | undefined {
    const params = parseAuthParams(header.replace(/^Digest\s+/i, ''));
    const user = params.username ? users.get(params.username) : undefined;
    const issued = params.nonce ? digestNonces.get(params.nonce) : undefined;
    if (!user || !issued || issued.expires < Date.now() || params.realm !== realm || params.uri !== uri) return undefined;
    if (params.qop !== 'auth' || !params.nc || !params.cnonce) return undefined;
    const count = parseInt(params.nc, 16);
    if (!(count > issued.lastCount)) return undefined;
    const algorithm = (params.algorithm ?? 'MD5').toUpperCase();
    if (algorithm !== digestAlgorithm) return undefined;
    const hash = (value: string) => createHash(algorithm === 'MD5' ? 'md5' : 'sha256').update(value, 'utf8').digest('hex');
    const ha1 = hash(`${params.username}:${realm}:${user.password}`);
    const ha2 = hash(`${method}:${uri}`);
    const expected = Buffer.from(hash(`${ha1}:${params.nonce}:${params.nc}:${params.cnonce}:auth:${ha2}`));
    const presented = Buffer.from(params.response ?? '');
    if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) return undefined;
    issued.lastCount = count;
    return params.username;
  }

  function digestChallenge(): string {
    const nonce = randomBytes(16).toString('hex');
    digestNonces.set(nonce, { expires: Date.now() + 5 * 60_000, lastCount: 0 });
    return `Digest realm="${realm}", qop="auth", algorithm=${digestAlgorithm}, nonce="${nonce}", opaque="${randomBytes(8).toString('hex')}"`;
  }

  // -----------------------------------------------------------------------------------------
  // Operations

  /** `afterReply` collects what must wait until the answer is on the wire (closing the HTTP port). */
  type Handler = (request: Obj, context: { afterReply: (() => Promise<void>)[] }) => string | Promise<string>;
  interface Operation {
    access: AccessClass;
    service: 'device' | 'security';
    handle: Handler;
  }

  const adminUserLevels: UserLevel[] = ['Administrator'];

  const operations: Record<string, Operation> = {
    GetSystemDateAndTime: {
      access: 'preAuth',
      service: 'device',
      handle: () => {
        const now = new Date(deviceNow());
        return x(
          'tds:SystemDateAndTime',
          t('tt:DateTimeType', ntpServers.length > 0 ? 'NTP' : 'Manual') +
            t('tt:DaylightSavings', false) +
            x('tt:TimeZone', t('tt:TZ', timezone)) +
            x(
              'tt:UTCDateTime',
              x('tt:Time', t('tt:Hour', now.getUTCHours()) + t('tt:Minute', now.getUTCMinutes()) + t('tt:Second', now.getUTCSeconds())) +
                x('tt:Date', t('tt:Year', now.getUTCFullYear()) + t('tt:Month', now.getUTCMonth() + 1) + t('tt:Day', now.getUTCDate())),
            ),
        );
      },
    },
    GetServices: {
      access: 'preAuth',
      service: 'device',
      handle: () => {
        const service = (namespace: string, path: string) =>
          x(
            'tds:Service',
            t('tds:Namespace', namespace) + t('tds:XAddr', `http://${authority(host, protocols.http.port)}${path}`) +
              x('tds:Version', t('tt:Major', 2) + t('tt:Minor', 60)),
          );
        return service(onvifNamespaces.tds, deviceServicePath) + (advancedSecurity ? service(onvifNamespaces.tas, advancedSecurityPath) : '');
      },
    },
    GetHostname: {
      access: 'preAuth',
      service: 'device',
      handle: () => x('tds:HostnameInformation', t('tt:FromDHCP', false) + t('tt:Name', hostname)),
    },
    GetDeviceInformation: {
      access: 'identity',
      service: 'device',
      handle: () =>
        t('tds:Manufacturer', manufacturer) +
        t('tds:Model', model) +
        t('tds:FirmwareVersion', options.firmwareVersion ?? '2.6.1') +
        t('tds:SerialNumber', faults.reportedSerialNumber ?? options.serialNumber) +
        t('tds:HardwareId', options.hardwareId ?? `${model}-HW1`),
    },
    GetScopes: {
      access: 'identity',
      service: 'device',
      handle: () =>
        [...fixedScopes.map((s) => ['Fixed', s]), ...configurableScopes.map((s) => ['Configurable', s])]
          .map(([def, item]) => x('tds:Scopes', t('tt:ScopeDef', def) + t('tt:ScopeItem', item)))
          .join(''),
    },
    SetScopes: {
      access: 'write',
      service: 'device',
      handle: (request) => {
        const scopes = list(request.Scopes).map((s) => text(s) ?? '');
        if (scopes.some((s) => !/^[a-z][a-z0-9+.-]*:\S+$/i.test(s))) throw invalidArg('InvalidScope', 'scopes must be URIs');
        if (scopes.some((s) => fixedScopes.includes(s))) throw new OnvifFault('Sender', ['ter:OperationProhibited', 'ter:ScopeOverwrite'], 'fixed scope');
        configurableScopes = [...new Set(scopes)];
        return '';
      },
    },
    GetNetworkInterfaces: {
      access: 'identity',
      service: 'device',
      handle: () =>
        `<tds:NetworkInterfaces token="eth0">${t('tt:Enabled', true)}${x(
          'tt:Info',
          t('tt:Name', 'eth0') + t('tt:HwAddress', options.macAddress) + t('tt:MTU', 1500),
        )}${x('tt:IPv4', t('tt:Enabled', true) + x('tt:Config', x('tt:Manual', t('tt:Address', host) + t('tt:PrefixLength', 8)) + t('tt:DHCP', false)))}</tds:NetworkInterfaces>`,
    },
    GetUsers: {
      access: 'read',
      service: 'device',
      handle: () =>
        [...users].map(([username, user]) => x('tds:User', t('tt:Username', username) + t('tt:UserLevel', user.level))).join(''),
    },
    CreateUsers: {
      access: 'write',
      service: 'device',
      handle: (request) => {
        const created = list(request.User).map(userFrom);
        for (const user of created) {
          if (users.has(user.username)) throw new OnvifFault('Sender', ['ter:OperationProhibited', 'ter:UsernameClash'], 'user exists');
          if (!user.password) throw invalidArg('PasswordTooWeak', 'a password is required');
        }
        for (const user of created) users.set(user.username, { password: user.password!, level: user.level });
        return '';
      },
    },
    SetUser: {
      access: 'write',
      service: 'device',
      handle: (request) => {
        const changed = list(request.User).map(userFrom);
        for (const user of changed) {
          if (!users.has(user.username)) throw invalidArg('UsernameMissing', 'no such user');
        }
        for (const user of changed) {
          const existing = users.get(user.username)!;
          users.set(user.username, { password: user.password ?? existing.password, level: user.level });
        }
        return '';
      },
    },
    DeleteUsers: {
      access: 'write',
      service: 'device',
      handle: (request) => {
        const names = list(request.Username).map((u) => text(u) ?? '');
        if (names.some((name) => !users.has(name))) throw invalidArg('UsernameMissing', 'no such user');
        for (const name of names) users.delete(name);
        return '';
      },
    },
    SetHostname: {
      access: 'write',
      service: 'device',
      handle: (request) => {
        const name = text(request.Name) ?? '';
        if (!hostnamePattern.test(name)) throw invalidArg('InvalidHostname', 'not a valid host name');
        hostname = name;
        return '';
      },
    },
    GetNTP: {
      access: 'read',
      service: 'device',
      handle: () =>
        x(
          'tds:NTPInformation',
          t('tt:FromDHCP', false) +
            ntpServers
              .map((server) =>
                x(
                  'tt:NTPManual',
                  t('tt:Type', server.type) +
                    t(server.type === 'DNS' ? 'tt:DNSname' : server.type === 'IPv4' ? 'tt:IPv4Address' : 'tt:IPv6Address', server.value),
                ),
              )
              .join(''),
        ),
    },
    SetNTP: {
      access: 'write',
      service: 'device',
      handle: (request) => {
        if (text(request.FromDHCP) === 'true') throw invalidArg('DHCPNotSupported', 'this device takes NTP servers only manually');
        const servers = list(request.NTPManual).map((entry) => {
          const e = obj(entry);
          const type = text(e.Type);
          if (type === 'IPv4' && isIPv4(text(e.IPv4Address) ?? '')) return { type, value: text(e.IPv4Address)! } as const;
          if (type === 'IPv6' && isIPv6(text(e.IPv6Address) ?? '')) return { type, value: text(e.IPv6Address)! } as const;
          if (type === 'DNS' && dnsNamePattern.test(text(e.DNSname) ?? '')) return { type, value: text(e.DNSname)! } as const;
          throw invalidArg(type === 'DNS' ? 'InvalidDnsName' : 'InvalidIPv4Address', 'not a valid NTP server');
        });
        if (servers.length > 4) throw new OnvifFault('Sender', ['ter:InvalidArgVal', 'ter:TooManyNTPServers'], 'at most 4');
        ntpServers = servers;
        return '';
      },
    },
    SetSystemDateAndTime: {
      access: 'write',
      service: 'device',
      handle: (request) => {
        const tz = text(obj(request.TimeZone).TZ);
        if (tz !== undefined) {
          if (!posixTzPattern.test(tz)) throw invalidArg('InvalidTimeZone', 'not a POSIX TZ string');
          timezone = tz;
        }
        return '';
      },
    },
    GetNetworkProtocols: {
      access: 'read',
      service: 'device',
      handle: () =>
        (['http', 'https'] as const)
          .map((name) =>
            x(
              'tds:NetworkProtocols',
              t('tt:Name', name.toUpperCase()) + t('tt:Enabled', protocols[name].enabled) + t('tt:Port', protocols[name].port),
            ),
          )
          .join(''),
    },
    SetNetworkProtocols: {
      access: 'write',
      service: 'device',
      handle: async (request, context) => {
        const wanted = list(request.NetworkProtocols).map((entry) => {
          const e = obj(entry);
          const name = (text(e.Name) ?? '').toLowerCase();
          const ports = list(e.Port).map((p) => Number(text(p)));
          if (name !== 'http' && name !== 'https') throw new OnvifFault('Sender', ['ter:InvalidArgVal', 'ter:ServiceNotSupported'], `protocol ${name}`);
          if (ports.some((p) => !Number.isInteger(p) || p < 1 || p > 65535)) throw invalidArg('PortAlreadyInUse', 'invalid port');
          return { name, enabled: text(e.Enabled) === 'true', port: ports[0] } as const;
        });
        const https = wanted.find((w) => w.name === 'https');
        if (https) {
          if (https.enabled) {
            const served = servedCertificate();
            if (!served) {
              throw new OnvifFault('Receiver', ['ter:Action', 'ter:EnablingTlsFailed'], 'no server certificate is assigned');
            }
            const port = https.port ?? protocols.https.port;
            try {
              await startTls(served, port);
            } catch (error) {
              throw new OnvifFault('Receiver', ['ter:Action', 'ter:EnablingTlsFailed'], `TLS listener failed: ${(error as Error).message}`);
            }
            protocols.https = { enabled: true, port };
          } else {
            await stopTls();
            protocols.https.enabled = false;
          }
        }
        const plain = wanted.find((w) => w.name === 'http');
        if (plain && plain.enabled !== protocols.http.enabled) {
          protocols.http.enabled = plain.enabled;
          // The answer still goes out on this connection; the listener follows afterwards.
          context.afterReply.push(() => (plain.enabled ? listenHttp() : stopHttp()));
        }
        return '';
      },
    },

    // Advanced Security service
    CreateECCKeyPair: {
      access: 'write',
      service: 'security',
      handle: (request) => {
        const algorithm = curveNames[text(request.EllipticCurve) ?? ''];
        if (!algorithm) throw invalidArg('KeyGenerationFailed', 'unsupported elliptic curve');
        return startKeyGeneration(algorithm, text(request.Alias) ?? '');
      },
    },
    CreateRSAKeyPair: {
      access: 'write',
      service: 'security',
      handle: (request) => {
        if (text(request.KeyLength) !== '2048') throw invalidArg('KeyGenerationFailed', 'only 2048-bit RSA keys');
        return startKeyGeneration('RSA-2048', text(request.Alias) ?? '');
      },
    },
    GetKeyStatus: {
      access: 'read',
      service: 'security',
      handle: (request) => t('tas:KeyStatus', keyStatus(requireKey(text(request.KeyID)))),
    },
    CreatePKCS10CSR: {
      access: 'write',
      service: 'security',
      handle: async (request) => {
        const stored = requireKey(text(request.KeyID));
        if (keyStatus(stored) !== 'ok' || !stored.key) throw invalidArg('KeyNotReady', 'the key pair is not ready');
        const commonName = text(obj(request.Subject).CommonName);
        if (!commonName || commonName.length > 64) throw invalidArg('InvalidDistinguishedName', 'a CommonName of at most 64 characters is required');
        const algorithm = text(obj(request.SignatureAlgorithm).algorithm);
        if (algorithm !== signatureAlgorithmFor[stored.algorithm]) throw invalidArg('SignatureAlgorithmMismatch', 'signature algorithm does not fit the key');
        const names = { dns: [] as string[], ip: [] as string[], uri: [] as string[] };
        for (const attribute of list(request.CSRAttribute)) {
          const extension = obj(obj(attribute).X509v3Extension);
          if (text(extension.extnOID) !== '2.5.29.17') throw invalidArg('UnsupportedCSRAttribute', 'only subjectAltName is supported');
          Object.assign(names, decodeSubjectAltNames(Buffer.from(text(extension.extnValue) ?? '', 'base64')));
        }
        const pem = await createCertificationRequest(stored.key, { commonName, subjectAltNames: names });
        return t('tas:PKCS10CSR', pem.replace(/-----[A-Z ]+-----|\s/g, ''));
      },
    },
    UploadCertificate: {
      access: 'write',
      service: 'security',
      handle: (request) => {
        const der = Buffer.from(text(request.Certificate) ?? '', 'base64');
        let certificate: X509Certificate;
        try {
          certificate = new X509Certificate(der);
        } catch {
          throw invalidArg('InvalidCertificate', 'not a DER X.509 certificate');
        }
        if ([...certificates.values()].some((c) => c.der.equals(der))) throw invalidArg('DuplicateCertificate', 'certificate already stored');
        const spki = certificate.publicKey.export({ type: 'spki', format: 'der' });
        const keyId = [...keys].find(([, k]) => k.key && createPublicKey(k.key.privateKeyObject).export({ type: 'spki', format: 'der' }).equals(spki))?.[0];
        if (text(request.PrivateKeyRequired) === 'true' && !keyId) {
          throw invalidArg('NoMatchingPrivateKey', 'no key pair on the device matches the certificate');
        }
        const certificateId = newId('cert');
        certificates.set(certificateId, { der, certificate, alias: text(request.Alias) ?? '', ...(keyId ? { keyId } : {}) });
        return t('tas:CertificateID', certificateId) + (keyId ? t('tas:KeyID', keyId) : '');
      },
    },
    GetAllCertificates: {
      access: 'read',
      service: 'security',
      handle: () =>
        [...certificates]
          .map(([id, c]) =>
            x(
              'tas:Certificate',
              t('tas:CertificateID', id) + (c.keyId ? t('tas:KeyID', c.keyId) : '') + t('tas:Alias', c.alias) + t('tas:CertificateContent', c.der.toString('base64')),
            ),
          )
          .join(''),
    },
    CreateCertificationPath: {
      access: 'write',
      service: 'security',
      handle: (request) => {
        const ids = list(obj(request.CertificateIDs).CertificateID).map((id) => text(id) ?? '');
        if (ids.length === 0) throw invalidArg('InvalidCertificationPath', 'no certificates');
        const chain = ids.map((id) => {
          const stored = certificates.get(id);
          if (!stored) throw invalidArg('CertificateID', `no certificate ${id}`);
          return stored.certificate;
        });
        for (let i = 0; i + 1 < chain.length; i += 1) {
          if (!chain[i].checkIssued(chain[i + 1]) || !chain[i].verify(chain[i + 1].publicKey)) {
            throw invalidArg('InvalidCertificationPath', `certificate ${i + 1} is not issued by the next`);
          }
        }
        const pathId = newId('path');
        certificationPaths.set(pathId, { certificateIds: ids, alias: text(request.Alias) ?? '' });
        return t('tas:CertificationPathID', pathId);
      },
    },
    GetCertificationPath: {
      access: 'read',
      service: 'security',
      handle: (request) => {
        const path = certificationPaths.get(text(request.CertificationPathID) ?? '');
        if (!path) throw invalidArg('CertificationPathID', 'no such certification path');
        return x('tas:CertificationPath', path.certificateIds.map((id) => t('tas:CertificateID', id)).join('') + t('tas:Alias', path.alias));
      },
    },
    AddServerCertificateAssignment: {
      access: 'write',
      service: 'security',
      handle: async (request) => {
        const pathId = requireServablePath(text(request.CertificationPathID));
        if (assignedPaths.length > 0) {
          throw new OnvifFault('Receiver', ['ter:Action', 'ter:MaximumNumberOfCertificationPathsReached'], 'replace the assigned path instead');
        }
        assignedPaths = [pathId];
        await refreshTls();
        return '';
      },
    },
    ReplaceServerCertificateAssignment: {
      access: 'write',
      service: 'security',
      handle: async (request) => {
        const old = text(request.OldCertificationPathID) ?? '';
        if (!assignedPaths.includes(old)) throw invalidArg('CertificationPathID', 'the old path is not assigned');
        const pathId = requireServablePath(text(request.NewCertificationPathID));
        assignedPaths = assignedPaths.map((id) => (id === old ? pathId : id));
        await refreshTls();
        return '';
      },
    },
    GetAssignedServerCertificates: {
      access: 'read',
      service: 'security',
      handle: () => assignedPaths.map((id) => t('tas:CertificationPathID', id)).join(''),
    },
  };

  function userFrom(value: Val): { username: string; password?: string; level: UserLevel } {
    const u = obj(value);
    const username = text(u.Username) ?? '';
    const level = text(u.UserLevel) ?? '';
    if (!/^[\x21-\x7e]{1,32}$/.test(username)) throw invalidArg('UsernameTooLong', 'invalid username');
    if (!['Administrator', 'Operator', 'User'].includes(level)) throw invalidArg('InvalidArgVal', 'invalid user level');
    const password = text(u.Password);
    if (password !== undefined && (password.length < 1 || password.length > 64)) throw invalidArg('PasswordTooLong', 'invalid password length');
    return { username, ...(password !== undefined ? { password } : {}), level: level as UserLevel };
  }

  function startKeyGeneration(algorithm: KeyAlgorithm, alias: string): string {
    const keyId = newId('key');
    const stored: StoredKey = { algorithm, alias, pollsLeft: options.keyGenerationPolls ?? 1, failed: false };
    keys.set(keyId, stored);
    generateDeviceKey(algorithm).then(
      (key) => (stored.key = key),
      () => (stored.failed = true),
    );
    return t('tas:KeyID', keyId) + t('tas:EstimatedCreationTime', 'PT1S');
  }

  function requireKey(keyId: string | undefined): StoredKey {
    const stored = keyId ? keys.get(keyId) : undefined;
    if (!stored) throw invalidArg('InvalidKeyID', 'no such key');
    return stored;
  }

  function keyStatus(stored: StoredKey): KeyStatus {
    if (stored.failed) return 'corrupt';
    if (stored.pollsLeft > 0 || !stored.key) {
      stored.pollsLeft -= 1;
      return 'generating';
    }
    return 'ok';
  }

  function requireServablePath(pathId: string | undefined): string {
    const path = pathId ? certificationPaths.get(pathId) : undefined;
    if (!path) throw invalidArg('CertificationPathID', 'no such certification path');
    const leaf = certificates.get(path.certificateIds[0]);
    if (!leaf?.keyId || !keys.get(leaf.keyId)?.key) throw invalidArg('NoMatchingPrivateKey', 'the first certificate has no key pair on the device');
    return pathId!;
  }

  /** Key and PEM chain of the assigned server certification path. */
  function servedCertificate(): { key: DeviceKey; chainPem: string; fingerprint: string } | undefined {
    const path = assignedPaths[0] ? certificationPaths.get(assignedPaths[0]) : undefined;
    if (!path) return undefined;
    const chain = path.certificateIds.map((id) => certificates.get(id)!);
    const key = keys.get(chain[0].keyId!)!.key!;
    return { key, chainPem: chain.map((c) => c.certificate.toString()).join(''), fingerprint: sha256(chain[0].der) };
  }

  // -----------------------------------------------------------------------------------------
  // HTTP and TLS

  let tlsServer: https.Server | undefined;
  let servingFingerprint: string | undefined;

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > maxRequestBytes) {
        reply(res, 413, envelope(faultXml(new OnvifFault('Sender', ['ter:InvalidArgVal'], 'request too large'))));
        return;
      }
      chunks.push(chunk as Buffer);
    }
    const xml = Buffer.concat(chunks).toString('utf8');
    const path = (req.url ?? '').split('?')[0];
    if (req.method !== 'POST' || (path !== deviceServicePath && path !== advancedSecurityPath)) {
      res.writeHead(404).end();
      return;
    }
    if (XMLValidator.validate(xml) !== true) {
      reply(res, 400, envelope(faultXml(new OnvifFault('Sender', ['ter:WellFormed'], 'request is not well-formed XML'))));
      return;
    }
    const document = requestParser.parse(xml) as Obj;
    const soapEnvelope = obj(document.Envelope);
    const body = obj(soapEnvelope.Body);
    const [operationName] = Object.keys(body);
    const operation = operationName ? operations[operationName] : undefined;
    const service = path === advancedSecurityPath ? 'security' : 'device';
    if (!operation || operation.service !== service || (service === 'security' && !advancedSecurity)) {
      reply(res, 500, envelope(faultXml(new OnvifFault('Receiver', ['ter:ActionNotSupported'], `${operationName ?? 'nothing'} is not supported here`))));
      return;
    }

    const delay = faults.delayMs?.[operationName];
    if (delay) await new Promise((resolve) => setTimeout(resolve, delay));
    if (faults.hang?.includes(operationName)) return; // Left unanswered until the device closes.

    const access = operation.access === 'identity' && anonymousIdentity ? 'preAuth' : operation.access;
    if (access !== 'preAuth') {
      const username = authenticateRequest(req, obj(obj(soapEnvelope.Header).Security));
      const user = username ? users.get(username) : undefined;
      if (!user) {
        refusedLogins += 1;
        const fault = faultXml(new OnvifFault('Sender', ['ter:NotAuthorized'], 'the action requires authorization'));
        if (authentication !== 'ws-security') {
          reply(res, 401, envelope(fault), { 'www-authenticate': digestChallenge() });
        } else {
          reply(res, 400, envelope(fault));
        }
        return;
      }
      if (access === 'write' && !adminUserLevels.includes(user.level)) {
        reply(res, 400, envelope(faultXml(new OnvifFault('Sender', ['ter:NotAuthorized'], 'administrator rights required'))));
        return;
      }
    }

    let answer: string;
    const context = { afterReply: [] as (() => Promise<void>)[] };
    try {
      const refusal = faults.refuse?.[operationName];
      if (refusal) throw invalidArg(refusal, `${operationName} is refused by local policy`);
      answer = envelope(
        x(`${service === 'security' ? 'tas' : 'tds'}:${operationName}Response`, await operation.handle(obj(body[operationName]), context)),
      );
    } catch (error) {
      if (error instanceof OnvifFault) {
        reply(res, error.httpStatus, envelope(faultXml(error)));
        return;
      }
      reply(res, 500, envelope(faultXml(new OnvifFault('Receiver', ['ter:Action'], 'internal error'))));
      return;
    }
    if (faults.malformed?.includes(operationName)) {
      reply(res, 200, answer.replace(/<\/env:Body><\/env:Envelope>$/, '<tds:Unclosed></env:Body></env:Envelope>'));
      return;
    }
    if (faults.truncated?.includes(operationName)) {
      const payload = Buffer.from(answer, 'utf8');
      res.writeHead(200, { 'content-type': 'application/soap+xml; charset=utf-8', 'content-length': payload.length });
      res.write(payload.subarray(0, Math.floor(payload.length / 2)), () => res.destroy());
      return;
    }
    reply(res, 200, answer);
    if (context.afterReply.length > 0) res.once('finish', () => void Promise.all(context.afterReply.map((action) => action())));
  }

  function authenticateRequest(req: IncomingMessage, security: Obj): string | undefined {
    if (faults.refuseCredentials) return undefined;
    const authorization = req.headers.authorization;
    if (authorization && /^Digest\s/i.test(authorization) && authentication !== 'ws-security') {
      return verifyHttpDigest(authorization, req.method ?? 'POST', req.url ?? '');
    }
    if (security.UsernameToken !== undefined && authentication !== 'http-digest') return verifyUsernameToken(security);
    return undefined;
  }

  function reply(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}) {
    const payload = Buffer.from(body, 'utf8');
    res.writeHead(status, { 'content-type': 'application/soap+xml; charset=utf-8', 'content-length': payload.length, ...headers });
    res.end(payload);
  }

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    });
  };
  const track = (socket: Socket) => {
    openSockets.add(socket);
    socket.once('close', () => openSockets.delete(socket));
  };

  const httpServer = http.createServer(onRequest);
  httpServer.on('connection', track);

  function listenHttp(port = protocols.http.port): Promise<void> {
    return new Promise((resolve, reject) => {
      httpServer.once('error', reject);
      httpServer.listen({ host, port }, () => {
        httpServer.off('error', reject);
        protocols.http.port = (httpServer.address() as AddressInfo).port;
        resolve();
      });
    });
  }
  function stopHttp(): Promise<void> {
    return new Promise((resolve) => {
      if (!httpServer.listening) return resolve();
      httpServer.close(() => resolve());
      httpServer.closeIdleConnections();
    });
  }

  async function startTls(served: NonNullable<ReturnType<typeof servedCertificate>>, port: number) {
    const secure = { key: privateKeyPem(served.key), cert: served.chainPem };
    if (tlsServer && protocols.https.port === port && tlsServer.listening) {
      tlsServer.setSecureContext(secure);
      servingFingerprint = served.fingerprint;
      return;
    }
    await stopTls();
    const server = https.createServer({ ...secure, minVersion: 'TLSv1.2' }, onRequest);
    server.on('connection', track);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    tlsServer = server;
    servingFingerprint = served.fingerprint;
  }
  async function refreshTls() {
    const served = servedCertificate();
    if (served && tlsServer?.listening) {
      tlsServer.setSecureContext({ key: privateKeyPem(served.key), cert: served.chainPem });
      servingFingerprint = served.fingerprint;
    }
  }
  function stopTls(): Promise<void> {
    const server = tlsServer;
    tlsServer = undefined;
    servingFingerprint = undefined;
    return new Promise((resolve) => (server?.listening ? server.close(() => resolve()) : resolve()));
  }

  protocols.http.port = options.port ?? 0;
  await listenHttp();
  const httpPort = protocols.http.port;

  // -----------------------------------------------------------------------------------------
  // WS-Discovery

  let discoverySocket: dgram.Socket | undefined;
  let answeringSocket: dgram.Socket | undefined;
  let discoveryPort: number | undefined;
  if (options.discovery) {
    const discoveryHost = options.discovery.host ?? host;
    discoverySocket = dgram.createSocket({ type: isIPv6(discoveryHost) ? 'udp6' : 'udp4', reuseAddr: true });
    const socket = discoverySocket;
    // Listening on the wildcard address (for multicast), a camera still answers from its own
    // address, so that several simulated cameras on one host each appear at theirs.
    const answering = isWildcard(discoveryHost) ? dgram.createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4' }) : socket;
    if (answering !== socket) await new Promise<void>((resolve, reject) => {
      answering.once('error', reject);
      answering.bind({ address: host, port: 0 }, () => resolve());
    });
    answeringSocket = answering === socket ? undefined : answering;
    socket.on('message', (data, remote) => {
      const answer = probeMatchFor(data.toString('utf8'));
      if (answer) answering.send(Buffer.from(answer, 'utf8'), remote.port, remote.address);
    });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind({ address: discoveryHost, port: options.discovery!.port ?? 3702 }, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    if (options.discovery.multicastGroup) socket.addMembership(options.discovery.multicastGroup, discoveryHost);
    discoveryPort = socket.address().port;
  }

  function probeMatchFor(xml: string): string | undefined {
    if (XMLValidator.validate(xml) !== true) return undefined;
    const document = obj((requestParser.parse(xml) as Obj).Envelope);
    const header = obj(document.Header);
    const probe = obj(document.Body).Probe;
    if (probe === undefined || !text(header.Action)?.endsWith('/discovery/Probe')) return undefined;
    const types = (text(obj(probe).Types) ?? '').split(/\s+/).filter(Boolean).map((q) => q.slice(q.indexOf(':') + 1));
    if (types.length > 0 && !types.some((type) => type === 'NetworkVideoTransmitter' || type === 'Device')) return undefined;
    const wantedScopes = (text(obj(probe).Scopes) ?? '').split(/\s+/).filter(Boolean);
    const scopes = [...fixedScopes, ...configurableScopes];
    if (!wantedScopes.every((wanted) => scopes.some((scope) => scope === wanted || scope.startsWith(`${wanted.replace(/\/$/, '')}/`)))) {
      return undefined;
    }
    const messageId = text(header.MessageID) ?? '';
    const xaddrs = [
      ...(protocols.http.enabled ? [`http://${authority(host, protocols.http.port)}${deviceServicePath}`] : []),
      ...(protocols.https.enabled && tlsServer ? [`https://${authority(host, protocols.https.port)}${deviceServicePath}`] : []),
    ];
    return envelope(
      x(
        'wsd:ProbeMatches',
        x(
          'wsd:ProbeMatch',
          x('wsa:EndpointReference', t('wsa:Address', endpointReference)) +
            t('wsd:Types', 'dn:NetworkVideoTransmitter tds:Device') +
            t('wsd:Scopes', scopes.join(' ')) +
            t('wsd:XAddrs', xaddrs.join(' ')) +
            t('wsd:MetadataVersion', 1),
        ),
      ),
      t('wsa:MessageID', `urn:uuid:${randomUUID()}`) +
        t('wsa:RelatesTo', messageId) +
        t('wsa:To', 'http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous') +
        t('wsa:Action', 'http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches'),
    );
  }

  return {
    address: authority(host, httpPort),
    host,
    httpPort,
    get httpsPort() {
      return tlsServer?.listening ? protocols.https.port : undefined;
    },
    ...(discoveryPort !== undefined ? { discoveryPort } : {}),
    endpointReference,
    faults,
    state: () => ({
      users: [...users].map(([username, user]) => ({ username, userLevel: user.level })),
      hostname,
      ntpServers: ntpServers.map((s) => s.value),
      timezone,
      protocols: { http: { ...protocols.http }, https: { ...protocols.https } },
      scopes: [...fixedScopes, ...configurableScopes],
      keys: [...keys].map(([keyId, k]) => ({ keyId, algorithm: k.algorithm, status: k.failed ? 'corrupt' : k.key ? 'ok' : 'generating' })),
      certificates: [...certificates].map(([certificateId, c]) => ({ certificateId, fingerprint: sha256(c.der), ...(c.keyId ? { keyId: c.keyId } : {}) })),
      certificationPaths: [...certificationPaths].map(([pathId, p]) => ({ pathId, certificateIds: [...p.certificateIds] })),
      assignedServerCertificationPaths: [...assignedPaths],
      ...(servingFingerprint ? { servingCertificateFingerprint: servingFingerprint } : {}),
      refusedLogins,
    }),
    passwordMatches: (username, password) => users.get(username)?.password === password,
    async close() {
      for (const socket of openSockets) socket.destroy();
      await Promise.all([
        stopHttp(),
        stopTls(),
        new Promise<void>((resolve) => (discoverySocket ? discoverySocket.close(() => resolve()) : resolve())),
        new Promise<void>((resolve) => (answeringSocket ? answeringSocket.close(() => resolve()) : resolve())),
      ]);
    },
  };
}

function isWildcard(address: string): boolean {
  return address === '0.0.0.0' || address === '::';
}

function decodeSubjectAltNames(der: Buffer): { dns: string[]; ip: string[]; uri: string[] } {
  const parsed = asn1js.fromBER(new Uint8Array(der));
  if (parsed.offset === -1) throw invalidArg('InvalidCSRAttribute', 'subjectAltName is not DER');
  let names: pkijs.GeneralNames;
  try {
    names = new pkijs.GeneralNames({ schema: parsed.result });
  } catch {
    throw invalidArg('InvalidCSRAttribute', 'subjectAltName is not GeneralNames');
  }
  const result = { dns: [] as string[], ip: [] as string[], uri: [] as string[] };
  for (const name of names.names) {
    if (name.type === generalNameTag.dNSName) result.dns.push(String(name.value));
    else if (name.type === generalNameTag.uniformResourceIdentifier) result.uri.push(String(name.value));
    else if (name.type === generalNameTag.iPAddress) {
      const bytes = new Uint8Array((name.value as asn1js.OctetString).valueBlock.valueHexView);
      result.ip.push(
        bytes.length === 4
          ? Array.from(bytes).join('.')
          : Array.from({ length: 8 }, (_, i) => ((bytes[i * 2] << 8) | bytes[i * 2 + 1]).toString(16)).join(':'),
      );
    } else throw invalidArg('InvalidCSRAttribute', `unsupported GeneralName type ${name.type}`);
  }
  return result;
}

function parseAuthParams(text: string): Record<string, string> {
  const params: Record<string, string> = {};
  for (const match of text.matchAll(/([a-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))/gi)) {
    params[match[1].toLowerCase()] = match[2] !== undefined ? match[2].replace(/\\(.)/g, '$1') : match[3];
  }
  return params;
}

function authority(host: string, port: number): string {
  return `${isIPv6(host) ? `[${host}]` : host}:${port}`;
}

function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A stable UUID per serial number, as devices derive their endpoint reference from hardware ids. */
function uuidFrom(serialNumber: string): string {
  const hex = createHash('sha1').update(`onvif-device:${serialNumber}`).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-5${hex.slice(13, 16)}-${((parseInt(hex[16], 16) & 3) | 8).toString(16)}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}
