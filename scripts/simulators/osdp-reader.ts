/**
 * A simulated OSDP v2.2 card reader (PD) on one end of a `socat` pseudo-terminal pair; the adapter
 * opens the other end as if it were an RS-485 adapter. It answers POLL, ID, CAP, COMSET, KEYSET and
 * the secure-channel handshake per the specification, keeps its SCBK (starting in install mode,
 * where it accepts SCBK-D) and can misbehave on demand for bad-peer tests.
 *
 *   const reader = await startOsdpReader({ serialNumber: 0xC0FFEE01 });
 *   reader.address          // "/tmp/osdp-bus-XXXX/ttyCP@0x65": what the adapter is given
 *   reader.faults.silent = true;
 *   await reader.close();   // closes the port and ends the socat process it started
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SerialPort } from 'serialport';
import { formatReaderAddress } from '../../adapters/osdp/addresses';
import { broadcastAddress, encodePacket, PacketReader, securityBlockTypes, type DecodedPacket, type SecurityBlock } from '../../adapters/osdp/frame';
import {
  capabilityFunctions,
  commandCodes,
  decodeCommunicationSettings,
  decodeKeySet,
  encodeClientCryptogramReply,
  encodeCommunicationSettings,
  encodePdCapabilities,
  encodePdIdentity,
  formatSerialNumber,
  keyTypes,
  MalformedMessageError,
  nakCodes,
  osdpBaudRates,
  replyCodes,
  type OsdpBaudRate,
  type PdCapability,
} from '../../adapters/osdp/protocol';
import {
  clientCryptogram,
  defaultScbk,
  deriveSessionKeys,
  initialReplyMac,
  sameBytes,
  scbkKinds,
  SecureChannelSession,
  serverCryptogram,
  type SessionKeys,
} from '../../adapters/osdp/secure-channel';

/** Misbehaviour to switch on (and off) while the reader runs. */
export interface OsdpReaderFaults {
  /** Receives commands but never answers. */
  silent: boolean;
  /** Answers with a broken CRC. */
  corruptCrc: boolean;
  /** Answers with the last bytes of each reply missing. */
  truncate: boolean;
  /** Proves a key it does not hold: its client cryptogram never verifies. */
  wrongCryptogram: boolean;
  /** Keeps accepting SCBK-D after KEYSET, as a badly configured reader would. */
  keepInstallMode: boolean;
  /** Refuses COMSET (NAK), as a reader that cannot run at the requested speed would. */
  rejectCommunicationSettings: boolean;
  /** Reports this serial number in PDID instead of its own (a swapped reader). */
  reportedSerialNumber?: number;
}

export interface OsdpReaderOptions {
  pdAddress?: number;
  serialNumber?: number;
  /** IEEE OUI, 3 bytes. */
  vendorCode?: Uint8Array;
  modelNumber?: number;
  modelVersion?: number;
  firmware?: { major: number; minor: number; build: number };
  /** A per-device SCBK already installed; install mode is then closed unless `installMode` says otherwise. */
  scbk?: Uint8Array;
  installMode?: boolean;
  /** Once it holds its own SCBK, answers only inside the secure channel (plain commands get a NAK). */
  secureOnly?: boolean;
  faults?: Partial<OsdpReaderFaults>;
}

export type SecureChannelKeyUsed = 'scbk-d' | 'scbk';

/** What the reader holds and has seen, for tests to inspect. */
export interface OsdpReaderState {
  pdAddress: number;
  baudRate: number;
  /** The installed per-device SCBK (a copy), or undefined while only SCBK-D is known. */
  scbk?: Uint8Array;
  installMode: boolean;
  /** The key of the secure channel currently open, if any. */
  secureChannel?: SecureChannelKeyUsed;
  /** Keys of the secure channels established so far, in order. */
  secureChannelsEstablished: SecureChannelKeyUsed[];
  /** Command codes received, in order. */
  commandsReceived: number[];
}

export interface RunningOsdpReader {
  /** The adapter's address for this reader: the control-panel tty, PD address and speed (follows COMSET). */
  address: string;
  controlPanelPath: string;
  /** The serial number as the adapter reports it (8 hex digits). */
  serialNumber: string;
  faults: OsdpReaderFaults;
  state(): OsdpReaderState;
  close(): Promise<void>;
}

const capabilities: PdCapability[] = [
  { function: capabilityFunctions.cardDataFormat, compliance: 1, count: 0 },
  { function: capabilityFunctions.ledControl, compliance: 1, count: 1 },
  { function: capabilityFunctions.audibleOutput, compliance: 1, count: 1 },
  { function: capabilityFunctions.checkCharacter, compliance: 1, count: 0 },
  { function: capabilityFunctions.communicationSecurity, compliance: 1, count: 1 },
  { function: capabilityFunctions.receiveBufferSize, compliance: 0x80, count: 0x00 },
  { function: capabilityFunctions.readers, compliance: 1, count: 1 },
  { function: capabilityFunctions.osdpVersion, compliance: 2, count: 0 },
];

interface Reply {
  code: number;
  data: Uint8Array;
  securityBlock?: SecurityBlock;
}

interface PendingHandshake {
  keys: SessionKeys;
  challenge: Uint8Array;
  pdRandom: Uint8Array;
  kind: number;
}

class SimulatedReader {
  private readonly reader = new PacketReader();
  private pending: PendingHandshake | undefined;
  private session: SecureChannelSession | undefined;
  readonly stateValue: OsdpReaderState;
  private readonly serialNumber: number;
  private readonly clientUid: Buffer;
  private afterReply: (() => void) | undefined;

  constructor(
    private readonly port: SerialPort,
    private readonly options: OsdpReaderOptions,
    readonly faults: OsdpReaderFaults,
  ) {
    this.serialNumber = options.serialNumber ?? 0xc0ffee01;
    const uid = Buffer.alloc(8);
    Buffer.from(this.vendorCode).copy(uid, 0);
    uid[3] = options.modelNumber ?? 1;
    uid.writeUInt32LE(this.serialNumber >>> 0, 4);
    this.clientUid = uid;
    this.stateValue = {
      pdAddress: options.pdAddress ?? 0x65,
      baudRate: 9600,
      ...(options.scbk ? { scbk: new Uint8Array(options.scbk) } : {}),
      installMode: options.installMode ?? !options.scbk,
      secureChannelsEstablished: [],
      commandsReceived: [],
    };
    port.on('data', (chunk: Buffer) => {
      for (const packet of this.reader.push(chunk)) this.receive(packet);
    });
    port.on('error', () => {});
  }

  private get vendorCode(): Uint8Array {
    return this.options.vendorCode ?? Uint8Array.of(0x0a, 0x1b, 0x2c);
  }

  private receive(packet: DecodedPacket) {
    const state = this.stateValue;
    if (packet.reply || (packet.address !== state.pdAddress && packet.address !== broadcastAddress)) return;
    state.commandsReceived.push(packet.code);
    if (this.faults.silent) return;
    let reply: Reply;
    try {
      reply = this.answer(packet);
    } catch (error) {
      if (!(error instanceof MalformedMessageError)) throw error;
      reply = nak(nakCodes.length);
    }
    this.send(packet, reply);
  }

  private answer(packet: DecodedPacket): Reply {
    const block = packet.securityBlock;
    switch (block?.type) {
      case undefined:
        // A command in clear ends any session: the CP has given up on it.
        this.endSession();
        if (this.options.secureOnly && this.stateValue.scbk) return nak(nakCodes.securityConditions);
        return this.execute(packet.code, packet.data, false);
      case securityBlockTypes.challenge:
        return this.challenge(packet, block.data[0] ?? -1);
      case securityBlockTypes.serverCryptogram:
        return this.serverCryptogram(packet);
      case securityBlockTypes.commandMac:
      case securityBlockTypes.commandMacEncrypted: {
        const session = this.session;
        const data = session && block.type === securityBlockTypes.commandMacEncrypted ? session.decrypt('command', packet.data) : packet.data;
        if (!session || data === undefined || !session.verify('command', packet.authenticated, packet.mac)) return this.dropSession();
        const reply = this.execute(packet.code, data, true);
        // Replies inside the channel go out MACed, their data encrypted.
        return {
          ...reply,
          data: reply.data.length > 0 ? session.encrypt('reply', reply.data) : reply.data,
          securityBlock: { type: reply.data.length > 0 ? securityBlockTypes.replyMacEncrypted : securityBlockTypes.replyMac, data: new Uint8Array() },
        };
      }
      default:
        return nak(nakCodes.securityBlockNotSupported);
    }
  }

  private endSession() {
    this.session = undefined;
    this.stateValue.secureChannel = undefined;
  }

  /** What a PD does when the secure channel cannot go on: forget it and NAK in clear. */
  private dropSession(): Reply {
    this.endSession();
    return nak(nakCodes.securityConditions);
  }

  private challenge(packet: DecodedPacket, kind: number): Reply {
    this.endSession();
    this.pending = undefined;
    if (packet.code !== commandCodes.challenge || packet.data.length !== 8) return nak(nakCodes.length);
    const state = this.stateValue;
    const scbk = kind === scbkKinds.defaultKey ? (state.installMode ? defaultScbk : undefined) : kind === scbkKinds.deviceKey ? state.scbk : undefined;
    if (!scbk) return nak(nakCodes.securityConditions);
    const pdRandom = randomBytes(8);
    const keys = deriveSessionKeys(scbk, packet.data);
    // A reader that proves another key: its cryptogram comes from a key the CP cannot know.
    const proof = this.faults.wrongCryptogram ? clientCryptogram(deriveSessionKeys(randomBytes(16), packet.data), packet.data, pdRandom) : clientCryptogram(keys, packet.data, pdRandom);
    this.pending = { keys, challenge: packet.data, pdRandom, kind };
    return {
      code: replyCodes.clientCryptogram,
      data: encodeClientCryptogramReply({ clientUid: this.clientUid, pdRandom, cryptogram: proof }),
      securityBlock: { type: securityBlockTypes.clientCryptogram, data: Uint8Array.of(kind) },
    };
  }

  private serverCryptogram(packet: DecodedPacket): Reply {
    const pending = this.pending;
    this.pending = undefined;
    if (!pending || packet.code !== commandCodes.serverCryptogram) return this.dropSession();
    const expected = serverCryptogram(pending.keys, pending.challenge, pending.pdRandom);
    if (!sameBytes(expected, packet.data)) return this.dropSession();
    const rmac = initialReplyMac(pending.keys, expected);
    this.session = new SecureChannelSession(pending.keys, rmac);
    const used: SecureChannelKeyUsed = pending.kind === scbkKinds.defaultKey ? 'scbk-d' : 'scbk';
    this.stateValue.secureChannel = used;
    this.stateValue.secureChannelsEstablished.push(used);
    return { code: replyCodes.initialReplyMac, data: rmac, securityBlock: { type: securityBlockTypes.initialReplyMac, data: Uint8Array.of(0x01) } };
  }

  private execute(code: number, data: Uint8Array, secure: boolean): Reply {
    const state = this.stateValue;
    switch (code) {
      case commandCodes.poll:
        return ack();
      case commandCodes.identify:
        return {
          code: replyCodes.deviceIdentity,
          data: encodePdIdentity({
            vendorCode: this.vendorCode,
            modelNumber: this.options.modelNumber ?? 1,
            modelVersion: this.options.modelVersion ?? 2,
            serialNumber: this.faults.reportedSerialNumber ?? this.serialNumber,
            firmware: this.options.firmware ?? { major: 3, minor: 1, build: 7 },
          }),
        };
      case commandCodes.capabilities:
        return { code: replyCodes.deviceCapabilities, data: encodePdCapabilities(capabilities) };
      case commandCodes.communicationSettings: {
        const requested = decodeCommunicationSettings(data);
        if (this.faults.rejectCommunicationSettings) return nak(nakCodes.record);
        if (requested.address >= broadcastAddress || !(osdpBaudRates as readonly number[]).includes(requested.baudRate)) return nak(nakCodes.record);
        // The reply still goes out at the old address and speed; the change applies after it.
        this.afterReply = () => {
          state.pdAddress = requested.address;
          state.baudRate = requested.baudRate;
        };
        return { code: replyCodes.communicationSettings, data: encodeCommunicationSettings(requested) };
      }
      case commandCodes.keySet: {
        if (!secure) return nak(nakCodes.securityConditions);
        const { keyType, key } = decodeKeySet(data);
        if (keyType !== keyTypes.secureChannelBaseKey || key.length !== 16) return nak(nakCodes.record);
        if (sameBytes(key, defaultScbk)) {
          // Given SCBK-D as its base key, the reader forgets its own and goes back to install mode.
          delete state.scbk;
          state.installMode = true;
          return ack();
        }
        state.scbk = new Uint8Array(key);
        // A new SCBK ends install mode: SCBK-D no longer opens a channel.
        state.installMode = this.faults.keepInstallMode;
        return ack();
      }
      default:
        return nak(nakCodes.unknownCommand);
    }
  }

  private send(command: DecodedPacket, reply: Reply) {
    const session = this.session;
    const macced = reply.securityBlock?.type === securityBlockTypes.replyMac || reply.securityBlock?.type === securityBlockTypes.replyMacEncrypted;
    let bytes = encodePacket(
      {
        address: this.stateValue.pdAddress,
        reply: true,
        sequence: command.sequence,
        integrity: command.integrity,
        ...(reply.securityBlock ? { securityBlock: reply.securityBlock } : {}),
        code: reply.code,
        data: reply.data,
      },
      macced && session ? { mac: (authenticated) => session.sign('reply', authenticated) } : {},
    );
    if (this.faults.corruptCrc) {
      bytes = Buffer.from(bytes);
      bytes[bytes.length - 1] ^= 0x5a;
    }
    if (this.faults.truncate) bytes = bytes.subarray(0, Math.max(5, bytes.length - 3));
    const afterReply = this.afterReply;
    this.afterReply = undefined;
    this.port.write(bytes, () => afterReply?.());
  }

  snapshot(): OsdpReaderState {
    const state = this.stateValue;
    return {
      ...state,
      ...(state.scbk ? { scbk: new Uint8Array(state.scbk) } : {}),
      secureChannelsEstablished: [...state.secureChannelsEstablished],
      commandsReceived: [...state.commandsReceived],
    };
  }
}

function ack(): Reply {
  return { code: replyCodes.ack, data: new Uint8Array() };
}

function nak(reason: number): Reply {
  return { code: replyCodes.nak, data: Uint8Array.of(reason) };
}

async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 2_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

export interface PtyPair {
  /** The end the control panel (the adapter) opens. */
  controlPanelPath: string;
  /** The end the reader opens. */
  readerPath: string;
  close(): Promise<void>;
}

/**
 * A linked pseudo-terminal pair from socat, standing in for an RS-485 bus with one reader on it.
 * socat is ended by its pid on close and the links' directory removed.
 */
export async function startPtyPair(): Promise<PtyPair> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'osdp-bus-'));
  const controlPanelPath = path.join(dir, 'ttyCP');
  const readerPath = path.join(dir, 'ttyPD');
  const socat = spawn('socat', ['-d', '-d', `pty,raw,echo=0,link=${controlPanelPath}`, `pty,raw,echo=0,link=${readerPath}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let socatLog = '';
  socat.stderr!.on('data', (chunk: Buffer) => {
    socatLog = (socatLog + chunk.toString()).slice(-4_000);
  });
  socat.on('error', (error) => {
    socatLog += `\n${error.message}`;
  });
  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= stopProcess(socat).then(() => rmSync(dir, { recursive: true, force: true })));
  try {
    await waitFor(() => socat.exitCode !== null || (existsSync(controlPanelPath) && existsSync(readerPath)), 5_000, 'socat to create the pty pair');
    if (socat.exitCode !== null) throw new Error(`socat exited: ${socatLog}`);
  } catch (error) {
    await close();
    throw error;
  }
  return { controlPanelPath, readerPath, close };
}

/** Starts socat with a fresh pty pair and the simulated reader on its PD end. */
export async function startOsdpReader(options: OsdpReaderOptions = {}): Promise<RunningOsdpReader> {
  const bus = await startPtyPair();
  const port = new SerialPort({ path: bus.readerPath, baudRate: 9600, autoOpen: false });
  const cleanUp = async () => {
    if (port.isOpen) await new Promise<void>((resolve) => port.close(() => resolve()));
    await bus.close();
  };
  try {
    await new Promise<void>((resolve, reject) => port.open((error) => (error ? reject(error) : resolve())));
  } catch (error) {
    await cleanUp();
    throw error;
  }
  const faults: OsdpReaderFaults = {
    silent: false,
    corruptCrc: false,
    truncate: false,
    wrongCryptogram: false,
    keepInstallMode: false,
    rejectCommunicationSettings: false,
    ...options.faults,
  };
  const reader = new SimulatedReader(port, options, faults);
  let closed: Promise<void> | undefined;
  return {
    get address() {
      return formatReaderAddress({ portPath: bus.controlPanelPath, pdAddress: reader.stateValue.pdAddress, baudRate: reader.stateValue.baudRate as OsdpBaudRate });
    },
    controlPanelPath: bus.controlPanelPath,
    serialNumber: formatSerialNumber(options.serialNumber ?? 0xc0ffee01),
    faults,
    state: () => reader.snapshot(),
    close: () => (closed ??= cleanUp()),
  };
}

/** `tsx scripts/simulators/osdp-reader.ts [pdAddress]`: runs one reader until interrupted. */
if (process.argv[1] && import.meta.url === new URL(`file://${path.resolve(process.argv[1])}`).href) {
  const pdAddress = process.argv[2] ? Number(process.argv[2]) : undefined;
  const reader = await startOsdpReader(pdAddress === undefined ? {} : { pdAddress });
  process.stdout.write(`${JSON.stringify({ address: reader.address, serialNumber: reader.serialNumber })}\n`);
  const stop = () => void reader.close().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
