/**
 * The service's own certificates, issued by each tenant's services intermediate (and, for OCSP
 * responders, by the CA they answer for): its TLS client identity towards devices, the EST
 * server's TLS identity, the tenant's configuration signer, and each CA's delegated OCSP
 * responder. Devices are given the services intermediate as their anchor for clients, so they
 * accept the service and no other device.
 */
import type { ClientTlsIdentity } from '../adapters/device-adapter';
import type { KeyAlgorithm, KeyCustody, KeyHandle } from '../custody/key-custody';
import { ConflictError, NotFoundError, ValidationError } from '../foundation/errors';
import type { Logger } from '../foundation/logger';
import { roleCommonName, type NameAttribute } from '../x509/distinguished-name';
import {
  authorityKeyIdentifierExtension,
  basicConstraintsExtension,
  extendedKeyUsageExtension,
  keyUsageExtension,
  ocspNoCheckExtension,
  subjectAltNameExtension,
  subjectKeyIdentifierExtension,
  type ExtendedKeyUsage,
  type ExtensionsSummary,
  type SubjectAltNames,
} from '../x509/extensions';
import { canonicalIpAddress } from '../x509/ip-address';
import { keyAlgorithmOf, keyIdentifier } from '../x509/public-key';
import type { Extension } from 'pkijs';
import type { CertificateSigner } from './certificate-builder';
import type { CaHierarchy, CertificateAuthoritySettings, ServiceIdentities } from './certificate-authority';
import { isCaCertificateType, type CertificateRow, type CertificateStore, type NewCertificateRow } from './certificate-store';
import { parseStoredCertificate, requireText, tenantSubject, type CertificateRecordFields, type IssuingCas } from './issuing-cas';
import { renewalTime, type LiveCertificates } from './live-certificates';
import type { PkiPublication } from './publication';

export interface TenantServiceIdentitiesDependencies {
  certificates: CertificateStore;
  live: LiveCertificates;
  issuing: IssuingCas;
  hierarchy: Pick<CaHierarchy, 'ensureRootCa' | 'ensureServicesIntermediateCa'>;
  custody: KeyCustody;
  settings: Pick<CertificateAuthoritySettings, 'rootCrlValidityDays'>;
  publication: PkiPublication;
  logger: Logger;
}

const serviceIdentityValidityDays = 90;
const serviceIdentityCommonName = 'provisioning-service';
const serviceIdentityKeyAlgorithm = 'P-256';
const estServerValidityDays = 90;
const estServerCommonName = 'est-server';
/** Devices verify configuration signatures as ECDSA P-256 with SHA-256 (see ConfigurationSignature). */
const configurationSigningKeyAlgorithm = 'P-256';
const configurationSigningValidityDays = 365;
/** Short-lived, so a responder key that leaks stops mattering soon (it carries nocheck). */
const ocspResponderValidityDays = 30;

/** The configuration signer's certificate, its chain up to the root, and a signer in custody. */
export interface ConfigurationSigningIdentity {
  row: CertificateRow;
  chainPem: string[];
  signer: CertificateSigner;
}

/** How long a configuration signer is used from memory before the records are read again. */
const configurationSignerCacheMs = 60_000;

/** How soon a process that could not renew a service-held certificate tries again. */
const renewalRetryMs = 60_000;
/** Tenants whose services CA is kept between installations. */
const maxKeptServicesCas = 1000;

export class TenantServiceIdentities implements ServiceIdentities {
  readonly #certificates: CertificateStore;
  readonly #live: LiveCertificates;
  readonly #issuing: IssuingCas;
  readonly #hierarchy: TenantServiceIdentitiesDependencies['hierarchy'];
  readonly #custody: KeyCustody;
  readonly #settings: TenantServiceIdentitiesDependencies['settings'];
  readonly #publication: PkiPublication;
  readonly #logger: Logger;
  /** Each tenant's services CA as last handed to a device (see `serviceAnchorsPem`). */
  readonly #servicesCas = new Map<string, CertificateRow>();
  readonly #serviceIdentities = new Map<string, { identity: ClientTlsIdentity; renewAt: number; certificateId: string }>();
  /** Each tenant's configuration signer, as every push asks for it: several reads and a parse saved each time. */
  readonly #configurationSigners = new Map<string, { signer: ConfigurationSigningIdentity; useUntil: number; certificateId: string }>();

  constructor(deps: TenantServiceIdentitiesDependencies) {
    this.#certificates = deps.certificates;
    this.#live = deps.live;
    this.#issuing = deps.issuing;
    this.#hierarchy = deps.hierarchy;
    this.#custody = deps.custody;
    this.#settings = deps.settings;
    this.#publication = deps.publication;
    this.#logger = deps.logger;
  }

  /**
   * The services CA every device installation hands over: the one kept here while it is before its
   * renewal time and it and its root are neither revoked nor retired (one narrow query), else the
   * hierarchy's (which renews it when due).
   */
  async serviceAnchorsPem(tenantId: string): Promise<string[]> {
    const kept = this.#servicesCas.get(tenantId);
    if (kept && Date.now() < renewalTime(kept) && (await this.#certificates.issuesWithLiveIssuer(kept.id))) return [kept.pem];
    this.#servicesCas.delete(tenantId);
    const current = await this.#hierarchy.ensureServicesIntermediateCa(tenantId);
    this.#servicesCas.set(tenantId, current);
    if (this.#servicesCas.size > maxKeptServicesCas) this.#servicesCas.delete(this.#servicesCas.keys().next().value!);
    return [current.pem];
  }

  async completeServiceHierarchies(): Promise<void> {
    for (const tenantId of await this.#certificates.tenantsWithRoot()) {
      await this.ensureServiceIdentity(tenantId);
      await this.ensureConfigurationSigner(tenantId);
    }
  }

  /** Kept in memory and renewed once a third of its validity remains. */
  async ensureServiceIdentity(tenantId: string): Promise<ClientTlsIdentity> {
    requireText(tenantId, 'tenantId');
    const cached = this.#serviceIdentities.get(tenantId);
    if (cached && Date.now() < cached.renewAt) return cached.identity;

    return this.#live.exclusively(`service-identity-cache:${tenantId}`, async () => {
      const current = this.#serviceIdentities.get(tenantId);
      if (current && Date.now() < current.renewAt) return current.identity;

      const issuer = await this.#hierarchy.ensureServicesIntermediateCa(tenantId);
      const now = Date.now();
      const row = await this.#live.ensure({
        lockName: `service-identity:${tenantId}`,
        slot: { tenantId, certificateType: 'service' },
        usable: (candidate) => now < renewalTime(candidate) && candidate.issuerCertificateId === issuer.id,
        // A process that cannot sign (an edge worker, the CA's keys in an HSM it has no access to)
        // goes on with the current identity while it is valid; the central CA round renews it.
        keepWhileRenewalFails: (candidate) => candidate.expiresAt.getTime() > now,
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
      // One kept after a failed renewal is tried again a minute later, not at every call.
      this.#serviceIdentities.set(tenantId, { identity, renewAt: Math.max(renewalTime(row), now + renewalRetryMs), certificateId: row.id });
      return identity;
    });
  }

  /** A revoked identity, or a revoked CA above one, is not handed out again from memory. */
  forgetRevoked(revoked: CertificateRow): void {
    for (const cache of [this.#serviceIdentities, this.#configurationSigners]) {
      const cached = cache.get(revoked.tenantId);
      if (cached && (isCaCertificateType(revoked.certificateType) || cached.certificateId === revoked.id)) cache.delete(revoked.tenantId);
    }
  }

  /** Reissued (the old one superseded) when the names change, the root changes or a third of its validity is left. */
  async ensureEstServerIdentity(
    tenantId: string,
    names: { dns: string[]; ip: string[] },
  ): Promise<ClientTlsIdentity & { certificateId: string; renewAt: Date }> {
    requireText(tenantId, 'tenantId');
    const wanted: SubjectAltNames = {
      dns: [...new Set(names.dns.map((name) => name.toLowerCase()))].sort(),
      ip: [...new Set(names.ip.map((ip) => canonicalIpAddress(ip) ?? ip))].sort(),
      uri: [],
    };
    if (wanted.dns.length + wanted.ip.length === 0) {
      throw new ValidationError('the EST server needs at least one host name or IP address');
    }
    const wantedNames = [...wanted.dns.map((dns) => `DNS:${dns}`), ...wanted.ip.map((ip) => `IP:${ip}`)].sort().join(',');
    const issuer = await this.#hierarchy.ensureServicesIntermediateCa(tenantId);
    const now = Date.now();
    const row = await this.#live.ensure({
      lockName: `est-server:${tenantId}`,
      slot: { tenantId, certificateType: 'server' },
      usable: (candidate) =>
        now < renewalTime(candidate) &&
        candidate.issuerCertificateId === issuer.id &&
        [...(candidate.extensions as { subjectAltNames: string[] }).subjectAltNames].sort().join(',') === wantedNames,
      create: async () => {
        const created = await this.#newServiceHeldLeaf({
          issuer,
          keyLabel: `est-server:${tenantId}`,
          keyAlgorithm: serviceIdentityKeyAlgorithm,
          subject: tenantSubject(tenantId, estServerCommonName),
          validityDays: estServerValidityDays,
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

  async ensureOcspResponder(caCertificateId: string): Promise<CertificateRow> {
    const caRow = await this.#certificates.get(caCertificateId);
    if (!isCaCertificateType(caRow.certificateType)) throw new NotFoundError(`certificate ${caCertificateId} is not a CA certificate`);
    if (caRow.revokedAt) throw new ConflictError(`CA ${caCertificateId} is revoked and no longer answers for its certificates`);
    const responderValidityDays = caRow.certificateType === 'root' ? this.#settings.rootCrlValidityDays : ocspResponderValidityDays;
    const now = Date.now();
    return this.#live.ensure({
      lockName: `ocsp-responder:${caCertificateId}`,
      slot: { issuerCertificateId: caCertificateId, certificateType: 'ocsp' },
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

  async ensureConfigurationSigner(tenantId: string): Promise<ConfigurationSigningIdentity> {
    requireText(tenantId, 'tenantId');
    const cached = this.#configurationSigners.get(tenantId);
    if (cached && Date.now() < cached.useUntil) return cached.signer;
    const signer = await this.#currentConfigurationSigner(tenantId);
    // Kept briefly, not until renewal: a services CA rotated by another process is picked up soon.
    this.#configurationSigners.set(tenantId, {
      signer,
      useUntil: Math.min(renewalTime(signer.row), Date.now() + configurationSignerCacheMs),
      certificateId: signer.row.id,
    });
    return signer;
  }

  async #currentConfigurationSigner(tenantId: string): Promise<ConfigurationSigningIdentity> {
    const issuer = await this.#hierarchy.ensureServicesIntermediateCa(tenantId);
    const root = await this.#hierarchy.ensureRootCa(tenantId);
    const now = Date.now();
    const row = await this.#live.ensure({
      lockName: `configuration-signing:${tenantId}`,
      slot: { tenantId, certificateType: 'configuration-signing' },
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
      signer: this.#issuing.signerOf({ location: row.privateKeyLocation, algorithm: keyAlgorithmOf(publicKeySpki), publicKeySpki }),
    };
  }

  /**
   * A leaf certificate whose key the service itself holds (client or server TLS identity, OCSP
   * responder): made exportable, because Node's TLS and in-memory OCSP signing need it in memory,
   * whatever the CA's custody is. A leaf that only ever signs through custody (the configuration
   * signer) brings the key it made there as `key` instead.
   */
  async #newServiceHeldLeaf(spec: {
    issuer: CertificateRow;
    keyLabel: string;
    keyAlgorithm: KeyAlgorithm;
    subject: NameAttribute[];
    validityDays: number;
    purposes: ExtendedKeyUsage[];
    extraExtensions?: Extension[];
    row: Omit<CertificateRecordFields, 'privateKeyLocation'>;
    key?: KeyHandle;
  }): Promise<NewCertificateRow> {
    const key = spec.key ?? (await this.#custody.createExportableKey(spec.keyLabel, spec.keyAlgorithm));
    return this.#issuing.issue({
      issuer: spec.issuer,
      subject: spec.subject,
      subjectPublicKeySpki: key.publicKeySpki,
      validityDays: spec.validityDays,
      extensions: (issuer) => [
        basicConstraintsExtension({ ca: false }),
        keyUsageExtension(['digitalSignature']),
        extendedKeyUsageExtension(spec.purposes),
        ...(spec.extraExtensions ?? []),
        subjectKeyIdentifierExtension(keyIdentifier(key.publicKeySpki)),
        authorityKeyIdentifierExtension(issuer.keyId),
      ],
      row: { ...spec.row, privateKeyLocation: key.location },
    });
  }
}
