/**
 * The reference device: an HTTPS management API behaving like the firmware of a real IP camera or
 * door controller. It stands in for hardware in tests, demos and load runs, so it is strict where
 * real devices are strict (mutual TLS after enrolment, lock-out after failed logins, schema-checked
 * configuration) and can be told to misbehave in the ways real devices do.
 */
import { createHash, timingSafeEqual, X509Certificate } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { isIP } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TLSSocket } from 'node:tls';
import type { ClientTlsIdentity } from '../../adapters/device-adapter';
import { z } from 'zod';
import type { DeviceCredentials, DeviceType } from '../../adapters/device-adapter';
import { deviceApiPaths, deviceCapabilities } from '../../adapters/https/protocol';
import { anchorOf } from './certificate-path';
import { canonicalJson, SignatureRefused, verifyConfigurationSignature } from './configuration-signature';
import {
  createCertificationRequest,
  createFactoryCertificate,
  generateDeviceKey,
  keyAlgorithms,
  pemBlocks,
  privateKeyPem,
  sha256Hex,
  type DeviceKey,
} from './device-crypto';

export type DeviceState = 'factory' | 'provisioned' | 'active';

export interface DeviceFaults {
  /** Answer the next `count` requests to a path (e.g. `/api/v1/identity`) with `status` instead. */
  failNext?: Record<string, { count: number; status: number }>;
  /** Extra delay before a path's requests are handled. */
  latencyMs?: Record<string, number>;
  /** Paths whose requests wait, unanswered, until `release()`. */
  hang?: string[];
  /** Serial number the identity endpoint reports instead of the real one. */
  reportedSerialNumber?: string;
  /** Damages the firmware image, so the firmware integrity check of the self-test fails. */
  failSelfTest?: boolean;
  /** Refuses every configuration, like a device whose local policy forbids remote configuration. */
  refuseConfiguration?: boolean;
}

export interface ReferenceDeviceOptions {
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  serialNumber: string;
  macAddress: string;
  manufacturer?: string;
  model?: string;
  firmwareVersion?: string;
  deviceType?: DeviceType;
  /** The device's unique factory default login. */
  credentials: DeviceCredentials;
  faults?: DeviceFaults;
  /** How long the device refuses logins after five failures in a row. */
  lockoutMs?: number;
}

export interface AppliedConfiguration {
  templateId: string;
  version: number;
  settings: DeviceSettings;
  hash: string;
  appliedAt: string;
  /** The signature it was applied under; absent when applied before the device held trust anchors. */
  signature?: { signedAt: string; nonce: string; signerSubject: string };
}

/** Settings a local administrator changes on the device itself; `null` removes an optional one. */
export type LocalSettingsChange = {
  [K in keyof DeviceSettings]?: NonNullable<DeviceSettings[K]> extends readonly unknown[]
    ? DeviceSettings[K] | null
    : NonNullable<DeviceSettings[K]> extends object
      ? Partial<NonNullable<DeviceSettings[K]>> | null
      : DeviceSettings[K];
};

interface InstalledCertificate {
  certificatePem: string;
  chainPem: string[];
  trustAnchorsPem: string[];
  anchors: X509Certificate[];
  fingerprint: string;
  certificate: X509Certificate;
  key: DeviceKey;
}

interface Reply {
  status: number;
  body?: unknown;
}

interface Route {
  method: 'GET' | 'POST' | 'PUT';
  authenticated: boolean;
  handle: (body: unknown) => Promise<Reply>;
}

const clientAuthPurpose = '1.3.6.1.5.5.7.3.2';
const maxFailedLogins = 5;
const maxBodyBytes = 256 * 1024;
const firmwareImageBytes = 64 * 1024;

/** An error answer; the HTTP layer turns it into `{ error, fields? }`. */
class DeviceProblem extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly fields?: { field: string; reason: string }[],
  ) {
    super(message);
  }
}

const hostnameLabel = /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$/;
const dnsName = /^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$/;
const networkHost = z
  .string()
  .refine((value) => dnsName.test(value) || isIP(value) !== 0, 'must be a DNS name or an IP address');

function isKnownTimeZone(value: string): boolean {
  if (!/^[A-Za-z][A-Za-z0-9_+\-/]*$/.test(value)) return false;
  try {
    new Intl.DateTimeFormat('en', { timeZone: value });
    return true;
  } catch {
    return false;
  }
}

const settingsSchema = z.strictObject({
  hostname: z.string().regex(hostnameLabel, 'must be an RFC 1123 label of at most 63 characters'),
  timezone: z.string().refine(isKnownTimeZone, 'must be an IANA time zone such as Europe/Berlin'),
  site: z.string().min(1).max(128),
  ntp: z.strictObject({ servers: z.array(networkHost).min(1).max(4) }),
  syslog: z
    .strictObject({
      host: networkHost,
      port: z.int().min(1).max(65535),
      protocol: z.enum(['udp', 'tcp', 'tls']),
    })
    .optional(),
  tls: z.strictObject({ minVersion: z.enum(['TLSv1.2', 'TLSv1.3']) }),
  management: z.strictObject({ httpEnabled: z.boolean(), passwordLogin: z.boolean() }),
  vlan: z.strictObject({ id: z.int().min(1).max(4094), priority: z.int().min(0).max(7).optional() }).optional(),
  users: z
    .array(
      z.strictObject({
        username: z.string().regex(/^[A-Za-z0-9._-]{1,32}$/, 'must be 1 to 32 characters of A-Z, a-z, 0-9, ".", "_" or "-"'),
        password: z.string().min(1).max(128),
        role: z.enum(['administrator', 'operator', 'viewer']),
      }),
    )
    .max(16)
    .optional(),
});
export type DeviceSettings = z.infer<typeof settingsSchema>;

const timestamp = z.string().min(1).max(64);
const signatureSchema = z.strictObject({
  algorithm: z.string().max(64),
  value: z.base64().max(1024),
  signerCertificatePem: z.string().min(1).max(64 * 1024),
  signerChainPem: z.array(z.string().min(1).max(64 * 1024)).max(8),
  tenant: z.string().min(1).max(256),
  deviceId: z.string().min(1).max(256),
  serialNumber: z.string().min(1).max(128),
  signedAt: timestamp,
  expiresAt: timestamp,
  nonce: z.string().min(16).max(128),
});

const configurationSchema = z.strictObject({
  templateId: z.string().min(1).max(128),
  version: z.int().min(1),
  settings: settingsSchema,
  signature: signatureSchema.optional(),
});

const csrSchema = z.strictObject({
  commonName: z.string().min(1).max(64),
  keyAlgorithm: z.enum(keyAlgorithms),
  subjectAltNames: z
    .strictObject({
      dns: z.array(z.string().regex(dnsName, 'must be a DNS name')).max(16).default([]),
      ip: z.array(z.string().refine((v) => isIP(v) !== 0 && !v.includes('%'), 'must be an IP address')).max(16).default([]),
      uri: z.array(z.url()).max(16).default([]),
    })
    .default({ dns: [], ip: [], uri: [] }),
});

const pem = z.string().min(1).max(64 * 1024);
const installationSchema = z.strictObject({
  certificatePem: pem,
  chainPem: z.array(pem).max(8),
  trustAnchorsPem: z.array(pem).min(1).max(8),
});

export class ReferenceDevice {
  readonly serialNumber: string;
  readonly macAddress: string;
  readonly manufacturer: string;
  readonly model: string;
  /** The version running now; `installFirmware` changes it, as an update the device fetched itself would. */
  firmwareVersion: string;
  readonly deviceType: DeviceType;

  private readonly host: string;
  private port: number;
  private readonly credentials: DeviceCredentials;
  private readonly lockoutMs: number;
  private faults: DeviceFaults;
  private firmwareImage: Buffer;
  /** What the signed firmware manifest says the image hashes to. */
  private firmwareHash: string;
  private readonly routes: Record<string, Route>;

  private currentState: DeviceState = 'factory';
  private factoryKey?: DeviceKey;
  private factoryCertificatePem?: string;
  private pendingKey?: DeviceKey;
  private installed?: InstalledCertificate;
  private applied?: AppliedConfiguration;
  private failedLogins = 0;
  private lockedUntil = 0;
  /** When the device last started serving: its uptime counts from here, and a restart is a reboot. */
  private startedAt = Date.now();
  /** A certificate other than its own it presents instead, as a swapped unit or an impostor would. */
  private foreignIdentity?: { keyPem: string; certificatePem: string };

  private server?: https.Server;
  /** Listeners replaced by a certificate installation, still finishing the answers they owe. */
  private readonly retiredServers = new Set<https.Server>();
  private readonly hung = new Set<() => void>();
  private stopping = new AbortController();
  private readonly received: string[] = [];
  /** Connections whose client certificate chains to the installed trust anchors, for clientAuth. */
  private readonly trustedClients = new WeakSet<TLSSocket>();

  constructor(options: ReferenceDeviceOptions) {
    this.host = options.host ?? '127.0.0.1';
    this.port = options.port ?? 0;
    this.serialNumber = options.serialNumber;
    this.macAddress = options.macAddress;
    this.manufacturer = options.manufacturer ?? 'Reference Devices';
    this.model = options.model ?? 'RD-1000';
    this.firmwareVersion = options.firmwareVersion ?? '1.0.0';
    this.deviceType = options.deviceType ?? 'camera';
    this.credentials = options.credentials;
    this.lockoutMs = options.lockoutMs ?? 60_000;
    this.faults = { ...options.faults };
    this.firmwareImage = buildFirmwareImage(this.model, this.firmwareVersion);
    this.firmwareHash = sha256Hex(this.firmwareImage);
    this.routes = {
      [deviceApiPaths.identity]: { method: 'GET', authenticated: false, handle: async () => this.identity() },
      [deviceApiPaths.verifySession]: { method: 'POST', authenticated: true, handle: async () => ({ status: 204 }) },
      [deviceApiPaths.csr]: { method: 'POST', authenticated: true, handle: (body) => this.createCsr(body) },
      [deviceApiPaths.certificate]: { method: 'PUT', authenticated: true, handle: (body) => this.installCertificate(body) },
      [deviceApiPaths.configuration]: { method: 'PUT', authenticated: true, handle: async (body) => this.configure(body) },
      [deviceApiPaths.runningConfiguration]: { method: 'GET', authenticated: true, handle: async () => this.runningConfiguration() },
      [deviceApiPaths.selfTest]: { method: 'POST', authenticated: true, handle: async () => this.selfTest() },
      [deviceApiPaths.activate]: { method: 'POST', authenticated: true, handle: async () => this.activate() },
      [deviceApiPaths.status]: { method: 'GET', authenticated: true, handle: async () => this.status() },
    };
  }

  /** Makes the factory key and certificate (first start only) and serves; resolves with `host:port`. */
  async start(): Promise<string> {
    if (this.server) return this.address;
    this.stopping = new AbortController();
    if (!this.factoryKey) {
      this.factoryKey = await generateDeviceKey('P-256');
      this.factoryCertificatePem = await createFactoryCertificate(this.factoryKey, this.serialNumber);
    }
    this.startedAt = Date.now();
    this.server = this.createListener();
    await this.listen(this.server);
    return this.address;
  }

  /**
   * Presents a self-signed certificate nobody issued from now on, keeping everything else: what a
   * unit swapped behind the service's back, or a machine-in-the-middle, looks like on the wire.
   */
  async presentForeignCertificate(): Promise<string> {
    const key = await generateDeviceKey('P-256');
    const certificatePem = await createFactoryCertificate(key, `${this.serialNumber}-impostor`);
    this.foreignIdentity = { keyPem: privateKeyPem(key), certificatePem };
    await this.replaceListener();
    return fingerprintOf(certificatePem);
  }

  /** Back to presenting its own certificate. */
  async presentOwnCertificate(): Promise<void> {
    this.foreignIdentity = undefined;
    await this.replaceListener();
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    for (const release of this.hung) release();
    this.hung.clear();
    const servers = [...this.retiredServers, ...(this.server ? [this.server] : [])];
    this.server = undefined;
    this.retiredServers.clear();
    await Promise.all(
      servers.map(
        (server) =>
          new Promise<void>((resolve) => {
            server.close(() => resolve());
            server.closeAllConnections();
          }),
      ),
    );
  }

  /** Sets the named faults, leaving the others as they are. */
  setFaults(faults: DeviceFaults): void {
    this.faults = { ...this.faults, ...faults };
  }

  clearFaults(): void {
    this.faults = {};
  }

  /** Lets every request held by the `hang` fault go on. */
  release(): void {
    for (const release of this.hung) release();
    this.hung.clear();
  }

  get address(): string {
    return `${this.host.includes(':') ? `[${this.host}]` : this.host}:${this.port}`;
  }

  get state(): DeviceState {
    return this.currentState;
  }

  get factoryCertificateFingerprint(): string | undefined {
    return this.factoryCertificatePem && fingerprintOf(this.factoryCertificatePem);
  }

  get certificatePem(): string | undefined {
    return this.installed?.certificatePem;
  }

  get certificateFingerprint(): string | undefined {
    return this.installed?.fingerprint;
  }

  get configuration(): AppliedConfiguration | undefined {
    return this.applied;
  }

  /** The installed certificate and its key: what anyone who took the device off the wall would hold. */
  get tlsIdentity(): ClientTlsIdentity | undefined {
    return (
      this.installed && {
        certificatePem: this.installed.certificatePem,
        privateKeyPem: privateKeyPem(this.installed.key),
        chainPem: this.installed.chainPem,
      }
    );
  }

  /**
   * Changes the running configuration the way a local administrator would (web UI, console),
   * bypassing the management API: no signature, no version. The device's own validation still
   * applies, so an invalid change throws and leaves everything as it was.
   */
  tamperConfiguration(change: LocalSettingsChange): AppliedConfiguration {
    if (!this.applied) throw new Error('no configuration is applied to change');
    const merged: Record<string, unknown> = { ...this.applied.settings };
    for (const [name, value] of Object.entries(change)) {
      if (value === null) delete merged[name];
      else if (value !== undefined) merged[name] = isPlainObject(value) ? { ...(merged[name] as object | undefined), ...value } : value;
    }
    const settings = settingsSchema.parse(merged);
    this.applied = { ...this.applied, settings, hash: sha256Hex(canonicalJson(settings)) };
    return this.applied;
  }

  /** `METHOD /path` of every request that reached the HTTP layer, oldest first. */
  get receivedRequests(): readonly string[] {
    return this.received;
  }

  private createListener(): https.Server {
    // Once enrolled the client's certificate is checked here rather than by OpenSSL, which takes
    // only self-signed anchors: the anchor given is the service's intermediate, not the root.
    const tls = this.foreignIdentity
      ? { key: this.foreignIdentity.keyPem, cert: this.foreignIdentity.certificatePem }
      : this.installed
      ? {
          key: privateKeyPem(this.installed.key),
          cert: [this.installed.certificatePem, ...this.installed.chainPem].map(withNewline).join(''),
          requestCert: true,
          rejectUnauthorized: false,
        }
      : { key: privateKeyPem(this.factoryKey!), cert: this.factoryCertificatePem! };
    const server = https.createServer({ ...tls, minVersion: 'TLSv1.2' }, (req, res) => {
      void this.handle(req, res);
    });
    const installed = this.installed;
    if (installed && !this.foreignIdentity) {
      server.on('secureConnection', (socket: TLSSocket) => {
        if (this.acceptsClient(socket, installed)) this.trustedClients.add(socket);
        // An untrusted certificate gets a hang-up before a byte of the request is read, as a TLS
        // stack refusing it would; no certificate at all gets 401 from `authenticate`.
        else if (socket.getPeerX509Certificate()) socket.destroy();
      });
    }
    // Refused handshakes (no or untrusted client certificate) are routine once enrolled.
    server.on('tlsClientError', () => {});
    return server;
  }

  private async listen(server: https.Server): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen(this.port, this.host, () => {
            server.off('error', reject);
            resolve();
          });
        });
        break;
      } catch (error) {
        // The old listener's port can take a moment to come free when the listener is replaced.
        if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || this.port === 0 || attempt >= 20) throw error;
        await sleep(25);
      }
    }
    this.port = (server.address() as AddressInfo).port;
  }

  /**
   * Serves the new certificate from now on. The new listener is bound before the caller gets its
   * answer (which still travels over the old connection), so no client ever finds the port closed.
   */
  private async replaceListener(): Promise<void> {
    const previous = this.server;
    if (previous) {
      this.retiredServers.add(previous);
      previous.close(() => this.retiredServers.delete(previous));
      previous.closeIdleConnections();
    }
    this.server = this.createListener();
    await this.listen(this.server);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'https://device.invalid').pathname;
    this.received.push(`${req.method} ${path}`);
    try {
      if (await this.injectFault(path, res)) return;
      const route = this.routes[path];
      if (!route) throw new DeviceProblem(404, `no such resource: ${path}`);
      if (req.method !== route.method) {
        res.setHeader('allow', route.method);
        throw new DeviceProblem(405, `${req.method} is not allowed on ${path}`);
      }
      // Once enrolled, nothing is served without a trusted client certificate.
      if (route.authenticated || this.installed) this.authenticate(req);
      const body = route.method === 'GET' ? undefined : await readJson(req);
      const reply = await route.handle(body);
      if (path === deviceApiPaths.certificate) res.setHeader('connection', 'close');
      send(res, reply.status, reply.body);
    } catch (error) {
      if (this.stopping.signal.aborted) {
        res.destroy();
        return;
      }
      if (error instanceof DeviceProblem) {
        if (error.status === 401) res.setHeader('www-authenticate', 'Basic realm="device"');
        send(res, error.status, { error: error.message, ...(error.fields ? { fields: error.fields } : {}) });
      } else {
        send(res, 500, { error: 'internal error' });
      }
    }
  }

  /** Applies hang, latency and failure faults; true when the fault already answered. */
  private async injectFault(path: string, res: ServerResponse): Promise<boolean> {
    const { signal } = this.stopping;
    if (this.faults.hang?.includes(path)) {
      await new Promise<void>((resolve) => this.hung.add(resolve));
      if (signal.aborted) throw new Error('stopping');
    }
    const latency = this.faults.latencyMs?.[path];
    if (latency) await sleep(latency, undefined, { signal });
    const failure = this.faults.failNext?.[path];
    if (failure && failure.count > 0) {
      failure.count -= 1;
      send(res, failure.status, { error: `injected failure (${failure.status})` });
      return true;
    }
    return false;
  }

  /**
   * A client certificate valid now for clientAuth that chains, through the certificates the client
   * presented, to an installed trust anchor.
   */
  private acceptsClient(socket: TLSSocket, installed: InstalledCertificate): boolean {
    const peer = socket.getPeerX509Certificate();
    if (!peer || !peer.keyUsage?.includes(clientAuthPurpose)) return false;
    const presented: X509Certificate[] = [];
    // The chain the client presented, as OpenSSL linked it; a self-signed one points at itself.
    for (let link = peer.issuerCertificate; link && presented.length < 8; link = link.issuerCertificate) {
      if (presented.some((seen) => seen.fingerprint256 === link!.fingerprint256)) break;
      presented.push(link);
    }
    const path = anchorOf(peer, presented, installed.anchors, { now: Date.now(), what: 'the client certificate' });
    return 'anchor' in path && Date.now() >= Date.parse(peer.validFrom) && Date.now() <= Date.parse(peer.validTo);
  }

  /**
   * Once enrolled, only connections whose client certificate passed `acceptsClient` get here.
   * Before that, HTTP Basic with the factory login.
   */
  private authenticate(req: IncomingMessage): void {
    if (this.installed) {
      if (!this.trustedClients.has(req.socket as TLSSocket)) throw new DeviceProblem(401, 'client certificate required');
      return;
    }
    if (this.applied && !this.applied.settings.management.passwordLogin) {
      throw new DeviceProblem(403, 'password login is disabled; use mutual TLS');
    }
    if (Date.now() < this.lockedUntil) throw new DeviceProblem(423, 'too many failed logins; try again later');
    const given = parseBasicAuthorization(req.headers.authorization);
    if (!given) throw new DeviceProblem(401, 'authentication required');
    const matches = sameSecret(given.username, this.credentials.username) & sameSecret(given.password, this.credentials.password);
    if (!matches) {
      this.failedLogins += 1;
      if (this.failedLogins >= maxFailedLogins) {
        this.failedLogins = 0;
        this.lockedUntil = Date.now() + this.lockoutMs;
      }
      throw new DeviceProblem(401, 'invalid credentials');
    }
    this.failedLogins = 0;
  }

  /** Replaces the running firmware, keeping everything else (certificate, configuration, state). */
  installFirmware(version: string): void {
    this.firmwareVersion = version;
    this.firmwareImage = buildFirmwareImage(this.model, version);
    this.firmwareHash = sha256Hex(this.firmwareImage);
  }

  /** The SHA-256 of the running image, as its signed manifest states it. */
  get firmwareDigest(): string {
    return this.firmwareHash;
  }

  private identity(): Reply {
    return {
      status: 200,
      body: {
        serialNumber: this.faults.reportedSerialNumber ?? this.serialNumber,
        macAddress: this.macAddress,
        manufacturer: this.manufacturer,
        model: this.model,
        firmwareVersion: this.firmwareVersion,
        firmwareHash: this.firmwareHash,
        deviceType: this.deviceType,
        capabilities: deviceCapabilities,
        state: this.currentState,
      },
    };
  }

  private async createCsr(body: unknown): Promise<Reply> {
    const request = parse(csrSchema, body);
    const key = await generateDeviceKey(request.keyAlgorithm);
    const csrPem = await createCertificationRequest(key, request);
    // Only the newest request counts: a certificate for an older one is refused.
    this.pendingKey = key;
    return { status: 201, body: { csrPem } };
  }

  private async installCertificate(body: unknown): Promise<Reply> {
    const installation = parse(installationSchema, body);
    const certificate = parseCertificate(installation.certificatePem, 'certificatePem');
    installation.chainPem.forEach((p, i) => parseCertificate(p, `chainPem[${i}]`));
    installation.trustAnchorsPem.forEach((p, i) => parseCertificate(p, `trustAnchorsPem[${i}]`));
    const fingerprint = sha256Hex(certificate.raw);
    // A retried installation of what is already in place changes nothing.
    if (this.installed?.fingerprint === fingerprint) return { status: 200, body: { fingerprint } };
    if (!this.pendingKey || !certificate.checkPrivateKey(this.pendingKey.privateKeyObject)) {
      throw new DeviceProblem(409, 'certificate does not match the key of the pending signing request');
    }
    this.installed = {
      certificatePem: withNewline(installation.certificatePem),
      chainPem: installation.chainPem.map(withNewline),
      trustAnchorsPem: installation.trustAnchorsPem.flatMap(pemBlocks),
      anchors: installation.trustAnchorsPem.flatMap(pemBlocks).map((anchor) => new X509Certificate(anchor)),
      fingerprint,
      certificate,
      key: this.pendingKey,
    };
    this.pendingKey = undefined;
    if (this.currentState === 'factory') this.currentState = 'provisioned';
    await this.replaceListener();
    return { status: 200, body: { fingerprint } };
  }

  private configure(body: unknown): Reply {
    if (this.faults.refuseConfiguration) {
      throw new DeviceProblem(422, 'configuration refused by local device policy', [
        { field: '(root)', reason: 'remote configuration is disabled on this device' },
      ]);
    }
    const { signature, ...configuration } = parse(configurationSchema, body);
    const signedBy = this.checkSignature(configuration, signature);
    const hash = sha256Hex(canonicalJson(configuration.settings));
    this.applied = { ...configuration, hash, appliedAt: new Date().toISOString(), ...(signedBy ? { signature: signedBy } : {}) };
    if (this.currentState === 'factory') this.currentState = 'provisioned';
    return { status: 200, body: { version: configuration.version, hash, appliedAt: this.applied.appliedAt } };
  }

  /**
   * Once the device holds trust anchors, only configurations signed for it by a configuration
   * signer under those anchors are applied, and none signed before the one it runs (a replay of an
   * older configuration). Before that it has nothing to check a signature against.
   */
  private checkSignature(
    configuration: Omit<z.infer<typeof configurationSchema>, 'signature'>,
    signature: z.infer<typeof signatureSchema> | undefined,
  ): AppliedConfiguration['signature'] {
    const anchors = this.installed?.trustAnchorsPem;
    if (!anchors) return undefined;
    const refuse = (reason: string): never => {
      throw new DeviceProblem(422, `configuration signature refused: ${reason}`, [{ field: 'signature', reason }]);
    };
    if (!signature) return refuse('this device only applies signed configurations');
    let verified;
    try {
      verified = verifyConfigurationSignature(configuration, signature, { serialNumber: this.serialNumber, trustAnchorsPem: anchors });
    } catch (error) {
      if (error instanceof SignatureRefused) return refuse(error.message);
      throw error;
    }
    const current = this.applied?.signature;
    if (current && current.nonce !== verified.nonce && verified.signedAt.getTime() < Date.parse(current.signedAt)) {
      refuse(`it was signed at ${signature.signedAt}, before the configuration running now (${current.signedAt})`);
    }
    return { signedAt: signature.signedAt, nonce: verified.nonce, signerSubject: verified.signer.subject };
  }

  /** Like any device worth its certificate, it never hands out the passwords of its accounts. */
  private runningConfiguration(): Reply {
    if (!this.applied) throw new DeviceProblem(409, 'no configuration has been applied yet');
    const { templateId, version, settings, hash } = this.applied;
    const reported = settings.users ? { ...settings, users: settings.users.map(({ password: _, ...user }) => user) } : settings;
    return { status: 200, body: { templateId, version, settings: reported, hash, readAt: new Date().toISOString() } };
  }

  private selfTest(): Reply {
    const checks = [
      this.certificateCheck(),
      this.trustAnchorCheck(),
      this.applied
        ? { name: 'configuration', passed: true, detail: `version ${this.applied.version} applied` }
        : { name: 'configuration', passed: false, detail: 'no configuration applied' },
      this.applied && this.applied.settings.ntp.servers.length > 0
        ? { name: 'ntp', passed: true, detail: this.applied.settings.ntp.servers.join(', ') }
        : { name: 'ntp', passed: false, detail: 'no NTP servers configured' },
      this.firmwareCheck(),
    ];
    return { status: 200, body: { passed: checks.every((c) => c.passed), checks } };
  }

  private certificateCheck() {
    const name = 'certificate';
    if (!this.installed) {
      return this.pendingKey
        ? { name, passed: false, detail: 'a certificate was requested but none is installed' }
        : { name, passed: true, detail: 'no certificate provisioned; factory identity in use' };
    }
    const { certificate, key } = this.installed;
    if (!certificate.checkPrivateKey(key.privateKeyObject)) {
      return { name, passed: false, detail: 'installed certificate does not match the device key' };
    }
    const now = Date.now();
    if (now < Date.parse(certificate.validFrom) || now > Date.parse(certificate.validTo)) {
      return { name, passed: false, detail: `outside its validity (${certificate.validFrom} – ${certificate.validTo})` };
    }
    return { name, passed: true, detail: `valid until ${certificate.validTo}` };
  }

  private trustAnchorCheck() {
    const name = 'trust-anchors';
    if (this.installed) {
      return this.installed.trustAnchorsPem.length > 0
        ? { name, passed: true, detail: `${this.installed.trustAnchorsPem.length} installed` }
        : { name, passed: false, detail: 'no trust anchors installed' };
    }
    return this.pendingKey
      ? { name, passed: false, detail: 'no trust anchors installed' }
      : { name, passed: true, detail: 'not required without a certificate' };
  }

  private firmwareCheck() {
    const image = this.faults.failSelfTest ? damaged(this.firmwareImage) : this.firmwareImage;
    const measured = sha256Hex(image);
    return measured === this.firmwareHash
      ? { name: 'firmware-integrity', passed: true }
      : { name: 'firmware-integrity', passed: false, detail: `image hash ${measured} does not match manifest` };
  }

  private activate(): Reply {
    if (!this.applied) throw new DeviceProblem(409, 'cannot activate before a configuration is applied');
    if (!this.installed && this.pendingKey) {
      throw new DeviceProblem(409, 'cannot activate while a requested certificate is not installed');
    }
    this.currentState = 'active';
    return { status: 200, body: { state: this.currentState } };
  }

  private status(): Reply {
    return {
      status: 200,
      body: {
        state: this.currentState,
        uptimeSeconds: Math.floor((Date.now() - this.startedAt) / 1000),
        ...(this.installed ? { certificateFingerprint: this.installed.fingerprint } : {}),
        ...(this.applied ? { configurationVersion: this.applied.version, configurationHash: this.applied.hash } : {}),
      },
    };
  }
}

export { canonicalJson } from './configuration-signature';

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function fingerprintOf(certificatePem: string): string {
  return sha256Hex(new X509Certificate(certificatePem).raw);
}

function parseCertificate(text: string, field: string): X509Certificate {
  try {
    return new X509Certificate(text);
  } catch {
    throw new DeviceProblem(422, 'invalid certificate', [{ field, reason: 'must be a PEM X.509 certificate' }]);
  }
}

function parse<S extends z.ZodType>(schema: S, body: unknown): z.infer<S> {
  const result = schema.safeParse(body);
  if (result.success) return result.data;
  const fields = result.error.issues.map((issue) => ({ field: fieldPath(issue.path), reason: issue.message }));
  throw new DeviceProblem(422, 'request is invalid', fields);
}

function fieldPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out || '(root)';
}

function parseBasicAuthorization(header: string | undefined): DeviceCredentials | undefined {
  const match = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(header ?? '');
  if (!match) return undefined;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? undefined : { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** 1 when equal; compares digests so neither length nor content leaks through timing. */
function sameSecret(given: string, expected: string): number {
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(given), digest(expected)) ? 1 : 0;
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBodyBytes) throw new DeviceProblem(413, 'request body too large');
    chunks.push(chunk);
  }
  if (size === 0) return {};
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new DeviceProblem(400, 'request body is not valid JSON');
  }
}

function send(res: ServerResponse, status: number, body?: unknown): void {
  if (res.headersSent || res.destroyed) return;
  if (body === undefined) {
    res.writeHead(status).end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
}

function withNewline(text: string): string {
  return text.endsWith('\n') ? text : `${text}\n`;
}

/** A stand-in firmware image: deterministic per model and version, like a real release. */
function buildFirmwareImage(model: string, version: string): Buffer {
  const blocks: Buffer[] = [];
  for (let i = 0; blocks.length * 32 < firmwareImageBytes; i++) {
    blocks.push(createHash('sha256').update(`${model}/${version}/${i}`).digest());
  }
  return Buffer.concat(blocks).subarray(0, firmwareImageBytes);
}

function damaged(image: Buffer): Buffer {
  const copy = Buffer.from(image);
  copy[copy.length >> 1] ^= 0xff;
  return copy;
}
