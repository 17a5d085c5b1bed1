/**
 * Provisions BACnet/IP building controllers (ASHRAE 135, Annex J), and BACnet/SC certificates for
 * controllers whose Network Port object carries the Secure Connect properties.
 *
 * Built on `@bacnet-js/client`, not `bacstack`: bacstack (0.0.1-beta) is unmaintained and cannot
 * bind a port of our choosing, so it could neither share a host with a device nor run two calls at
 * once; @bacnet-js/client is its maintained TypeScript descendant and accepts a transport of ours.
 *
 * Address: `host[:port]/device-instance`, e.g. `192.0.2.10:47808/1234` (see `addresses.ts`).
 *
 * How each step maps onto BACnet:
 * - identify: a directed Who-Is for exactly our instance (I-Am), then ReadPropertyMultiple on the
 *   Device object. BACnet/IP reports no Ethernet MAC, so none is claimed. Network Port objects
 *   with an Operational_Certificate_File mark a BACnet/SC device, the only kind that enrols.
 * - authenticate: BACnet has no login. The password guards DeviceCommunicationControl and
 *   ReinitializeDevice, so we prove it with the harmless one: DCC enable, no time limit. A wrong
 *   password draws security/password-failure.
 * - certificates (BACnet/SC only): the standard leaves open how a device picks its CSR subject.
 *   Our convention: write "certificate request parameters" (UTF-8 lines `subject-cn=`,
 *   `key-algorithm=`, `dns=`, `ip=`, `uri=`) to the Certificate_Signing_Request_File; the device
 *   makes a fresh key and replaces the file with its DER PKCS#10 CSR, which we read back with
 *   AtomicReadFile. The certificate (DER) goes into the Operational_Certificate_File and the CA
 *   certificates into the Issuer_Certificate_Files by AtomicWriteFile, and a password-checked
 *   ReinitializeDevice(activate-changes) makes the device take them, or refuse them all.
 * - configuration: WriteProperty per setting, read back and compared; Network Port changes are
 *   applied with ReinitializeDevice(activate-changes). The receipt hashes what the device reports.
 * - self-test: reads the device's state back (Changes_Pending, and for SC devices the operational
 *   certificate against the pin, its issuer and the hub URI).
 * - activate: DCC enable again. A controller may have been put into DISABLE_INITIATION while it
 *   was commissioned (silent on the network, still answering); activation lets it initiate alarms,
 *   COV and I-Am again. No "provisioned" marker is written: the only standard writable strings
 *   (Description, Location) belong to the operator's configuration, and a proprietary property
 *   would mean something only to one vendor.
 *
 * No per-device management secret: BACnet has no users, and the device password that guards
 * DeviceCommunicationControl and ReinitializeDevice is the installer's, which the standard gives no
 * service to change; so neither `rotateCredentials` nor `removeManagementAccess` is offered.
 */
import { createHash, X509Certificate } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import type {
  CertificateInstallation,
  ConfigurationReceipt,
  CsrRequest,
  DeviceAdapter,
  DeviceConfiguration,
  DeviceIdentity,
  DeviceSession,
  ProbeReport,
  SelfTestReport,
} from '../device-adapter';
import { deviceCapabilities } from '../device-adapter';
import {
  BadCsrError,
  ConfigurationRejectedError,
  ConflictError,
  DeviceUnavailableError,
  IdentityMismatchError,
  NotImplementedError,
  SelfTestFailedError,
  ValidationError,
} from '../../foundation/errors';
import { parseBacnetAddress, type BacnetDeviceAddress } from './addresses';
import { isTransientRefusal, withBacnetDevice, type BacnetCall, type BacnetCallOptions, type BacnetValue, type PropertyResult, type RefusalMapping } from './bacnet-call';
import {
  applicationTag,
  communicationState,
  deviceObject,
  deviceStatus,
  errorClass,
  errorCode,
  objectType,
  propertyId,
  reinitializedState,
  type ObjectId,
} from './protocol';
import type { DeviceNetworks } from '../device-networks';
import { bacnetBuiltInTemplates, bacnetDeviceSettings, bacnetProtocolSettings, type BacnetDeviceSettings } from './settings';

export interface BacnetDeviceAdapterOptions {
  /** Where devices may be reached; nothing else is sent to. */
  networks: DeviceNetworks;
  /** Upper bound for each confirmed request; BACnet's customary APDU timeout is 3 s. */
  apduTimeoutMs?: number;
  /** How long identify waits for an I-Am before relying on ReadPropertyMultiple alone. */
  iAmTimeoutMs?: number;
  /** Local IPv4 address our UDP sockets bind to (an ephemeral port each call). */
  localAddress?: string;
}

/** Capabilities reported besides `certificate-enrolment`. */
export const bacnetCapabilities = {
  bacnetIp: 'bacnet-ip',
  bacnetSc: 'bacnet-sc',
  /** Prefix of `bacnet-protocol-revision-<n>`: which edition of the standard the device implements. */
  protocolRevision: 'bacnet-protocol-revision-',
} as const;

const identityProperties = [
  propertyId.objectName,
  propertyId.vendorName,
  propertyId.vendorIdentifier,
  propertyId.modelName,
  propertyId.firmwareRevision,
  propertyId.applicationSoftwareVersion,
  propertyId.serialNumber,
  propertyId.protocolRevision,
] as const;

const networkPortProperties = [
  propertyId.networkType,
  propertyId.changesPending,
  propertyId.operationalCertificateFile,
  propertyId.certificateSigningRequestFile,
  propertyId.issuerCertificateFiles,
  propertyId.scPrimaryHubUri,
  propertyId.scFailoverHubUri,
] as const;

interface DeviceInformation {
  objectName: string;
  vendorName: string;
  vendorIdentifier: number;
  modelName: string;
  firmwareRevision: string;
  applicationSoftwareVersion?: string;
  serialNumber: string;
  protocolRevision: number;
}

interface NetworkPort {
  objectId: ObjectId;
  changesPending?: boolean;
  /** Present on BACnet/SC ports only. */
  secureConnect?: {
    operationalCertificateFile: ObjectId;
    certificateSigningRequestFile: ObjectId;
    issuerCertificateFiles: ObjectId[];
    primaryHubUri?: string;
    failoverHubUri?: string;
  };
}

type SecureConnectPort = NetworkPort & { secureConnect: NonNullable<NetworkPort['secureConnect']> };

/** One setting as it is written to and read back from a property. */
interface PropertySetting {
  field: string;
  objectId: ObjectId;
  property: number;
  value: BacnetValue;
}

export class BacnetDeviceAdapter implements DeviceAdapter {
  readonly protocol = 'bacnet';
  readonly settings = bacnetProtocolSettings;
  readonly builtInTemplates = bacnetBuiltInTemplates;
  private readonly callOptions: BacnetCallOptions;
  private readonly networks: DeviceNetworks;

  constructor(options: BacnetDeviceAdapterOptions) {
    this.networks = options.networks;
    const apduTimeoutMs = options.apduTimeoutMs ?? 3000;
    this.callOptions = {
      apduTimeoutMs,
      iAmTimeoutMs: options.iAmTimeoutMs ?? Math.min(apduTimeoutMs, 1000),
      localAddress: options.localAddress ?? '0.0.0.0',
    };
  }

  validateAddress(address: string): void {
    parseBacnetAddress(address);
  }

  networkHost(address: string): string | undefined {
    return parseBacnetAddress(address).host;
  }

  async identify(session: DeviceSession): Promise<DeviceIdentity> {
    return this.withDevice(session, async (call, device) => {
      await call.whoIs();
      const info = await readDeviceInformation(call, device);
      const scPort = (await readNetworkPorts(call, device)).find(isSecureConnect);
      const capabilities: string[] = [bacnetCapabilities.bacnetIp, `${bacnetCapabilities.protocolRevision}${info.protocolRevision}`];
      let presentedCertificateFingerprint: string | undefined;
      if (scPort) {
        capabilities.push(bacnetCapabilities.bacnetSc, deviceCapabilities.certificateEnrolment);
        const certificate = await call.readFile(scPort.secureConnect.operationalCertificateFile, 'read its operational certificate');
        if (certificate.length > 0) presentedCertificateFingerprint = sha256Hex(certificate);
        // The operational certificate is what a BACnet/SC device presents in TLS: hold it to the pin.
        const pin = session.pinnedCertificateFingerprint && normaliseFingerprint(session.pinnedCertificateFingerprint);
        if (pin && presentedCertificateFingerprint !== pin) {
          throw new IdentityMismatchError(
            `${call.label} holds operational certificate ${presentedCertificateFingerprint ?? '(none)'}, not the pinned ${pin}`,
          );
        }
        // A file written but not yet activated is not what the device presents: an install that
        // died before ReinitializeDevice must not pass for a finished one.
        if (pin && scPort.changesPending) {
          throw new IdentityMismatchError(`${call.label} has certificate changes pending activation; the pinned certificate is not in use yet`);
        }
      }
      return {
        serialNumber: info.serialNumber,
        manufacturer: info.vendorName,
        model: info.modelName,
        firmwareVersion:
          info.applicationSoftwareVersion && info.applicationSoftwareVersion !== info.firmwareRevision
            ? `${info.firmwareRevision} (application ${info.applicationSoftwareVersion})`
            : info.firmwareRevision,
        deviceType: 'building_controller',
        capabilities,
        ...(presentedCertificateFingerprint ? { presentedCertificateFingerprint } : {}),
      };
    });
  }

  async authenticate(session: DeviceSession): Promise<void> {
    await this.withDevice(session, (call) =>
      call.communicationControl(communicationState.enable, session.credentials?.password, 'accept our password (DeviceCommunicationControl)'),
    );
  }

  async createCertificateSigningRequest(session: DeviceSession, request: CsrRequest): Promise<string> {
    const parameters = certificateRequestParameters(request);
    return this.withDevice(session, async (call, device) => {
      const port = await requireSecureConnect(call, device);
      const file = port.secureConnect.certificateSigningRequestFile;
      await call.replaceFile(file, parameters, 'take the certificate request parameters', (detail, message) =>
        detail.errorClass === errorClass.security
          ? undefined
          : new ValidationError(message, { fields: [{ field: 'request', reason: 'the device refused the requested subject or key' }] }),
      );
      const der = await call.readFile(file, 'hand over its certificate signing request');
      if (der.length === 0) throw new DeviceUnavailableError(`${call.label} has not produced its certificate signing request yet`);
      return checkedCsrPem(der, request, call.label);
    });
  }

  async installCertificate(session: DeviceSession, installation: CertificateInstallation): Promise<void> {
    const certificate = parseCertificate(installation.certificatePem, 'certificatePem');
    const issuers = issuerCertificates(installation);
    await this.withDevice(session, async (call, device) => {
      const port = await requireSecureConnect(call, device);
      const { operationalCertificateFile, issuerCertificateFiles } = port.secureConnect;
      if (issuers.length > issuerCertificateFiles.length) {
        throw new ConfigurationRejectedError(
          `${call.label} has room for ${issuerCertificateFiles.length} issuer certificates, ${issuers.length} are needed`,
          { fields: [{ field: 'chainPem', reason: `at most ${issuerCertificateFiles.length} issuer and trust anchor certificates` }] },
        );
      }
      const writeRefused = rejectedConfiguration('certificatePem');
      await call.replaceFile(operationalCertificateFile, certificate.raw, 'store the operational certificate', writeRefused);
      for (const [i, file] of issuerCertificateFiles.entries()) {
        await call.replaceFile(file, issuers[i]?.raw ?? new Uint8Array(0), 'store an issuer certificate', writeRefused);
      }
      await call.reinitialize(reinitializedState.activateChanges, session.credentials?.password, 'activate the new certificate', (detail, message) => {
        if (detail.errorCode === errorCode.inconsistentConfiguration) {
          // Issued for another CSR, or not by the issuers given: only a fresh CSR can help.
          return new ConflictError(`${message}: the certificate is not for the device's key or not from the given issuers`);
        }
        if (detail.errorCode === errorCode.invalidConfigurationData) return new ConfigurationRejectedError(message);
        return undefined;
      });
      const stored = await call.readFile(operationalCertificateFile, 'read back its operational certificate');
      const expected = sha256Hex(certificate.raw);
      if (sha256Hex(stored) !== expected) {
        throw new ConflictError(`${call.label} holds operational certificate ${sha256Hex(stored)}, not ${expected}`);
      }
    });
  }

  async pushConfiguration(session: DeviceSession, configuration: DeviceConfiguration): Promise<ConfigurationReceipt> {
    // BACnet WriteProperty has no place for configuration.signature; it is not sent.
    const parsed = bacnetDeviceSettings.safeParse(configuration.settings);
    if (!parsed.success) {
      throw new ValidationError('configuration does not fit the BACnet settings schema', {
        fields: parsed.error.issues.map((issue) => ({ field: ['settings', ...issue.path.map(String)].join('.'), reason: issue.message })),
      });
    }
    const settings = parsed.data;
    return this.withDevice(session, async (call, device) => {
      const plan = devicePropertySettings(settings, device);
      let scPort: SecureConnectPort | undefined;
      if (settings.secureConnect) {
        scPort = (await readNetworkPorts(call, device)).find(isSecureConnect);
        if (!scPort) {
          throw new ConfigurationRejectedError(`${call.label} has no BACnet/SC network port for hub URIs`, {
            fields: [{ field: 'settings.secureConnect', reason: 'the device does not support BACnet/SC' }],
          });
        }
        plan.push(...secureConnectSettings(settings.secureConnect, scPort.objectId));
      }

      for (const setting of plan) {
        await call.writeProperty(
          setting.objectId,
          setting.property,
          [setting.value],
          `set ${setting.field}`,
          rejectedConfiguration(`settings.${setting.field}`),
        );
      }
      if (scPort) {
        await call.reinitialize(
          reinitializedState.activateChanges,
          session.credentials?.password,
          'activate its network port changes',
          rejectedConfiguration('settings.secureConnect'),
        );
      }
      if (settings.synchroniseClock) call.synchroniseClock(new Date());

      const applied = await readBack(call, plan);
      const differing = plan.filter((setting) => !sameValue(applied[setting.field], setting.value.value));
      if (differing.length > 0) {
        throw new ConfigurationRejectedError(`${call.label} did not keep ${differing.map((s) => s.field).join(', ')}`, {
          fields: differing.map((s) => ({
            field: `settings.${s.field}`,
            reason: `device reports ${JSON.stringify(applied[s.field])}, we wrote ${JSON.stringify(s.value.value)}`,
          })),
        });
      }
      return { version: configuration.version, hash: sha256Hex(canonicalJson(applied)), appliedAt: new Date().toISOString() };
    });
  }

  async selfTest(session: DeviceSession): Promise<SelfTestReport> {
    const checks = await this.withDevice(session, async (call, device) => {
      const checks: SelfTestReport['checks'] = [];
      // Only a device whose communication is enabled answers a confirmed request other than DCC.
      const info = await readDeviceInformation(call, device);
      checks.push({ name: 'communication-enabled', passed: true, detail: `answers as serial ${info.serialNumber}` });
      const ports = await readNetworkPorts(call, device);
      for (const port of ports) {
        checks.push({
          name: `network-port-${port.objectId.instance}-changes-applied`,
          passed: port.changesPending !== true,
          ...(port.changesPending ? { detail: 'Changes_Pending is true: written settings await activation' } : {}),
        });
      }
      const scPort = ports.find(isSecureConnect);
      if (scPort) checks.push(...(await secureConnectChecks(call, scPort, session.pinnedCertificateFingerprint)));
      return checks;
    });
    const report = { passed: checks.every((check) => check.passed), checks };
    if (!report.passed) {
      const failed = checks.filter((check) => !check.passed);
      const fields = failed.map((check) => ({ field: check.name, reason: check.detail ?? 'failed' }));
      throw new SelfTestFailedError(
        `device at ${session.address} failed its self-test: ${fields.map((f) => `${f.field} (${f.reason})`).join(', ')}`,
        { fields },
      );
    }
    return report;
  }

  async activate(session: DeviceSession): Promise<void> {
    await this.withDevice(session, async (call, device) => {
      await call.communicationControl(communicationState.enable, session.credentials?.password, 'enable communication');
      await call.readProperty(deviceObject(device.instance), propertyId.objectIdentifier, 'answer after being enabled');
    });
  }

  /** ReadProperty System_Status of the device object: it answers, and is not in a failed state. BACnet reports no uptime. */
  async probe(session: DeviceSession): Promise<ProbeReport> {
    return this.withDevice(session, async (call, device) => {
      const [status] = await call.readProperty(deviceObject(device.instance), propertyId.systemStatus, 'report its system status');
      if (status?.value === deviceStatus.nonOperational) throw new DeviceUnavailableError(`${call.label} reports itself non-operational`);
      return {};
    });
  }

  private async withDevice<T>(session: DeviceSession, action: (call: BacnetCall, device: BacnetDeviceAddress) => Promise<T>): Promise<T> {
    const device = parseBacnetAddress(session.address);
    // An IPv4 literal: resolving it is the check against the device networks.
    await this.networks.resolve(device.host);
    return withBacnetDevice(device, this.callOptions, (call) => action(call, device));
  }
}

// ------------------------------------------------------------------ reading the device

async function readDeviceInformation(call: BacnetCall, device: BacnetDeviceAddress): Promise<DeviceInformation> {
  const results = await call.readProperties(deviceObject(device.instance), identityProperties, 'describe itself');
  const serial = results.get(propertyId.serialNumber)!;
  if (!serial.ok) {
    // Serial_Number came with protocol revision 14; without it nothing proves which unit this is.
    throw new NotImplementedError(`${call.label} reports no Serial_Number, so its identity cannot be checked`);
  }
  const field = fieldReader(results, call.label);
  return {
    objectName: field.text(propertyId.objectName, 'object-name'),
    vendorName: field.text(propertyId.vendorName, 'vendor-name'),
    vendorIdentifier: field.unsigned(propertyId.vendorIdentifier, 'vendor-identifier'),
    modelName: field.text(propertyId.modelName, 'model-name'),
    firmwareRevision: field.text(propertyId.firmwareRevision, 'firmware-revision'),
    applicationSoftwareVersion: field.optionalText(propertyId.applicationSoftwareVersion, 'application-software-version'),
    serialNumber: nonEmpty(field.text(propertyId.serialNumber, 'serial-number'), 'serial-number', call.label),
    protocolRevision: field.unsigned(propertyId.protocolRevision, 'protocol-revision'),
  };
}

async function readNetworkPorts(call: BacnetCall, device: BacnetDeviceAddress): Promise<NetworkPort[]> {
  const objects = await call.readProperty(deviceObject(device.instance), propertyId.objectList, 'list its objects');
  const portIds = objects.filter((v) => v.type === applicationTag.objectIdentifier).map((v) => v.value as ObjectId).filter((o) => o.type === objectType.networkPort);
  const ports: NetworkPort[] = [];
  for (const objectId of portIds) {
    const results = await call.readProperties(objectId, networkPortProperties, 'describe its network port');
    const field = fieldReader(results, call.label);
    const port: NetworkPort = { objectId, changesPending: field.optionalBoolean(propertyId.changesPending, 'changes-pending') };
    const operational = field.optionalObjectIds(propertyId.operationalCertificateFile, 'operational-certificate-file');
    const csr = field.optionalObjectIds(propertyId.certificateSigningRequestFile, 'certificate-signing-request-file');
    const issuers = field.optionalObjectIds(propertyId.issuerCertificateFiles, 'issuer-certificate-files');
    if (operational?.length === 1 && csr?.length === 1 && issuers) {
      port.secureConnect = {
        operationalCertificateFile: operational[0],
        certificateSigningRequestFile: csr[0],
        issuerCertificateFiles: issuers,
        primaryHubUri: field.optionalText(propertyId.scPrimaryHubUri, 'sc-primary-hub-uri'),
        failoverHubUri: field.optionalText(propertyId.scFailoverHubUri, 'sc-failover-hub-uri'),
      };
    }
    ports.push(port);
  }
  return ports;
}

function isSecureConnect(port: NetworkPort): port is SecureConnectPort {
  return port.secureConnect !== undefined;
}

async function requireSecureConnect(call: BacnetCall, device: BacnetDeviceAddress): Promise<SecureConnectPort> {
  const port = (await readNetworkPorts(call, device)).find(isSecureConnect);
  if (!port) {
    throw new NotImplementedError(
      `${call.label} has no BACnet/SC network port: plain BACnet/IP devices hold no certificates, so there is nothing to enrol`,
    );
  }
  return port;
}

/** Typed access to ReadPropertyMultiple results; a value of the wrong type is the device's fault. */
function fieldReader(results: Map<number, PropertyResult>, label: string) {
  const unfit = (name: string, reason: string) =>
    new ValidationError(`${label} answered ${name} with something that does not fit the standard: ${reason}`, {
      fields: [{ field: name, reason }],
    });
  const values = (id: number, name: string, required: boolean): BacnetValue[] | undefined => {
    const result = results.get(id);
    if (!result || !result.ok) {
      if (required) throw unfit(name, result && !result.ok ? `error ${result.error.errorClass}/${result.error.errorCode}` : 'missing');
      return undefined;
    }
    return result.values;
  };
  const single = (id: number, name: string, type: number, required: boolean): unknown => {
    const found = values(id, name, required);
    if (found === undefined) return undefined;
    if (found.length !== 1 || found[0].type !== type) throw unfit(name, `expected one value of application tag ${type}`);
    return found[0].value;
  };
  return {
    text: (id: number, name: string) => single(id, name, applicationTag.characterString, true) as string,
    optionalText: (id: number, name: string) => single(id, name, applicationTag.characterString, false) as string | undefined,
    unsigned: (id: number, name: string) => single(id, name, applicationTag.unsignedInteger, true) as number,
    optionalBoolean: (id: number, name: string) => single(id, name, applicationTag.boolean, false) as boolean | undefined,
    optionalObjectIds: (id: number, name: string) => {
      const found = values(id, name, false);
      if (found === undefined) return undefined;
      if (found.some((v) => v.type !== applicationTag.objectIdentifier)) throw unfit(name, 'expected object identifiers');
      const ids = found.map((v) => v.value as ObjectId);
      if (ids.some((o) => o.type !== objectType.file)) throw unfit(name, 'expected File objects');
      return ids;
    },
    /** Whatever single value the property holds, for comparing read-backs. */
    any: (id: number, name: string) => {
      const found = values(id, name, true)!;
      if (found.length !== 1) throw unfit(name, 'expected one value');
      return found[0].value;
    },
  };
}

function nonEmpty(value: string, name: string, label: string): string {
  if (value.trim() === '') {
    throw new ValidationError(`${label} reports an empty ${name}`, { fields: [{ field: name, reason: 'must not be empty' }] });
  }
  return value;
}

// ------------------------------------------------------------------ configuration

/**
 * A refusal of something we asked the device to store is the device rejecting our configuration,
 * except a password failure (authentication) and a busy device (try again later), which keep their
 * usual meaning.
 */
function rejectedConfiguration(field: string): RefusalMapping {
  return (detail, message) => {
    if (detail.errorClass === errorClass.security || isTransientRefusal(detail)) return undefined;
    return new ConfigurationRejectedError(message, { fields: [{ field, reason: message }] });
  };
}

function devicePropertySettings(settings: BacnetDeviceSettings, device: BacnetDeviceAddress): PropertySetting[] {
  const objectId = deviceObject(device.instance);
  const text = (value: string) => ({ type: applicationTag.characterString, value });
  const unsigned = (value: number) => ({ type: applicationTag.unsignedInteger, value });
  const plan: PropertySetting[] = [{ field: 'objectName', objectId, property: propertyId.objectName, value: text(settings.objectName) }];
  if (settings.location !== undefined) plan.push({ field: 'location', objectId, property: propertyId.location, value: text(settings.location) });
  if (settings.description !== undefined) {
    plan.push({ field: 'description', objectId, property: propertyId.description, value: text(settings.description) });
  }
  if (settings.utcOffsetMinutes !== undefined) {
    // UTC_Offset is UTC minus local time (Clause 12.11.31): +60 minutes local is -60 on the wire.
    const utcOffset = settings.utcOffsetMinutes === 0 ? 0 : -settings.utcOffsetMinutes;
    plan.push({ field: 'utcOffsetMinutes', objectId, property: propertyId.utcOffset, value: { type: applicationTag.signedInteger, value: utcOffset } });
  }
  if (settings.apduTimeoutMs !== undefined) {
    plan.push({ field: 'apduTimeoutMs', objectId, property: propertyId.apduTimeout, value: unsigned(settings.apduTimeoutMs) });
  }
  if (settings.apduRetries !== undefined) {
    plan.push({ field: 'apduRetries', objectId, property: propertyId.numberOfApduRetries, value: unsigned(settings.apduRetries) });
  }
  return plan;
}

function secureConnectSettings(secureConnect: NonNullable<BacnetDeviceSettings['secureConnect']>, port: ObjectId): PropertySetting[] {
  return [
    {
      field: 'secureConnect.primaryHubUri',
      objectId: port,
      property: propertyId.scPrimaryHubUri,
      value: { type: applicationTag.characterString, value: secureConnect.primaryHubUri },
    },
    {
      // An absent failover hub clears any earlier one rather than leaving a stale hub configured.
      field: 'secureConnect.failoverHubUri',
      objectId: port,
      property: propertyId.scFailoverHubUri,
      value: { type: applicationTag.characterString, value: secureConnect.failoverHubUri ?? '' },
    },
  ];
}

/** Reads every written property back, one ReadPropertyMultiple per object. */
async function readBack(call: BacnetCall, plan: PropertySetting[]): Promise<Record<string, unknown>> {
  const applied: Record<string, unknown> = {};
  const byObject = new Map<string, PropertySetting[]>();
  for (const setting of plan) {
    const key = `${setting.objectId.type}:${setting.objectId.instance}`;
    byObject.set(key, [...(byObject.get(key) ?? []), setting]);
  }
  for (const settings of byObject.values()) {
    const results = await call.readProperties(settings[0].objectId, settings.map((s) => s.property), 'report its settings');
    const field = fieldReader(results, call.label);
    for (const setting of settings) applied[setting.field] = field.any(setting.property, setting.field);
  }
  return applied;
}

function sameValue(reported: unknown, written: unknown): boolean {
  return reported === written;
}

// ------------------------------------------------------------------ certificates

/** The request document this adapter's certificate convention writes to the CSR file. */
function certificateRequestParameters(request: CsrRequest): Uint8Array {
  const lines: [string, string, string][] = [
    ['subject-cn', request.commonName, 'commonName'],
    ['key-algorithm', request.keyAlgorithm, 'keyAlgorithm'],
    ...request.subjectAltNames.dns.map((v): [string, string, string] => ['dns', v, 'subjectAltNames.dns']),
    ...request.subjectAltNames.ip.map((v): [string, string, string] => ['ip', v, 'subjectAltNames.ip']),
    ...request.subjectAltNames.uri.map((v): [string, string, string] => ['uri', v, 'subjectAltNames.uri']),
  ];
  for (const [, value, field] of lines) {
    if (value === '' || /[\u0000-\u001f\u007f]/.test(value)) {
      throw new ValidationError(`certificate request ${field} must be non-empty and free of control characters`, {
        fields: [{ field, reason: 'must be non-empty and free of control characters' }],
      });
    }
  }
  return new TextEncoder().encode(lines.map(([name, value]) => `${name}=${value}\n`).join(''));
}

const commonNameOid = '2.5.4.3';

/** The CSR as PEM, after checking it is PKCS#10 and names the subject we asked for. */
function checkedCsrPem(der: Buffer, request: CsrRequest, label: string): string {
  let csr: pkijs.CertificationRequest;
  try {
    const parsed = asn1js.fromBER(new Uint8Array(der));
    if (parsed.offset === -1 || parsed.offset !== der.length) throw new Error('not one complete DER value');
    csr = new pkijs.CertificationRequest({ schema: parsed.result });
  } catch (error) {
    throw new DeviceUnavailableError(`${label} handed over a CSR file that is not a DER PKCS#10 request`, { cause: error });
  }
  const commonNames = csr.subject.typesAndValues.filter((tv) => tv.type === commonNameOid).map((tv) => String(tv.value.valueBlock.value));
  if (commonNames.length !== 1 || commonNames[0] !== request.commonName) {
    throw new BadCsrError(`${label} made a CSR for ${JSON.stringify(commonNames)}, not for ${JSON.stringify(request.commonName)}`, {
      fields: [{ field: 'commonName', reason: 'the device did not use the requested subject' }],
    });
  }
  const base64 = der.toString('base64').match(/.{1,64}/g)!.join('\n');
  return `-----BEGIN CERTIFICATE REQUEST-----\n${base64}\n-----END CERTIFICATE REQUEST-----\n`;
}

function parseCertificate(pem: string, field: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (error) {
    throw new ValidationError(`${field} is not a PEM X.509 certificate`, {
      fields: [{ field, reason: 'must be a PEM X.509 certificate' }],
      cause: error,
    });
  }
}

/**
 * The issuer chain, nearest first, each once. BACnet/SC peers (hubs and other nodes) check one
 * another against these; the service's own anchor has no place here, since the service manages
 * the device over BACnet/IP with its password rather than as a BACnet/SC peer.
 */
function issuerCertificates(installation: CertificateInstallation): X509Certificate[] {
  const seen = new Set<string>();
  const certificates: X509Certificate[] = [];
  for (const [pem, field] of installation.chainPem.map((pem, i) => [pem, `chainPem[${i}]`] as const)) {
    const certificate = parseCertificate(pem, field);
    if (seen.has(certificate.fingerprint256)) continue;
    seen.add(certificate.fingerprint256);
    certificates.push(certificate);
  }
  return certificates;
}

async function secureConnectChecks(call: BacnetCall, port: SecureConnectPort, pinned: string | undefined): Promise<SelfTestReport['checks']> {
  const checks: SelfTestReport['checks'] = [];
  const { operationalCertificateFile, issuerCertificateFiles, primaryHubUri } = port.secureConnect;
  const der = await call.readFile(operationalCertificateFile, 'read its operational certificate');
  let certificate: X509Certificate | undefined;
  try {
    certificate = new X509Certificate(der);
  } catch {
    checks.push({ name: 'operational-certificate', passed: false, detail: 'the Operational_Certificate_File holds no X.509 certificate' });
  }
  if (certificate) {
    const fingerprint = sha256Hex(der);
    const pin = pinned && normaliseFingerprint(pinned);
    const expired = Date.parse(certificate.validTo) < Date.now();
    checks.push({
      name: 'operational-certificate',
      passed: !expired && (!pin || pin === fingerprint),
      detail: expired
        ? `expired ${certificate.validTo}`
        : pin && pin !== fingerprint
          ? `holds ${fingerprint}, not ours (${pin})`
          : `holds ${fingerprint}`,
    });
    const issuers: X509Certificate[] = [];
    for (const file of issuerCertificateFiles) {
      const issuerDer = await call.readFile(file, 'read an issuer certificate');
      if (issuerDer.length === 0) continue;
      try {
        issuers.push(new X509Certificate(issuerDer));
      } catch {
        // Counted as missing below.
      }
    }
    const issuedBy = issuers.find((issuer) => certificate.checkIssued(issuer) && certificate.verify(issuer.publicKey));
    checks.push({
      name: 'operational-certificate-issuer',
      passed: issuedBy !== undefined,
      detail: issuedBy ? `issued by ${issuedBy.subject.replace(/\n/g, ', ')}` : 'no Issuer_Certificate_File holds the certificate\'s issuer',
    });
  }
  checks.push({
    name: 'sc-primary-hub',
    passed: Boolean(primaryHubUri),
    detail: primaryHubUri ? primaryHubUri : 'SC_Primary_Hub_URI is empty: the device cannot join a BACnet/SC network',
  });
  return checks;
}

// ------------------------------------------------------------------ small helpers

function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

function normaliseFingerprint(fingerprint: string): string {
  return fingerprint.replace(/:/g, '').toLowerCase();
}

function canonicalJson(value: Record<string, unknown>): string {
  return JSON.stringify(Object.fromEntries(Object.entries(value).sort(([a], [b]) => a.localeCompare(b))));
}

export { parseBacnetAddress, formatBacnetAddress } from './addresses';
export { bacnetDeviceSettings, bacnetProtocolSettings, bacnetBuiltInTemplates } from './settings';
