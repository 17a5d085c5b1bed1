/**
 * Device certificates: issued by the device's site intermediate from a CSR the device made,
 * renewed the same way, revoked (any certificate the CA issued) with everyone who listens told.
 */
import type { CertificateInstallation } from '../adapters/device-adapter';
import { ConflictError, ValidationError } from '../foundation/errors';
import type { Logger } from '../foundation/logger';
import { fitsSerialNumberAttribute, type NameAttribute } from '../x509/distinguished-name';
import {
  authorityKeyIdentifierExtension,
  basicConstraintsExtension,
  extendedKeyUsageExtension,
  keyUsageExtension,
  subjectAltNameExtension,
  subjectKeyIdentifierExtension,
  type SubjectAltNames,
} from '../x509/extensions';
import { keyIdentifier } from '../x509/public-key';
import type {
  CaHierarchy,
  CertificateAuthorityService,
  CertificateAuthoritySettings,
  IssueDeviceCertificateRequest,
  ServiceIdentities,
} from './certificate-authority';
import { revocationReasons, type CertificateRow, type CertificateStore, type RevocationReason } from './certificate-store';
import { parseCertificateSigningRequest } from './csr';
import { allowedSubjectAltNames, checkRequestedNames } from './device-names';
import { requireText, tenantSubject, type IssuingCas } from './issuing-cas';
import type { PkiPublication } from './publication';

/** Site intermediates kept between issuances; beyond this the oldest kept is asked for again. */
const maxKeptSiteIssuers = 10_000;

export type RevocationListener = (revoked: CertificateRow) => Promise<void> | void;

export interface DeviceCertificatesDependencies {
  certificates: CertificateStore;
  issuing: IssuingCas;
  hierarchy: Pick<CaHierarchy, 'ensureSiteIntermediateCa' | 'getChainPem'>;
  identities: Pick<ServiceIdentities, 'serviceAnchorsPem'>;
  settings: Pick<CertificateAuthoritySettings, 'deviceValidityDays'>;
  publication: PkiPublication;
  /** The host a device's protocol reaches it at (its adapter's reading of the address), for its names. */
  networkHost?: (protocol: string, address: string) => string | undefined;
  logger: Logger;
}

export class DeviceCertificates implements CertificateAuthorityService {
  readonly #certificates: CertificateStore;
  readonly #issuing: IssuingCas;
  readonly #hierarchy: DeviceCertificatesDependencies['hierarchy'];
  readonly #identities: DeviceCertificatesDependencies['identities'];
  readonly #settings: DeviceCertificatesDependencies['settings'];
  readonly #publication: PkiPublication;
  readonly #networkHost: DeviceCertificatesDependencies['networkHost'];
  readonly #logger: Logger;
  readonly #revocationListeners: RevocationListener[] = [];
  /**
   * `${tenantId}\0${site}` → the site intermediate last issued from, kept between issuances: each
   * use asks the database (one narrow query) whether it and its root are still live, so a rotation
   * or revocation by any process sharing the database is seen at the next issuance.
   */
  readonly #siteIssuers = new Map<string, CertificateRow>();

  constructor(deps: DeviceCertificatesDependencies) {
    this.#certificates = deps.certificates;
    this.#issuing = deps.issuing;
    this.#hierarchy = deps.hierarchy;
    this.#identities = deps.identities;
    this.#settings = deps.settings;
    this.#publication = deps.publication;
    this.#networkHost = deps.networkHost;
    this.#logger = deps.logger;
  }

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
    checkRequestedNames(csr, device.deviceId, subjectAltNames);

    const intermediate = await this.#siteIntermediate(tenantId, device.site);
    const subject: NameAttribute[] = [
      ...tenantSubject(tenantId, device.deviceId, device.site),
      // RFC 5280 makes this attribute a PrintableString: a serial with other characters (`_`) stays
      // out of it, and the device is named by its id and, in the SAN, its MAC address URN.
      ...(fitsSerialNumberAttribute(device.serialNumber) ? [{ type: 'serialNumber' as const, value: device.serialNumber }] : []),
    ];
    const row = await this.#issuing.issue({
      issuer: intermediate,
      subject,
      subjectPublicKeySpki: csr.publicKeySpki,
      validityDays,
      extensions: (issuer) => [
        basicConstraintsExtension({ ca: false }),
        // RSA keys may also transport keys (TLS 1.2 RSA key exchange); EC keys only sign.
        keyUsageExtension(csr.publicKey.kind === 'rsa' ? ['digitalSignature', 'keyEncipherment'] : ['digitalSignature']),
        extendedKeyUsageExtension(['serverAuth', 'clientAuth']),
        subjectAltNameExtension(subjectAltNames),
        subjectKeyIdentifierExtension(keyIdentifier(csr.publicKeySpki)),
        authorityKeyIdentifierExtension(issuer.keyId),
        ...this.#publication.extensionsForIssuer(intermediate.id),
      ],
      row: {
        tenantId,
        deviceId: device.deviceId,
        site: device.site,
        certificateType: 'device',
        privateKeyLocation: `device:${device.deviceId}`,
        issuanceKey,
        renewalOfCertificateId: request.renewalOf ?? null,
      },
    });

    if (issuanceKey === undefined) return this.#issued(await this.#certificates.insert(row));
    // A concurrent request with the same issuance key may have got there first: its certificate is the answer.
    const stored = await this.#certificates.insertOnce({ ...row, issuanceKey });
    return stored.inserted ? this.#issued(stored.row) : this.#earlierIssuance(stored.row, request);
  }

  async revokeCertificate(certificateId: string, reason: RevocationReason | string): Promise<CertificateRow> {
    if (!isRevocationReason(reason)) {
      throw new ValidationError(`"${reason}" is not a revocation reason`, {
        fields: [{ field: 'reason', reason: `must be one of ${revocationReasons.join(', ')}` }],
      });
    }
    const revoked = await this.#certificates.revoke(certificateId, reason);
    if (!revoked) return this.getCertificate(certificateId);
    this.#logger.info(
      { certificateId, tenantId: revoked.tenantId, certificateType: revoked.certificateType, reason },
      'revoked certificate',
    );
    for (const listener of this.#revocationListeners) {
      try {
        await listener(revoked);
      } catch (error) {
        this.#logger.error({ err: error, certificateId: revoked.id }, 'a revocation listener failed; the scheduled CRL run will catch up');
      }
    }
    return revoked;
  }

  /** Called after every revocation, in the order registered; a failing listener is logged, not thrown. */
  onRevoked(listener: RevocationListener): void {
    this.#revocationListeners.push(listener);
  }

  getCertificate(certificateId: string): Promise<CertificateRow> {
    return this.#certificates.get(certificateId);
  }

  async installationFor(certificate: CertificateRow): Promise<CertificateInstallation> {
    return {
      certificatePem: certificate.pem,
      chainPem: await this.#hierarchy.getChainPem(certificate),
      trustAnchorsPem: await this.#identities.serviceAnchorsPem(certificate.tenantId),
    };
  }

  subjectAltNamesFor(device: { address: string; macAddress: string; protocol?: string }): SubjectAltNames {
    if (device.protocol === undefined || !this.#networkHost) return allowedSubjectAltNames(device);
    return allowedSubjectAltNames({ ...device, host: this.#networkHost(device.protocol, device.address) ?? null });
  }

  /** The site's live intermediate: the one kept here while still live and unexpired, else the hierarchy's. */
  async #siteIntermediate(tenantId: string, site: string): Promise<CertificateRow> {
    const key = `${tenantId}\0${site}`;
    const known = this.#siteIssuers.get(key);
    if (known && known.expiresAt.getTime() > Date.now() && (await this.#certificates.issuesWithLiveIssuer(known.id))) return known;
    this.#siteIssuers.delete(key);
    const current = await this.#hierarchy.ensureSiteIntermediateCa(tenantId, site);
    this.#siteIssuers.set(key, current);
    if (this.#siteIssuers.size > maxKeptSiteIssuers) this.#siteIssuers.delete(this.#siteIssuers.keys().next().value!);
    return current;
  }

  #issued(row: CertificateRow): CertificateRow {
    this.#logger.info(
      { tenantId: row.tenantId, deviceId: row.deviceId, serialNumber: row.serialNumber, certificateId: row.id },
      'issued device certificate',
    );
    return row;
  }

  async #findIssued(issuanceKey: string, request: IssueDeviceCertificateRequest): Promise<CertificateRow | undefined> {
    const row = await this.#certificates.findByIssuanceKey(issuanceKey);
    return row && this.#earlierIssuance(row, request);
  }

  /** What a request issued before under the same issuance key: the answer, if it was for the same device. */
  #earlierIssuance(row: CertificateRow, request: IssueDeviceCertificateRequest): CertificateRow {
    if (row.tenantId !== request.tenantId || row.deviceId !== request.device.deviceId) {
      throw new ConflictError(`issuance key ${row.issuanceKey} was already used for another device`);
    }
    return row;
  }
}

function isRevocationReason(reason: string): reason is RevocationReason {
  return (revocationReasons as readonly string[]).includes(reason);
}
