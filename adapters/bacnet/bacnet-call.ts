/**
 * One conversation with one BACnet/IP device, on a UDP socket of its own that is closed when the
 * conversation ends, so nothing outlives the activity call and nothing keeps the process alive.
 *
 * The client library is used for encoding and decoding, but not for its socket: its transport binds
 * port 47808 whenever asked for port 0, so two calls (or a device on the same host) would collide.
 * Ours binds an ephemeral port, only accepts datagrams from the device we are talking to, and
 * notices frames that are not well-formed BACnet/IP before the library sees them, so a broken peer
 * is reported as such rather than as a mere timeout (or an exception thrown inside a socket event).
 */
import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import bacnetModule from '@bacnet-js/client';
import {
  AuthenticationFailedError,
  DeviceUnavailableError,
  IdentityMismatchError,
  NotImplementedError,
  ValidationError,
  type ServiceError,
} from '../../foundation/errors';
import type { BacnetDeviceAddress } from './addresses';
import {
  applicationTag,
  errorClass,
  errorCode,
  errorName,
  fileChunkOctets,
  propertyId,
  type BacnetErrorDetail,
  type ObjectId,
} from './protocol';

// The package is CommonJS with a `default` export; ESM loaders differ on whether they unwrap it.
type BacnetClientClass = typeof bacnetModule;
const BacnetClient: BacnetClientClass =
  (bacnetModule as unknown as { default?: BacnetClientClass }).default ?? bacnetModule;
type BacnetClient = InstanceType<BacnetClientClass>;

/** BACnet CharacterString passwords for DCC and ReinitializeDevice are 1..20 characters (Clause 16.1). */
const maxPasswordLength = 20;

export interface BacnetCallOptions {
  /** Upper bound for each confirmed request (the APDU timeout); BACnet's own default is 3 s. */
  apduTimeoutMs: number;
  /** How long to wait for an I-Am after a directed Who-Is. */
  iAmTimeoutMs: number;
  /** Local IPv4 address to bind the socket to; `0.0.0.0` lets the routing table choose. */
  localAddress: string;
}

/** A value as the library decodes it: application tag and JavaScript value. */
export interface BacnetValue {
  type: number;
  value: unknown;
}

export type PropertyResult = { ok: true; values: BacnetValue[] } | { ok: false; error: BacnetErrorDetail };

export interface IAmAnswer {
  deviceInstance: number;
  maxApdu: number;
  vendorId: number;
}

/** An error the device answered with, kept typed so callers can decide what it means for them. */
export class BacnetDeviceError extends Error {
  constructor(
    message: string,
    readonly detail: BacnetErrorDetail,
  ) {
    super(message);
  }
}

/** Turns a device's refusal into the service error for what the caller was doing. */
export type RefusalMapping = (detail: BacnetErrorDetail, message: string) => ServiceError | undefined;

export async function withBacnetDevice<T>(
  device: BacnetDeviceAddress,
  options: BacnetCallOptions,
  action: (call: BacnetCall) => Promise<T>,
): Promise<T> {
  const call = new BacnetCall(device, options);
  try {
    return await action(call);
  } finally {
    call.close();
  }
}

export class BacnetCall {
  private readonly transport: DeviceTransport;
  private readonly client: BacnetClient;
  private readonly receiver: { address: string };
  private socketError?: Error;

  constructor(
    readonly device: BacnetDeviceAddress,
    private readonly options: BacnetCallOptions,
  ) {
    this.transport = new DeviceTransport(options.localAddress, device);
    this.client = new BacnetClient({ transport: this.transport, apduTimeout: options.apduTimeoutMs });
    this.client.on('error', (error: Error) => {
      this.socketError = error;
    });
    // The library's transport names a peer on 47808 by IP alone; ours always says host:port.
    this.receiver = { address: device.endpoint };
  }

  get label(): string {
    return `device ${this.device.instance} at ${this.device.endpoint}`;
  }

  close(): void {
    this.client.close();
  }

  /**
   * Directed Who-Is for exactly our instance. Undefined when no I-Am came: devices that broadcast
   * their I-Am (as older ones must) are not heard on an ephemeral port, and the confirmed requests
   * that follow prove presence anyway. An I-Am for another instance means the address is wrong.
   */
  async whoIs(): Promise<IAmAnswer | undefined> {
    const { instance } = this.device;
    const others: number[] = [];
    const answer = await new Promise<IAmAnswer | undefined>((resolve) => {
      const timer = setTimeout(() => finish(undefined), this.options.iAmTimeoutMs);
      const onIAm = (content: { payload: { deviceId: number; maxApdu: number; vendorId: number } }) => {
        const { deviceId, maxApdu, vendorId } = content.payload;
        if (deviceId === instance) finish({ deviceInstance: deviceId, maxApdu, vendorId });
        else others.push(deviceId);
      };
      const finish = (result: IAmAnswer | undefined) => {
        clearTimeout(timer);
        this.client.off('iAm', onIAm);
        resolve(result);
      };
      this.client.on('iAm', onIAm);
      this.client.whoIs(this.receiver, { lowLimit: instance, highLimit: instance });
    });
    if (!answer && others.length > 0) {
      throw new IdentityMismatchError(
        `${this.label} was asked for instance ${instance} but answered as device ${others.join(', ')}; check the address`,
      );
    }
    this.throwIfMalformed('Who-Is');
    return answer;
  }

  async readProperties(objectId: ObjectId, ids: readonly number[], what: string): Promise<Map<number, PropertyResult>> {
    const answer = await this.request(what, () =>
      this.client.readPropertyMultiple(this.receiver, [
        { objectId, properties: ids.map((id) => ({ id, index: arrayAll })) },
      ]),
    );
    const results = new Map<number, PropertyResult>();
    const object = answer.values.find((v) => v.objectId.type === objectId.type && v.objectId.instance === objectId.instance);
    for (const entry of object?.values ?? []) {
      const values = (entry.value ?? []) as BacnetValue[];
      const error = values[0]?.type === applicationTag.error ? (values[0].value as BacnetErrorDetail) : undefined;
      results.set(entry.id, error ? { ok: false, error } : { ok: true, values });
    }
    for (const id of ids) {
      if (!results.has(id)) throw this.malformed(what, `the answer lacks property ${id}`);
    }
    return results;
  }

  async readProperty(objectId: ObjectId, id: number, what: string): Promise<BacnetValue[]> {
    const answer = await this.request(what, () => this.client.readProperty(this.receiver, objectId, id));
    return answer.values as BacnetValue[];
  }

  async writeProperty(objectId: ObjectId, id: number, values: BacnetValue[], what: string, refusal?: RefusalMapping): Promise<void> {
    await this.request(
      what,
      () => this.client.writeProperty(this.receiver, objectId, id, values as never, {}),
      refusal,
    );
  }

  /** DeviceCommunicationControl; duration 0 means "until told otherwise". */
  async communicationControl(state: number, password: string | undefined, what: string): Promise<void> {
    await this.request(what, () =>
      this.client.deviceCommunicationControl(this.receiver, 0, state, { password: checkedPassword(password) }),
    );
  }

  async reinitialize(state: number, password: string | undefined, what: string, refusal?: RefusalMapping): Promise<void> {
    await this.request(
      what,
      () => this.client.reinitializeDevice(this.receiver, state, { password: checkedPassword(password) }),
      refusal,
    );
  }

  /** The whole file, by stream access, chunk by chunk. */
  async readFile(file: ObjectId, what: string, maxOctets = 64 * 1024): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let position = 0;
    for (;;) {
      const answer = await this.request(what, () => this.client.readFile(this.receiver, file, position, fileChunkOctets));
      if (!answer.isStream || answer.position !== position || !Buffer.isBuffer(answer.buffer)) {
        throw this.malformed(what, `asked for octets from ${position}, got a record or another position`);
      }
      chunks.push(answer.buffer);
      position += answer.buffer.length;
      if (position > maxOctets) throw this.malformed(what, `the file exceeds ${maxOctets} octets`);
      if (answer.endOfFile) return Buffer.concat(chunks);
      if (answer.buffer.length === 0) throw this.malformed(what, 'an empty chunk before the end of the file');
    }
  }

  /** Replaces the file's contents: truncate through File_Size, then stream-write chunk by chunk. */
  async replaceFile(file: ObjectId, contents: Uint8Array, what: string, refusal?: RefusalMapping): Promise<void> {
    await this.writeProperty(file, propertyId.fileSize, [{ type: applicationTag.unsignedInteger, value: 0 }], what, refusal);
    for (let position = 0; position < contents.length; position += fileChunkOctets) {
      const chunk = Array.from(contents.subarray(position, position + fileChunkOctets));
      const answer = await this.request(
        what,
        () => this.client.writeFile(this.receiver, file, position, [chunk], { isStream: true }),
        refusal,
      );
      if (answer.position !== position) throw this.malformed(what, `wrote at ${position}, device says ${answer.position}`);
    }
  }

  /** Unconfirmed UTC time synchronisation: fire and forget, as the service is defined. */
  synchroniseClock(now: Date): void {
    // The library encodes a Date's local-time fields; UTCTimeSynchronization must carry UTC ones.
    const utcFields = new Date(now.getTime() + now.getTimezoneOffset() * 60_000);
    this.client.timeSyncUTC(this.receiver, utcFields);
  }

  private async request<T>(what: string, send: () => Promise<T>, refusal?: RefusalMapping): Promise<T> {
    try {
      const result = await send();
      this.throwIfMalformed(what);
      return result;
    } catch (error) {
      throw this.translate(error, what, refusal);
    }
  }

  private translate(error: unknown, what: string, refusal?: RefusalMapping): Error {
    if (error instanceof DeviceUnavailableError || error instanceof ValidationError) return error;
    const text = error instanceof Error ? error.message : String(error);
    const refused = /^BacnetError - Class:(\d+) - Code:(\d+)$/.exec(text);
    if (refused) {
      const detail = { errorClass: Number(refused[1]), errorCode: Number(refused[2]) };
      const message = `${this.label} refused to ${what}: ${errorName(detail)}`;
      return refusal?.(detail, message) ?? refusalError(detail, message);
    }
    const malformed = this.transport.malformedFrame;
    if (malformed) return this.malformed(what, malformed);
    if (text === 'ERR_TIMEOUT') {
      const cause = this.socketError ?? this.transport.sendError;
      return new DeviceUnavailableError(
        cause
          ? `${this.label} could not be reached to ${what}: ${(cause as NodeJS.ErrnoException).code ?? cause.message}`
          : `${this.label} did not answer "${what}" within ${this.options.apduTimeoutMs} ms`,
        { cause },
      );
    }
    const aborted = /^BacnetAbort - Reason:(\d+)$/.exec(text);
    if (aborted) {
      // Abort and Reject arrive alike from the library; both say the device would not carry it out now.
      return new DeviceUnavailableError(`${this.label} aborted "${what}" (reason ${aborted[1]})`);
    }
    // Anything else was thrown while decoding the device's answer.
    return this.malformed(what, `undecodable answer (${text})`);
  }

  private throwIfMalformed(what: string): void {
    const malformed = this.transport.malformedFrame;
    if (malformed) throw this.malformed(what, malformed);
  }

  /**
   * A frame we could not decode. A cut-short datagram may well arrive whole next time, so it is
   * retryable; something that is not BACnet/IP at all means the address points at another service.
   */
  private malformed(what: string, reason: string): ServiceError {
    if (this.transport.foreignProtocol) {
      return new ValidationError(`${this.device.endpoint} does not speak BACnet/IP (${reason}); check the address`, {
        fields: [{ field: 'address', reason: 'the port answers with something other than BACnet/IP' }],
      });
    }
    return new DeviceUnavailableError(`${this.label} answered "${what}" with a malformed BACnet frame: ${reason}`);
  }
}

/** BACNET_ARRAY_ALL: read the whole property, not one array element. */
const arrayAll = 0xffffffff;

function checkedPassword(password: string | undefined): string | undefined {
  if (password === undefined || password === '') return undefined;
  if ([...password].length > maxPasswordLength) {
    throw new ValidationError(`BACnet device passwords are at most ${maxPasswordLength} characters`, {
      fields: [{ field: 'credentials.password', reason: `must be at most ${maxPasswordLength} characters` }],
    });
  }
  return password;
}

/** Refusals that pass with time: the device is busy, out of resources, or told to keep quiet. */
export function isTransientRefusal(detail: BacnetErrorDetail): boolean {
  return (
    detail.errorClass === errorClass.resources ||
    detail.errorCode === errorCode.deviceBusy ||
    detail.errorCode === errorCode.configurationInProgress ||
    detail.errorCode === errorCode.communicationDisabled
  );
}

/** What a refusal means when the caller has no more specific reading of it. */
function refusalError(detail: BacnetErrorDetail, message: string): ServiceError {
  if (detail.errorClass === errorClass.security) return new AuthenticationFailedError(message);
  if (isTransientRefusal(detail)) return new DeviceUnavailableError(message);
  // The device lacks what the standard lets it omit: asking again will not make it appear.
  if (detail.errorCode === errorCode.unknownObject || detail.errorCode === errorCode.unknownProperty) {
    return new NotImplementedError(message);
  }
  // Anything else is the device declining for reasons of its own, which may pass.
  return new DeviceUnavailableError(message);
}

/**
 * The library's transport contract (open, close, send, message/error/listening events) over a
 * socket bound to an ephemeral port that only listens to one device.
 */
class DeviceTransport extends EventEmitter {
  private readonly socket = dgram.createSocket({ type: 'udp4' });
  /** Why the last unusable frame from the device was dropped, if one was. */
  malformedFrame?: string;
  /** Whether that frame was not BACnet/IP at all. */
  foreignProtocol = false;
  sendError?: Error;

  constructor(
    private readonly localAddress: string,
    private readonly device: BacnetDeviceAddress,
  ) {
    super();
    this.socket.on('message', (message, from) => this.receive(message, from));
    this.socket.on('error', (error) => this.emit('error', error));
    this.socket.on('listening', () => this.emit('listening', this.socket.address()));
  }

  open(): void {
    this.socket.bind({ port: 0, address: this.localAddress });
  }

  close(): void {
    try {
      this.socket.close();
    } catch {
      // Already closed.
    }
  }

  getBroadcastAddress(): string {
    // Never broadcast: every request of ours is directed at one device.
    return this.device.endpoint;
  }

  getMaxPayload(): number {
    return 1482;
  }

  send(buffer: Buffer, length: number, receiver?: string): void {
    const [host, port] = (receiver ?? this.device.endpoint).split(':');
    this.socket.send(buffer, 0, length, Number(port), host, (error) => {
      if (error) this.sendError = error;
    });
  }

  private receive(message: Buffer, from: dgram.RemoteInfo): void {
    // Only the device we address may answer; anything else on this port is noise or spoofing.
    if (from.address !== this.device.host || from.port !== this.device.port) return;
    const problem = bvlcProblem(message);
    if (problem) {
      this.malformedFrame = problem.reason;
      this.foreignProtocol = problem.foreign;
      return;
    }
    try {
      this.emit('message', message, `${from.address}:${from.port}`);
    } catch (error) {
      // The library decodes headers synchronously inside this event; a bad frame must not crash us.
      this.malformedFrame = `undecodable APDU (${(error as Error).message})`;
    }
  }
}

/** BVLC functions (Annex J.2) that carry an NPDU, and where that NPDU starts. */
const npduOffsetByBvlcFunction: Record<number, number> = {
  0x04: 10, // Forwarded-NPDU: original source B/IP address first
  0x0a: 4, // Original-Unicast-NPDU
  0x0b: 4, // Original-Broadcast-NPDU
};
const bvlcTypeBacnetIp = 0x81;
const npduVersion = 0x01;

/** Checks the BVLC and NPDU headers (Annex J, Clause 6) before the library trusts them. */
function bvlcProblem(frame: Buffer): { reason: string; foreign: boolean } | undefined {
  if (frame.length < 4 || frame[0] !== bvlcTypeBacnetIp) return { reason: 'no BVLC header (type 0x81)', foreign: true };
  const declared = frame.readUInt16BE(2);
  if (declared !== frame.length) {
    return { reason: `BVLC length says ${declared} octets, the datagram has ${frame.length}`, foreign: false };
  }
  const npdu = npduOffsetByBvlcFunction[frame[1]];
  // BVLC-Result and the BBMD functions carry no APDU for us; the library ignores them.
  if (npdu === undefined) return undefined;
  if (frame.length < npdu + 2 || frame[npdu] !== npduVersion) return { reason: 'missing or unknown NPDU version', foreign: false };
  if (frame.length <= npdu + 2) return { reason: 'the frame ends before its APDU', foreign: false };
  return undefined;
}
