/**
 * A simulated BACnet/IP building controller: a real BACnet/IP device on a loopback UDP port, built
 * on @bacnet-js/client as the server side. It answers Who-Is with I-Am, ReadProperty(Multiple),
 * WriteProperty, DeviceCommunicationControl and ReinitializeDevice (both password-checked), and
 * AtomicReadFile / AtomicWriteFile on its File objects. With `scCapable` it carries a Network Port
 * object with the BACnet/SC certificate properties and makes a real key pair and PKCS#10 CSR when
 * asked, keeping the private key to itself.
 *
 * How the subject of the CSR is chosen is left open by the standard. This device follows the
 * convention the adapter documents: writing a "certificate request parameters" document (UTF-8
 * lines `name=value`: `subject-cn`, `key-algorithm`, and any number of `dns`, `ip`, `uri`) to the
 * Certificate_Signing_Request_File makes the device generate a fresh key and replace the file's
 * contents with the DER CSR. The key becomes operational only when a certificate for it has been
 * written to the Operational_Certificate_File and a password-checked ReinitializeDevice
 * (activate-changes) accepts the whole set.
 *
 * Each device binds its own 127.x.y.z address and an ephemeral port, so many run in parallel.
 * Faults for bad-peer tests: `silent`, `reportedSerialNumber`, `answerAsInstance`, and
 * `malformedReplies` (confirmed answers sent as raw bytes cut short, or as something not BACnet).
 */
import { createPublicKey, randomInt, X509Certificate } from 'node:crypto';
import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import bacnetModule from '@bacnet-js/client';
import { AtomicReadFile, AtomicWriteFile } from '@bacnet-js/client/dist/lib/services/index.js';
import {
  createCertificationRequest,
  createFactoryCertificate,
  generateDeviceKey,
  keyAlgorithms,
  type DeviceKey,
  type KeyAlgorithm,
  type SubjectAltNames,
} from './device-crypto';

type BacnetClientClass = typeof bacnetModule;
const BacnetServer: BacnetClientClass = (bacnetModule as unknown as { default?: BacnetClientClass }).default ?? bacnetModule;
type BacnetServer = InstanceType<BacnetClientClass>;

// Wire numbers (ASHRAE 135), named here independently of the adapter so the two check each other.
const objectType = { device: 8, file: 10, networkPort: 56 } as const;
const property = {
  applicationSoftwareVersion: 12,
  apduTimeout: 11,
  description: 28,
  fileAccessMethod: 41,
  fileSize: 42,
  fileType: 43,
  firmwareRevision: 44,
  location: 58,
  maxApduLengthAccepted: 62,
  modelName: 70,
  numberOfApduRetries: 73,
  objectIdentifier: 75,
  objectList: 76,
  objectName: 77,
  objectType: 79,
  readOnly: 99,
  segmentationSupported: 107,
  systemStatus: 112,
  utcOffset: 119,
  vendorIdentifier: 120,
  vendorName: 121,
  protocolVersion: 98,
  protocolRevision: 139,
  serialNumber: 372,
  changesPending: 416,
  networkType: 427,
  certificateSigningRequestFile: 509,
  issuerCertificateFiles: 511,
  operationalCertificateFile: 4194306,
  scFailoverHubUri: 4194317,
  scPrimaryHubUri: 4194325,
} as const;
const tag = { boolean: 1, unsigned: 2, signed: 3, characterString: 7, enumerated: 9, objectId: 12 } as const;
const service = {
  atomicReadFile: 6,
  atomicWriteFile: 7,
  readProperty: 12,
  readPropertyMultiple: 14,
  writeProperty: 15,
  deviceCommunicationControl: 17,
  reinitializeDevice: 20,
} as const;
const errorClass = { device: 0, object: 1, property: 2, resources: 3, security: 4, services: 5 } as const;
const errorCode = {
  invalidDataType: 9,
  invalidFileStartPosition: 11,
  optionalFunctionalityNotSupported: 45,
  invalidConfigurationData: 46,
  passwordFailure: 26,
  serviceRequestDenied: 29,
  unknownObject: 31,
  unknownProperty: 32,
  valueOutOfRange: 37,
  writeAccessDenied: 40,
  inconsistentConfiguration: 129,
} as const;
const networkType = { ipv4: 5, secureConnect: 11 } as const;
const reinitialize = { coldstart: 0, warmstart: 1, activateChanges: 7 } as const;
const segmentation = { none: 3 } as const;
const fileAccessStream = 1;
const arrayAll = 0xffffffff;
const maxApdu = 1476;

type CommunicationState = 'enabled' | 'disabled' | 'disable-initiation';
const communicationStates: CommunicationState[] = ['enabled', 'disabled', 'disable-initiation'];

export interface BacnetDeviceFaults {
  /** Answers nothing at all, as a powered-off or firewalled controller. */
  silent: boolean;
  /** Serial_Number reports this instead of the real serial: another unit sits at the address. */
  reportedSerialNumber?: string;
  /** Answers Who-Is as this instance, whatever range was asked for. */
  answerAsInstance?: number;
  /** Confirmed requests are answered with raw bytes: an APDU cut short, or not BACnet at all. */
  malformedReplies?: 'truncated-apdu' | 'not-bacnet';
}

export interface BacnetDeviceOptions {
  serialNumber: string;
  /** The password DeviceCommunicationControl and ReinitializeDevice must carry. */
  password: string;
  /** Loopback IPv4 to bind; a random 127.x.y.z by default. */
  host?: string;
  /** UDP port; an ephemeral one by default. */
  port?: number;
  instance?: number;
  vendorName?: string;
  vendorIdentifier?: number;
  modelName?: string;
  firmwareRevision?: string;
  applicationSoftwareVersion?: string;
  /** Carries a BACnet/SC Network Port with certificate files. */
  scCapable?: boolean;
  communication?: CommunicationState;
  faults?: Partial<BacnetDeviceFaults>;
}

/** What a test may inspect about the device's state. */
export interface BacnetDeviceState {
  objectName: string;
  location: string;
  description: string;
  utcOffset: number;
  apduTimeout: number;
  apduRetries: number;
  communication: CommunicationState;
  changesPending: boolean;
  primaryHubUri: string;
  failoverHubUri: string;
  /** DER of the Operational_Certificate_File now, and of the certificate last activated. */
  operationalCertificateFile?: Buffer;
  activeCertificate?: Buffer;
  issuerCertificateFiles: Buffer[];
  /** DER of the Certificate_Signing_Request_File. */
  csrFile?: Buffer;
  reinitializations: number[];
  passwordFailures: number;
  lastTimeSynchronisation?: Date;
}

export interface SimulatedBacnetDevice {
  /** `host:port/instance`, as the adapter takes it. */
  address: string;
  host: string;
  port: number;
  instance: number;
  serialNumber: string;
  faults: BacnetDeviceFaults;
  state(): BacnetDeviceState;
  close(): Promise<void>;
}

interface FileObject {
  name: string;
  fileType: string;
  contents: Buffer;
  readOnly: boolean;
}

/** What the device needs of a request to answer it. */
interface Request {
  header?: { sender: { address?: string } };
  invokeId?: number;
}

/** Starts a device and resolves once it listens. */
export async function startBacnetDevice(options: BacnetDeviceOptions): Promise<SimulatedBacnetDevice> {
  const device = new BacnetDevice(options);
  await device.listen();
  return device.handle();
}

class BacnetDevice {
  private readonly transport: DeviceTransport;
  private readonly server: BacnetServer;
  readonly instance: number;
  readonly faults: BacnetDeviceFaults;
  private readonly options: Required<Omit<BacnetDeviceOptions, 'faults' | 'host' | 'port' | 'instance' | 'communication'>>;
  private readonly deviceProps = {
    objectName: '',
    location: '',
    description: '',
    utcOffset: 0,
    apduTimeout: 3000,
    apduRetries: 3,
  };
  private communication: CommunicationState;
  private changesPending = false;
  private primaryHubUri = '';
  private failoverHubUri = '';
  private readonly files = new Map<number, FileObject>();
  private operationalKey?: DeviceKey;
  private pendingKey?: DeviceKey;
  private activeCertificate?: Buffer;
  private readonly reinitializations: number[] = [];
  private passwordFailures = 0;
  private lastTimeSynchronisation?: Date;

  constructor(options: BacnetDeviceOptions) {
    this.instance = options.instance ?? randomInt(1, 4_194_302);
    this.faults = { silent: false, ...options.faults };
    this.communication = options.communication ?? 'enabled';
    this.options = {
      serialNumber: options.serialNumber,
      password: options.password,
      vendorName: options.vendorName ?? 'Simulated Building Systems',
      vendorIdentifier: options.vendorIdentifier ?? 999,
      modelName: options.modelName ?? (options.scCapable ? 'SBS-SC-500' : 'SBS-IP-100'),
      firmwareRevision: options.firmwareRevision ?? '4.2.1',
      applicationSoftwareVersion: options.applicationSoftwareVersion ?? 'app-2026.1',
      scCapable: options.scCapable ?? false,
    };
    this.deviceProps.objectName = `SBS-${this.instance}`;
    const host = options.host ?? `127.${randomInt(1, 255)}.${randomInt(0, 256)}.${randomInt(2, 255)}`;
    if (!host.startsWith('127.')) throw new Error('the simulated BACnet device binds loopback addresses only');
    this.transport = new DeviceTransport(host, options.port ?? 0, () => this.faults);
    this.server = new BacnetServer({ transport: this.transport, apduTimeout: 3000 });
    this.server.on('error', () => undefined);
    this.registerServices();
  }

  async listen(): Promise<void> {
    if (this.options.scCapable) await this.createScObjects();
    await this.transport.listening;
  }

  handle(): SimulatedBacnetDevice {
    const { host, port } = this.transport;
    return {
      address: `${host}:${port}/${this.instance}`,
      host,
      port,
      instance: this.instance,
      serialNumber: this.options.serialNumber,
      faults: this.faults,
      state: () => this.state(),
      close: () => this.close(),
    };
  }

  private state(): BacnetDeviceState {
    return {
      ...this.deviceProps,
      communication: this.communication,
      changesPending: this.changesPending,
      primaryHubUri: this.primaryHubUri,
      failoverHubUri: this.failoverHubUri,
      operationalCertificateFile: this.files.get(fileInstance.operationalCertificate)?.contents,
      activeCertificate: this.activeCertificate,
      issuerCertificateFiles: fileInstance.issuerCertificates.map((i) => this.files.get(i)?.contents ?? Buffer.alloc(0)),
      csrFile: this.files.get(fileInstance.csr)?.contents,
      reinitializations: [...this.reinitializations],
      passwordFailures: this.passwordFailures,
      lastTimeSynchronisation: this.lastTimeSynchronisation,
    };
  }

  private async close(): Promise<void> {
    this.server.close();
    await this.transport.closed;
  }

  /** Factory state of an SC device: a key of its own and a self-signed factory certificate. */
  private async createScObjects(): Promise<void> {
    this.operationalKey = await generateDeviceKey('P-256');
    const factory = pemToDer(await createFactoryCertificate(this.operationalKey, this.options.serialNumber));
    this.activeCertificate = factory;
    this.files.set(fileInstance.operationalCertificate, {
      name: 'operational-certificate',
      fileType: 'application/pkix-cert',
      contents: factory,
      readOnly: false,
    });
    this.files.set(fileInstance.csr, { name: 'certificate-signing-request', fileType: 'application/pkcs10', contents: Buffer.alloc(0), readOnly: false });
    fileInstance.issuerCertificates.forEach((instance, i) =>
      this.files.set(instance, { name: `issuer-certificate-${i + 1}`, fileType: 'application/pkix-cert', contents: Buffer.alloc(0), readOnly: false }),
    );
  }

  // ---------------------------------------------------------------- services

  private registerServices(): void {
    const s = this.server;
    s.on('whoIs', (content) => {
      if (!this.answering()) return;
      const { lowLimit, highLimit } = content.payload;
      const asked = this.faults.answerAsInstance;
      if (asked === undefined && lowLimit !== undefined && highLimit !== undefined) {
        if (this.instance < lowLimit || this.instance > highLimit) return;
      }
      s.iAmResponse(content.header!.sender, asked ?? this.instance, segmentation.none, this.options.vendorIdentifier);
    });
    s.on('timeSyncUTC', (content) => {
      // The library decodes the date and time fields into a local-time Date; they are UTC fields.
      const fields = (content.payload as unknown as { value?: Date }).value;
      if (this.answering() && fields) this.lastTimeSynchronisation = new Date(fields.getTime() - fields.getTimezoneOffset() * 60_000);
    });
    s.on('readProperty', (content) =>
      this.confirmed(content, service.readProperty, () => {
        const { objectId, property: ref } = content.payload;
        const result = this.readValue(objectId, ref.id, ref.index);
        if ('error' in result) return this.refuse(content, service.readProperty, result.error);
        s.readPropertyResponse(content.header!.sender, content.invokeId!, objectId, ref, result.values);
      }),
    );
    s.on('readPropertyMultiple', (content) =>
      this.confirmed(content, service.readPropertyMultiple, () => {
        const values = content.payload.properties.map((spec) => ({
          objectId: spec.objectId,
          values: spec.properties.map((ref) => {
            const result = this.readValue(spec.objectId, ref.id, ref.index);
            return {
              property: { id: ref.id, index: ref.index },
              value:
                'error' in result
                  ? [{ type: 105, value: { type: 'BacnetError', errorClass: result.error[0], errorCode: result.error[1] } }]
                  : result.values,
            };
          }),
        }));
        s.readPropertyMultipleResponse(content.header!.sender, content.invokeId!, values as never);
      }),
    );
    s.on('writeProperty', (content) =>
      this.confirmed(content, service.writeProperty, () => {
        const { objectId, value } = content.payload;
        const refused = this.writeValue(objectId, value.property.id, value.value as AppValue[]);
        if (refused) return this.refuse(content, service.writeProperty, refused);
        s.simpleAckResponse(content.header!.sender, service.writeProperty, content.invokeId!);
      }),
    );
    s.on('deviceCommunicationControl', (content) => {
      if (this.faults.silent) return;
      const payload = content.payload as unknown as { enableDisable: number; password?: string };
      if (!this.passwordAccepted(payload.password)) {
        return this.refuse(content, service.deviceCommunicationControl, [errorClass.security, errorCode.passwordFailure]);
      }
      const state = communicationStates[payload.enableDisable];
      if (!state) return this.refuse(content, service.deviceCommunicationControl, [errorClass.services, errorCode.valueOutOfRange]);
      this.communication = state;
      this.ack(content, service.deviceCommunicationControl);
    });
    s.on('reinitializeDevice', (content) => {
      if (this.faults.silent) return;
      const payload = content.payload as unknown as { state: number; password?: string };
      if (!this.passwordAccepted(payload.password)) {
        return this.refuse(content, service.reinitializeDevice, [errorClass.security, errorCode.passwordFailure]);
      }
      if (payload.state === reinitialize.activateChanges) {
        const refused = this.activateChanges();
        if (refused) return this.refuse(content, service.reinitializeDevice, refused);
      } else if (payload.state !== reinitialize.coldstart && payload.state !== reinitialize.warmstart) {
        return this.refuse(content, service.reinitializeDevice, [errorClass.services, errorCode.optionalFunctionalityNotSupported]);
      }
      this.reinitializations.push(payload.state);
      this.ack(content, service.reinitializeDevice);
    });
    s.on('atomicReadFile', (content) =>
      this.confirmed(content, service.atomicReadFile, () => {
        const request = content.payload as unknown as { isStream: boolean; objectId: ObjectId; position: number; count: number };
        const file = request.objectId.type === objectType.file ? this.files.get(request.objectId.instance) : undefined;
        if (!file) return this.refuse(content, service.atomicReadFile, [errorClass.object, errorCode.unknownObject]);
        if (!request.isStream) return this.refuse(content, service.atomicReadFile, [errorClass.services, 10]);
        if (request.position < 0 || request.position > file.contents.length) {
          return this.refuse(content, service.atomicReadFile, [errorClass.services, errorCode.invalidFileStartPosition]);
        }
        const chunk = file.contents.subarray(request.position, request.position + Math.min(request.count, 1200));
        const endOfFile = request.position + chunk.length >= file.contents.length;
        this.complexAck(content, service.atomicReadFile, (buffer) =>
          AtomicReadFile.encodeAcknowledge(buffer, true, endOfFile, request.position, 1, [Array.from(chunk)], [chunk.length]),
        );
      }),
    );
    s.on('atomicWriteFile', (content) =>
      this.confirmed(content, service.atomicWriteFile, async () => {
        const request = content.payload as unknown as { isStream: boolean; objectId: ObjectId; position: number; blocks: number[][] };
        const instance = request.objectId.type === objectType.file ? request.objectId.instance : -1;
        const file = this.files.get(instance);
        if (!file) return this.refuse(content, service.atomicWriteFile, [errorClass.object, errorCode.unknownObject]);
        if (!request.isStream) return this.refuse(content, service.atomicWriteFile, [errorClass.services, 10]);
        if (file.readOnly) return this.refuse(content, service.atomicWriteFile, [errorClass.services, errorCode.writeAccessDenied]);
        const data = Buffer.from(request.blocks[0] ?? []);
        if (instance === fileInstance.csr) {
          const refused = await this.generateCsr(data);
          if (refused) return this.refuse(content, service.atomicWriteFile, refused);
        } else {
          // Position -1 appends (Clause 15.2.1.1.3); anything past the end is refused.
          const position = request.position === -1 ? file.contents.length : request.position;
          if (position < 0 || position > file.contents.length) {
            return this.refuse(content, service.atomicWriteFile, [errorClass.services, errorCode.invalidFileStartPosition]);
          }
          const head = file.contents.subarray(0, position);
          const tail = file.contents.subarray(Math.min(file.contents.length, position + data.length));
          file.contents = Buffer.concat([head, data, tail]);
          if (isCertificateFile(instance)) this.changesPending = true;
        }
        this.complexAck(content, service.atomicWriteFile, (buffer) => AtomicWriteFile.encodeAcknowledge(buffer, true, request.position));
      }),
    );
  }

  /** Only DCC and ReinitializeDevice get through while communication is disabled (Clause 16.1). */
  private answering(): boolean {
    return !this.faults.silent && this.communication !== 'disabled';
  }

  private confirmed(content: Request, choice: number, handle: () => void | Promise<void>): void {
    if (!this.answering()) return;
    if (this.faults.malformedReplies) {
      this.transport.sendMalformed(content.header!.sender.address!, content.invokeId!, choice, this.faults.malformedReplies);
      return;
    }
    Promise.resolve()
      .then(handle)
      .catch(() => this.refuse(content, choice, [errorClass.device, 0]));
  }

  private passwordAccepted(password: string | undefined): boolean {
    if ((password ?? '') === this.options.password) return true;
    this.passwordFailures += 1;
    return false;
  }

  private ack(content: Request, choice: number): void {
    this.server.simpleAckResponse(content.header!.sender, choice, content.invokeId!);
  }

  private refuse(content: Request, choice: number, [cls, code]: [number, number]): void {
    this.server.errorResponse(content.header!.sender, choice, content.invokeId!, cls, code);
  }

  /** A Complex-ACK the library has no helper for: NPDU, APDU header, then the service's encoder. */
  private complexAck(
    content: Request,
    choice: number,
    encode: (buffer: { buffer: Buffer; offset: number }) => void,
  ): void {
    const buffer = { buffer: Buffer.alloc(1482), offset: 4 };
    buffer.buffer[buffer.offset++] = 0x01; // NPDU version
    buffer.buffer[buffer.offset++] = 0x00; // normal priority, no reply expected
    buffer.buffer[buffer.offset++] = 0x30; // Complex-ACK
    buffer.buffer[buffer.offset++] = content.invokeId!;
    buffer.buffer[buffer.offset++] = choice;
    encode(buffer);
    this.server.sendBvlc({ address: content.header!.sender.address }, buffer);
  }

  // ---------------------------------------------------------------- objects

  private objectList(): ObjectId[] {
    return [
      { type: objectType.device, instance: this.instance },
      { type: objectType.networkPort, instance: networkPortInstance },
      ...[...this.files.keys()].map((instance) => ({ type: objectType.file, instance })),
    ];
  }

  private readValue(objectId: ObjectId, id: number, index: number): { values: AppValue[] } | { error: [number, number] } {
    const values = this.propertyValues(objectId, id);
    if ('error' in values) return values;
    if (index === arrayAll || index === undefined) return values;
    // Array element access: index 0 is the length.
    if (!arrayProperties.has(id)) return { error: [errorClass.property, 50] };
    if (index === 0) return { values: [unsigned(values.values.length)] };
    const element = values.values[index - 1];
    return element ? { values: [element] } : { error: [errorClass.property, 42] };
  }

  private propertyValues(objectId: ObjectId, id: number): { values: AppValue[] } | { error: [number, number] } {
    const unknownProperty = { error: [errorClass.property, errorCode.unknownProperty] as [number, number] };
    if (objectId.type === objectType.device && (objectId.instance === this.instance || objectId.instance === 4194303)) {
      const p = this.deviceProps;
      const o = this.options;
      const table: Record<number, AppValue[]> = {
        [property.objectIdentifier]: [objectIdValue({ type: objectType.device, instance: this.instance })],
        [property.objectName]: [text(p.objectName)],
        [property.objectType]: [enumerated(objectType.device)],
        [property.systemStatus]: [enumerated(0)],
        [property.vendorName]: [text(o.vendorName)],
        [property.vendorIdentifier]: [unsigned(o.vendorIdentifier)],
        [property.modelName]: [text(o.modelName)],
        [property.firmwareRevision]: [text(o.firmwareRevision)],
        [property.applicationSoftwareVersion]: [text(o.applicationSoftwareVersion)],
        [property.serialNumber]: [text(this.faults.reportedSerialNumber ?? o.serialNumber)],
        [property.protocolVersion]: [unsigned(1)],
        [property.protocolRevision]: [unsigned(o.scCapable ? 24 : 19)],
        [property.location]: [text(p.location)],
        [property.description]: [text(p.description)],
        [property.utcOffset]: [signed(p.utcOffset)],
        [property.apduTimeout]: [unsigned(p.apduTimeout)],
        [property.numberOfApduRetries]: [unsigned(p.apduRetries)],
        [property.maxApduLengthAccepted]: [unsigned(maxApdu)],
        [property.segmentationSupported]: [enumerated(segmentation.none)],
        [property.objectList]: this.objectList().map(objectIdValue),
      };
      return table[id] ? { values: table[id] } : unknownProperty;
    }
    if (objectId.type === objectType.networkPort && objectId.instance === networkPortInstance) {
      const table: Record<number, AppValue[]> = {
        [property.objectIdentifier]: [objectIdValue(objectId)],
        [property.objectName]: [text(this.options.scCapable ? 'sc-port' : 'ip-port')],
        [property.objectType]: [enumerated(objectType.networkPort)],
        [property.networkType]: [enumerated(this.options.scCapable ? networkType.secureConnect : networkType.ipv4)],
        [property.changesPending]: [{ type: tag.boolean, value: this.changesPending }],
      };
      if (this.options.scCapable) {
        table[property.operationalCertificateFile] = [objectIdValue(fileObject(fileInstance.operationalCertificate))];
        table[property.certificateSigningRequestFile] = [objectIdValue(fileObject(fileInstance.csr))];
        table[property.issuerCertificateFiles] = fileInstance.issuerCertificates.map((i) => objectIdValue(fileObject(i)));
        table[property.scPrimaryHubUri] = [text(this.primaryHubUri)];
        table[property.scFailoverHubUri] = [text(this.failoverHubUri)];
      }
      return table[id] ? { values: table[id] } : unknownProperty;
    }
    if (objectId.type === objectType.file && this.files.has(objectId.instance)) {
      const file = this.files.get(objectId.instance)!;
      const table: Record<number, AppValue[]> = {
        [property.objectIdentifier]: [objectIdValue(objectId)],
        [property.objectName]: [text(file.name)],
        [property.objectType]: [enumerated(objectType.file)],
        [property.fileType]: [text(file.fileType)],
        [property.fileSize]: [unsigned(file.contents.length)],
        [property.fileAccessMethod]: [enumerated(fileAccessStream)],
        [property.readOnly]: [{ type: tag.boolean, value: file.readOnly }],
      };
      return table[id] ? { values: table[id] } : unknownProperty;
    }
    return { error: [errorClass.object, errorCode.unknownObject] };
  }

  private writeValue(objectId: ObjectId, id: number, values: AppValue[]): [number, number] | undefined {
    const value = values[0];
    const invalidType: [number, number] = [errorClass.property, errorCode.invalidDataType];
    const outOfRange: [number, number] = [errorClass.property, errorCode.valueOutOfRange];
    if (!value || values.length !== 1) return invalidType;
    if (objectId.type === objectType.device && objectId.instance === this.instance) {
      const p = this.deviceProps;
      switch (id) {
        case property.objectName:
          if (value.type !== tag.characterString) return invalidType;
          if (!isPrintable(value.value, 1, 64)) return outOfRange;
          p.objectName = value.value as string;
          return undefined;
        case property.location:
        case property.description:
          if (value.type !== tag.characterString) return invalidType;
          // Like many controllers, this one keeps Location shorter than Description.
          if (!isPrintable(value.value, 0, id === property.location ? 64 : 128)) return outOfRange;
          p[id === property.location ? 'location' : 'description'] = value.value as string;
          return undefined;
        case property.utcOffset:
          if (value.type !== tag.signed && value.type !== tag.unsigned) return invalidType;
          if (!Number.isInteger(value.value) || Math.abs(value.value as number) > 780) return outOfRange;
          p.utcOffset = value.value as number;
          return undefined;
        case property.apduTimeout:
          if (value.type !== tag.unsigned) return invalidType;
          if ((value.value as number) < 1000 || (value.value as number) > 60000) return outOfRange;
          p.apduTimeout = value.value as number;
          return undefined;
        case property.numberOfApduRetries:
          if (value.type !== tag.unsigned) return invalidType;
          if ((value.value as number) > 10) return outOfRange;
          p.apduRetries = value.value as number;
          return undefined;
        default:
          return 'error' in this.propertyValues(objectId, id) ? [errorClass.property, errorCode.unknownProperty] : [errorClass.property, errorCode.writeAccessDenied];
      }
    }
    if (objectId.type === objectType.networkPort && objectId.instance === networkPortInstance && this.options.scCapable) {
      if (id === property.scPrimaryHubUri || id === property.scFailoverHubUri) {
        if (value.type !== tag.characterString) return invalidType;
        const uri = value.value as string;
        if (uri !== '' && !/^wss:\/\/[^\s/]+(\/\S*)?$/.test(uri)) return outOfRange;
        if (id === property.scPrimaryHubUri) this.primaryHubUri = uri;
        else this.failoverHubUri = uri;
        this.changesPending = true;
        return undefined;
      }
    }
    if (objectId.type === objectType.file && this.files.has(objectId.instance) && id === property.fileSize) {
      // File_Size may be written to truncate a file (Clause 12.11.14).
      const file = this.files.get(objectId.instance)!;
      if (value.type !== tag.unsigned) return invalidType;
      if ((value.value as number) > file.contents.length) return outOfRange;
      file.contents = file.contents.subarray(0, value.value as number);
      if (isCertificateFile(objectId.instance)) this.changesPending = true;
      return undefined;
    }
    return 'error' in this.propertyValues(objectId, id) ? this.propertyValuesError(objectId, id) : [errorClass.property, errorCode.writeAccessDenied];
  }

  private propertyValuesError(objectId: ObjectId, id: number): [number, number] {
    const result = this.propertyValues(objectId, id);
    return 'error' in result ? result.error : [errorClass.property, errorCode.writeAccessDenied];
  }

  /** Reads the request parameters, makes a fresh key and puts its DER CSR in the file. */
  private async generateCsr(document: Buffer): Promise<[number, number] | undefined> {
    const parameters = parseRequestParameters(document.toString('utf8'));
    if (!parameters) return [errorClass.services, errorCode.invalidConfigurationData];
    const key = await generateDeviceKey(parameters.keyAlgorithm);
    const csr = pemToDer(await createCertificationRequest(key, parameters));
    this.pendingKey = key;
    this.files.get(fileInstance.csr)!.contents = csr;
    return undefined;
  }

  /**
   * Applies what was written since the last activation. The operational certificate must be for
   * our key (the one last made for a CSR, or the current one) and issued by one of the issuer
   * certificates, when any are given; otherwise nothing changes and the device says why.
   */
  private activateChanges(): [number, number] | undefined {
    if (this.options.scCapable) {
      const contents = this.files.get(fileInstance.operationalCertificate)!.contents;
      let certificate: X509Certificate;
      try {
        certificate = new X509Certificate(contents);
      } catch {
        return [errorClass.device, errorCode.invalidConfigurationData];
      }
      const certificateKey = certificate.publicKey.export({ type: 'spki', format: 'der' });
      const keyFor = [this.pendingKey, this.operationalKey].find(
        (key) => key && createPublicKey(key.privateKeyObject).export({ type: 'spki', format: 'der' }).equals(certificateKey),
      );
      if (!keyFor) return [errorClass.device, errorCode.inconsistentConfiguration];
      const issuers: X509Certificate[] = [];
      for (const instance of fileInstance.issuerCertificates) {
        const der = this.files.get(instance)!.contents;
        if (der.length === 0) continue;
        try {
          issuers.push(new X509Certificate(der));
        } catch {
          return [errorClass.device, errorCode.invalidConfigurationData];
        }
      }
      const selfSigned = certificate.checkIssued(certificate) && certificate.verify(certificate.publicKey);
      if (!selfSigned && issuers.length > 0 && !issuers.some((issuer) => certificate.checkIssued(issuer) && certificate.verify(issuer.publicKey))) {
        return [errorClass.device, errorCode.inconsistentConfiguration];
      }
      this.operationalKey = keyFor;
      this.pendingKey = keyFor === this.pendingKey ? undefined : this.pendingKey;
      this.activeCertificate = Buffer.from(contents);
    }
    this.changesPending = false;
    return undefined;
  }
}

// ------------------------------------------------------------------ wire helpers

interface ObjectId {
  type: number;
  instance: number;
}

interface AppValue {
  type: number;
  value: unknown;
}

const networkPortInstance = 1;
const fileInstance = { operationalCertificate: 1, csr: 2, issuerCertificates: [3, 4] } as const;
const arrayProperties = new Set<number>([property.objectList, property.issuerCertificateFiles]);

function isCertificateFile(instance: number): boolean {
  return instance === fileInstance.operationalCertificate || (fileInstance.issuerCertificates as readonly number[]).includes(instance);
}

const fileObject = (instance: number): ObjectId => ({ type: objectType.file, instance });
const text = (value: string): AppValue => ({ type: tag.characterString, value });
const unsigned = (value: number): AppValue => ({ type: tag.unsigned, value });
const signed = (value: number): AppValue => ({ type: tag.signed, value });
const enumerated = (value: number): AppValue => ({ type: tag.enumerated, value });
const objectIdValue = (value: ObjectId): AppValue => ({ type: tag.objectId, value });

function isPrintable(value: unknown, min: number, max: number): boolean {
  return typeof value === 'string' && [...value].length >= min && [...value].length <= max && !/[\u0000-\u001f]/.test(value);
}

function pemToDer(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64');
}

function parseRequestParameters(document: string): ({ commonName: string; keyAlgorithm: KeyAlgorithm } & { subjectAltNames: SubjectAltNames }) | undefined {
  let commonName: string | undefined;
  let keyAlgorithm: KeyAlgorithm = 'P-256';
  const subjectAltNames: SubjectAltNames = { dns: [], ip: [], uri: [] };
  for (const line of document.split('\n')) {
    if (line === '') continue;
    const at = line.indexOf('=');
    if (at < 1) return undefined;
    const [name, value] = [line.slice(0, at), line.slice(at + 1)];
    if (name === 'subject-cn') commonName = value;
    else if (name === 'key-algorithm') {
      if (!(keyAlgorithms as readonly string[]).includes(value)) return undefined;
      keyAlgorithm = value as KeyAlgorithm;
    } else if (name === 'dns' || name === 'ip' || name === 'uri') subjectAltNames[name].push(value);
    else return undefined;
  }
  if (!commonName) return undefined;
  return { commonName, keyAlgorithm, subjectAltNames };
}

/**
 * The library's transport contract over a socket on any loopback address and port (the library's
 * own transport cannot bind an ephemeral port), with a way to put raw bytes on the wire for faults.
 */
class DeviceTransport extends EventEmitter {
  private readonly socket = dgram.createSocket({ type: 'udp4' });
  readonly listening: Promise<void>;
  readonly closed: Promise<void>;
  port = 0;

  constructor(
    readonly host: string,
    private readonly requestedPort: number,
    private readonly faults: () => BacnetDeviceFaults,
  ) {
    super();
    this.listening = new Promise((resolve, reject) => {
      this.socket.once('listening', () => {
        this.port = this.socket.address().port;
        resolve();
      });
      this.socket.once('error', reject);
    });
    this.closed = new Promise((resolve) => this.socket.once('close', () => resolve()));
    this.socket.on('message', (message, from) => {
      if (this.faults().silent) return;
      try {
        this.emit('message', message, `${from.address}:${from.port}`);
      } catch {
        // A request the library cannot decode is dropped, as a device would.
      }
    });
    this.socket.on('error', (error) => this.emit('error', error));
  }

  open(): void {
    this.socket.bind({ port: this.requestedPort, address: this.host });
  }

  close(): void {
    this.socket.close();
  }

  getBroadcastAddress(): string {
    // Loopback has no broadcast; an undirected send would go nowhere useful.
    return `${this.host}:${this.port}`;
  }

  getMaxPayload(): number {
    return 1482;
  }

  send(buffer: Buffer, length: number, receiver?: string): void {
    if (!receiver) return;
    const [host, port] = receiver.split(':');
    this.socket.send(buffer, 0, length, Number(port), host);
  }

  /** Raw bytes instead of an answer: a Complex-ACK cut off mid-way, or a datagram that is not BACnet. */
  sendMalformed(receiver: string, invokeId: number, choice: number, kind: 'truncated-apdu' | 'not-bacnet'): void {
    const frame =
      kind === 'not-bacnet'
        ? Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n', 'latin1')
        : // BVLC (length consistent), NPDU, Complex-ACK header, then a context tag that promises
          // an object identifier and a property but stops after two octets.
          Buffer.from([0x81, 0x0a, 0x00, 0x0b, 0x01, 0x00, 0x30, invokeId, choice, 0x0c, 0x02]);
    const [host, port] = receiver.split(':');
    this.socket.send(frame, Number(port), host);
  }
}
