/**
 * Provisions devices that expose a native HTTPS management API (the reference device speaks it).
 * Every call is self-contained: it opens its own TLS connection, checks the device's certificate
 * against the pin, presents our client certificate once the device trusts our CA, and turns the
 * device's answer into the service's error hierarchy.
 *
 * No per-device management secret: the reference device trusts our client certificate, renewed by
 * the device's renewal workflow, and keeps the installer's password as it was given; so neither
 * `rotateCredentials` nor `removeManagementAccess` is offered.
 */
import { X509Certificate } from 'node:crypto';
import { z } from 'zod';
import type {
  CertificateInstallation,
  ConfigurationReceipt,
  CsrRequest,
  DeviceAdapter,
  DeviceConfiguration,
  DeviceIdentity,
  DeviceSession,
  DeviceType,
  ProbeReport,
  RunningConfiguration,
  SelfTestReport,
} from '../device-adapter';
import { deviceCapabilities } from '../device-adapter';
import {
  AuthenticationFailedError,
  ConfigurationRejectedError,
  ConflictError,
  DeviceUnavailableError,
  NotImplementedError,
  PayloadTooLargeError,
  SelfTestFailedError,
  ValidationError,
  type FieldProblem,
  type ServiceError,
} from '../../foundation/errors';
import { canonicalHash } from '../../foundation/canonical-json';
import { normaliseMacAddress } from '../../foundation/mac-address';
import type { DeviceNetworks } from '../device-networks';
import { parseDeviceAddress } from './addresses';
import { callDevice, certificateFingerprint, type DeviceRequest, type DeviceResponse } from './device-call';
import { deviceApiPaths } from './protocol';
import { httpsBuiltInTemplates, httpsProtocolSettings } from './settings';

export interface HttpsDeviceAdapterOptions {
  /** Where devices may be reached; nothing else is connected to. */
  networks: DeviceNetworks;
  /** Upper bound for one call: connect, handshake, request and answer. */
  requestTimeoutMs?: number;
}

const deviceTypes: readonly DeviceType[] = ['camera', 'door_controller', 'card_reader', 'building_controller', 'intercom', 'other'];

const identityAnswer = z.object({
  serialNumber: z.string().min(1).max(128),
  macAddress: z.string(),
  manufacturer: z.string().max(256),
  model: z.string().max(256),
  firmwareVersion: z.string().max(128),
  firmwareHash: z
    .string()
    .regex(/^[0-9a-fA-F]{64}$/)
    .transform((v) => v.toLowerCase())
    .optional(),
  deviceType: z.string().optional(),
  capabilities: z.array(z.string()).default([]),
});
const csrAnswer = z.object({ csrPem: z.string().includes('-----BEGIN CERTIFICATE REQUEST-----') });
const installAnswer = z.object({ fingerprint: z.string() });
const receiptAnswer = z.object({ version: z.int(), hash: z.string().min(1), appliedAt: z.string().min(1) });
const runningAnswer = z.object({ settings: z.record(z.string(), z.unknown()), version: z.int().optional() });
const selfTestAnswer = z.object({
  passed: z.boolean(),
  checks: z.array(z.object({ name: z.string(), passed: z.boolean(), detail: z.string().optional() })),
});
const statusAnswer = z.object({ state: z.string().max(64), uptimeSeconds: z.number().int().min(0).optional() });
const deviceFieldProblems = z.array(z.object({ field: z.string(), reason: z.string() }));

export class HttpsDeviceAdapter implements DeviceAdapter {
  readonly protocol = 'https';
  readonly settings = httpsProtocolSettings;
  readonly builtInTemplates = httpsBuiltInTemplates;
  private readonly requestTimeoutMs: number;
  private readonly networks: DeviceNetworks;

  constructor(options: HttpsDeviceAdapterOptions) {
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.networks = options.networks;
  }

  validateAddress(address: string): void {
    parseDeviceAddress(address);
  }

  networkHost(address: string): string | undefined {
    return parseDeviceAddress(address).host.toLowerCase();
  }

  async identify(session: DeviceSession): Promise<DeviceIdentity> {
    const response = await this.call(session, 'identify', { method: 'GET', path: deviceApiPaths.identity });
    const identity = deviceAnswer(identityAnswer, response.body, 'identify');
    const macAddress = normaliseMacAddress(identity.macAddress);
    if (!macAddress) {
      throw new ValidationError(`device at ${session.address} reported an invalid MAC address`, {
        fields: [{ field: 'macAddress', reason: 'must be a 48-bit MAC address' }],
      });
    }
    return {
      serialNumber: identity.serialNumber,
      macAddress,
      manufacturer: identity.manufacturer,
      model: identity.model,
      firmwareVersion: identity.firmwareVersion,
      ...(identity.firmwareHash ? { firmwareHash: identity.firmwareHash } : {}),
      ...(identity.deviceType ? { deviceType: asDeviceType(identity.deviceType) } : {}),
      // Every device of this protocol makes its own key and CSR through the same API.
      capabilities: [...new Set([...identity.capabilities, deviceCapabilities.certificateEnrolment])],
      presentedCertificateFingerprint: response.presentedCertificateFingerprint,
    };
  }

  async authenticate(session: DeviceSession): Promise<void> {
    await this.call(session, 'authenticate', { method: 'POST', path: deviceApiPaths.verifySession });
  }

  async createCertificateSigningRequest(session: DeviceSession, request: CsrRequest): Promise<string> {
    const response = await this.call(session, 'create a CSR', { method: 'POST', path: deviceApiPaths.csr, body: request });
    return deviceAnswer(csrAnswer, response.body, 'create a CSR').csrPem;
  }

  async installCertificate(session: DeviceSession, installation: CertificateInstallation): Promise<void> {
    const expected = fingerprintOfPem(installation.certificatePem);
    const response = await this.call(
      session,
      'install a certificate',
      {
        method: 'PUT',
        path: deviceApiPaths.certificate,
        body: installation,
        // A retry after a lost answer finds the device already serving the certificate we issued.
        alsoAcceptFingerprints: [expected],
      },
      // A key mismatch means the certificate was issued for another CSR: retrying cannot help, only
      // a fresh CSR can. That clash with the device's state is what ConflictError stands for;
      // BadCsrError would wrongly blame a CSR the CA already accepted.
      { 409: (message) => new ConflictError(message) },
    );
    const { fingerprint } = deviceAnswer(installAnswer, response.body, 'install a certificate');
    if (fingerprint.toLowerCase() !== expected) {
      throw new ConflictError(`device at ${session.address} reports certificate ${fingerprint} installed, not ${expected}`);
    }
  }

  /** The signature travels with the configuration; an enrolled device refuses to apply without it. */
  async pushConfiguration(session: DeviceSession, configuration: DeviceConfiguration): Promise<ConfigurationReceipt> {
    const { templateId, version, settings, signature } = configuration;
    const response = await this.call(
      session,
      'apply a configuration',
      { method: 'PUT', path: deviceApiPaths.configuration, body: { templateId, version, settings, ...(signature ? { signature } : {}) } },
      { 422: (message, fields) => new ConfigurationRejectedError(message, { fields }) },
    );
    return deviceAnswer(receiptAnswer, response.body, 'apply a configuration');
  }

  /** The device reports every setting of its schema except the passwords of its local accounts. */
  async readConfiguration(session: DeviceSession): Promise<RunningConfiguration> {
    const response = await this.call(session, 'report its running configuration', {
      method: 'GET',
      path: deviceApiPaths.runningConfiguration,
    });
    const running = deviceAnswer(runningAnswer, response.body, 'report its running configuration');
    return {
      settings: running.settings,
      unreported: ['users[].password'],
      ...(running.version !== undefined ? { version: running.version } : {}),
      // Hashed here rather than taken from the device, so every protocol's hash means the same.
      hash: canonicalHash(running.settings),
      readAt: new Date().toISOString(),
    };
  }

  async selfTest(session: DeviceSession): Promise<SelfTestReport> {
    const response = await this.call(session, 'run its self-test', { method: 'POST', path: deviceApiPaths.selfTest });
    const report = deviceAnswer(selfTestAnswer, response.body, 'run its self-test');
    if (!report.passed) {
      const failed = report.checks.filter((check) => !check.passed);
      const fields = failed.map((check) => ({ field: check.name, reason: check.detail ?? 'failed' }));
      const summary = fields.map((f) => `${f.field} (${f.reason})`).join(', ') || 'no failed check named';
      throw new SelfTestFailedError(`device at ${session.address} failed its self-test: ${summary}`, { fields });
    }
    return report;
  }

  async activate(session: DeviceSession): Promise<void> {
    await this.call(session, 'activate', { method: 'POST', path: deviceApiPaths.activate });
  }

  /**
   * The status endpoint over mutual TLS, our client certificate the only credential (no password
   * goes out); a device provisioned without a certificate of ours is asked with its password over
   * the pinned channel. A device presenting a certificate other than the pinned one is reported, not asked.
   */
  async probe(session: DeviceSession): Promise<ProbeReport> {
    const { credentials: _password, ...mutualTls } = session;
    const asked = session.clientIdentity ? mutualTls : session;
    const response = await this.call(asked, 'report its status', { method: 'GET', path: deviceApiPaths.status, reportForeignCertificate: true });
    const presentedCertificateFingerprint = response.presentedCertificateFingerprint;
    if (response.status === 0) return { presentedCertificateFingerprint };
    const status = deviceAnswer(statusAnswer, response.body, 'report its status');
    return { presentedCertificateFingerprint, ...(status.uptimeSeconds !== undefined ? { uptimeSeconds: status.uptimeSeconds } : {}) };
  }

  /** Makes the call and turns any non-2xx answer into the fitting service error. */
  private async call(
    session: DeviceSession,
    operation: string,
    request: DeviceRequest,
    overrides: Partial<Record<number, (message: string, fields: FieldProblem[]) => ServiceError>> = {},
  ): Promise<DeviceResponse> {
    const response = await callDevice(session, request, { timeoutMs: this.requestTimeoutMs, networks: this.networks });
    if ((response.status >= 200 && response.status < 300) || (response.status === 0 && request.reportForeignCertificate)) return response;
    const detail = errorDetail(response.body);
    const message = `device at ${session.address} refused to ${operation}: ${response.status}${detail ? ` ${detail}` : ''}`;
    const fields = deviceFields(response.body);
    const override = overrides[response.status];
    throw override ? override(message, fields) : failureForStatus(response.status, message, fields);
  }
}

function failureForStatus(status: number, message: string, fields: FieldProblem[]): ServiceError {
  // Busy, rebooting, locked out for a while or rate limiting: all pass with time.
  if (status >= 500 || status === 408 || status === 423 || status === 429) return new DeviceUnavailableError(message);
  switch (status) {
    case 401:
    case 403:
      return new AuthenticationFailedError(message);
    case 404:
    case 405:
      return new NotImplementedError(message);
    case 409:
      return new ConflictError(message);
    case 413:
      return new PayloadTooLargeError(message);
    default:
      return new ValidationError(message, { fields });
  }
}

/** Device answers are untrusted input: one that does not fit the protocol is refused, never guessed at. */
function deviceAnswer<S extends z.ZodType>(schema: S, body: unknown, operation: string): z.infer<S> {
  const result = schema.safeParse(body);
  if (result.success) return result.data;
  const fields = result.error.issues.map((issue) => ({
    field: issue.path.map(String).join('.') || '(root)',
    reason: issue.message,
  }));
  throw new ValidationError(`device answered "${operation}" with something that does not fit the protocol`, { fields });
}

function errorDetail(body: unknown): string | undefined {
  const error = (body as { error?: unknown } | undefined)?.error;
  return typeof error === 'string' ? error.slice(0, 500) : undefined;
}

function deviceFields(body: unknown): FieldProblem[] {
  const fields = deviceFieldProblems.safeParse((body as { fields?: unknown } | undefined)?.fields);
  return fields.success ? fields.data : [];
}

function asDeviceType(value: string): DeviceType {
  return (deviceTypes as readonly string[]).includes(value) ? (value as DeviceType) : 'other';
}

function fingerprintOfPem(certificatePem: string): string {
  try {
    return certificateFingerprint(new X509Certificate(certificatePem).raw);
  } catch (error) {
    throw new ValidationError('certificate to install is not a PEM X.509 certificate', {
      fields: [{ field: 'certificatePem', reason: 'must be a PEM X.509 certificate' }],
      cause: error,
    });
  }
}

export { parseDeviceAddress } from './addresses';
export { deviceApiPaths } from './protocol';
export { httpsDeviceSettings, httpsProtocolSettings, httpsBuiltInTemplates } from './settings';
