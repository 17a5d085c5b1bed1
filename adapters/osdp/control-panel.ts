/**
 * The control-panel end of one OSDP link: opens the serial port, sends commands to one PD with
 * sequence numbers and (once established) the secure channel's MAC and encryption, and waits for
 * the matching reply. One link lives for one adapter call and always closes its port.
 */
import { randomBytes } from 'node:crypto';
import { SerialPort } from 'serialport';
import { AuthenticationFailedError, DeviceUnavailableError, NotImplementedError, ValidationError, type ServiceError } from '../../foundation/errors';
import type { ReaderAddress } from './addresses';
import { encodePacket, PacketReader, securityBlockTypes, type DecodedPacket, type Sequence, type SecurityBlock } from './frame';
import { commandCodes, decodeClientCryptogramReply, describeNak, MalformedMessageError, nakCodes, replyCodes } from './protocol';
import { initialReplyMac, sameBytes, SecureChannelSession, serverCryptogram, type ScbkKind } from './secure-channel';

export interface ReaderLinkOptions {
  /** How long the PD may take to answer one command. */
  replyTimeoutMs: number;
}

export interface Reply {
  code: number;
  data: Uint8Array;
}

/** Turns a NAK into the service error that fits the command that drew it. */
export type NakHandler = (reason: string, nakCode: number | undefined) => ServiceError;

const rmacAccepted = 0x01;

export class ReaderLink {
  private readonly reader = new PacketReader();
  private waiter: ((packet: DecodedPacket) => boolean) | undefined;
  private lastSequence: Sequence | undefined;
  private session: SecureChannelSession | undefined;

  private constructor(
    private readonly port: SerialPort,
    readonly address: ReaderAddress,
    readonly description: string,
    private readonly options: ReaderLinkOptions,
  ) {
    port.on('data', (chunk: Buffer) => {
      for (const packet of this.reader.push(chunk)) {
        if (this.waiter?.(packet)) this.waiter = undefined;
      }
    });
    // Errors after opening surface as a missing reply; without a listener they would crash the process.
    port.on('error', () => {});
  }

  static async open(address: ReaderAddress, description: string, options: ReaderLinkOptions): Promise<ReaderLink> {
    const port = new SerialPort({ path: address.portPath, baudRate: address.baudRate, autoOpen: false });
    try {
      await new Promise<void>((resolve, reject) => port.open((error) => (error ? reject(error) : resolve())));
    } catch (error) {
      throw new DeviceUnavailableError(`cannot open serial port ${address.portPath} for ${description}: ${(error as Error).message}`, { cause: error });
    }
    // A late reply to an earlier call must not pass for the answer to this one.
    await new Promise<void>((resolve) => port.flush(() => resolve()));
    return new ReaderLink(port, address, description, options);
  }

  get secured(): boolean {
    return this.session !== undefined;
  }

  async close(): Promise<void> {
    this.waiter = undefined;
    this.port.removeAllListeners('data');
    if (!this.port.isOpen) return;
    await new Promise<void>((resolve) => this.port.close(() => resolve()));
  }

  /**
   * Sends one command and returns the PD's reply (ACK, NAK or data). Inside a secure channel the
   * command is MACed (and its data encrypted) and the reply must carry a verifying MAC.
   */
  async command(code: number, data: Uint8Array = new Uint8Array()): Promise<Reply> {
    const session = this.session;
    if (!session) {
      const reply = await this.transact({ code, data });
      return { code: reply.code, data: reply.data };
    }
    const encrypted = data.length > 0;
    const payload = encrypted ? session.encrypt('command', data) : data;
    const reply = await this.transact(
      { code, data: payload, securityBlock: { type: encrypted ? securityBlockTypes.commandMacEncrypted : securityBlockTypes.commandMac, data: new Uint8Array() } },
      (authenticated) => session.sign('command', authenticated),
    );
    const blockType = reply.securityBlock?.type;
    if (blockType !== securityBlockTypes.replyMac && blockType !== securityBlockTypes.replyMacEncrypted) {
      // A PD drops the session and answers in clear when it cannot verify us (NAK); anything else is a break of protocol.
      this.session = undefined;
      if (reply.code === replyCodes.nak) return { code: reply.code, data: reply.data };
      throw this.unavailable('answered outside the secure channel');
    }
    const plain = blockType === securityBlockTypes.replyMacEncrypted ? session.decrypt('reply', reply.data) : reply.data;
    if (!session.verify('reply', reply.authenticated, reply.mac) || plain === undefined) {
      this.session = undefined;
      throw this.unavailable('sent a reply whose MAC does not verify in the secure channel');
    }
    return { code: reply.code, data: plain };
  }

  /** Sends a command and insists on one reply code; a NAK becomes the error `onNak` picks. */
  async expect(code: number, data: Uint8Array, expected: number, operation: string, onNak: NakHandler = defaultNakHandler): Promise<Uint8Array> {
    const reply = await this.command(code, data);
    if (reply.code === replyCodes.nak) {
      const reason = describeNak(reply.data);
      throw onNak(`${this.description} refused to ${operation}: ${reason}`, reply.data[0]);
    }
    if (reply.code === replyCodes.busy) throw this.unavailable(`was busy and could not ${operation}`);
    if (reply.code !== expected) {
      throw this.malformed(`answered "${operation}" with reply 0x${reply.code.toString(16)} instead of 0x${expected.toString(16)}`);
    }
    return reply.data;
  }

  /**
   * Runs the CHLNG/CCRYPT, SCRYPT/RMAC_I handshake with `scbk`. False when the PD refuses that key
   * kind or proves a different key (its cryptogram does not verify); errors only for line trouble.
   */
  async establishSecureChannel(scbk: Uint8Array, kind: ScbkKind): Promise<boolean> {
    this.session = undefined;
    const challenge = randomBytes(8);
    const ccrypt = await this.transact({ code: commandCodes.challenge, data: challenge, securityBlock: block(securityBlockTypes.challenge, kind) });
    if (ccrypt.code === replyCodes.nak) return false;
    if (ccrypt.code !== replyCodes.clientCryptogram || ccrypt.securityBlock?.type !== securityBlockTypes.clientCryptogram) {
      throw this.malformed(`answered a secure-channel challenge with reply 0x${ccrypt.code.toString(16)}`);
    }
    const client = this.parse(() => decodeClientCryptogramReply(ccrypt.data));
    const handshake = SecureChannelSession.fromClientCryptogram(scbk, challenge, client.pdRandom, client.cryptogram);
    if (!handshake.verified) return false;
    const server = serverCryptogram(handshake.keys, challenge, client.pdRandom);
    const rmac = await this.transact({ code: commandCodes.serverCryptogram, data: server, securityBlock: block(securityBlockTypes.serverCryptogram, kind) });
    if (rmac.code === replyCodes.nak) return false;
    if (rmac.code !== replyCodes.initialReplyMac || rmac.securityBlock?.type !== securityBlockTypes.initialReplyMac) {
      throw this.malformed(`answered the server cryptogram with reply 0x${rmac.code.toString(16)}`);
    }
    const expected = initialReplyMac(handshake.keys, server);
    if (rmac.securityBlock.data[0] !== rmacAccepted || !sameBytes(expected, rmac.data)) return false;
    this.session = new SecureChannelSession(handshake.keys, expected);
    return true;
  }

  private nextSequence(): Sequence {
    // A fresh link starts at 0, which tells the PD to reset its own tracking; then 1, 2, 3, 1, ...
    this.lastSequence = this.lastSequence === undefined ? 0 : (((this.lastSequence % 3) + 1) as Sequence);
    return this.lastSequence;
  }

  private async transact(
    command: { code: number; data: Uint8Array; securityBlock?: SecurityBlock },
    mac?: (authenticated: Uint8Array) => Uint8Array,
  ): Promise<DecodedPacket> {
    const sequence = this.nextSequence();
    const bytes = encodePacket(
      { address: this.address.pdAddress, reply: false, sequence, integrity: 'crc16', ...command },
      mac ? { mac } : {},
    );
    this.reader.takeRejections();
    const reply = new Promise<DecodedPacket>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(this.silence());
      }, this.options.replyTimeoutMs);
      this.waiter = (packet) => {
        // Other PDs' replies and our own echo on a half-duplex bus are not ours.
        if (!packet.reply || packet.address !== this.address.pdAddress || packet.sequence !== sequence) return false;
        clearTimeout(timer);
        resolve(packet);
        return true;
      };
    });
    await new Promise<void>((resolve, reject) => {
      this.port.write(bytes, (error) => (error ? reject(this.unavailable(`could not be written to: ${error.message}`)) : resolve()));
    }).catch((error) => {
      this.waiter = undefined;
      throw error;
    });
    return reply;
  }

  private silence(): DeviceUnavailableError {
    const rejected = this.reader.takeRejections();
    if (rejected.length > 0) return this.unavailable(`sent a corrupted reply (${rejected.map((r) => r.detail).join('; ')})`);
    if (this.reader.incompleteBytes > 0) return this.unavailable(`sent a truncated reply (${this.reader.incompleteBytes} bytes of a packet, then silence)`);
    return this.unavailable(`did not answer within ${this.options.replyTimeoutMs} ms`);
  }

  private unavailable(what: string): DeviceUnavailableError {
    return new DeviceUnavailableError(`${this.description} ${what}`);
  }

  /** A well-formed packet whose content breaks the protocol: a retry would get the same answer. */
  private malformed(what: string): ValidationError {
    return new ValidationError(`${this.description} ${what}`, { fields: [{ field: 'reply', reason: what }] });
  }

  /** Runs a message parser, turning a layout that does not fit into a non-retryable error. */
  parse<T>(decode: () => T): T {
    try {
      return decode();
    } catch (error) {
      if (error instanceof MalformedMessageError) throw this.malformed(`sent a malformed reply: ${error.message}`);
      throw error;
    }
  }
}

function block(type: number, kind: ScbkKind): SecurityBlock {
  return { type, data: Uint8Array.of(kind) };
}

function defaultNakHandler(message: string, nakCode: number | undefined): ServiceError {
  switch (nakCode) {
    case nakCodes.checkCharacter:
    case nakCodes.sequence:
      return new DeviceUnavailableError(message);
    case nakCodes.unknownCommand:
    case nakCodes.securityBlockNotSupported:
      return new NotImplementedError(message);
    case nakCodes.securityConditions:
      return new AuthenticationFailedError(message);
    default:
      return new DeviceUnavailableError(message);
  }
}

/** Opens a link, runs `use` and closes the port whatever happens. */
export async function withReaderLink<T>(address: ReaderAddress, description: string, options: ReaderLinkOptions, use: (link: ReaderLink) => Promise<T>): Promise<T> {
  const link = await ReaderLink.open(address, description, options);
  try {
    return await use(link);
  } finally {
    await link.close();
  }
}
