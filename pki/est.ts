/**
 * Enrolment over Secure Transport (RFC 7030): what devices that speak the standard may ask of the
 * CA, independent of HTTP. A device authenticates with the certificate it holds from us (TLS client
 * certificate) or, for its first certificate only, with HTTP Basic: its device id and the initial
 * credential stored for it in the vault. Certificates are issued by the site intermediate through
 * `CertificateAuthorityService.issueDeviceCertificate`, so every CSR check of the CA applies unchanged.
 *
 * Tenancy: the optional path label of RFC 7030 section 3.2.2 is `<tenant>` or `<tenant>~<site>`.
 * A site label limits `cacerts` to that site's intermediate and refuses devices of other sites.
 */
import { createHash, timingSafeEqual, X509Certificate } from 'node:crypto';
import * as asn1js from 'asn1js';
import { Attribute, Certificate, ContentInfo, EncapsulatedContentInfo, SignedData } from 'pkijs';
import { initialCredentialsPurpose } from '../registry/initial-credentials';
import type { DeviceCredentials } from '../adapters/device-adapter';
import type { AuditLog } from '../audit/audit-log';
import type { SecretVault } from '../custody/secret-vault';
import type { Database } from '../db/client';
import type { DeviceRow } from '../db/schema';
import { identifierPattern } from '../registry/identifiers';
import type { DeviceRegistry } from '../registry/device-registry';
import {
  BadCsrError,
  ForbiddenError,
  NotFoundError,
  TooManyRequestsError,
  UnauthenticatedError,
} from '../foundation/errors';
import { KeyedMutex } from '../foundation/keyed-mutex';
import { FailedAuthenticationThrottle, type FailedAuthenticationLimits } from '../access/failed-authentications';
import type { Logger } from '../foundation/logger';
import type { CertificateAuthorityService } from './certificate-authority';
import { CertificateStore, type CertificateRow } from './certificate-store';
import { parseCertificateSigningRequest } from './csr';
import { oids } from '../x509/oids';
import { fingerprintOf, fromPem, toPem } from '../x509/pem';

export const estPathPrefix = '/.well-known/est';
export const estOperations = ['cacerts', 'simpleenroll', 'simplereenroll', 'csrattrs'] as const;
export type EstOperation = (typeof estOperations)[number];
export type EstEnrolmentOperation = 'simpleenroll' | 'simplereenroll';

/** Separates tenant and site in a label; never part of an identifier, so a label reads one way only. */
export const estLabelSiteSeparator = '~';

export interface EstLabel {
  tenantId: string;
  site?: string;
}

/** `<tenant>` or `<tenant>~<site>`, each a service identifier; undefined for anything else. */
export function parseEstLabel(label: string): EstLabel | undefined {
  const parts = label.split(estLabelSiteSeparator);
  if (parts.length > 2 || !parts.every((part) => identifierPattern.test(part))) return undefined;
  return parts.length === 2 ? { tenantId: parts[0]!, site: parts[1]! } : { tenantId: parts[0]! };
}

/** The one refusal of `cacerts` for a label that names no CA, whatever part of it is unknown. */
function noCaCertificates(): NotFoundError {
  return new NotFoundError('no CA certificates are published under this label');
}

/**
 * A degenerate CMS SignedData holding only certificates (RFC 5652 section 5, the "certs-only"
 * of RFC 8551): no content, no signers, version 1.
 */
export function certsOnly(certificatesDer: readonly Uint8Array[]): Uint8Array {
  const signedData = new SignedData({
    version: 1,
    digestAlgorithms: [],
    encapContentInfo: new EncapsulatedContentInfo({ eContentType: ContentInfo.DATA }),
    certificates: certificatesDer.map((der) => Certificate.fromBER(der)),
    signerInfos: [],
  });
  const contentInfo = new ContentInfo({ contentType: ContentInfo.SIGNED_DATA, content: signedData.toSchema(true) });
  return new Uint8Array(contentInfo.toSchema().toBER());
}

/**
 * The CSR attributes this CA wants (RFC 7030 section 4.5.2): an EC P-256 key and an ECDSA with
 * SHA-256 signature. The CA also accepts P-384 and RSA-2048 or larger; this is the recommendation.
 */
export function csrAttributes(): Uint8Array {
  const keyType = new Attribute({ type: oids.ecPublicKey, values: [new asn1js.ObjectIdentifier({ value: oids.secp256r1 })] });
  const attributes = new asn1js.Sequence({
    value: [new asn1js.ObjectIdentifier({ value: oids.ecdsaWithSha256 }), keyType.toSchema()],
  });
  return new Uint8Array(attributes.toBER());
}

/**
 * Base64 in lines of 64 characters (within RFC 2045's 76), ended by LF rather than CRLF: EST
 * clients ignore either, but `base64 -d`, which device scripts pipe answers into, rejects CR.
 */
export function base64Lines(der: Uint8Array): string {
  const text = Buffer.from(der).toString('base64');
  return `${(text.match(/.{1,64}/g) ?? []).join('\n')}\n`;
}

/** A CSR largest allowed as a request body: a few kilobytes at most, so this is generous. */
export const maximumCsrBodyBytes = 64 * 1024;

/**
 * The PEM of the PKCS#10 request in an EST body: base64 DER (RFC 7030 4.2.1), whitespace allowed.
 * A PEM block is accepted too, since some clients send one. BadCsrError for anything else.
 */
export function csrPemOfBody(body: Uint8Array): string {
  const text = Buffer.from(body).toString('latin1');
  if (text.includes('-----BEGIN')) {
    const der = fromPem(text, ['CERTIFICATE REQUEST', 'NEW CERTIFICATE REQUEST']);
    if (!der) throw new BadCsrError('the body holds a PEM block that is not a CERTIFICATE REQUEST');
    return toPem(der, 'CERTIFICATE REQUEST');
  }
  const compact = text.replace(/\s+/g, '');
  if (compact === '' || !/^[A-Za-z0-9+/]+={0,2}$/.test(compact) || compact.length % 4 !== 0) {
    throw new BadCsrError('the body is not a base64-encoded DER PKCS#10 certificate signing request');
  }
  return toPem(new Uint8Array(Buffer.from(compact, 'base64')), 'CERTIFICATE REQUEST');
}

/** What the client presented; the transport extracts it, this module judges it. */
export interface EstClientCredentials {
  /** The client's network address, for the audit trail and rate limiting. */
  address: string;
  /** DER of the TLS client certificate, when the client presented one. */
  clientCertificateDer?: Uint8Array;
  basic?: { username: string; password: string };
}

export type EstClient =
  | { method: 'certificate'; device: DeviceRow; certificate: CertificateRow }
  | { method: 'basic'; device: DeviceRow };

export interface EstEnrolmentResult {
  certificate: CertificateRow;
  /** False when a retried request got back the certificate its first attempt issued. */
  newlyIssued: boolean;
}

export type { FailedAuthenticationLimits } from '../access/failed-authentications';

export interface EstEnrolmentDependencies {
  db: Database;
  ca: Pick<CertificateAuthorityService, 'issueDeviceCertificate' | 'getCertificate'>;
  registry: DeviceRegistry;
  vault: SecretVault;
  audit: AuditLog;
  logger: Logger;
  /** Hands each certificate EST issues to the device's renewal workflow, which then follows it. */
  renewals?: { track(certificate: CertificateRow): Promise<void> };
  /** Audit chain for failures against a tenant that has no CA (the service's system chain). */
  systemAuditTenant?: string;
  failedAuthentications?: FailedAuthenticationLimits;
}

const defaultFailedAuthentications: FailedAuthenticationLimits = { burst: 10, perMinute: 5 };
/** Root, intermediate, device: a longer issuer chain means corrupt data. */
const maximumChainLength = 4;

/** Thrown for an authentication that failed; carries the reason the audit trail records. */
class EstAuthenticationFailure extends Error {
  constructor(
    readonly reason: string,
    readonly refusal: UnauthenticatedError | ForbiddenError,
  ) {
    super(reason);
  }
}

export class EstEnrolment {
  readonly #deps: EstEnrolmentDependencies;
  readonly #certificates: CertificateStore;
  readonly #throttle: FailedAuthenticationThrottle;
  readonly #deviceLocks = new KeyedMutex();

  constructor(deps: EstEnrolmentDependencies) {
    this.#deps = deps;
    this.#certificates = new CertificateStore(deps.db);
    this.#throttle = new FailedAuthenticationThrottle(deps.failedAuthentications ?? defaultFailedAuthentications);
  }

  /**
   * Whether the tenant has a CA. Unauthenticated requests (cacerts, a TLS server name) never
   * create one: otherwise anyone could make the service mint root keys for made-up tenants.
   */
  async tenantHasCa(tenantId: string): Promise<boolean> {
    return (await this.#certificates.unexpiredCas(tenantId, 'root')).length > 0;
  }

  /**
   * The CA certificates a device of the tenant (or site) needs (RFC 7030 section 4.1.3): the
   * tenant's valid roots and site intermediates, retired ones included while they still validate
   * what they issued. NotFoundError when the tenant or site has no CA, one and the same whichever
   * is missing: anyone may ask, so the answer must not tell an unknown site of a known tenant
   * from an unknown tenant.
   */
  async caCertificates(label: EstLabel): Promise<Uint8Array[]> {
    const [roots, allIntermediates] = await Promise.all([
      this.#certificates.unexpiredCas(label.tenantId, 'root'),
      this.#certificates.unexpiredCas(label.tenantId, 'intermediate'),
    ]);
    const intermediates = allIntermediates.filter((row) => label.site === undefined || row.site === label.site);
    if (roots.length === 0 || (label.site !== undefined && intermediates.length === 0)) throw noCaCertificates();
    return [...intermediates, ...roots].map((row) => fromPem(row.pem, ['CERTIFICATE'])!);
  }

  /**
   * Who is asking (RFC 7030 section 3.3). A TLS client certificate must be the device's current,
   * unrevoked certificate from this tenant's CA. HTTP Basic is accepted for simpleenroll only, for
   * a registered device whose initial credential matches. Failures are audited and rate limited;
   * an absent credential is only a challenge (401), not a failure.
   */
  async authenticate(label: EstLabel, operation: EstEnrolmentOperation, credentials: EstClientCredentials): Promise<EstClient> {
    const throttleKeys = [
      `address:${credentials.address}`,
      ...(credentials.basic ? [`device:${label.tenantId}/${credentials.basic.username}`] : []),
    ];
    const waitSeconds = this.#throttle.retryAfterSeconds(throttleKeys);
    if (waitSeconds !== undefined) {
      throw new TooManyRequestsError('too many failed authentications; try again later', waitSeconds);
    }

    const fail = async (failure: EstAuthenticationFailure, method: 'certificate' | 'basic', deviceId?: string): Promise<never> => {
      this.#throttle.recordFailure(throttleKeys);
      await this.#auditFailure(label, operation, credentials.address, method, failure.reason, deviceId);
      throw failure.refusal;
    };

    let certificateFailure: EstAuthenticationFailure | undefined;
    if (credentials.clientCertificateDer) {
      try {
        return await this.#certificateClient(label.tenantId, credentials.clientCertificateDer);
      } catch (error) {
        if (!(error instanceof EstAuthenticationFailure)) throw error;
        certificateFailure = error;
      }
      // A device may still show a factory certificate and fall back to its initial credential.
      if (operation !== 'simpleenroll' || !credentials.basic) return fail(certificateFailure, 'certificate');
    }

    if (operation === 'simplereenroll') {
      if (credentials.basic) {
        throw new ForbiddenError('simplereenroll authenticates with the current certificate as TLS client certificate, not a password');
      }
      throw new UnauthenticatedError('simplereenroll needs the device\'s current certificate as TLS client certificate');
    }
    if (!credentials.basic) {
      throw new UnauthenticatedError('authenticate with a TLS client certificate or HTTP Basic (device id and initial credential)');
    }
    const { username, password } = credentials.basic;
    try {
      return await this.#basicClient(label.tenantId, username, password);
    } catch (error) {
      if (!(error instanceof EstAuthenticationFailure)) throw error;
      const reason = certificateFailure ? `${certificateFailure.reason}; ${error.reason}` : error.reason;
      return fail(new EstAuthenticationFailure(reason, error.refusal), 'basic', username);
    }
  }

  /**
   * Issues the device a certificate for the CSR (RFC 7030 sections 4.2.1 and 4.2.2). A retried
   * request (the same CSR from the same client) gets the certificate its first attempt issued.
   */
  async enroll(request: {
    label: EstLabel;
    operation: EstEnrolmentOperation;
    client: EstClient;
    csrPem: string;
  }): Promise<EstEnrolmentResult> {
    const { label, operation, client } = request;
    const { device } = client;
    if (label.site !== undefined && device.site !== label.site) {
      throw new ForbiddenError(`device ${device.deviceId} belongs to site ${device.site}, not ${label.site}`);
    }
    const csr = parseCertificateSigningRequest(request.csrPem);
    if (operation === 'simplereenroll' && client.method === 'certificate' && csr.subjectDn !== client.certificate.subjectDn) {
      // RFC 7030 4.2.2: the subject of a renewal request is that of the certificate being renewed.
      throw new BadCsrError(
        `the CSR subject "${csr.subjectDn}" must be the subject of the certificate being renewed, "${client.certificate.subjectDn}"`,
      );
    }
    const basis = client.method === 'certificate' ? client.certificate.id : 'initial-credential';
    const csrDigest = createHash('sha256').update(csr.der).digest('hex');
    const issuanceKey = `est:${operation}:${label.tenantId}:${device.deviceId}:${basis}:${csrDigest}`;

    return this.#deviceLocks.run(`${label.tenantId}/${device.deviceId}`, async () => {
      const earlier = await this.#certificates.findByIssuanceKey(issuanceKey);
      if (earlier?.revokedAt) {
        throw new ForbiddenError('this CSR was already answered with a certificate that has since been revoked; make a new key and CSR');
      }
      if (!earlier && client.method === 'basic') await this.#refuseIfEnrolled(label.tenantId, device.deviceId);

      const certificate = await this.#deps.ca.issueDeviceCertificate({
        tenantId: label.tenantId,
        device,
        csrPem: request.csrPem,
        issuanceKey,
        ...(client.method === 'certificate' ? { renewalOf: client.certificate.id } : {}),
      });
      await this.#deps.registry.useCertificate(label.tenantId, device.deviceId, certificate);
      if (!earlier) {
        await this.#deps.audit.append({
          tenantId: label.tenantId,
          actor: device.deviceId,
          actorType: 'anonymous',
          action: 'certificate.issued',
          targetType: 'certificate',
          targetId: certificate.id,
          details: {
            via: 'est',
            operation,
            authentication: client.method,
            deviceId: device.deviceId,
            serialNumber: certificate.serialNumber,
            fingerprint: certificate.fingerprint,
            ...(client.method === 'certificate' ? { renewalOfCertificateId: client.certificate.id } : {}),
          },
        });
        this.#deps.logger.info(
          { tenantId: label.tenantId, deviceId: device.deviceId, operation, serialNumber: certificate.serialNumber },
          'issued device certificate over EST',
        );
      }
      // Also on a retried request: the first attempt may have stopped between issuing and handing over.
      await this.#deps.renewals?.track(certificate);
      return { certificate, newlyIssued: !earlier };
    });
  }

  /** Basic enrolment is for a device's first certificate; holding a valid one, it must renew with it. */
  async #refuseIfEnrolled(tenantId: string, deviceId: string) {
    const device = await this.#deps.registry.get(tenantId, deviceId);
    if (!device.activeCertificateId) return;
    const active = await this.#deps.ca.getCertificate(device.activeCertificateId);
    if (!active.revokedAt && active.expiresAt > new Date()) {
      throw new ForbiddenError(
        `device ${deviceId} already holds certificate ${active.serialNumber}; renew it with simplereenroll, authenticating with that certificate`,
      );
    }
  }

  async #certificateClient(tenantId: string, der: Uint8Array): Promise<EstClient> {
    const refuse = (reason: string) => new EstAuthenticationFailure(reason, new ForbiddenError(`client certificate refused: ${reason}`));
    const row = await this.#certificates.findByFingerprint(fingerprintOf(der));
    if (!row) throw refuse('it was not issued by this service');
    if (row.tenantId !== tenantId) throw refuse(`it was issued by another tenant's CA, not tenant ${tenantId}'s`);
    if (row.certificateType !== 'device' || !row.deviceId) throw refuse('it is not a device certificate');
    if (row.revokedAt) throw refuse(`it was revoked (${row.revocationReason ?? 'unspecified'})`);

    // The row proves we issued it; the signatures up to a live root prove the issuers still stand.
    const now = new Date();
    let certificate = new X509Certificate(Buffer.from(der));
    let current = row;
    for (let depth = 0; ; depth++) {
      if (new Date(certificate.validFrom) > now || new Date(certificate.validTo) <= now) {
        throw refuse(current.id === row.id ? 'it has expired or is not yet valid' : `its issuer ${current.subjectDn} has expired`);
      }
      if (!current.issuerCertificateId) {
        if (current.certificateType !== 'root' || !certificate.verify(certificate.publicKey)) {
          throw refuse('its chain does not end at a root of the tenant');
        }
        break;
      }
      if (depth >= maximumChainLength) throw refuse('its issuer chain does not end');
      const issuerRow = await this.#deps.ca.getCertificate(current.issuerCertificateId);
      if (issuerRow.revokedAt) throw refuse(`its issuer ${issuerRow.subjectDn} was revoked`);
      const issuer = new X509Certificate(issuerRow.pem);
      if (!certificate.checkIssued(issuer) || !certificate.verify(issuer.publicKey)) {
        throw refuse(`it is not signed by its recorded issuer ${issuerRow.subjectDn}`);
      }
      certificate = issuer;
      current = issuerRow;
    }

    const device = await this.#deps.registry.find(tenantId, row.deviceId);
    if (!device) throw refuse(`device ${row.deviceId} is no longer registered`);
    if (device.activeCertificateId !== row.id) throw refuse(`it is not the current certificate of device ${row.deviceId}`);
    return { method: 'certificate', device, certificate: row };
  }

  async #basicClient(tenantId: string, username: string, password: string): Promise<EstClient> {
    // One answer for every reason, so the response never tells which device ids exist.
    const refuse = (reason: string) =>
      new EstAuthenticationFailure(reason, new UnauthenticatedError('the device id or initial credential is not valid'));
    const device = identifierPattern.test(username) ? await this.#deps.registry.find(tenantId, username) : undefined;
    const stored = device
      ? await this.#deps.vault.read<DeviceCredentials>(tenantId, device.deviceId, initialCredentialsPurpose)
      : undefined;
    // Compared even when there is nothing to compare with, so timing does not tell either.
    const matches = samePassword(password, stored?.password ?? '');
    if (!device) throw refuse('the device is not registered');
    if (!stored) throw refuse('the device has no initial credential stored');
    if (!matches) throw refuse('wrong initial credential');
    return { method: 'basic', device };
  }

  async #auditFailure(
    label: EstLabel,
    operation: EstEnrolmentOperation,
    address: string,
    method: 'certificate' | 'basic',
    reason: string,
    deviceId?: string,
  ) {
    this.#deps.logger.warn({ tenantId: label.tenantId, operation, address, method, reason }, 'EST authentication failed');
    try {
      // A made-up tenant gets no audit chain of its own.
      const tenantId = (await this.tenantHasCa(label.tenantId)) ? label.tenantId : (this.#deps.systemAuditTenant ?? '_system');
      await this.#deps.audit.append({
        tenantId,
        actor: address,
        actorType: 'anonymous',
        action: 'est.authentication_failed',
        outcome: 'failure',
        targetType: deviceId ? 'device' : null,
        targetId: deviceId ?? null,
        details: { operation, method, reason, label: label.site ? `${label.tenantId}${estLabelSiteSeparator}${label.site}` : label.tenantId },
      });
    } catch (error) {
      this.#deps.logger.error({ err: error }, 'could not audit a failed EST authentication');
    }
  }
}

/** Constant-time over SHA-256 digests, so neither content nor length leaks through timing. */
function samePassword(presented: string, stored: string): boolean {
  const digest = (value: string) => createHash('sha256').update(value, 'utf8').digest();
  return timingSafeEqual(digest(presented), digest(stored)) && stored !== '';
}
