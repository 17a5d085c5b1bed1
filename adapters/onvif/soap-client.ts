/**
 * One ONVIF device reached through SOAP 1.2 over HTTP, or over TLS pinned to the certificate we
 * issued. Each adapter call makes its own client: it learns the device's clock offset (UsernameToken
 * `Created` must fall inside the device's window), finds which of the credentials we hold the
 * device accepts, and turns answers and faults into the service's errors.
 */
import { createHash, type X509Certificate } from 'node:crypto';
import http from 'node:http';
import tls from 'node:tls';
import type { ClientTlsIdentity, DeviceCredentials } from '../device-adapter';
import {
  AuthenticationFailedError,
  ConfigurationRejectedError,
  DeviceUnavailableError,
  IdentityMismatchError,
  NotImplementedError,
  ValidationError,
  type ServiceError,
} from '../../foundation/errors';
import { authorityOf } from './addresses';
import { digestAuthorization, parseDigestChallenge } from './http-digest';
import {
  deviceServicePath,
  el,
  isObject,
  MalformedSoapError,
  readSoapEnvelope,
  soapEnvelope,
  soapFaultOf,
  textOf,
  usernameTokenHeader,
  XmlValueError,
  type SoapFault,
  type XmlElement,
  type XmlObject,
} from './soap';

export interface OnvifTransport {
  /** As the operator wrote it: what the Host header and SNI name. */
  host: string;
  /** The address the connection goes to, checked against the device networks. */
  connectTo: string;
  port: number;
  serverName?: string;
  /** Present for TLS: the SHA-256 (hex) fingerprints the device may present. */
  tls?: { acceptedFingerprints: string[]; clientIdentity?: ClientTlsIdentity };
}

export interface OnvifClientOptions {
  transport: OnvifTransport;
  /** Whom to speak as, in order of preference; an empty list speaks anonymously. */
  credentials: DeviceCredentials[];
  timeoutMs: number;
  /** The address as the operator knows it, for messages. */
  address: string;
}

interface HttpAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  presentedFingerprint?: string;
}

/** Maps a device fault to the error fitting the call; undefined keeps the default mapping. */
export type FaultMapping = (fault: SoapFault, message: string) => ServiceError | undefined;

const maxAnswerBytes = 2 * 1024 * 1024;

export class OnvifClient {
  private clockOffsetMs = 0;
  private candidates: DeviceCredentials[];
  private accepted?: DeviceCredentials;
  /** The certificate the device presented on the last TLS call, and its SHA-256 (hex). */
  presentedCertificate?: X509Certificate;
  presentedFingerprint?: string;

  constructor(private readonly options: OnvifClientOptions) {
    this.candidates = [...options.credentials];
  }

  /** The credentials the device took (after the first authenticated call). */
  get acceptedCredentials(): DeviceCredentials | undefined {
    return this.accepted;
  }

  /** GetSystemDateAndTime needs no credentials; it tells how far the device's clock is from ours. */
  async synchroniseClock(): Promise<void> {
    const sentAt = Date.now();
    const answer = await this.call(el('tds:GetSystemDateAndTime'), { anonymous: true });
    const receivedAt = Date.now();
    const utc = isObject(answer.SystemDateAndTime) ? answer.SystemDateAndTime.UTCDateTime : undefined;
    const deviceTime = utc && isObject(utc) ? dateOf(utc) : undefined;
    if (deviceTime !== undefined) this.clockOffsetMs = deviceTime - Math.round((sentAt + receivedAt) / 2);
  }

  /**
   * Calls one operation and returns its response element. With several credentials, a refusal moves
   * on to the next; the first the device accepts is kept for the client's later calls.
   */
  async call(
    body: XmlElement,
    options: { path?: string; anonymous?: boolean; faults?: FaultMapping } = {},
  ): Promise<XmlObject> {
    const path = options.path ?? deviceServicePath;
    if (options.anonymous || (this.candidates.length === 0 && !this.accepted)) {
      return this.callAs(undefined, body, path, options.faults);
    }
    if (this.accepted) return this.callAs(this.accepted, body, path, options.faults);
    let refusal: AuthenticationFailedError | undefined;
    while (this.candidates.length > 0) {
      const credentials = this.candidates.shift()!;
      try {
        const answer = await this.callAs(credentials, body, path, options.faults);
        this.accepted = credentials;
        return answer;
      } catch (error) {
        if (!(error instanceof AuthenticationFailedError)) {
          this.candidates.unshift(credentials);
          throw error;
        }
        refusal = error;
      }
    }
    throw refusal!;
  }

  private async callAs(
    credentials: DeviceCredentials | undefined,
    body: XmlElement,
    path: string,
    faults: FaultMapping | undefined,
  ): Promise<XmlObject> {
    const operation = body.name.slice(body.name.indexOf(':') + 1);
    const what = `${operation} on device ${this.options.address}`;
    let envelope: string;
    try {
      const header = credentials ? [usernameTokenHeader(credentials, new Date(Date.now() + this.clockOffsetMs))] : [];
      envelope = soapEnvelope(body, header);
    } catch (error) {
      if (error instanceof XmlValueError) {
        throw new ValidationError(`${what}: a value cannot be sent: ${error.message}`, { cause: error });
      }
      throw error;
    }
    let answer = await this.post(path, envelope, undefined, what);
    if (answer.status === 401 && credentials) {
      // WS-Security turned away (or not spoken): devices then offer HTTP digest instead.
      const challenge = parseDigestChallenge(answer.headers['www-authenticate']);
      if (challenge) {
        const authorization = digestAuthorization(challenge, { method: 'POST', uri: path, ...credentials });
        answer = await this.post(path, soapEnvelope(body), authorization, what);
      }
    }
    return this.interpret(answer, what, credentials !== undefined, faults);
  }

  private interpret(answer: HttpAnswer, what: string, authenticated: boolean, faults: FaultMapping | undefined): XmlObject {
    let parsed: { body: XmlObject } | undefined;
    let malformed: MalformedSoapError | undefined;
    if (answer.text.trim() !== '') {
      try {
        parsed = readSoapEnvelope(answer.text);
      } catch (error) {
        if (!(error instanceof MalformedSoapError)) throw error;
        malformed = error;
      }
    }
    const fault = parsed ? soapFaultOf(parsed.body) : undefined;
    if (fault) {
      const message = `device refused ${what}: ${[fault.code, ...fault.subcodes].join('/')}${fault.reason ? ` (${fault.reason.slice(0, 300)})` : ''}`;
      throw faults?.(fault, message) ?? errorForFault(fault, message, answer.status);
    }
    if (answer.status === 401 || answer.status === 403) {
      throw new AuthenticationFailedError(
        authenticated ? `device refused the credentials for ${what}` : `device requires credentials for ${what}`,
      );
    }
    if (answer.status >= 500 || answer.status === 408 || answer.status === 429) {
      throw new DeviceUnavailableError(`${what} failed: HTTP ${answer.status}`);
    }
    if (answer.status === 404 || answer.status === 405) throw new NotImplementedError(`${what}: HTTP ${answer.status}, no such service`);
    if (answer.status !== 200) throw new ValidationError(`${what}: unexpected HTTP ${answer.status}`);
    if (malformed || !parsed) {
      // The whole answer arrived (length checked) yet is not SOAP: a firmware defect, not a hiccup.
      throw new ValidationError(`${what}: the device answered with malformed SOAP: ${malformed?.message ?? 'empty body'}`);
    }
    const [response] = Object.values(parsed.body);
    if (!isObject(response) && response !== '') {
      throw new ValidationError(`${what}: the device's answer has no response element`);
    }
    return isObject(response) ? response : {};
  }

  private post(path: string, envelope: string, authorization: string | undefined, what: string): Promise<HttpAnswer> {
    const { transport, timeoutMs } = this.options;
    const payload = Buffer.from(envelope, 'utf8');
    const headers: http.OutgoingHttpHeaders = {
      host: authorityOf(transport.host, transport.port),
      'content-type': 'application/soap+xml; charset=utf-8',
      'content-length': payload.length,
      connection: 'close',
      ...(authorization ? { authorization } : {}),
    };

    return new Promise<HttpAnswer>((resolve, reject) => {
      let settled = false;
      let socket: tls.TLSSocket | undefined;
      let request: http.ClientRequest | undefined;
      const finish = (outcome: { error: ServiceError } | { answer: HttpAnswer }) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if ('error' in outcome) {
          request?.destroy();
          socket?.destroy();
          reject(outcome.error);
        } else {
          resolve(outcome.answer);
        }
      };
      const wireFailure = (error: NodeJS.ErrnoException) =>
        finish({ error: new DeviceUnavailableError(`${what} failed: ${error.code ?? error.message}`, { cause: error }) });
      const timer = setTimeout(
        () => finish({ error: new DeviceUnavailableError(`${what} got no answer within ${timeoutMs} ms`) }),
        timeoutMs,
      );

      const send = (presentedFingerprint?: string) => {
        request = http.request({
          host: transport.connectTo,
          port: transport.port,
          method: 'POST',
          path,
          headers,
          // A given connection is only used without an agent (`agent: false` would make a new one).
          ...(socket ? { createConnection: () => socket! } : { agent: false }),
        });
        request.once('error', wireFailure);
        request.once('response', (response) => {
          const chunks: Buffer[] = [];
          let size = 0;
          response.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > maxAnswerBytes) {
              finish({ error: new ValidationError(`${what}: the device's answer exceeds ${maxAnswerBytes} bytes`) });
              return;
            }
            chunks.push(chunk);
          });
          response.once('error', wireFailure);
          response.once('close', () => {
            // A body cut short (connection dropped before Content-Length was met) may well arrive whole next time.
            if (!response.complete) {
              finish({ error: new DeviceUnavailableError(`${what}: the device's answer was cut short`) });
              return;
            }
            finish({
              answer: {
                status: response.statusCode ?? 0,
                headers: response.headers,
                text: Buffer.concat(chunks).toString('utf8'),
                ...(presentedFingerprint ? { presentedFingerprint } : {}),
              },
            });
          });
        });
        request.end(payload);
      };

      if (!transport.tls) {
        send();
        return;
      }
      // Our own TLS connection, so the certificate is checked against the pin before any byte of
      // the request (credentials included) is written.
      const accepted = new Set(transport.tls.acceptedFingerprints.map((f) => f.replace(/:/g, '').toLowerCase()));
      const identity = transport.tls.clientIdentity;
      socket = tls.connect({
        host: transport.connectTo,
        port: transport.port,
        servername: transport.serverName,
        rejectUnauthorized: false,
        minVersion: 'TLSv1.2',
        ALPNProtocols: ['http/1.1'],
        ...(identity ? { key: identity.privateKeyPem, cert: [identity.certificatePem, ...identity.chainPem].join('\n') } : {}),
      });
      socket.once('error', wireFailure);
      socket.once('secureConnect', () => {
        const peer = socket!.getPeerX509Certificate();
        if (!peer) {
          finish({ error: new DeviceUnavailableError(`${what}: the device presented no certificate`) });
          return;
        }
        const presented = createHash('sha256').update(peer.raw).digest('hex');
        this.presentedCertificate = peer;
        this.presentedFingerprint = presented;
        if (!accepted.has(presented)) {
          finish({
            error: new IdentityMismatchError(
              `device at ${this.options.address} presented certificate ${presented}, not the one pinned for it`,
            ),
          });
          return;
        }
        send(presented);
      });
    });
  }
}

/** The default meaning of ONVIF faults (ONVIF Core, "Error handling"). */
function errorForFault(fault: SoapFault, message: string, status: number): ServiceError {
  const subcodes = new Set(fault.subcodes);
  if (subcodes.has('NotAuthorized')) return new AuthenticationFailedError(message);
  if (subcodes.has('ActionNotSupported') || subcodes.has('NotSupported')) return new NotImplementedError(message);
  if (subcodes.has('EnablingTlsFailed')) return new ConfigurationRejectedError(message);
  if (fault.code === 'Sender') return new ConfigurationRejectedError(message);
  if (['VersionMismatch', 'MustUnderstand', 'DataEncodingUnknown'].includes(fault.code)) return new ValidationError(message);
  // Receiver faults are the device's own trouble (busy, out of resources); they may pass.
  if (status === 401) return new AuthenticationFailedError(message);
  return new DeviceUnavailableError(message);
}

/** Milliseconds since the epoch of an ONVIF `tt:DateTime` (Date + Time in UTC). */
export function dateOf(dateTime: XmlObject): number | undefined {
  const date = isObject(dateTime.Date) ? dateTime.Date : undefined;
  const time = isObject(dateTime.Time) ? dateTime.Time : undefined;
  if (!date || !time) return undefined;
  const n = (value: ReturnType<typeof textOf>) => Number(value ?? NaN);
  const value = Date.UTC(
    n(textOf(date.Year)),
    n(textOf(date.Month)) - 1,
    n(textOf(date.Day)),
    n(textOf(time.Hour)),
    n(textOf(time.Minute)),
    n(textOf(time.Second)),
  );
  return Number.isFinite(value) ? value : undefined;
}
