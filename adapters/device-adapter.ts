/**
 * The one interface every device protocol implements. Activities build a `DeviceSession` for each
 * call from the registry and key custody (activities may run on different workers, so nothing is
 * kept between calls) and hand it to the adapter for the device's protocol. What a protocol's
 * configuration looks like, and the templates every tenant starts from, come with the adapter too.
 */
import type { z } from 'zod';
import type { DeviceSecrets } from '../custody/device-secrets';

export type DeviceType =
  | 'camera'
  | 'door_controller'
  | 'card_reader'
  | 'building_controller'
  | 'intercom'
  | 'other';

export interface DeviceIdentity {
  serialNumber: string;
  /**
   * Normalised lower-case `aa:bb:cc:dd:ee:ff`; absent when the protocol has no way to report one
   * (an OSDP reader on a serial bus), and then only the serial number proves identity.
   */
  macAddress?: string;
  manufacturer: string;
  model: string;
  firmwareVersion: string;
  /** SHA-256 of the running firmware image, when the device reports it (secure-boot evidence). */
  firmwareHash?: string;
  deviceType?: DeviceType;
  /** What the device can do, in the service's words: see `deviceCapabilities`. */
  capabilities: string[];
  /** SHA-256 (hex) of the TLS certificate the device presented, pinned until we install ours. */
  presentedCertificateFingerprint?: string;
}

export interface DeviceCredentials {
  username: string;
  password: string;
}

/** Our client identity for mutual TLS with devices that trust our CA. */
export interface ClientTlsIdentity {
  certificatePem: string;
  privateKeyPem: string;
  /** Issuer chain of our client certificate, nearest first. */
  chainPem: string[];
}

/** Capabilities the workflow acts on; adapters may report others for operators to read. */
export const deviceCapabilities = {
  /** Makes its own key pair and CSR and installs an X.509 certificate from us. */
  certificateEnrolment: 'certificate-enrolment',
} as const;

/** Everything an adapter needs to reach one device securely for one call. */
export interface DeviceSession {
  address: string;
  credentials?: DeviceCredentials;
  /** SHA-256 (hex) the device's TLS certificate must have; a different one aborts the call. */
  pinnedCertificateFingerprint?: string;
  /** Present once the device holds a certificate from us: the call then goes over mutual TLS. */
  clientIdentity?: ClientTlsIdentity;
  /** The device's own sealed secrets; present for every call made by a provisioning activity. */
  secrets?: DeviceSecrets;
}

export interface CsrRequest {
  commonName: string;
  keyAlgorithm: 'P-256' | 'P-384' | 'RSA-2048';
  subjectAltNames: { dns: string[]; ip: string[]; uri: string[] };
}

export interface CertificateInstallation {
  certificatePem: string;
  /** Issuer chain of the device certificate, nearest first, up to the root. */
  chainPem: string[];
  /**
   * The CA the device must accept clients (and configuration signers) from: the tenant's services
   * intermediate, which no device certificate chains to, so no device can pass for the service.
   */
  trustAnchorsPem: string[];
}

export interface DeviceConfiguration {
  templateId: string;
  version: number;
  settings: Record<string, unknown>;
  /**
   * The service's proof that it issued this configuration for this one device. Adapters whose
   * protocol has a place for it send it along and the device verifies it before applying.
   */
  signature?: ConfigurationSignature;
}

/**
 * A detached signature over the canonical JSON (`foundation/canonical-json.ts`) of
 * `{ purpose: 'device-configuration', tenant, deviceId, serialNumber, templateId, version,
 * settings, signedAt, expiresAt, nonce }`: the configuration's own fields plus the binding fields
 * carried here. A device checks that the signer chains to the trust anchors installed with its
 * certificate and holds the configuration-signing purpose, that the serial number is its own and
 * that `expiresAt` has not passed, so a signed configuration cannot be replayed onto another device
 * or applied later.
 */
export interface ConfigurationSignature {
  /** ECDSA with SHA-256 (P-256 key), the value a DER ECDSA-Sig-Value, as X.509 names the algorithm. */
  algorithm: 'ecdsa-with-SHA256';
  /** Base64 of the signature. */
  value: string;
  signerCertificatePem: string;
  /** Issuers of the signer certificate, nearest first, up to the root. */
  signerChainPem: string[];
  tenant: string;
  deviceId: string;
  /** The serial number of the one device this configuration is for. */
  serialNumber: string;
  signedAt: string;
  expiresAt: string;
  /** Random (base64url), so no two signatures are alike. */
  nonce: string;
}

export interface ConfigurationReceipt {
  version: number;
  /**
   * The device's address once the configuration is applied, when applying it moved the device
   * (an OSDP reader given a new bus address or speed); the registry follows it.
   */
  address?: string;
  /** SHA-256 (hex) of the configuration as the device applied it. */
  hash: string;
  appliedAt: string;
}

/** What a device reports it is running: the input of drift detection. */
export interface RunningConfiguration {
  /** Running values in the shape of the protocol's settings schema; secrets are left out. */
  settings: Record<string, unknown>;
  /** Setting paths (`a.b`) the device keeps secret or has no way to report; comparisons skip them. */
  unreported?: string[];
  /** Setting paths the device always has, set by us or not; compared only where the configuration sets them. */
  inherent?: string[];
  /** The configuration version the device last applied from us, when it keeps one. */
  version?: number;
  /** SHA-256 (hex) of the canonical JSON of `settings`, comparable with the desired settings' hash. */
  hash: string;
  readAt: string;
}

/** What a liveness probe learnt: that the device answered, and what it said about itself. */
export interface ProbeReport {
  /** Seconds since the device last started, where the protocol reports it. */
  uptimeSeconds?: number;
  /**
   * SHA-256 (hex) of the TLS certificate the device presented, for protocols on TLS; the health
   * sweep compares it with the certificate we issued.
   */
  presentedCertificateFingerprint?: string;
}

/** The outcome of rotating a per-device management secret: proven by a fresh login before the old one is forgotten. */
export interface CredentialRotationReport {
  /** What was rotated, in the operator's words (`ONVIF management user password`, `SNMPv3 auth and priv keys`). */
  rotated: string[];
}

export interface SelfTestReport {
  passed: boolean;
  checks: { name: string; passed: boolean; detail?: string }[];
}

/** What a rendered configuration must look like for one protocol, checked before anything is sent to a device. */
export interface ProtocolSettings {
  schema: z.ZodType<Record<string, unknown>>;
  /**
   * Why these settings would leave a device unmanageable unless it holds a certificate from us
   * (e.g. they turn password login off), or undefined when they do not.
   */
  requiresDeviceCertificate(settings: Record<string, unknown>): string | undefined;
}

/**
 * A template every tenant may use, written by the service at start; its body holds `{{…}}`
 * placeholders as the template engine fills them and must render into the protocol's settings.
 */
export interface BuiltInTemplate {
  id: string;
  name: string;
  description: string;
  deviceType: DeviceType | null;
  body: Record<string, unknown>;
}

export interface DeviceAdapter {
  readonly protocol: string;
  readonly settings: ProtocolSettings;
  readonly builtInTemplates: readonly BuiltInTemplate[];
  /** Throws ValidationError naming why the address is not one this protocol can reach. */
  validateAddress(address: string): void;
  /**
   * The network host (IP or name) an address points at, for protocols on IP networks, so that two
   * devices claiming one IP are noticed; undefined for protocols without one (serial buses).
   */
  networkHost(address: string): string | undefined;
  identify(session: DeviceSession): Promise<DeviceIdentity>;
  /** Proves the credentials we hold work; AuthenticationFailedError when the device refuses them. */
  authenticate(session: DeviceSession): Promise<void>;
  /** The device makes a key pair (the private key never leaves it) and returns a PKCS#10 CSR in PEM. */
  createCertificateSigningRequest(session: DeviceSession, request: CsrRequest): Promise<string>;
  installCertificate(session: DeviceSession, installation: CertificateInstallation): Promise<void>;
  pushConfiguration(session: DeviceSession, configuration: DeviceConfiguration): Promise<ConfigurationReceipt>;
  /** Reads back what the device is running; absent where the protocol cannot report its settings. */
  readConfiguration?(session: DeviceSession): Promise<RunningConfiguration>;
  selfTest(session: DeviceSession): Promise<SelfTestReport>;
  activate(session: DeviceSession): Promise<void>;
  /**
   * A cheap liveness check after activation over the device's secured channel; throws when the
   * device does not answer or refuses us.
   */
  probe?(session: DeviceSession): Promise<ProbeReport>;
  /**
   * Replaces the per-device management secrets this adapter created (kept in `session.secrets`)
   * with new ones, proven by a fresh login before the old ones are forgotten; absent where the
   * protocol has none.
   */
  rotateCredentials?(session: DeviceSession): Promise<CredentialRotationReport>;
  /**
   * Removes what provisioning created on the device for our management (a user, keys) where the
   * protocol allows it, at decommissioning; absent where it does not.
   */
  removeManagementAccess?(session: DeviceSession, options: { resetToInstallKey?: boolean }): Promise<{ removed: string[] }>;
}
