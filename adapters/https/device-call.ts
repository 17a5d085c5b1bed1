/**
 * One request to one device over its own TLS connection. The connection is opened here rather than
 * by an HTTP agent so the device's certificate can be checked against the pin after the handshake
 * and before a single request byte (least of all a password) is written.
 */
import { createHash } from 'node:crypto';
import https from 'node:https';
import tls from 'node:tls';
import type { ClientTlsIdentity, DeviceSession } from '../device-adapter';
import type { DeviceNetworks } from '../device-networks';
import {
  AuthenticationFailedError,
  DeviceUnavailableError,
  IdentityMismatchError,
  ValidationError,
  type ServiceError,
} from '../../foundation/errors';
import { parseDeviceAddress } from './addresses';

export interface DeviceRequest {
  method: 'GET' | 'POST' | 'PUT';
  path: string;
  body?: unknown;
  /** Certificates the device may present besides the pinned one (the one being installed). */
  alsoAcceptFingerprints?: string[];
  /**
   * A certificate other than the pinned one answers with status 0 and what was presented, instead of
   * failing; nothing is sent to such a device. For probes, which report the certificate they met.
   */
  reportForeignCertificate?: boolean;
}

export interface DeviceResponse {
  status: number;
  /** Parsed JSON, or undefined for an empty or non-JSON body. */
  body: unknown;
  /** SHA-256 (lower-case hex) of the certificate the device presented. */
  presentedCertificateFingerprint: string;
}

const maxResponseBytes = 1024 * 1024;

/**
 * TLS alerts with which a device turns away our client certificate. Anything else going wrong on
 * the wire is treated as the device being unreachable for now.
 */
const clientCertificateRefusals = new Set([
  'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED',
  'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE',
  'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA',
  'ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN',
  'ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED',
  'ERR_SSL_SSLV3_ALERT_CERTIFICATE_REVOKED',
  'ERR_SSL_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE',
  'ERR_SSL_TLSV1_ALERT_ACCESS_DENIED',
]);

export function certificateFingerprint(der: Uint8Array): string {
  return createHash('sha256').update(der).digest('hex');
}

/** Accepts the spellings operators paste (upper case, colon-separated) for a SHA-256 fingerprint. */
export function normaliseFingerprint(value: string): string {
  return value.replace(/:/g, '').toLowerCase();
}

export async function callDevice(
  session: DeviceSession,
  request: DeviceRequest,
  options: { timeoutMs: number; networks: DeviceNetworks },
): Promise<DeviceResponse> {
  const { timeoutMs } = options;
  const endpoint = parseDeviceAddress(session.address);
  // The address checked is the address connected to; the name still goes out for SNI and Host.
  const connectTo = await options.networks.resolve(endpoint.host);
  const what = `${request.method} ${request.path} on device ${session.address}`;
  const accepted = session.pinnedCertificateFingerprint
    ? new Set([session.pinnedCertificateFingerprint, ...(request.alsoAcceptFingerprints ?? [])].map(normaliseFingerprint))
    : undefined;
  const headers: Record<string, string> = {
    host: endpoint.authority,
    accept: 'application/json',
    connection: 'close',
  };
  if (session.credentials) headers.authorization = basicAuthorization(session.credentials.username, session.credentials.password);
  const payload = request.body === undefined ? undefined : Buffer.from(JSON.stringify(request.body));
  if (payload) {
    headers['content-type'] = 'application/json';
    headers['content-length'] = String(payload.length);
  }
  const identity = session.clientIdentity;

  return new Promise<DeviceResponse>((resolve, reject) => {
    let settled = false;
    const finish = (outcome: { error: ServiceError } | { response: DeviceResponse }) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if ('error' in outcome) {
        socket.destroy();
        reject(outcome.error);
      } else {
        socket.end();
        resolve(outcome.response);
      }
    };
    let handshakeDone = false;
    const wireFailure = (error: NodeJS.ErrnoException) =>
      finish({ error: failureOnTheWire(error, what, handshakeDone && identity !== undefined) });

    const timer = setTimeout(
      () => finish({ error: new DeviceUnavailableError(`${what} got no answer within ${timeoutMs} ms`) }),
      timeoutMs,
    );
    const socket = tls.connect({
      host: connectTo,
      port: endpoint.port,
      servername: endpoint.serverName,
      // Trust comes from the pin, not from a CA: factory certificates are self-signed.
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
      ALPNProtocols: ['http/1.1'],
      secureContext: secureContextFor(identity),
    });
    socket.once('error', wireFailure);
    socket.once('secureConnect', () => {
      handshakeDone = true;
      const peer = socket.getPeerX509Certificate();
      if (!peer) {
        finish({ error: new DeviceUnavailableError(`${what}: the device presented no certificate`) });
        return;
      }
      const presented = certificateFingerprint(peer.raw);
      if (accepted && !accepted.has(presented)) {
        if (request.reportForeignCertificate) {
          finish({ response: { status: 0, body: undefined, presentedCertificateFingerprint: presented } });
          return;
        }
        finish({
          error: new IdentityMismatchError(
            `device at ${session.address} presented certificate ${presented}, not the pinned ${normaliseFingerprint(session.pinnedCertificateFingerprint!)}`,
          ),
        });
        return;
      }
      const req = https.request({
        createConnection: () => socket,
        method: request.method,
        path: request.path,
        headers,
      });
      req.once('error', wireFailure);
      req.once('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxResponseBytes) {
            finish({ error: new ValidationError(`${what}: the device's answer exceeds ${maxResponseBytes} bytes`) });
            return;
          }
          chunks.push(chunk);
        });
        res.once('error', wireFailure);
        res.once('end', () =>
          finish({
            response: {
              status: res.statusCode ?? 0,
              body: parseJson(Buffer.concat(chunks)),
              presentedCertificateFingerprint: presented,
            },
          }),
        );
      });
      req.end(payload);
    });
  });
}

function failureOnTheWire(error: NodeJS.ErrnoException, what: string, presentedClientCertificate: boolean): ServiceError {
  if (error.code && clientCertificateRefusals.has(error.code)) {
    return new AuthenticationFailedError(`${what}: the device refused our client certificate (${error.code})`, { cause: error });
  }
  // Some TLS stacks (Node's among them) drop an untrusted client without an alert. That looks like
  // any other hang-up, so it stays retryable, but the message says what it most likely is.
  if (presentedClientCertificate && error.code === 'ECONNRESET') {
    return new DeviceUnavailableError(
      `${what}: the device closed the connection without answering; it may not trust our client certificate`,
      { cause: error },
    );
  }
  return new DeviceUnavailableError(`${what} failed: ${error.code ?? error.message}`, { cause: error });
}

function basicAuthorization(username: string, password: string): string {
  // RFC 7617: the user-id cannot contain a colon, or the device would split it wrongly.
  if (username.includes(':')) {
    throw new ValidationError('device username must not contain a colon', {
      fields: [{ field: 'credentials.username', reason: 'must not contain ":"' }],
    });
  }
  return `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`;
}

function parseJson(data: Buffer): unknown {
  if (data.length === 0) return undefined;
  try {
    return JSON.parse(data.toString('utf8'));
  } catch {
    return undefined;
  }
}

/**
 * Building a TLS context parses keys and certificates, which costs more than the handshake; a
 * service uses one client identity per tenant, so contexts are kept per identity.
 */
const secureContexts = new Map<string, tls.SecureContext>();
const maximumCachedContexts = 1000;

function secureContextFor(identity: ClientTlsIdentity | undefined): tls.SecureContext {
  const cacheKey = identity ? identity.certificatePem : '';
  let context = secureContexts.get(cacheKey);
  if (!context) {
    context = tls.createSecureContext({
      minVersion: 'TLSv1.2',
      ...(identity
        ? { key: identity.privateKeyPem, cert: [identity.certificatePem, ...identity.chainPem].map(withNewline).join('') }
        : {}),
    });
    if (secureContexts.size >= maximumCachedContexts) secureContexts.delete(secureContexts.keys().next().value!);
    secureContexts.set(cacheKey, context);
  }
  return context;
}

function withNewline(text: string): string {
  return text.endsWith('\n') ? text : `${text}\n`;
}
