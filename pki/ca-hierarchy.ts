/**
 * Each tenant's CAs: one root, which signs only intermediates, its OCSP responder and its CRL; one
 * intermediate per site, which issues the site's device certificates; and one services
 * intermediate, which issues the service's own identities. Made on first use, keys in custody.
 */
import type { KeyCustody, KeyHandle } from '../custody/key-custody';
import { ConflictError, NotFoundError } from '../foundation/errors';
import type { Logger } from '../foundation/logger';
import { productionEnvironment } from '../foundation/installation-environment';
import { roleCommonName, type NameAttribute } from '../x509/distinguished-name';
import {
  authorityKeyIdentifierExtension,
  basicConstraintsExtension,
  keyUsageExtension,
  subjectKeyIdentifierExtension,
} from '../x509/extensions';
import { keyIdentifier } from '../x509/public-key';
import type { CaHierarchy, CaIssuer, CertificateAuthoritySettings } from './certificate-authority';
import { isCaCertificateType, type CertificateRow, type CertificateStore, type NewCertificateRow } from './certificate-store';
import { requireText, tenantSubject, type CertificateRecordFields, type IssuingCa, type IssuingCas } from './issuing-cas';
import { renewalTime, type LiveCertificates } from './live-certificates';
import type { PkiPublication } from './publication';

export interface TenantCaHierarchyDependencies {
  certificates: CertificateStore;
  live: LiveCertificates;
  issuing: IssuingCas;
  custody: KeyCustody;
  settings: Pick<CertificateAuthoritySettings, 'rootValidityDays' | 'intermediateValidityDays' | 'keyAlgorithm' | 'environment'>;
  publication: PkiPublication;
  logger: Logger;
}

export class TenantCaHierarchy implements CaHierarchy, CaIssuer {
  readonly #certificates: CertificateStore;
  readonly #live: LiveCertificates;
  readonly #issuing: IssuingCas;
  readonly #custody: KeyCustody;
  readonly #settings: TenantCaHierarchyDependencies['settings'];
  readonly #publication: PkiPublication;
  readonly #logger: Logger;

  constructor(deps: TenantCaHierarchyDependencies) {
    this.#certificates = deps.certificates;
    this.#live = deps.live;
    this.#issuing = deps.issuing;
    this.#custody = deps.custody;
    this.#settings = deps.settings;
    this.#publication = deps.publication;
    this.#logger = deps.logger;
  }

  async ensureRootCa(tenantId: string): Promise<CertificateRow> {
    requireText(tenantId, 'tenantId');
    const now = new Date();
    return this.#live.ensure({
      lockName: `root-ca:${tenantId}`,
      slot: { tenantId, certificateType: 'root' },
      usable: (row) => row.expiresAt > now,
      create: async () => {
        const key = await this.#custody.createKey(`root-ca:${tenantId}`, this.#settings.keyAlgorithm);
        const keyId = keyIdentifier(key.publicKeySpki);
        const created = await this.#issuing.selfSign({
          key,
          subject: tenantSubject(tenantId, this.#caName(tenantId, 'Root CA')),
          validityDays: this.#settings.rootValidityDays,
          extensions: [
            basicConstraintsExtension({ ca: true }),
            keyUsageExtension(['keyCertSign', 'cRLSign']),
            subjectKeyIdentifierExtension(keyId),
            authorityKeyIdentifierExtension(keyId),
          ],
          row: { tenantId, certificateType: 'root', privateKeyLocation: key.location },
        });
        this.#logger.info({ tenantId, keyLocation: key.location }, 'created root CA');
        return created;
      },
    });
  }

  async ensureSiteIntermediateCa(tenantId: string, site: string): Promise<CertificateRow> {
    requireText(tenantId, 'tenantId');
    requireText(site, 'site');
    const root = await this.ensureRootCa(tenantId);
    const now = new Date();
    return this.#live.ensure({
      lockName: siteIntermediateLock(tenantId, site),
      slot: { tenantId, certificateType: 'intermediate', site },
      // One signed by a root that has since been replaced is superseded along with it.
      usable: (row) => row.expiresAt > now && row.issuerCertificateId === root.id,
      create: () => this.#newSiteIntermediate(tenantId, site, root),
    });
  }

  /**
   * Renewed once a third of its validity is left or the root has changed, by certifying the same
   * key again: devices holding an earlier certificate of it as their anchor keep accepting the
   * service until their next certificate installation brings the new one. While the root key is
   * offline, the current one stays in use as long as it is valid.
   */
  async ensureServicesIntermediateCa(tenantId: string): Promise<CertificateRow> {
    requireText(tenantId, 'tenantId');
    const root = await this.ensureRootCa(tenantId);
    const now = new Date();
    return this.#live.ensure({
      lockName: `services-intermediate-ca:${tenantId}`,
      slot: { tenantId, certificateType: 'services-intermediate' },
      usable: (row) => now.getTime() < renewalTime(row) && row.issuerCertificateId === root.id,
      keepWhileRenewalFails: (row) => row.expiresAt > now,
      create: async (current) => {
        const key = current
          ? await this.#custody.getKey(current.privateKeyLocation)
          : await this.#custody.createKey(`services-intermediate-ca:${tenantId}`, this.#settings.keyAlgorithm);
        const created = await this.#newIntermediate({
          root,
          key,
          subject: tenantSubject(tenantId, this.#caName(tenantId, 'Services CA')),
          row: { tenantId, certificateType: 'services-intermediate' },
        });
        this.#logger.info({ tenantId, keyLocation: key.location, renewed: current !== undefined }, 'certified the services intermediate CA');
        return created;
      },
    });
  }

  async rotateSiteIntermediateCa(
    tenantId: string,
    site: string,
    rotationKey: string,
  ): Promise<{ previous: CertificateRow; current: CertificateRow }> {
    requireText(rotationKey, 'rotationKey');
    const done = async () => {
      const current = await this.#certificates.findByIssuanceKey(rotationKey);
      if (!current) return undefined;
      if (current.tenantId !== tenantId || current.site !== site || !current.renewalOfCertificateId) {
        throw new ConflictError(`rotation key ${rotationKey} was already used for another CA`);
      }
      return { previous: await this.#certificates.get(current.renewalOfCertificateId), current };
    };
    const earlier = await done();
    if (earlier) return earlier;

    const root = await this.ensureRootCa(tenantId);
    const previous = await this.ensureSiteIntermediateCa(tenantId, site);
    const lockName = siteIntermediateLock(tenantId, site);
    return this.#live.exclusively(lockName, async () => {
      const created = { ...(await this.#newSiteIntermediate(tenantId, site, root)), renewalOfCertificateId: previous.id, issuanceKey: rotationKey };
      const result = await this.#certificates.exclusively(lockName, async (certificates) => {
        const live = await certificates.findLive({ tenantId, certificateType: 'intermediate', site });
        if (live?.id !== previous.id) return undefined;
        return { previous: await certificates.retire(previous.id), current: await certificates.insert(created) };
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

  getChainPem(certificate: string | Pick<CertificateRow, 'id' | 'issuerCertificateId'>): Promise<string[]> {
    return this.#certificates.chainPem(certificate);
  }

  async trustAnchorsPem(tenantId: string): Promise<string[]> {
    return [(await this.ensureRootCa(tenantId)).pem];
  }

  async caSigningIdentity(caCertificateId: string): Promise<IssuingCa> {
    const row = await this.#certificates.get(caCertificateId);
    if (!isCaCertificateType(row.certificateType)) throw new NotFoundError(`certificate ${caCertificateId} is not a CA certificate`);
    return this.#issuing.identityOf(row);
  }

  async #newSiteIntermediate(tenantId: string, site: string, root: CertificateRow): Promise<NewCertificateRow> {
    const key = await this.#custody.createKey(`intermediate-ca:${tenantId}:${site}`, this.#settings.keyAlgorithm);
    const created = await this.#newIntermediate({
      root,
      key,
      subject: tenantSubject(tenantId, this.#caName(site, 'Intermediate CA'), site),
      row: { tenantId, site, certificateType: 'intermediate' },
    });
    this.#logger.info({ tenantId, site, keyLocation: key.location }, 'created site intermediate CA');
    return created;
  }

  /** A CA's common name, marked with the environment outside production. */
  #caName(label: string, role: string): string {
    const environment = this.#settings.environment;
    return roleCommonName(label, environment && environment !== productionEnvironment ? `${role} (${environment})` : role);
  }

  /** An intermediate CA certificate from the root for `key`, which issues end entities only. */
  #newIntermediate(spec: {
    root: CertificateRow;
    key: KeyHandle;
    subject: NameAttribute[];
    row: Omit<CertificateRecordFields, 'privateKeyLocation'>;
  }): Promise<NewCertificateRow> {
    return this.#issuing.issue({
      issuer: spec.root,
      subject: spec.subject,
      subjectPublicKeySpki: spec.key.publicKeySpki,
      validityDays: this.#settings.intermediateValidityDays,
      extensions: (issuer) => [
        basicConstraintsExtension({ ca: true, pathLength: 0 }),
        keyUsageExtension(['keyCertSign', 'cRLSign']),
        subjectKeyIdentifierExtension(keyIdentifier(spec.key.publicKeySpki)),
        authorityKeyIdentifierExtension(issuer.keyId),
        ...this.#publication.extensionsForIssuer(spec.root.id),
      ],
      row: { ...spec.row, privateKeyLocation: spec.key.location },
    });
  }
}

/** Creating a site's intermediate and rotating it take the same lock. */
function siteIntermediateLock(tenantId: string, site: string): string {
  return `intermediate-ca:${tenantId}:${site}`;
}
