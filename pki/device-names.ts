/**
 * The names a device certificate may carry, derived from the device registry alone: the host the
 * service reaches the device at, and its MAC address as a device URN (RFC 9039). A CSR may ask for
 * these and no others; the certificate carries them whatever the CSR asked.
 */
import { isIPv6 } from 'node:net';
import { BadCsrError, ValidationError } from '../foundation/errors';
import type { SubjectAltNames } from '../x509/extensions';
import { canonicalIpAddress } from '../x509/ip-address';
import type { CertificateSigningRequest } from './csr';

export interface DeviceAddress {
  host: string;
  port?: number;
}

const hostnamePattern = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

/** `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address. */
export function parseDeviceAddress(address: string): DeviceAddress {
  const text = address.trim();
  let host: string;
  let port: string | undefined;

  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (bracketed) {
    host = bracketed[1]!;
    port = bracketed[2];
    // Brackets only ever enclose an IPv6 literal (RFC 3986 section 3.2.2).
    if (!isIPv6(host.replace(/%.*$/, ''))) {
      throw new ValidationError(`device address "${address}" has brackets around something that is not an IPv6 address`);
    }
  } else if ((text.match(/:/g) ?? []).length > 1) {
    host = text; // bare IPv6, which cannot carry a port without brackets
  } else {
    [host, port] = text.split(':') as [string, string | undefined];
  }

  const portNumber = port === undefined ? undefined : Number(port);
  if (portNumber !== undefined && (!Number.isInteger(portNumber) || portNumber < 1 || portNumber > 65535)) {
    throw new ValidationError(`device address "${address}" has an invalid port`);
  }
  const ip = canonicalIpAddress(host);
  if (ip) return { host: ip, port: portNumber };
  if (!hostnamePattern.test(host)) {
    throw new ValidationError(`device address "${address}" has no valid host name or IP address`);
  }
  return { host: host.toLowerCase(), port: portNumber };
}

/** `urn:dev:mac:` and the 12 lower-case hex digits of an EUI-48 MAC address (RFC 9039). */
export function macAddressUrn(macAddress: string): string {
  const digits = macAddress.replace(/[:\-.]/g, '').toLowerCase();
  if (!/^[0-9a-f]{12}$/.test(digits)) throw new ValidationError(`"${macAddress}" is not a 48-bit MAC address`);
  return `urn:dev:mac:${digits}`;
}

/**
 * The alternative names a certificate for this device may carry, and must. `host` is where the
 * service reaches the device, as its protocol's adapter reads it from the address (none for a
 * device on a serial bus); without it, the address is read as `host[:port]`.
 */
export function allowedSubjectAltNames(device: { address: string; macAddress: string; host?: string | null }): SubjectAltNames {
  const host = device.host === undefined ? parseDeviceAddress(device.address).host : device.host;
  if (host === null) return { dns: [], ip: [], uri: [macAddressUrn(device.macAddress)] };
  const ip = canonicalIpAddress(host);
  return {
    dns: ip ? [] : [host.toLowerCase()],
    ip: ip ? [ip] : [],
    uri: [macAddressUrn(device.macAddress)],
  };
}

/** BadCsrError unless the CSR names the device as CN and asks only for names the registry allows. */
export function checkRequestedNames(csr: CertificateSigningRequest, deviceId: string, allowed: SubjectAltNames): void {
  if (csr.commonName !== deviceId) {
    throw new BadCsrError(
      `the CSR subject common name is ${csr.commonName === undefined ? 'missing' : `"${csr.commonName}"`}, but it must be the device id "${deviceId}"`,
    );
  }
  const requested = csr.requestedSubjectAltNames;
  if (requested.other.length > 0) {
    throw new BadCsrError(`the CSR requests ${requested.other.join(', ')} names, which device certificates never carry`);
  }
  const allowedList = [
    ...allowed.dns.map((name) => `DNS:${name}`),
    ...allowed.ip.map((ip) => `IP:${ip}`),
    ...allowed.uri.map((uri) => `URI:${uri}`),
  ].join(', ');
  const refuse = (name: string) =>
    new BadCsrError(`the CSR requests ${name}, which the device registry does not allow (allowed: ${allowedList})`);

  for (const dns of requested.dns) {
    if (!allowed.dns.some((candidate) => candidate === dns.toLowerCase().replace(/\.$/, ''))) throw refuse(`DNS:${dns}`);
  }
  for (const ip of requested.ip) {
    if (!allowed.ip.includes(canonicalIpAddress(ip) ?? ip)) throw refuse(`IP:${ip}`);
  }
  for (const uri of requested.uri) {
    // Hex digits in a MAC URN compare without regard to case.
    if (!allowed.uri.some((candidate) => candidate === uri.toLowerCase())) throw refuse(`URI:${uri}`);
  }
}
