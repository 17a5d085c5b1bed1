/**
 * BACnet/IP discovery: Who-Is (ASHRAE 135 clause 16.10) to the scope, I-Am collected, then one
 * ReadPropertyMultiple per device for its identity (vendor, model, firmware, serial), read through
 * the BACnet adapter's own conversation (`withBacnetDevice`).
 *
 * Who-Is goes out as unicast to every address of the scope's ranges (a sweep, paced) and, with
 * `broadcast`, to the directed broadcast address of each scope interface. Devices answer with
 * I-Am to the sender's address and port, which is what the scanner's ephemeral socket hears; a
 * device that only ever broadcasts its I-Am to port 47808 needs `listenPort: 47808`.
 *
 * The Who-Is and I-Am frames are a few fixed octets, built and read here; what follows is the
 * adapter's (confirmed requests, segmentation, error mapping).
 */
import dgram from 'node:dgram';
import { formatBacnetAddress } from '../../adapters/bacnet/addresses';
import { withBacnetDevice, type PropertyResult } from '../../adapters/bacnet/bacnet-call';
import { applicationTag, defaultBacnetPort, deviceObject, maxDeviceInstance, propertyId } from '../../adapters/bacnet/protocol';
import type { DiscoveryObservation } from '../observation';
import {
  acceptAnswerFrom,
  boundedTimeout,
  defaultMaxObservations,
  newScanReport,
  noteProblem,
  scanOutcome,
  waitOrAbort,
  type ScanOptions,
  type ScanOutcome,
} from '../scanner';
import { resolveScopeInterfaces, sweepAddresses, numberToIpv4, type ScanScope } from '../scope';

export const defaultIAmWindowMs = 2_000;
export const defaultReadConcurrency = 8;
/** Unicast Who-Is datagrams per pacing step, so a /20 sweep is not one burst. */
const whoIsBurst = 64;
const whoIsBurstGapMs = 5;

// ------------------------------------------------------------------------------------- wire

const bvlcTypeBacnetIp = 0x81;
const bvlcFunction = { originalUnicast: 0x0a, originalBroadcast: 0x0b, forwarded: 0x04 } as const;
const npduVersion = 0x01;
const npduControl = { destinationSpecifier: 0x20, sourceSpecifier: 0x08, networkLayerMessage: 0x80 } as const;
const pduTypeUnconfirmedRequest = 0x10;
const unconfirmedService = { iAm: 0x00, whoIs: 0x08 } as const;
const segmentationNames = ['both', 'transmit', 'receive', 'none'] as const;

/** Who-Is with no instance range: every device answers. */
export function whoIsFrame(broadcast: boolean): Buffer {
  const npdu = [npduVersion, 0x00];
  const apdu = [pduTypeUnconfirmedRequest, unconfirmedService.whoIs];
  const length = 4 + npdu.length + apdu.length;
  return Buffer.from([bvlcTypeBacnetIp, broadcast ? bvlcFunction.originalBroadcast : bvlcFunction.originalUnicast, length >> 8, length & 0xff, ...npdu, ...apdu]);
}

export interface IAm {
  deviceInstance: number;
  maxApdu: number;
  segmentation: (typeof segmentationNames)[number] | number;
  vendorIdentifier: number;
  /** Set when the device sits behind a BACnet router: its network number and MAC there. */
  routedFrom?: { network: number; address: string };
}

/** Reads an I-Am frame; undefined for any other frame or one that does not parse. */
export function readIAm(frame: Buffer): IAm | undefined {
  if (frame.length < 4 || frame[0] !== bvlcTypeBacnetIp || frame.readUInt16BE(2) !== frame.length) return undefined;
  let offset: number;
  if (frame[1] === bvlcFunction.originalUnicast || frame[1] === bvlcFunction.originalBroadcast) offset = 4;
  else if (frame[1] === bvlcFunction.forwarded) offset = 10; // BBMD-forwarded: original source B/IP address first.
  else return undefined;
  if (frame[offset] !== npduVersion) return undefined;
  const control = frame[offset + 1]!;
  offset += 2;
  if (control & npduControl.networkLayerMessage) return undefined;
  if (control & npduControl.destinationSpecifier) {
    const length = frame[offset + 2];
    if (length === undefined) return undefined;
    offset += 3 + length;
  }
  let routedFrom: IAm['routedFrom'];
  if (control & npduControl.sourceSpecifier) {
    const length = frame[offset + 2];
    if (length === undefined || offset + 3 + length > frame.length) return undefined;
    routedFrom = { network: frame.readUInt16BE(offset), address: frame.subarray(offset + 3, offset + 3 + length).toString('hex') };
    offset += 3 + length;
  }
  // The hop count follows when there is a destination.
  if (control & npduControl.destinationSpecifier) offset += 1;
  if (frame[offset] !== pduTypeUnconfirmedRequest || frame[offset + 1] !== unconfirmedService.iAm) return undefined;
  const values = applicationValues(frame.subarray(offset + 2));
  if (!values || values.length < 4) return undefined;
  const [objectId, maxApdu, segmentation, vendor] = values;
  if (objectId!.tag !== applicationTag.objectIdentifier || maxApdu!.tag !== applicationTag.unsignedInteger) return undefined;
  if (segmentation!.tag !== applicationTag.enumerated || vendor!.tag !== applicationTag.unsignedInteger) return undefined;
  const objectType = objectId!.value >>> 22;
  const instance = objectId!.value & 0x3fffff;
  if (objectType !== deviceObject(0).type || instance > maxDeviceInstance) return undefined;
  return {
    deviceInstance: instance,
    maxApdu: maxApdu!.value,
    segmentation: segmentationNames[segmentation!.value] ?? segmentation!.value,
    vendorIdentifier: vendor!.value,
    ...(routedFrom ? { routedFrom } : {}),
  };
}

/** Application-tagged unsigned values of up to 4 octets (all I-Am carries). */
function applicationValues(data: Buffer): { tag: number; value: number }[] | undefined {
  const values: { tag: number; value: number }[] = [];
  let offset = 0;
  while (offset < data.length) {
    const header = data[offset]!;
    const tag = header >> 4;
    const length = header & 0x07;
    // Context tags (bit 3) and extended lengths do not occur in an I-Am.
    if (header & 0x08 || length > 4 || offset + 1 + length > data.length) return undefined;
    values.push({ tag, value: length === 0 ? 0 : data.readUIntBE(offset + 1, length) });
    offset += 1 + length;
  }
  return values;
}

// ------------------------------------------------------------------------------------- scan

export interface BacnetWhoIsOptions extends ScanOptions {
  /** UDP port devices listen on (47808 by default); must be one of the scope's ports when it lists any. */
  port?: number;
  /** Also send Who-Is to each scope interface's directed broadcast address. */
  broadcast?: boolean;
  /** Unicast Who-Is to every address of the scope's ranges (default true when ranges exist). */
  unicastSweep?: boolean;
  /** Local port to listen on; 0 (ephemeral) unless devices broadcast their I-Am. */
  listenPort?: number;
  /** How long to collect I-Am before reading identities; at most half the scan's time. */
  iAmWindowMs?: number;
  /** Devices read at once. */
  readConcurrency?: number;
  /** Per confirmed request. */
  apduTimeoutMs?: number;
}

/** Identity properties read from each Device object, by the name the evidence keeps them under. */
const identityProperties = {
  objectName: propertyId.objectName,
  vendorName: propertyId.vendorName,
  vendorIdentifier: propertyId.vendorIdentifier,
  modelName: propertyId.modelName,
  firmwareRevision: propertyId.firmwareRevision,
  applicationSoftwareVersion: propertyId.applicationSoftwareVersion,
  serialNumber: propertyId.serialNumber,
  protocolRevision: propertyId.protocolRevision,
} as const;

interface HeardDevice {
  host: string;
  port: number;
  iAm: IAm;
}

export async function scanBacnet(scope: ScanScope, options: BacnetWhoIsOptions): Promise<ScanOutcome> {
  const timeoutMs = boundedTimeout(options);
  const report = newScanReport('bacnet');
  const port = options.port ?? defaultBacnetPort;
  if (scope.ports.length > 0 && !scope.ports.includes(port)) throw new RangeError(`port ${port} is not among the scope's ports`);
  const iAmWindowMs = Math.min(options.iAmWindowMs ?? defaultIAmWindowMs, timeoutMs / 2);
  const apduTimeoutMs = options.apduTimeoutMs ?? 1_000;
  const deadline = Date.now() + timeoutMs;
  const { interfaces, missing } = resolveScopeInterfaces(scope);
  report.interfacesMissing.push(...missing);

  const heard = new Map<string, HeardDevice>();
  const socket = dgram.createSocket({ type: 'udp4' });
  socket.on('message', (frame, remote) => {
    report.datagramsReceived += 1;
    const iAm = readIAm(frame);
    if (!iAm) {
      // Our own broadcast Who-Is comes back too; only count what claims to be an answer.
      if (!frame.equals(whoIsFrame(true)) && !frame.equals(whoIsFrame(false))) report.malformedPackets += 1;
      return;
    }
    if (!acceptAnswerFrom(scope, report, remote.address, interfaces)) return;
    const key = `${remote.address}:${remote.port}/${iAm.deviceInstance}/${iAm.routedFrom?.network ?? ''}`;
    if (!heard.has(key)) heard.set(key, { host: remote.address, port: remote.port, iAm });
  });
  socket.on('error', (error) => noteProblem(report, `socket: ${error.message}`));
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ port: options.listenPort ?? 0, address: '0.0.0.0' }, () => {
      socket.off('error', reject);
      resolve();
    });
  });

  const send = (frame: Buffer, host: string) =>
    new Promise<void>((resolve) =>
      socket.send(frame, port, host, (error) => {
        if (error) noteProblem(report, `Who-Is to ${host}:${port}: ${error.message}`);
        else report.datagramsSent += 1;
        resolve();
      }),
    );

  try {
    if (options.broadcast) {
      socket.setBroadcast(true);
      for (const scopeInterface of interfaces) {
        // A /31 or /32 has no broadcast address (RFC 3021).
        if (scopeInterface.network.prefixLength > 30) continue;
        report.interfacesScanned.push({ name: scopeInterface.name, address: scopeInterface.address });
        await send(whoIsFrame(true), numberToIpv4(scopeInterface.network.last));
      }
    }
    if (options.unicastSweep ?? scope.ranges.length > 0) {
      let inBurst = 0;
      for (const address of sweepAddresses(scope, options.networks)) {
        if (options.signal?.aborted || Date.now() >= deadline) break;
        await send(whoIsFrame(false), address);
        if (++inBurst === whoIsBurst) {
          inBurst = 0;
          await waitOrAbort(whoIsBurstGapMs, options.signal);
        }
      }
    }
    await waitOrAbort(Math.max(0, Math.min(iAmWindowMs, deadline - Date.now())), options.signal);
  } finally {
    socket.close();
  }

  const devices = [...heard.values()];
  const observations: DiscoveryObservation[] = new Array(devices.length);
  let next = 0;
  const reader = async () => {
    while (next < devices.length) {
      const index = next++;
      const device = devices[index]!;
      const remaining = deadline - Date.now();
      const identity = device.iAm.routedFrom || remaining < apduTimeoutMs || options.signal?.aborted
        ? undefined
        : await readIdentity(device, { apduTimeoutMs, report });
      observations[index] = observationOf(device, identity, remaining < apduTimeoutMs);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, options.readConcurrency ?? defaultReadConcurrency) }, reader));
  return scanOutcome(observations, report, options.maxObservations ?? defaultMaxObservations);
}

type Identity = { ok: true; values: Partial<Record<keyof typeof identityProperties, string | number>> } | { ok: false; error: string };

async function readIdentity(device: HeardDevice, context: { apduTimeoutMs: number; report: ReturnType<typeof newScanReport> }): Promise<Identity> {
  const address = { host: device.host, port: device.port, instance: device.iAm.deviceInstance, endpoint: `${device.host}:${device.port}` };
  try {
    const results = await withBacnetDevice(address, { apduTimeoutMs: context.apduTimeoutMs, iAmTimeoutMs: context.apduTimeoutMs, localAddress: '0.0.0.0' }, (call) =>
      call.readProperties(deviceObject(device.iAm.deviceInstance), Object.values(identityProperties), 'describe itself'),
    );
    const values: Partial<Record<keyof typeof identityProperties, string | number>> = {};
    for (const [name, id] of Object.entries(identityProperties) as [keyof typeof identityProperties, number][]) {
      const value = singleValue(results.get(id));
      if (value !== undefined) values[name] = value;
    }
    return { ok: true, values };
  } catch (error) {
    const message = (error as Error).message;
    noteProblem(context.report, `${formatBacnetAddress(address)}: ${message}`);
    return { ok: false, error: message };
  }
}

/** A property's one text or number value; anything else (an error, a list) is left out. */
function singleValue(result: PropertyResult | undefined): string | number | undefined {
  if (!result?.ok || result.values.length !== 1) return undefined;
  const [{ type, value }] = result.values as [{ type: number; value: unknown }];
  if (type === applicationTag.characterString && typeof value === 'string' && value.trim()) return value.trim();
  if (type === applicationTag.unsignedInteger && typeof value === 'number') return value;
  return undefined;
}

function observationOf(device: HeardDevice, identity: Identity | undefined, outOfTime: boolean): DiscoveryObservation {
  const values = identity?.ok ? identity.values : {};
  const text = (value: string | number | undefined) => (typeof value === 'string' ? value : undefined);
  const optional = {
    manufacturer: text(values.vendorName),
    model: text(values.modelName),
    firmwareVersion: text(values.firmwareRevision),
    serialNumber: text(values.serialNumber),
  };
  return {
    source: 'bacnet',
    observedAt: new Date().toISOString(),
    ip: device.host,
    // A routed device is not reachable by host:port/instance alone; it is evidence, not an endpoint.
    endpoints: device.iAm.routedFrom ? [] : [{ protocol: 'bacnet', address: formatBacnetAddress({ host: device.host, port: device.port, instance: device.iAm.deviceInstance }) }],
    ...Object.fromEntries(Object.entries(optional).filter(([, value]) => value !== undefined)),
    evidence: {
      deviceInstance: device.iAm.deviceInstance,
      vendorIdentifier: device.iAm.vendorIdentifier,
      maxApdu: device.iAm.maxApdu,
      segmentation: device.iAm.segmentation,
      ...(device.iAm.routedFrom ? { routedFrom: device.iAm.routedFrom } : {}),
      ...(identity?.ok
        ? Object.fromEntries(Object.entries(values).filter(([name]) => ['objectName', 'applicationSoftwareVersion', 'protocolRevision'].includes(name)))
        : {}),
      ...(identity && !identity.ok ? { identityReadError: identity.error } : {}),
      ...(!identity && outOfTime ? { identityReadError: 'the scan window closed before the identity could be read' } : {}),
    },
  };
}
