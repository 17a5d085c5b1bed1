/**
 * One SNMP conversation with one agent, as promises, with every failure already translated into
 * the service's error hierarchy. Net-snmp reports USM refusals, timeouts and undecodable datagrams
 * in its own ways; this is the one place that knows them.
 */
import snmp from 'net-snmp';
import {
  AuthenticationFailedError,
  ConfigurationRejectedError,
  DeviceUnavailableError,
  type ServiceError,
} from '../../foundation/errors';
import type { SnmpEndpoint } from './addresses';

/** How we speak to the agent: as an SNMPv3 USM user (SHA-256 + AES-128) or with a community. */
export type SnmpSecurity =
  | { kind: 'usm'; userName: string; authPassphrase: string; privPassphrase: string }
  | { kind: 'community'; version: 'v1' | 'v2c'; community: string };

export interface SnmpVarbind {
  oid: string;
  type: snmp.ObjectType;
  value: snmp.VarbindValue;
}

/** A value to set, typed as it goes on the wire. */
export type SnmpSetValue =
  | { oid: string; type: 'OctetString'; value: string | Buffer }
  | { oid: string; type: 'Integer'; value: number }
  | { oid: string; type: 'ObjectIdentifier'; value: string };

const wireTypes: Record<SnmpSetValue['type'], snmp.ObjectType> = {
  OctetString: snmp.ObjectType.OctetString,
  Integer: snmp.ObjectType.Integer,
  ObjectIdentifier: snmp.ObjectType.OID,
};

export interface SnmpSessionOptions {
  /** Wait for one answer before retrying. */
  timeoutMs: number;
  retries: number;
}

/** Error statuses (RFC 3416) that mean the agent will not take this value, now or later. */
const refusedSetStatuses = new Set<number>([
  snmp.ErrorStatus.BadValue,
  snmp.ErrorStatus.ReadOnly,
  snmp.ErrorStatus.NoAccess,
  snmp.ErrorStatus.WrongType,
  snmp.ErrorStatus.WrongLength,
  snmp.ErrorStatus.WrongEncoding,
  snmp.ErrorStatus.WrongValue,
  snmp.ErrorStatus.NoCreation,
  snmp.ErrorStatus.InconsistentValue,
  snmp.ErrorStatus.NotWritable,
  snmp.ErrorStatus.InconsistentName,
]);

/** USM report counters (RFC 3414 section 3.2) that say our credentials are wrong, not that time will help. */
const credentialReports = ['Unknown User Name', 'Wrong Digest', 'Decryption Error', 'Unsupported Security Level'];

export class SnmpSession {
  private readonly session: snmp.Session;
  /** Set when the agent sent something undecodable: pending and later calls fail with it. */
  private malformed: ServiceError | undefined;
  private readonly pending = new Set<(error: ServiceError) => void>();

  constructor(
    private readonly endpoint: SnmpEndpoint,
    security: SnmpSecurity,
    options: SnmpSessionOptions,
  ) {
    const common = { port: endpoint.port, transport: endpoint.transport, timeout: options.timeoutMs, retries: options.retries };
    this.session =
      security.kind === 'usm'
        ? snmp.createV3Session(
            endpoint.host,
            {
              name: security.userName,
              level: snmp.SecurityLevel.authPriv,
              authProtocol: snmp.AuthProtocols.sha256,
              authKey: security.authPassphrase,
              privProtocol: snmp.PrivProtocols.aes,
              privKey: security.privPassphrase,
            },
            { ...common, version: snmp.Version3 },
          )
        : snmp.createSession(endpoint.host, security.community, {
            ...common,
            version: security.version === 'v1' ? snmp.Version1 : snmp.Version2c,
          });
    // Net-snmp emits 'error' when a datagram does not decode; unhandled, that would crash the process.
    this.session.on('error', (error) => this.onMalformed(error));
  }

  get address(): string {
    return this.endpoint.host.includes(':') ? `[${this.endpoint.host}]:${this.endpoint.port}` : `${this.endpoint.host}:${this.endpoint.port}`;
  }

  /** Values of `oids`; absent objects (noSuchObject, noSuchInstance) come back as undefined. */
  async get(oids: string[], operation: string): Promise<(SnmpVarbind | undefined)[]> {
    const varbinds = await this.request<snmp.Varbind[]>(operation, (done) => this.session.get(oids, done));
    return varbinds.map((varbind) => (snmp.isVarbindError(varbind) ? undefined : (varbind as SnmpVarbind)));
  }

  async set(values: SnmpSetValue[], operation: string): Promise<void> {
    const varbinds = values.map((value) => ({ oid: value.oid, type: wireTypes[value.type], value: value.value }));
    await this.request<snmp.Varbind[]>(operation, (done) => this.session.set(varbinds, done), true);
  }

  /** Every object below `baseOid`, in agent order. */
  async subtree(baseOid: string, operation: string): Promise<SnmpVarbind[]> {
    const found: SnmpVarbind[] = [];
    await this.request<void>(operation, (done) =>
      this.session.subtree(
        baseOid,
        20,
        (varbinds) => {
          for (const varbind of varbinds) if (!snmp.isVarbindError(varbind)) found.push(varbind as SnmpVarbind);
        },
        (error) => done(error),
      ),
    );
    return found;
  }

  close(): void {
    try {
      this.session.close();
    } catch {
      // Already closed: nothing left to release.
    }
  }

  private request<T>(operation: string, start: (done: (error: Error | null, result?: T) => void) => void, isSet = false): Promise<T> {
    if (this.malformed) return Promise.reject(this.malformed);
    return new Promise<T>((resolve, reject) => {
      const abort = (error: ServiceError) => reject(error);
      this.pending.add(abort);
      start((error, result) => {
        this.pending.delete(abort);
        if (error) reject(this.translate(error, operation, isSet));
        else resolve(result as T);
      });
    });
  }

  private onMalformed(error: unknown): void {
    this.malformed = new DeviceUnavailableError(
      `SNMP agent at ${this.address} answered with a datagram that is not a valid SNMP message`,
      { cause: error },
    );
    for (const abort of this.pending) abort(this.malformed);
    this.pending.clear();
    // Later answers to the same requests are ignored by net-snmp; stop waiting for them.
    this.session.cancelRequests(this.malformed);
  }

  private translate(error: Error, operation: string, isSet: boolean): ServiceError {
    if (error === this.malformed || error instanceof DeviceUnavailableError) return error as ServiceError;
    const where = `SNMP agent at ${this.address}`;
    // The typings lack the RequestTimedOutError constructor, so the name is what identifies it.
    if (error.name === 'RequestTimedOutError') {
      const unanswered = new DeviceUnavailableError(`${where} did not answer while trying to ${operation}`, { cause: error });
      unansweredRequests.add(unanswered);
      return unanswered;
    }
    if (error instanceof snmp.ResponseInvalidError) {
      if (error.code === snmp.ResponseInvalidCode.EAuthFailure && credentialReports.some((report) => error.message.startsWith(report))) {
        return new AuthenticationFailedError(`${where} refused our SNMPv3 credentials (${error.message}) while trying to ${operation}`, {
          cause: error,
        });
      }
      // Out of the time window, unknown engine, mismatched answers: resynchronising may fix them.
      return new DeviceUnavailableError(`${where} gave an unusable answer while trying to ${operation}: ${error.message}`, { cause: error });
    }
    if (error instanceof snmp.RequestFailedError) {
      const status = (error as Error & { status?: number }).status;
      if (status === snmp.ErrorStatus.AuthorizationError) {
        return new AuthenticationFailedError(`${where} does not authorise our user to ${operation}`, { cause: error });
      }
      if (isSet && status !== undefined && refusedSetStatuses.has(status)) {
        return new ConfigurationRejectedError(`${where} refused to ${operation}: ${error.message}`, { cause: error });
      }
      return new DeviceUnavailableError(`${where} failed to ${operation}: ${error.message}`, { cause: error });
    }
    return new DeviceUnavailableError(`${where} could not be reached to ${operation}: ${error.message}`, { cause: error });
  }
}

/** Failures that were silence rather than an answer. */
const unansweredRequests = new WeakSet<Error>();

/**
 * Opens a session, runs `work` with it and always closes the socket.
 *
 * An agent cannot decrypt a request sent with the wrong privacy key and drops it without a report
 * (Net-SNMP counts it as a parse error), which looks like an unreachable device. So when an
 * authPriv request goes unanswered, the same user asks once more without privacy: an
 * authenticated answer of any kind proves the device is there and only the privacy key is wrong.
 */
export async function withSnmpSession<T>(
  endpoint: SnmpEndpoint,
  security: SnmpSecurity,
  options: SnmpSessionOptions,
  work: (session: SnmpSession) => Promise<T>,
): Promise<T> {
  const session = new SnmpSession(endpoint, security, options);
  try {
    return await work(session);
  } catch (error) {
    if (security.kind === 'usm' && error instanceof Error && unansweredRequests.has(error)) {
      if (await answersWithoutPrivacy(endpoint, security, options)) {
        throw new AuthenticationFailedError(
          `SNMP agent at ${session.address} accepts the authentication key of ${security.userName} but cannot decrypt our requests: the privacy passphrase is wrong`,
          { cause: error },
        );
      }
    }
    throw error;
  } finally {
    session.close();
  }
}

function answersWithoutPrivacy(
  endpoint: SnmpEndpoint,
  security: Extract<SnmpSecurity, { kind: 'usm' }>,
  options: SnmpSessionOptions,
): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = snmp.createV3Session(
      endpoint.host,
      { name: security.userName, level: snmp.SecurityLevel.authNoPriv, authProtocol: snmp.AuthProtocols.sha256, authKey: security.authPassphrase },
      { port: endpoint.port, transport: endpoint.transport, timeout: options.timeoutMs, retries: 0, version: snmp.Version3 },
    );
    probe.on('error', () => undefined);
    probe.get([sysDescrOid], (error) => {
      probe.close();
      // A response PDU, even one refusing access at this security level, was authenticated.
      resolve(error === null || error instanceof snmp.RequestFailedError);
    });
  });
}

const sysDescrOid = '1.3.6.1.2.1.1.1.0';
