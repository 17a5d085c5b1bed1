/**
 * The organisation's certificate authority, as capabilities: what every consumer of a CA needs
 * (`CertificateAuthorityService`: issue a device's certificate, renew it, revoke), and what only
 * some do, each its own interface: signing as one of the CAs (`CaIssuer`, for CRLs), the tenants'
 * CA hierarchies (`CaHierarchy`), and the service's own identities (`ServiceIdentities`). A
 * consumer asks for the capability it uses; `CertificateAuthority` offers them all, composed of
 * the parts that implement them over one certificate store and one key custody.
 */
import type { CertificateInstallation, ClientTlsIdentity } from '../adapters/device-adapter';
import type { KeyCustody } from '../custody/key-custody';
import type { Database } from '../db/client';
import type { Logger } from '../foundation/logger';
import type { SubjectAltNames } from '../x509/extensions';
import type { CertificateSigner } from './certificate-builder';
import { CertificateStore, type CertificateRow, type RevocationReason } from './certificate-store';
import { DeviceCertificates, type RevocationListener } from './device-certificates';
import { TenantCaHierarchy } from './ca-hierarchy';
import { IssuingCas, type IssuingCa } from './issuing-cas';
import { LiveCertificates } from './live-certificates';
import { PkiPublication } from './publication';
import { TenantServiceIdentities } from './service-identities';

/** How the CA is configured: validities, the CA key algorithm, where it publishes, renewal timing. */
export interface CertificateAuthoritySettings {
  rootValidityDays: number;
  intermediateValidityDays: number;
  deviceValidityDays: number;
  keyAlgorithm: 'P-256' | 'P-384' | 'RSA-3072';
  /** Base URL of the published CRLs, CA certificates and OCSP responder; the API's URL when unset. */
  publicUrl?: string;
  /** nextUpdate of each CRL, after thisUpdate. */
  crlValidityHours: number;
  /** How often the schedule republishes every CA's CRL (also published on each revocation). */
  crlPublishIntervalMinutes: number;
  /**
   * nextUpdate of the roots' CRLs and validity of the roots' OCSP responders: both are signed
   * with the root key, which stays offline between ceremonies, and re-signed once a third is left.
   */
  rootCrlValidityDays: number;
  /** nextUpdate of OCSP responses; cached responses are re-signed shortly before it. */
  ocspResponseValidityMinutes: number;
  /** Device certificates are renewed once this fraction of their lifetime has passed. */
  renewalAtFraction: number;
  /**
   * The installation's environment; outside production every CA's common name carries it (e.g.
   * `acme Root CA (test)`), so nobody mistakes a test hierarchy for the production one.
   */
  environment?: string;
}

/** What the registry knows about a device that its certificate states. */
export interface DeviceForCertificate {
  deviceId: string;
  serialNumber: string;
  macAddress: string;
  /** `host[:port]` or `[v6]:port`, or the protocol's own form when `protocol` is given. */
  address: string;
  /** The device's protocol, whose adapter reads the address; plain `host[:port]` without it. */
  protocol?: string;
  site: string;
}

export interface IssueDeviceCertificateRequest {
  tenantId: string;
  device: DeviceForCertificate;
  csrPem: string;
  /** Defaults to the configured device validity; never beyond the issuing CA's own expiry. */
  validityDays?: number;
  /** A repeated request with the same key returns the certificate already issued. */
  issuanceKey?: string;
  /** The certificate this one renews (recorded; the old one is revoked once the device uses the new). */
  renewalOf?: string;
}

/**
 * What every consumer of the CA may ask. Devices renew with a new key and CSR, so a renewal is an
 * issuance that names the certificate it renews (`renewalOf`), the same for EST and the renewal
 * workflow; there is no re-signing of an old certificate.
 */
export interface CertificateAuthorityService {
  /**
   * Signs a device's CSR with its site's intermediate. The CSR must prove possession of its key,
   * meet the key policy, name the device as CN and ask only for names the registry allows; the
   * certificate's names then come from the registry, never from the CSR.
   */
  issueDeviceCertificate(request: IssueDeviceCertificateRequest): Promise<CertificateRow>;
  /** Revokes once: revoking again keeps the first time and reason. NotFoundError for unknown ids. */
  revokeCertificate(certificateId: string, reason: RevocationReason | string): Promise<CertificateRow>;
  getCertificate(certificateId: string): Promise<CertificateRow>;
  /** What a device installs with its certificate: it, its issuers and the service's anchor. */
  installationFor(certificate: CertificateRow): Promise<CertificateInstallation>;
  /** The alternative names a certificate for this device carries: its host, and its MAC as a URN. */
  subjectAltNamesFor(device: { address: string; macAddress: string; protocol?: string }): SubjectAltNames;
}

/** Signs as one of the CAs: what a CRL (or anything else a CA vouches for) is signed with. */
export interface CaIssuer {
  /**
   * What signs as the CA `caCertificateId` (root or either intermediate, live, retired or revoked):
   * its certificate, its key in custody and its key identifier. NotFoundError for any other id.
   */
  caSigningIdentity(caCertificateId: string): Promise<IssuingCa>;
}

export interface CaHierarchy {
  /** The tenant's live root CA, created (key in custody, self-signed) on first use. */
  ensureRootCa(tenantId: string): Promise<CertificateRow>;
  /** The live intermediate CA of a tenant's site, signed by the root, created on first use. */
  ensureSiteIntermediateCa(tenantId: string, site: string): Promise<CertificateRow>;
  /**
   * The tenant's services intermediate, signed by the root: it issues the service's own identities
   * and nothing else, so a device given it as its only anchor for clients accepts the service and
   * no other device.
   */
  ensureServicesIntermediateCa(tenantId: string): Promise<CertificateRow>;
  /**
   * Replaces a site's issuing intermediate with a new one (new key). The old one is retired, not
   * revoked: it stays valid for the certificates it issued until they have been re-issued, which
   * is the overlap window. `rotationKey` makes a retried rotation return the first one's result.
   */
  rotateSiteIntermediateCa(tenantId: string, site: string, rotationKey: string): Promise<{ previous: CertificateRow; current: CertificateRow }>;
  /** PEMs of the certificate's issuers up to and including the root, nearest first. */
  getChainPem(certificate: string | Pick<CertificateRow, 'id' | 'issuerCertificateId'>): Promise<string[]>;
  /** The roots a party must trust to accept the tenant's certificates (EST `cacerts`, the CA API). */
  trustAnchorsPem(tenantId: string): Promise<string[]>;
}

export interface ServiceIdentities {
  /**
   * What a device is given, with its certificate, to recognise the service by: the services
   * intermediate, which the service's client identity and configuration signer chain to and device
   * certificates never do.
   */
  serviceAnchorsPem(tenantId: string): Promise<string[]>;
  /**
   * The service's TLS client identity for mutual TLS with a tenant's devices, issued by the
   * tenant's services intermediate. Its key is exportable, because Node's TLS needs the private
   * key in memory.
   */
  ensureServiceIdentity(tenantId: string): Promise<ClientTlsIdentity>;
  /**
   * The EST server's TLS identity for a tenant (RFC 7030 section 3.6): a serverAuth certificate
   * from the tenant's services intermediate naming the EST host names and addresses; served with
   * that intermediate, it verifies for devices holding only the tenant's root. Its key is
   * exportable, like the client identity's.
   */
  ensureEstServerIdentity(tenantId: string, names: { dns: string[]; ip: string[] }): Promise<ClientTlsIdentity & { certificateId: string; renewAt: Date }>;
  /**
   * The CA's delegated OCSP responder certificate (RFC 6960 section 4.2.2.2): issued by that CA,
   * id-kp-OCSPSigning only, id-pkix-ocsp-nocheck, short-lived and re-issued once a third of its
   * validity remains. The root's lives as long as the root's CRL, since both wait for the root key
   * to be brought out, and stays in use while that key is offline. Its key is exportable so
   * responses are signed in memory at the rate relying parties ask, whatever custody holds the CA
   * key. NotFoundError unless `caCertificateId` is a CA; ConflictError when that CA is revoked.
   */
  ensureOcspResponder(caCertificateId: string): Promise<CertificateRow>;
  /**
   * The tenant's signer of device configurations: a certificate from the tenant's services
   * intermediate for document signing alone, whose key is made and used in the CA's custody (the
   * HSM when there is one) and never leaves it, since whoever holds it can reconfigure every
   * device of the tenant. Lasts a year; reissued once a third of that is left or the root has changed.
   */
  ensureConfigurationSigner(tenantId: string): Promise<{ row: CertificateRow; chainPem: string[]; signer: CertificateSigner }>;
  /**
   * Gives every tenant with a root its services intermediate and the service identities issued by
   * it. Installations from before the services intermediate had the root sign those identities;
   * this moves them at start, while the root key is at hand, instead of at first use.
   */
  completeServiceHierarchies(): Promise<void>;
}

export interface CertificateAuthorityDependencies {
  db: Database;
  /** Where CA keys, and the keys of the service's own identities, are created and used. */
  custody: KeyCustody;
  settings: CertificateAuthoritySettings;
  /** URLs of CRLs, issuer certificates and OCSP that issued certificates carry; none when absent. */
  publication?: PkiPublication;
  /** The host a device's protocol reaches it at (its adapter's reading of the address), for its names. */
  networkHost?: (protocol: string, address: string) => string | undefined;
  logger: Logger;
}

/** Every capability of the CA, each answered by the part that implements it. */
export class CertificateAuthority implements CertificateAuthorityService, CaIssuer, CaHierarchy, ServiceIdentities {
  readonly #hierarchy: TenantCaHierarchy;
  readonly #identities: TenantServiceIdentities;
  readonly #devices: DeviceCertificates;

  constructor(deps: CertificateAuthorityDependencies) {
    const certificates = new CertificateStore(deps.db);
    const live = new LiveCertificates(certificates, deps.logger);
    const issuing = new IssuingCas(deps.custody);
    const publication = deps.publication ?? new PkiPublication();
    const shared = { certificates, live, issuing, custody: deps.custody, settings: deps.settings, publication, logger: deps.logger };
    this.#hierarchy = new TenantCaHierarchy(shared);
    this.#identities = new TenantServiceIdentities({ ...shared, hierarchy: this.#hierarchy });
    this.#devices = new DeviceCertificates({ ...shared, hierarchy: this.#hierarchy, identities: this.#identities, networkHost: deps.networkHost });
    // First, so nothing told of a revocation is handed a revoked identity from memory.
    this.#devices.onRevoked((revoked) => this.#identities.forgetRevoked(revoked));
  }

  issueDeviceCertificate(request: IssueDeviceCertificateRequest): Promise<CertificateRow> {
    return this.#devices.issueDeviceCertificate(request);
  }

  revokeCertificate(certificateId: string, reason: RevocationReason | string): Promise<CertificateRow> {
    return this.#devices.revokeCertificate(certificateId, reason);
  }

  /** Called after every revocation (CRL publication, OCSP cache); a failing listener is logged, not thrown. */
  onRevoked(listener: RevocationListener): void {
    this.#devices.onRevoked(listener);
  }

  getCertificate(certificateId: string): Promise<CertificateRow> {
    return this.#devices.getCertificate(certificateId);
  }

  installationFor(certificate: CertificateRow): Promise<CertificateInstallation> {
    return this.#devices.installationFor(certificate);
  }

  subjectAltNamesFor(device: { address: string; macAddress: string; protocol?: string }): SubjectAltNames {
    return this.#devices.subjectAltNamesFor(device);
  }

  caSigningIdentity(caCertificateId: string): Promise<IssuingCa> {
    return this.#hierarchy.caSigningIdentity(caCertificateId);
  }

  ensureRootCa(tenantId: string): Promise<CertificateRow> {
    return this.#hierarchy.ensureRootCa(tenantId);
  }

  ensureSiteIntermediateCa(tenantId: string, site: string): Promise<CertificateRow> {
    return this.#hierarchy.ensureSiteIntermediateCa(tenantId, site);
  }

  ensureServicesIntermediateCa(tenantId: string): Promise<CertificateRow> {
    return this.#hierarchy.ensureServicesIntermediateCa(tenantId);
  }

  rotateSiteIntermediateCa(tenantId: string, site: string, rotationKey: string): Promise<{ previous: CertificateRow; current: CertificateRow }> {
    return this.#hierarchy.rotateSiteIntermediateCa(tenantId, site, rotationKey);
  }

  getChainPem(certificateId: string): Promise<string[]> {
    return this.#hierarchy.getChainPem(certificateId);
  }

  trustAnchorsPem(tenantId: string): Promise<string[]> {
    return this.#hierarchy.trustAnchorsPem(tenantId);
  }

  serviceAnchorsPem(tenantId: string): Promise<string[]> {
    return this.#identities.serviceAnchorsPem(tenantId);
  }

  ensureServiceIdentity(tenantId: string): Promise<ClientTlsIdentity> {
    return this.#identities.ensureServiceIdentity(tenantId);
  }

  ensureEstServerIdentity(tenantId: string, names: { dns: string[]; ip: string[] }): Promise<ClientTlsIdentity & { certificateId: string; renewAt: Date }> {
    return this.#identities.ensureEstServerIdentity(tenantId, names);
  }

  ensureOcspResponder(caCertificateId: string): Promise<CertificateRow> {
    return this.#identities.ensureOcspResponder(caCertificateId);
  }

  ensureConfigurationSigner(tenantId: string): Promise<{ row: CertificateRow; chainPem: string[]; signer: CertificateSigner }> {
    return this.#identities.ensureConfigurationSigner(tenantId);
  }

  completeServiceHierarchies(): Promise<void> {
    return this.#identities.completeServiceHierarchies();
  }
}
