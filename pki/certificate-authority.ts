/**
 * The organisation's certificate authority: one root per tenant, which signs only intermediates,
 * its OCSP responder and its CRL; one intermediate per tenant and site, which issues the site's
 * device certificates; and one services intermediate per tenant, which issues the service's own
 * identities (TLS client and server, configuration signer). Devices are given the services
 * intermediate as their anchor for clients, so they accept the service and no other device. CA
 * keys stay in key custody; this class only ever holds their locations.
 */
import { createHash } from 'node:crypto';
import { and, eq, isNull, sql } from 'drizzle-orm';
import { Certificate, type Extension } from 'pkijs';
import type { CertificateInstallation, ClientTlsIdentity } from '../adapters/device-adapter';
import type { KeyAlgorithm, KeyCustody, KeyHandle } from '../custody/key-custody';
import type { Database } from '../db/client';
import { certificates, type CertificateRow, type NewCertificateRow } from '../db/schema';
import { BadCsrError, ConflictError, NotFoundError, ValidationError } from '../foundation/errors';
import type { Logger } from '../foundation/logger';
import {
  addDays,
  earliest,
  randomSerialNumber,
  signCertificate,
  wholeSeconds,
  type CertificateSigner,
} from './certificate-builder';
import { parseCertificateSigningRequest, type CertificateSigningRequest } from './csr';
import { allowedSubjectAltNames } from './device-names';
import {
  buildName,
  fitsSerialNumberAttribute,
  fittedValue,
  formatDistinguishedName,
  roleCommonName,
  summariseName,
  type NameAttribute,
} from '../x509/distinguished-name';
import {
  authorityKeyIdentifierExtension,
  basicConstraintsExtension,
  extendedKeyUsageExtension,
  keyUsageExtension,
  ocspNoCheckExtension,
  readSubjectKeyIdentifier,
  subjectAltNameExtension,
  subjectKeyIdentifierExtension,
  summariseExtensions,
  type ExtendedKeyUsage,
  type ExtensionsSummary,
  type SubjectAltNames,
} from '../x509/extensions';
import { KeyedMutex } from '../foundation/keyed-mutex';
import { canonicalIpAddress } from '../x509/ip-address';
import { fingerprintOf, fromPem, toPem } from '../x509/pem';
import { PkiPublication } from './publication';
import { keyAlgorithmOf, keyIdentifier } from '../x509/public-key';

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
}

/** Certificates that issue others: a tenant's root, its sites' intermediates and its services intermediate. */
export const caCertificateTypes = ['root', 'intermediate', 'services-intermediate'] as const;
export type CaCertificateType = (typeof caCertificateTypes)[number];

export function isCaCertificateType(certificateType: string): certificateType is CaCertificateType {
  return (caCertificateTypes as readonly string[]).includes(certificateType);
}

/** CRLReason names (RFC 5280 section 5.3.1). */
export const revocationReasons = [
  'unspecified',
  'keyCompromise',
  'cACompromise',
  'affiliationChanged',
  'superseded',
  'cessationOfOperation',
  'certificateHold',
  'removeFromCRL',
  'privilegeWithdrawn',
  'aACompromise',
] as const;
export type RevocationReason = (typeof revocationReasons)[number];

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

/** Devices whose clocks run a little behind still accept a certificate issued just now. */
const clockSkewAllowanceMs = 5 * 60 * 1000;
const serviceIdentityValidityDays = 90;
const serviceIdentityCommonName = 'provisioning-service';
const serviceIdentityKeyAlgorithm = 'P-256';
/** Devices verify configuration signatures as ECDSA P-256 with SHA-256 (see ConfigurationSignature). */
const configurationSigningKeyAlgorithm = 'P-256';
const configurationSigningValidityDays = 365;
/** Short-lived, so a responder key that leaks stops mattering soon (it carries nocheck). */
const ocspResponderValidityDays = 30;
/** Root, intermediate, device: a longer issuer chain means corrupt data, not a deeper hierarchy. */
const maximumChainLength = 4;

type Transaction = Parameters<Parameters<Database['transaction']>[0]>[0];
type Executor = Database | Transaction;

interface IssuingCa {
  row: CertificateRow;
  certificate: Certificate;
  signer: CertificateSigner;
  keyId: Uint8Array;
}

export class CertificateAuthority {
  readonly #db: Database;
  readonly #custody: KeyCustody;
  readonly #settings: CertificateAuthoritySettings;
  readonly #logger: Logger;
  readonly #publication: PkiPublication;
  readonly #networkHost: CertificateAuthorityDependencies['networkHost'];
  readonly #revocationListeners: Array<(revoked: CertificateRow) => Promise<void> | void> = [];
  readonly #locks = new KeyedMutex();
  readonly #serviceIdentities = new Map<string, { identity: ClientTlsIdentity; renewAt: number; certificateId: string }>();

  constructor(deps: CertificateAuthorityDependencies) {
    this.#db = deps.db;
    this.#custody = deps.custody;
    this.#settings = deps.settings;
    this.#logger = deps.logger;
    this.#publication = deps.publication ?? new PkiPublication();
    this.#networkHost = deps.networkHost;
  }

  /** The tenant's live root CA, created (key in custody, self-signed) on first use. */
  async ensureRootCa(tenantId: string): Promise<CertificateRow> {
    requireText(tenantId, 'tenantId');
    const now = new Date();
    return this.#ensureLive({
      lockName: `root-ca:${tenantId}`,
      find: (executor) => this.#findLive(executor, tenantId, 'root'),
      usable: (row) => row.expiresAt > now,
      create: async () => {
        const key = await this.#custody.createKey(`root-ca:${tenantId}`, this.#settings.keyAlgorithm);
        const subject = buildName(tenantSubject(tenantId, roleCommonName(tenantId, 'Root CA')));
        const keyId = keyIdentifier(key.publicKeySpki);
        const { notBefore, notAfter } = validity(this.#settings.rootValidityDays);
        const der = await signCertificate(
          {
            serialNumber: randomSerialNumber(),
            issuer: subject,
            subject,
            notBefore,
            notAfter,
            subjectPublicKeySpki: key.publicKeySpki,
            extensions: [
              basicConstraintsExtension({ ca: true }),
              keyUsageExtension(['keyCertSign', 'cRLSign']),
              subjectKeyIdentifierExtension(keyId),
              authorityKeyIdentifierExtension(keyId),
            ],
          },
          this.#signerOf(key),
        );
        this.#logger.info({ tenantId, keyLocation: key.location }, 'created root CA');
        return certificateRow(der, { tenantId, certificateType: 'root', privateKeyLocation: key.location });
      },
    });
  }

  /** The live intermediate CA of a tenant's site, signed by the root, created on first use. */
  async ensureSiteIntermediateCa(tenantId: string, site: string): Promise<CertificateRow> {
    requireText(tenantId, 'tenantId');
    requireText(site, 'site');
    const root = await this.ensureRootCa(tenantId);
    const now = new Date();
    return this.#ensureLive({
      lockName: `intermediate-ca:${tenantId}:${site}`,
      find: (executor) => this.#findLive(executor, tenantId, 'intermediate', site),
      // One signed by a root that has since been replaced is superseded along with it.
      usable: (row) => row.expiresAt > now && row.issuerCertificateId === root.id,
      create: () => this.#newSiteIntermediate(tenantId, site, root),
    });
  }

  /**
   * Signs a device's CSR with its site's intermediate. The CSR must prove possession of its key,
   * meet the key policy, name the device as CN and ask only for names the registry allows; the
   * certificate's names then come from the registry, never from the CSR.
   */
  async issueDeviceCertificate(request: IssueDeviceCertificateRequest): Promise<CertificateRow> {
    const { tenantId, device, issuanceKey } = request;
    requireText(tenantId, 'tenantId');
    for (const field of ['deviceId', 'serialNumber', 'macAddress', 'address', 'site'] as const) {
      requireText(device[field], `device.${field}`);
    }
    const validityDays = request.validityDays ?? this.#settings.deviceValidityDays;
    if (!Number.isInteger(validityDays) || validityDays < 1) {
      throw new ValidationError('validityDays must be a positive whole number of days', {
        fields: [{ field: 'validityDays', reason: 'must be a positive integer' }],
      });
    }

    if (issuanceKey !== undefined) {
      const existing = await this.#findIssued(issuanceKey, request);
      if (existing) return existing;
    }

    const csr = parseCertificateSigningRequest(request.csrPem);
    const subjectAltNames = this.subjectAltNamesFor(device);
    checkRequestedNames(csr, device, subjectAltNames);

    const intermediate = await this.ensureSiteIntermediateCa(tenantId, device.site);
    const issuer = await this.#issuingCa(intermediate);
    const { notBefore, notAfter } = validity(validityDays, issuer.certificate);
    const subject: NameAttribute[] = [
      ...tenantSubject(tenantId, device.deviceId, device.site),
      // RFC 5280 makes this attribute a PrintableString: a serial with other characters (`_`) stays
      // out of it, and the device is named by its id and, in the SAN, its MAC address URN.
      ...(fitsSerialNumberAttribute(device.serialNumber) ? [{ type: 'serialNumber' as const, value: device.serialNumber }] : []),
    ];
    const der = await signCertificate(
      {
        serialNumber: randomSerialNumber(),
        issuer: issuer.certificate.subject,
        subject: buildName(subject),
        notBefore,
        notAfter,
        subjectPublicKeySpki: csr.publicKeySpki,
        extensions: [
          basicConstraintsExtension({ ca: false }),
          // RSA keys may also transport keys (TLS 1.2 RSA key exchange); EC keys only sign.
          keyUsageExtension(csr.publicKey.kind === 'rsa' ? ['digitalSignature', 'keyEncipherment'] : ['digitalSignature']),
          extendedKeyUsageExtension(['serverAuth', 'clientAuth']),
          subjectAltNameExtension(subjectAltNames),
          subjectKeyIdentifierExtension(keyIdentifier(csr.publicKeySpki)),
          authorityKeyIdentifierExtension(issuer.keyId),
          ...this.#publication.extensionsForIssuer(intermediate.id),
        ],
      },
      issuer.signer,
    );
    const row = certificateRow(der, {
      tenantId,
      deviceId: device.deviceId,
      site: device.site,
      certificateType: 'device',
      privateKeyLocation: `device:${device.deviceId}`,
      issuerCertificateId: intermediate.id,
      issuanceKey,
      renewalOfCertificateId: request.renewalOf ?? null,
    });

    try {
      const [inserted] = await this.#db.insert(certificates).values(row).returning();
      this.#logger.info(
        { tenantId, deviceId: device.deviceId, serialNumber: inserted!.serialNumber, certificateId: inserted!.id },
        'issued device certificate',
      );
      return inserted!;
    } catch (error) {
      // A concurrent request with the same issuance key got there first: its certificate is the answer.
      if (issuanceKey !== undefined && isUniqueViolation(error)) {
        const existing = await this.#findIssued(issuanceKey, request);
        if (existing) return existing;
      }
      throw error;
    }
  }

  /**
   * The tenant's services intermediate, signed by the root: it issues the service's own identities
   * and nothing else, so a device given it as its only anchor for clients accepts the service and
   * no other device. Renewed once a third of its validity is left or the root has changed, by
   * certifying the same key again: devices holding an earlier certificate of it as their anchor
   * keep accepting the service until their next certificate installation brings the new one. While
   * the root key is offline, the current one stays in use as long as it is valid.
   */
  async ensureServicesIntermediateCa(tenantId: string): Promise<CertificateRow> {
    requireText(tenantId, 'tenantId');
    const root = await this.ensureRootCa(tenantId);
    const now = new Date();
    return this.#ensureLive({
      lockName: `services-intermediate-ca:${tenantId}`,
      find: (executor) => this.#findLive(executor, tenantId, 'services-intermediate'),
      usable: (row) => now.getTime() < renewalTime(row) && row.issuerCertificateId === root.id,
      keepWhileRenewalFails: (row) => row.expiresAt > now,
      create: async (current) => {
        const key = current
          ? await this.#custody.getKey(current.privateKeyLocation)
          : await this.#custody.createKey(`services-intermediate-ca:${tenantId}`, this.#settings.keyAlgorithm);
        const created = await this.#newIntermediate({
          root,
          key,
          subject: tenantSubject(tenantId, roleCommonName(tenantId, 'Services CA')),
          row: { tenantId, certificateType: 'services-intermediate' },
        });
        this.#logger.info({ tenantId, keyLocation: key.location, renewed: current !== undefined }, 'certified the services intermediate CA');
        return created;
      },
    });
  }

  /**
   * What a device is given, with its certificate, to recognise the service by: the services
   * intermediate, which the service's client identity and configuration signer chain to and device
   * certificates never do.
   */
  async serviceAnchorsPem(tenantId: string): Promise<string[]> {
    return [(await this.ensureServicesIntermediateCa(tenantId)).pem];
  }

  /** What a device installs with the certificate `certificateId`: it, its issuers and the service's anchor. */
  async installationFor(certificate: CertificateRow): Promise<CertificateInstallation> {
    return {
      certificatePem: certificate.pem,
      chainPem: await this.getChainPem(certificate.id),
      trustAnchorsPem: await this.serviceAnchorsPem(certificate.tenantId),
    };
  }

  /**
   * Gives every tenant with a root its services intermediate and the service identities issued by
   * it. Installations from before the services intermediate had the root sign those identities;
   * this moves them at start, while the root key is at hand, instead of at first use.
   */
  async completeServiceHierarchies(): Promise<void> {
    const roots = await this.#db
      .select({ tenantId: certificates.tenantId })
      .from(certificates)
      .where(and(eq(certificates.certificateType, 'root'), isNull(certificates.revokedAt), isNull(certificates.retiredAt)));
    for (const { tenantId } of roots) {
      await this.ensureServiceIdentity(tenantId);
      await this.ensureConfigurationSigner(tenantId);
    }
  }

  /**
   * The service's TLS client identity for mutual TLS with a tenant's devices, issued by the
   * tenant's services intermediate. Its key lives in the software store whatever the CA custody is, because Node's
   * TLS needs the private key in memory. Kept in memory and renewed once a third of its validity
   * remains.
   */
  async ensureServiceIdentity(tenantId: string): Promise<ClientTlsIdentity> {
    requireText(tenantId, 'tenantId');
    const cached = this.#serviceIdentities.get(tenantId);
    if (cached && Date.now() < cached.renewAt) return cached.identity;

    return this.#locks.run(`service-identity-cache:${tenantId}`, async () => {
      const current = this.#serviceIdentities.get(tenantId);
      if (current && Date.now() < current.renewAt) return current.identity;

      const issuer = await this.ensureServicesIntermediateCa(tenantId);
      const now = Date.now();
      const row = await this.#ensureLive({
        lockName: `service-identity:${tenantId}`,
        find: (executor) => this.#findLive(executor, tenantId, 'service'),
        usable: (candidate) => now < renewalTime(candidate) && candidate.issuerCertificateId === issuer.id,
        create: async () => {
          const created = await this.#newServiceHeldLeaf({
            issuer,
            keyLabel: `service-identity:${tenantId}`,
            keyAlgorithm: serviceIdentityKeyAlgorithm,
            subject: tenantSubject(tenantId, serviceIdentityCommonName),
            validityDays: serviceIdentityValidityDays,
            purposes: ['clientAuth'],
            extraExtensions: this.#publication.extensionsForIssuer(issuer.id),
            row: { tenantId, certificateType: 'service' },
          });
          this.#logger.info({ tenantId }, 'issued the service client certificate');
          return created;
        },
      });

      const identity: ClientTlsIdentity = {
        certificatePem: row.pem,
        privateKeyPem: await this.#custody.unsealPrivateKeyPem(row.privateKeyLocation),
        chainPem: [issuer.pem],
      };
      this.#serviceIdentities.set(tenantId, { identity, renewAt: renewalTime(row), certificateId: row.id });
      return identity;
    });
  }

  /**
   * The EST server's TLS identity for a tenant (RFC 7030 section 3.6): a serverAuth certificate
   * from the tenant's services intermediate naming the EST host names and addresses; served with
   * that intermediate, it verifies for devices holding only the tenant's root. Its key is exportable in the software store, like the service
   * client identity's, because Node's TLS needs it in memory. Reissued (the old one superseded)
   * when the names change, the root changes or a third of its validity is left.
   */
  async ensureEstServerIdentity(
    tenantId: string,
    names: { dns: string[]; ip: string[] },
  ): Promise<ClientTlsIdentity & { certificateId: string; renewAt: Date }> {
    requireText(tenantId, 'tenantId');
    const commonName = 'est-server';
    const validityDays = 90;
    const wanted: SubjectAltNames = {
      dns: [...new Set(names.dns.map((name) => name.toLowerCase()))].sort(),
      ip: [...new Set(names.ip.map((ip) => canonicalIpAddress(ip) ?? ip))].sort(),
      uri: [],
    };
    if (wanted.dns.length + wanted.ip.length === 0) {
      throw new ValidationError('the EST server needs at least one host name or IP address');
    }
    const wantedNames = [...wanted.dns.map((dns) => `DNS:${dns}`), ...wanted.ip.map((ip) => `IP:${ip}`)].sort().join(',');
    const issuer = await this.ensureServicesIntermediateCa(tenantId);
    const now = Date.now();
    const row = await this.#ensureLive({
      lockName: `est-server:${tenantId}`,
      find: async (executor) => {
        const [found] = await executor
          .select()
          .from(certificates)
          .where(
            and(
              eq(certificates.tenantId, tenantId),
              eq(certificates.certificateType, 'server'),
              isNull(certificates.revokedAt),
            ),
          );
        return found;
      },
      usable: (candidate) =>
        now < renewalTime(candidate) &&
        candidate.issuerCertificateId === issuer.id &&
        [...(candidate.extensions as { subjectAltNames: string[] }).subjectAltNames].sort().join(',') === wantedNames,
      create: async () => {
        const created = await this.#newServiceHeldLeaf({
          issuer,
          keyLabel: `est-server:${tenantId}`,
          keyAlgorithm: serviceIdentityKeyAlgorithm,
          subject: tenantSubject(tenantId, commonName),
          validityDays,
          purposes: ['serverAuth'],
          extraExtensions: [subjectAltNameExtension(wanted), ...this.#publication.extensionsForIssuer(issuer.id)],
          row: { tenantId, certificateType: 'server' },
        });
        this.#logger.info({ tenantId, names: wantedNames }, 'issued the EST server certificate');
        return created;
      },
    });
    return {
      certificatePem: row.pem,
      privateKeyPem: await this.#custody.unsealPrivateKeyPem(row.privateKeyLocation),
      chainPem: [issuer.pem],
      certificateId: row.id,
      renewAt: new Date(renewalTime(row)),
    };
  }

  /** Revokes once: revoking again keeps the first time and reason. NotFoundError for unknown ids. */
  async revokeCertificate(certificateId: string, reason: RevocationReason | string): Promise<CertificateRow> {
    if (!isRevocationReason(reason)) {
      throw new ValidationError(`"${reason}" is not a revocation reason`, {
        fields: [{ field: 'reason', reason: `must be one of ${revocationReasons.join(', ')}` }],
      });
    }
    requireUuid(certificateId);
    const [revoked] = await this.#db
      .update(certificates)
      .set({ revokedAt: new Date(), revocationReason: reason })
      .where(and(eq(certificates.id, certificateId), isNull(certificates.revokedAt)))
      .returning();
    if (!revoked) return this.getCertificate(certificateId);

    const cached = this.#serviceIdentities.get(revoked.tenantId);
    if (cached && (isCaCertificateType(revoked.certificateType) || cached.certificateId === revoked.id)) {
      this.#serviceIdentities.delete(revoked.tenantId);
    }
    this.#logger.info(
      { certificateId, tenantId: revoked.tenantId, certificateType: revoked.certificateType, reason },
      'revoked certificate',
    );
    await this.#notifyRevoked(revoked);
    return revoked;
  }

  /**
   * Replaces a site's issuing intermediate with a new one (new key). The old one is retired, not
   * revoked: it stays valid for the certificates it issued until they have been re-issued, which
   * is the overlap window. `rotationKey` makes a retried rotation return the first one's result.
   */
  async rotateSiteIntermediateCa(
    tenantId: string,
    site: string,
    rotationKey: string,
  ): Promise<{ previous: CertificateRow; current: CertificateRow }> {
    requireText(rotationKey, 'rotationKey');
    const done = async () => {
      const [current] = await this.#db.select().from(certificates).where(eq(certificates.issuanceKey, rotationKey));
      if (!current) return undefined;
      if (current.tenantId !== tenantId || current.site !== site || !current.renewalOfCertificateId) {
        throw new ConflictError(`rotation key ${rotationKey} was already used for another CA`);
      }
      return { previous: await this.getCertificate(current.renewalOfCertificateId), current };
    };
    const earlier = await done();
    if (earlier) return earlier;

    const root = await this.ensureRootCa(tenantId);
    const previous = await this.ensureSiteIntermediateCa(tenantId, site);
    return this.#locks.run(`intermediate-ca:${tenantId}:${site}`, async () => {
      const created = { ...(await this.#newSiteIntermediate(tenantId, site, root)), renewalOfCertificateId: previous.id, issuanceKey: rotationKey };
      const result = await this.#db.transaction(async (tx) => {
        await tx.execute(sql`select pg_advisory_xact_lock(${advisoryLockId(`intermediate-ca:${tenantId}:${site}`)}::bigint)`);
        const live = await this.#findLive(tx, tenantId, 'intermediate', site);
        if (live?.id !== previous.id) return undefined;
        const [retired] = await tx
          .update(certificates)
          .set({ retiredAt: new Date() })
          .where(eq(certificates.id, previous.id))
          .returning();
        const [inserted] = await tx.insert(certificates).values(created).returning();
        return { previous: retired!, current: inserted! };
      });
      if (result) {
        this.#logger.info(
          { tenantId, site, previousCertificateId: previous.id, certificateId: result.current.id },
          'rotated site intermediate CA',
        );
        return result;
      }
      // Someone else rotated (or this rotation already committed) between the checks.
      const committed = await done();
      if (committed) return committed;
      throw new ConflictError(`the intermediate CA of site ${site} changed during the rotation; start it again`);
    });
  }

  /** Called after every revocation (CRL publication, OCSP cache); a failing listener is logged, not thrown. */
  onRevoked(listener: (revoked: CertificateRow) => Promise<void> | void): void {
    this.#revocationListeners.push(listener);
  }

  async getCertificate(certificateId: string): Promise<CertificateRow> {
    requireUuid(certificateId);
    const [row] = await this.#db.select().from(certificates).where(eq(certificates.id, certificateId));
    if (!row) throw new NotFoundError(`certificate ${certificateId} not found`);
    return row;
  }

  /** PEMs of the certificate's issuers up to and including the root, nearest first. */
  async getChainPem(certificateId: string): Promise<string[]> {
    let row = await this.getCertificate(certificateId);
    const chain: string[] = [];
    while (row.issuerCertificateId) {
      if (chain.length >= maximumChainLength) throw new Error(`issuer chain of certificate ${certificateId} does not end`);
      row = await this.getCertificate(row.issuerCertificateId);
      chain.push(row.pem);
    }
    return chain;
  }

  /** The roots a party must trust to accept the tenant's certificates (EST `cacerts`, the CA API). */
  async trustAnchorsPem(tenantId: string): Promise<string[]> {
    return [(await this.ensureRootCa(tenantId)).pem];
  }

  /**
   * What signs as the CA `caCertificateId` (root or either intermediate, live, retired or revoked): its
   * certificate, its key in custody and its key identifier, for CRLs. NotFoundError for any other id.
   */
  async caSigningIdentity(
    caCertificateId: string,
  ): Promise<{ row: CertificateRow; certificate: Certificate; signer: CertificateSigner; keyId: Uint8Array }> {
    const row = await this.getCertificate(caCertificateId);
    if (!isCaCertificateType(row.certificateType)) throw new NotFoundError(`certificate ${caCertificateId} is not a CA certificate`);
    return this.#issuingCa(row);
  }

  /**
   * The CA's delegated OCSP responder certificate (RFC 6960 section 4.2.2.2): issued by that CA,
   * id-kp-OCSPSigning only, id-pkix-ocsp-nocheck, short-lived and re-issued once a third of its
   * validity remains. The root's lives as long as the root's CRL, since both wait for the root key
   * to be brought out, and stays in use while that key is offline. Its key is exportable in the
   * software store so responses are signed in memory at the rate relying parties ask, whatever
   * custody holds the CA key. NotFoundError unless `caCertificateId` is a CA; ConflictError when
   * that CA is revoked.
   */
  async ensureOcspResponder(caCertificateId: string): Promise<CertificateRow> {
    const caRow = await this.getCertificate(caCertificateId);
    if (!isCaCertificateType(caRow.certificateType)) throw new NotFoundError(`certificate ${caCertificateId} is not a CA certificate`);
    if (caRow.revokedAt) throw new ConflictError(`CA ${caCertificateId} is revoked and no longer answers for its certificates`);
    const responderValidityDays = caRow.certificateType === 'root' ? this.#settings.rootCrlValidityDays : ocspResponderValidityDays;
    const now = Date.now();
    return this.#ensureLive({
      lockName: `ocsp-responder:${caCertificateId}`,
      find: async (executor) => {
        const [row] = await executor
          .select()
          .from(certificates)
          .where(
            and(
              eq(certificates.issuerCertificateId, caCertificateId),
              eq(certificates.certificateType, 'ocsp'),
              isNull(certificates.revokedAt),
            ),
          );
        return row;
      },
      usable: (row) => now < renewalTime(row),
      keepWhileRenewalFails: (row) => row.expiresAt.getTime() > now,
      create: async () => {
        const created = await this.#newServiceHeldLeaf({
          issuer: caRow,
          keyLabel: `ocsp-responder:${caCertificateId}`,
          keyAlgorithm: 'P-256',
          subject: tenantSubject(caRow.tenantId, roleCommonName(caRow.site ?? caRow.tenantId, 'OCSP Responder'), caRow.site),
          validityDays: responderValidityDays,
          purposes: ['ocspSigning'],
          // Relying parties need not check the responder's own status (RFC 6960 4.2.2.2.1).
          extraExtensions: [ocspNoCheckExtension()],
          row: { tenantId: caRow.tenantId, certificateType: 'ocsp', ...(caRow.site ? { site: caRow.site } : {}) },
        });
        this.#logger.info({ tenantId: caRow.tenantId, caCertificateId }, 'issued the OCSP responder certificate');
        return created;
      },
    });
  }

  /**
   * The tenant's signer of device configurations: a certificate from the tenant's services
   * intermediate for document signing alone (configurations are the only documents it signs), whose key is made and used in the CA's custody (the HSM
   * when there is one) and never leaves it, since whoever holds it can reconfigure every device
   * of the tenant. Lasts a year; reissued once a third of that is left or the root has changed.
   */
  async ensureConfigurationSigner(
    tenantId: string,
  ): Promise<{ row: CertificateRow; chainPem: string[]; signer: CertificateSigner }> {
    requireText(tenantId, 'tenantId');
    const issuer = await this.ensureServicesIntermediateCa(tenantId);
    const root = await this.ensureRootCa(tenantId);
    const now = Date.now();
    const row = await this.#ensureLive({
      lockName: `configuration-signing:${tenantId}`,
      find: (executor) => this.#findLive(executor, tenantId, 'configuration-signing'),
      // A signer from before id-kp-documentSigning is replaced; devices still accept what it signed.
      usable: (candidate) =>
        now < renewalTime(candidate) &&
        candidate.issuerCertificateId === issuer.id &&
        (candidate.extensions as ExtensionsSummary).extendedKeyUsage.includes('documentSigning'),
      create: async () => {
        const keyLabel = `configuration-signing:${tenantId}`;
        const created = await this.#newServiceHeldLeaf({
          issuer,
          keyLabel,
          keyAlgorithm: configurationSigningKeyAlgorithm,
          key: await this.#custody.createKey(keyLabel, configurationSigningKeyAlgorithm),
          subject: tenantSubject(tenantId, roleCommonName(tenantId, 'Configuration Signing')),
          validityDays: configurationSigningValidityDays,
          purposes: ['documentSigning'],
          extraExtensions: this.#publication.extensionsForIssuer(issuer.id),
          row: { tenantId, certificateType: 'configuration-signing' },
        });
        this.#logger.info({ tenantId, keyLocation: created.privateKeyLocation }, 'issued the configuration signing certificate');
        return created;
      },
    });
    const publicKeySpki = new Uint8Array(parseStoredCertificate(row).subjectPublicKeyInfo.toSchema().toBER());
    return {
      row,
      chainPem: [issuer.pem, root.pem],
      signer: {
        custody: this.#custody,
        location: row.privateKeyLocation,
        algorithm: keyAlgorithmOf(publicKeySpki),
        publicKeySpki,
      },
    };
  }

  /** The alternative names a certificate for this device carries: its host, and its MAC as a URN. */
  subjectAltNamesFor(device: { address: string; macAddress: string; protocol?: string }): SubjectAltNames {
    if (device.protocol === undefined || !this.#networkHost) return allowedSubjectAltNames(device);
    return allowedSubjectAltNames({ ...device, host: this.#networkHost(device.protocol, device.address) ?? null });
  }

  /**
   * The live CA (or service) row, created under a lock when there is none or it is no longer
   * usable. The key is made and the certificate signed before the transaction: with the embedded
   * database a transaction holds the only connection, and the software key store needs it too.
   * The in-process lock keeps this process from racing itself; the advisory lock and re-check
   * keep several processes on one server from creating two. `create` gets the row it replaces, if
   * any; when it fails (the issuing key is offline) and `keepWhileRenewalFails` says the current
   * row will still do, that row is used meanwhile.
   */
  async #ensureLive(spec: {
    lockName: string;
    find: (executor: Executor) => Promise<CertificateRow | undefined>;
    usable: (row: CertificateRow) => boolean;
    keepWhileRenewalFails?: (row: CertificateRow) => boolean;
    create: (replacing: CertificateRow | undefined) => Promise<NewCertificateRow>;
  }): Promise<CertificateRow> {
    return this.#locks.run(spec.lockName, async () => {
      const current = await spec.find(this.#db);
      if (current && spec.usable(current)) return current;

      let created: NewCertificateRow;
      try {
        created = await spec.create(current);
      } catch (error) {
        if (!current || !spec.keepWhileRenewalFails?.(current)) throw error;
        this.#logger.warn(
          { err: error, certificateId: current.id, lock: spec.lockName },
          'could not renew the certificate; the current one stays in use while it is valid',
        );
        return current;
      }
      return this.#db.transaction(async (tx) => {
        await tx.execute(sql`select pg_advisory_xact_lock(${advisoryLockId(spec.lockName)}::bigint)`);
        const live = await spec.find(tx);
        if (live && spec.usable(live)) {
          this.#logger.warn(
            { lock: spec.lockName, unusedKeyLocation: created.privateKeyLocation },
            'another instance created this certificate first; the key made for it here stays unused',
          );
          return live;
        }
        if (live) {
          await tx
            .update(certificates)
            .set({ revokedAt: new Date(), revocationReason: 'superseded' })
            .where(eq(certificates.id, live.id));
          this.#logger.info({ certificateId: live.id, lock: spec.lockName }, 'superseded certificate');
        }
        const [inserted] = await tx.insert(certificates).values(created).returning();
        return inserted!;
      });
    });
  }

  async #findLive(
    executor: Executor,
    tenantId: string,
    certificateType: 'root' | 'intermediate' | 'services-intermediate' | 'service' | 'configuration-signing',
    site?: string,
  ): Promise<CertificateRow | undefined> {
    const [row] = await executor
      .select()
      .from(certificates)
      .where(
        and(
          eq(certificates.tenantId, tenantId),
          eq(certificates.certificateType, certificateType),
          isNull(certificates.revokedAt),
          // A retired CA still validates what it issued but no longer issues.
          isNull(certificates.retiredAt),
          site === undefined ? undefined : eq(certificates.site, site),
        ),
      );
    return row;
  }

  async #findIssued(issuanceKey: string, request: IssueDeviceCertificateRequest): Promise<CertificateRow | undefined> {
    const [row] = await this.#db.select().from(certificates).where(eq(certificates.issuanceKey, issuanceKey));
    if (row && (row.tenantId !== request.tenantId || row.deviceId !== request.device.deviceId)) {
      throw new ConflictError(`issuance key ${issuanceKey} was already used for another device`);
    }
    return row;
  }

  async #issuingCa(row: CertificateRow): Promise<IssuingCa> {
    const certificate = parseStoredCertificate(row);
    const publicKeySpki = new Uint8Array(certificate.subjectPublicKeyInfo.toSchema().toBER());
    return {
      row,
      certificate,
      keyId: readSubjectKeyIdentifier(certificate.extensions) ?? keyIdentifier(publicKeySpki),
      signer: {
        custody: this.#custody,
        location: row.privateKeyLocation,
        algorithm: keyAlgorithmOf(publicKeySpki),
        publicKeySpki,
      },
    };
  }

  /**
   * A leaf certificate whose key the service itself holds (client or server TLS identity, OCSP
   * responder): made exportable in the software store, because Node's TLS and in-memory OCSP
   * signing need it in memory, whatever the CA's custody is. A leaf that only ever signs through
   * custody (the configuration signer) brings the key it made there as `key` instead.
   */
  async #newServiceHeldLeaf(spec: {
    issuer: CertificateRow;
    keyLabel: string;
    keyAlgorithm: KeyAlgorithm;
    subject: NameAttribute[];
    validityDays: number;
    purposes: ExtendedKeyUsage[];
    extraExtensions?: Extension[];
    row: Pick<NewCertificateRow, 'tenantId' | 'certificateType'> & Partial<Pick<NewCertificateRow, 'site'>>;
    key?: KeyHandle;
  }): Promise<NewCertificateRow> {
    const issuer = await this.#issuingCa(spec.issuer);
    const key = spec.key ?? (await this.#custody.createExportableKey(spec.keyLabel, spec.keyAlgorithm));
    const { notBefore, notAfter } = validity(spec.validityDays, issuer.certificate);
    const der = await signCertificate(
      {
        serialNumber: randomSerialNumber(),
        issuer: issuer.certificate.subject,
        subject: buildName(spec.subject),
        notBefore,
        notAfter,
        subjectPublicKeySpki: key.publicKeySpki,
        extensions: [
          basicConstraintsExtension({ ca: false }),
          keyUsageExtension(['digitalSignature']),
          extendedKeyUsageExtension(spec.purposes),
          ...(spec.extraExtensions ?? []),
          subjectKeyIdentifierExtension(keyIdentifier(key.publicKeySpki)),
          authorityKeyIdentifierExtension(issuer.keyId),
        ],
      },
      issuer.signer,
    );
    return certificateRow(der, { ...spec.row, privateKeyLocation: key.location, issuerCertificateId: spec.issuer.id });
  }

  async #notifyRevoked(revoked: CertificateRow): Promise<void> {
    for (const listener of this.#revocationListeners) {
      try {
        await listener(revoked);
      } catch (error) {
        this.#logger.error({ err: error, certificateId: revoked.id }, 'a revocation listener failed; the scheduled CRL run will catch up');
      }
    }
  }

  async #newSiteIntermediate(tenantId: string, site: string, root: CertificateRow): Promise<NewCertificateRow> {
    const key = await this.#custody.createKey(`intermediate-ca:${tenantId}:${site}`, this.#settings.keyAlgorithm);
    const created = await this.#newIntermediate({
      root,
      key,
      subject: tenantSubject(tenantId, roleCommonName(site, 'Intermediate CA'), site),
      row: { tenantId, site, certificateType: 'intermediate' },
    });
    this.#logger.info({ tenantId, site, keyLocation: key.location }, 'created site intermediate CA');
    return created;
  }

  /** An intermediate CA certificate from the root for `key`, which issues end entities only. */
  async #newIntermediate(spec: {
    root: CertificateRow;
    key: KeyHandle;
    subject: NameAttribute[];
    row: Pick<NewCertificateRow, 'tenantId' | 'certificateType'> & Partial<Pick<NewCertificateRow, 'site'>>;
  }): Promise<NewCertificateRow> {
    const issuer = await this.#issuingCa(spec.root);
    const { notBefore, notAfter } = validity(this.#settings.intermediateValidityDays, issuer.certificate);
    const der = await signCertificate(
      {
        serialNumber: randomSerialNumber(),
        issuer: issuer.certificate.subject,
        subject: buildName(spec.subject),
        notBefore,
        notAfter,
        subjectPublicKeySpki: spec.key.publicKeySpki,
        extensions: [
          basicConstraintsExtension({ ca: true, pathLength: 0 }),
          keyUsageExtension(['keyCertSign', 'cRLSign']),
          subjectKeyIdentifierExtension(keyIdentifier(spec.key.publicKeySpki)),
          authorityKeyIdentifierExtension(issuer.keyId),
          ...this.#publication.extensionsForIssuer(spec.root.id),
        ],
      },
      issuer.signer,
    );
    return certificateRow(der, { ...spec.row, privateKeyLocation: spec.key.location, issuerCertificateId: spec.root.id });
  }

  #signerOf(key: KeyHandle): CertificateSigner {
    return { custody: this.#custody, location: key.location, algorithm: key.algorithm, publicKeySpki: key.publicKeySpki };
  }
}

/**
 * A subject in the tenant's organisation (and site's unit): the tenant and site ids are cut to
 * their attributes' bounds, and the common name says what the certificate is.
 */
function tenantSubject(tenantId: string, commonName: string, site?: string | null): NameAttribute[] {
  return [
    { type: 'organization', value: fittedValue('organization', tenantId) },
    ...(site ? [{ type: 'organizationalUnit' as const, value: fittedValue('organizationalUnit', site) }] : []),
    { type: 'commonName', value: commonName },
  ];
}

/** BadCsrError unless the CSR names the device as CN and asks only for names the registry allows. */
function checkRequestedNames(csr: CertificateSigningRequest, device: DeviceForCertificate, allowed: SubjectAltNames) {
  if (csr.commonName !== device.deviceId) {
    throw new BadCsrError(
      `the CSR subject common name is ${csr.commonName === undefined ? 'missing' : `"${csr.commonName}"`}, but it must be the device id "${device.deviceId}"`,
    );
  }
  const requested = csr.requestedSubjectAltNames;
  if (requested.other.length > 0) {
    throw new BadCsrError(`the CSR requests ${requested.other.join(', ')} names, which device certificates never carry`);
  }
  const allowedList = [
    ...allowed.dns.map((name) => `DNS:${name}`),
    ...allowed.ip.map((ip) => `IP:${ip}`),
    ...allowed.uri.map((uri) => `URI:${uri}`),
  ].join(', ');
  const refuse = (name: string) =>
    new BadCsrError(`the CSR requests ${name}, which the device registry does not allow (allowed: ${allowedList})`);

  for (const dns of requested.dns) {
    if (!allowed.dns.some((candidate) => candidate === dns.toLowerCase().replace(/\.$/, ''))) throw refuse(`DNS:${dns}`);
  }
  for (const ip of requested.ip) {
    if (!allowed.ip.includes(canonicalIpAddress(ip) ?? ip)) throw refuse(`IP:${ip}`);
  }
  for (const uri of requested.uri) {
    // Hex digits in a MAC URN compare without regard to case.
    if (!allowed.uri.some((candidate) => candidate === uri.toLowerCase())) throw refuse(`URI:${uri}`);
  }
}

function certificateRow(
  der: Uint8Array,
  fields: Pick<NewCertificateRow, 'tenantId' | 'certificateType' | 'privateKeyLocation'> &
    Partial<Pick<NewCertificateRow, 'deviceId' | 'site' | 'issuerCertificateId' | 'issuanceKey' | 'renewalOfCertificateId'>>,
): NewCertificateRow {
  const certificate = Certificate.fromBER(der);
  const publicKeySpki = new Uint8Array(certificate.subjectPublicKeyInfo.toSchema().toBER());
  return {
    deviceId: null,
    site: null,
    issuerCertificateId: null,
    issuanceKey: null,
    ...fields,
    serialNumber: serialNumberHex(certificate),
    fingerprint: fingerprintOf(der),
    publicKey: toPem(publicKeySpki, 'PUBLIC KEY'),
    issuedAt: new Date(),
    expiresAt: certificate.notAfter.value,
    subjectDn: formatDistinguishedName(certificate.subject),
    issuerDn: formatDistinguishedName(certificate.issuer),
    subject: summariseName(certificate.subject),
    extensions: summariseExtensions(certificate.extensions),
    pem: toPem(der),
  };
}

function parseStoredCertificate(row: CertificateRow): Certificate {
  const der = fromPem(row.pem, ['CERTIFICATE']);
  if (!der) throw new Error(`certificate ${row.id} has no PEM certificate stored`);
  return Certificate.fromBER(der);
}

/** Lower-case hex of the serial, an even number of digits, as OpenSSL and most tools print it. */
function serialNumberHex(certificate: Certificate): string {
  const hex = certificate.serialNumber.toBigInt().toString(16);
  return hex.length % 2 === 0 ? hex : `0${hex}`;
}

/** Back-dated for clock skew; never past the issuer's own expiry. */
function validity(days: number, issuer?: Certificate): { notBefore: Date; notAfter: Date } {
  const now = new Date();
  const notBefore = wholeSeconds(new Date(now.getTime() - clockSkewAllowanceMs));
  const wanted = wholeSeconds(addDays(now, days));
  const notAfter = issuer ? earliest(wanted, issuer.notAfter.value) : wanted;
  if (notAfter <= now) throw new Error('the issuing CA has expired');
  return { notBefore, notAfter };
}

/** Renew once a third of the validity is left. */
function renewalTime(row: CertificateRow): number {
  const start = row.issuedAt.getTime();
  const end = row.expiresAt.getTime();
  return end - (end - start) / 3;
}

function isRevocationReason(reason: string): reason is RevocationReason {
  return (revocationReasons as readonly string[]).includes(reason);
}

function requireText(value: unknown, field: string) {
  if (typeof value !== 'string' || value.trim() === '') {
    throw new ValidationError(`${field} is required`, { fields: [{ field, reason: 'must be a non-empty string' }] });
  }
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Anything but a UUID cannot name a certificate (and would make PostgreSQL raise a type error). */
function requireUuid(certificateId: string) {
  if (!uuidPattern.test(certificateId)) throw new NotFoundError(`certificate ${certificateId} not found`);
}

/** PostgreSQL's unique_violation, however the driver (and drizzle around it) wraps it. */
function isUniqueViolation(error: unknown): boolean {
  for (let current = error; current instanceof Object; current = (current as { cause?: unknown }).cause) {
    if ((current as { code?: unknown }).code === '23505') return true;
  }
  return false;
}

/** A stable 64-bit advisory lock key per name, from a hash so no registry of numbers is needed. */
function advisoryLockId(name: string): string {
  const digest = createHash('sha256').update(`device-provisioning/ca-lock/${name}`).digest();
  return digest.readBigInt64BE(0).toString();
}
