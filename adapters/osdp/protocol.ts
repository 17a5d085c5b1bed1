/**
 * OSDP command and reply codes and the typed layouts of the messages this adapter exchanges, so no
 * code elsewhere indexes raw bytes. Parsers treat the PD's data as untrusted: a layout that does not
 * fit is reported, never guessed at.
 */

export const commandCodes = {
  poll: 0x60,
  identify: 0x61,
  capabilities: 0x62,
  communicationSettings: 0x6e,
  keySet: 0x75,
  challenge: 0x76,
  serverCryptogram: 0x77,
} as const;

export const replyCodes = {
  ack: 0x40,
  nak: 0x41,
  deviceIdentity: 0x45,
  deviceCapabilities: 0x46,
  communicationSettings: 0x54,
  clientCryptogram: 0x76,
  initialReplyMac: 0x78,
  busy: 0x79,
} as const;

/** Reasons a PD gives in a NAK (first data byte). */
export const nakReasons: Record<number, string> = {
  0x01: 'message check character error',
  0x02: 'command length error',
  0x03: 'unknown command code',
  0x04: 'unexpected sequence number',
  0x05: 'security block not supported',
  0x06: 'communication security conditions not met',
  0x07: 'biometric type not supported',
  0x08: 'biometric format not supported',
  0x09: 'unable to process command record',
};
export const nakCodes = { checkCharacter: 0x01, length: 0x02, unknownCommand: 0x03, sequence: 0x04, securityBlockNotSupported: 0x05, securityConditions: 0x06, record: 0x09 } as const;

export function describeNak(data: Uint8Array): string {
  const code = data[0];
  return code === undefined ? 'no reason given' : (nakReasons[code] ?? `reason 0x${code.toString(16).padStart(2, '0')}`);
}

/** Baud rates OSDP readers are configured with. */
export const osdpBaudRates = [9600, 19200, 38400, 57600, 115200, 230400] as const;
export type OsdpBaudRate = (typeof osdpBaudRates)[number];

export class MalformedMessageError extends Error {}

function need(data: Uint8Array, length: number, what: string, exact = true) {
  if (exact ? data.length !== length : data.length < length) {
    throw new MalformedMessageError(`${what} must be ${exact ? '' : 'at least '}${length} bytes, got ${data.length}`);
  }
}

/** osdp_PDID: who the reader says it is. */
export interface PdIdentity {
  /** IEEE OUI of the manufacturer, 3 bytes as sent. */
  vendorCode: Uint8Array;
  modelNumber: number;
  modelVersion: number;
  serialNumber: number;
  firmware: { major: number; minor: number; build: number };
}

export function encodePdIdentity(identity: PdIdentity): Buffer {
  const data = Buffer.alloc(12);
  Buffer.from(identity.vendorCode).copy(data, 0, 0, 3);
  data[3] = identity.modelNumber;
  data[4] = identity.modelVersion;
  data.writeUInt32LE(identity.serialNumber >>> 0, 5);
  data[9] = identity.firmware.major;
  data[10] = identity.firmware.minor;
  data[11] = identity.firmware.build;
  return data;
}

export function decodePdIdentity(data: Uint8Array): PdIdentity {
  need(data, 12, 'osdp_PDID');
  const bytes = Buffer.from(data);
  return {
    vendorCode: new Uint8Array(bytes.subarray(0, 3)),
    modelNumber: bytes[3],
    modelVersion: bytes[4],
    serialNumber: bytes.readUInt32LE(5),
    firmware: { major: bytes[9], minor: bytes[10], build: bytes[11] },
  };
}

/**
 * The serial number as an operator reads it on the label and types it into the registry: the
 * 32-bit value as 8 upper-case hex digits (OSDP carries a number, not text; hex keeps it fixed-width
 * and maps byte for byte onto what reader configuration tools display).
 */
export function formatSerialNumber(serialNumber: number): string {
  return (serialNumber >>> 0).toString(16).toUpperCase().padStart(8, '0');
}

/** Manufacturers whose IEEE OUI readers commonly report; others are named by their OUI. */
const vendorNames: Record<string, string> = {
  '00068E': 'HID Global',
  '0A1B2C': 'Provisioning reference reader',
};

export function formatVendorCode(vendorCode: Uint8Array): string {
  return Buffer.from(vendorCode).toString('hex').toUpperCase();
}

export function manufacturerName(vendorCode: Uint8Array): string {
  const oui = formatVendorCode(vendorCode);
  return vendorNames[oui] ?? `OUI ${oui.match(/../g)!.join('-')}`;
}

/** PDCAP function codes. */
export const capabilityFunctions = {
  contactStatus: 1,
  outputControl: 2,
  cardDataFormat: 3,
  ledControl: 4,
  audibleOutput: 5,
  textOutput: 6,
  timeKeeping: 7,
  checkCharacter: 8,
  communicationSecurity: 9,
  receiveBufferSize: 10,
  largestMessageSize: 11,
  smartCard: 12,
  readers: 13,
  biometrics: 14,
  securePinEntry: 15,
  osdpVersion: 16,
} as const;

export interface PdCapability {
  function: number;
  compliance: number;
  count: number;
}

export function encodePdCapabilities(capabilities: PdCapability[]): Buffer {
  return Buffer.from(capabilities.flatMap((c) => [c.function, c.compliance, c.count]));
}

export function decodePdCapabilities(data: Uint8Array): PdCapability[] {
  if (data.length === 0 || data.length % 3 !== 0) throw new MalformedMessageError(`osdp_PDCAP must be whole 3-byte records, got ${data.length} bytes`);
  const capabilities: PdCapability[] = [];
  for (let i = 0; i < data.length; i += 3) capabilities.push({ function: data[i], compliance: data[i + 1], count: data[i + 2] });
  return capabilities;
}

/** What PDCAP says, in the service's words (operators read these; the workflow acts on none of them). */
export function capabilityNames(capabilities: PdCapability[]): string[] {
  const names = new Set<string>();
  for (const { function: fn, compliance, count } of capabilities) {
    if (fn === capabilityFunctions.communicationSecurity && (compliance & 0x01) !== 0) names.add('osdp-secure-channel');
    if (fn === capabilityFunctions.checkCharacter && compliance >= 1) names.add('osdp-crc16');
    if (fn === capabilityFunctions.readers && (compliance > 0 || count > 0)) names.add('card-reading');
    if (fn === capabilityFunctions.cardDataFormat && compliance > 0) names.add('card-reading');
    if (fn === capabilityFunctions.ledControl && compliance > 0) names.add('led-control');
    if (fn === capabilityFunctions.audibleOutput && compliance > 0) names.add('buzzer-control');
    if (fn === capabilityFunctions.textOutput && compliance > 0) names.add('text-display');
    if (fn === capabilityFunctions.biometrics && compliance > 0) names.add('biometrics');
    if (fn === capabilityFunctions.securePinEntry && compliance > 0) names.add('secure-pin-entry');
  }
  return [...names].sort();
}

/** osdp_COMSET and its osdp_COM answer share one layout. */
export interface CommunicationSettings {
  address: number;
  baudRate: number;
}

export function encodeCommunicationSettings(settings: CommunicationSettings): Buffer {
  const data = Buffer.alloc(5);
  data[0] = settings.address;
  data.writeUInt32LE(settings.baudRate, 1);
  return data;
}

export function decodeCommunicationSettings(data: Uint8Array): CommunicationSettings {
  need(data, 5, 'osdp_COM');
  return { address: data[0], baudRate: Buffer.from(data).readUInt32LE(1) };
}

export const keyTypes = { secureChannelBaseKey: 0x01 } as const;

export function encodeKeySet(scbk: Uint8Array): Buffer {
  need(scbk, 16, 'SCBK');
  return Buffer.concat([Buffer.from([keyTypes.secureChannelBaseKey, scbk.length]), scbk]);
}

export function decodeKeySet(data: Uint8Array): { keyType: number; key: Uint8Array } {
  need(data, 2, 'osdp_KEYSET', false);
  const [keyType, length] = data;
  need(data, 2 + length, 'osdp_KEYSET');
  return { keyType, key: new Uint8Array(data.subarray(2)) };
}

/** osdp_CCRYPT: the PD's answer to a challenge. */
export interface ClientCryptogramReply {
  clientUid: Uint8Array;
  pdRandom: Uint8Array;
  cryptogram: Uint8Array;
}

export function encodeClientCryptogramReply(reply: ClientCryptogramReply): Buffer {
  return Buffer.concat([reply.clientUid, reply.pdRandom, reply.cryptogram]);
}

export function decodeClientCryptogramReply(data: Uint8Array): ClientCryptogramReply {
  need(data, 32, 'osdp_CCRYPT');
  return { clientUid: data.slice(0, 8), pdRandom: data.slice(8, 16), cryptogram: data.slice(16, 32) };
}
