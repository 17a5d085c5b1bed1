/**
 * Where relying parties fetch what the CA publishes: CRLs, issuer certificates and the OCSP
 * responder. Certificates carry these URLs (CRL Distribution Points, Authority Information
 * Access), so the base URL must be one devices and verifiers can reach: `PKI_PUBLIC_URL`, or the
 * API's own URL once it listens when that is not configured.
 */
import type { Extension } from 'pkijs';
import { authorityInfoAccessExtension, crlDistributionPointsExtension } from '../x509/extensions';

export const pkiPaths = {
  crl: (caCertificateId: string) => `/pki/crl/${caCertificateId}.crl`,
  caCertificate: (caCertificateId: string) => `/pki/ca/${caCertificateId}.cer`,
  ocsp: '/pki/ocsp',
} as const;

export class PkiPublication {
  #baseUrl: string | undefined;

  constructor(baseUrl?: string) {
    this.#baseUrl = baseUrl?.replace(/\/+$/, '');
  }

  get baseUrl(): string | undefined {
    return this.#baseUrl;
  }

  /** Used when no public URL is configured: the API's listening URL is the next best answer. */
  useBaseUrlIfUnset(url: string): void {
    this.#baseUrl ??= url.replace(/\/+$/, '');
  }

  crlUrl(caCertificateId: string): string | undefined {
    return this.#baseUrl && this.#baseUrl + pkiPaths.crl(caCertificateId);
  }

  caCertificateUrl(caCertificateId: string): string | undefined {
    return this.#baseUrl && this.#baseUrl + pkiPaths.caCertificate(caCertificateId);
  }

  ocspUrl(): string | undefined {
    return this.#baseUrl && this.#baseUrl + pkiPaths.ocsp;
  }

  /**
   * The CDP and AIA extensions of a certificate issued by `issuerCertificateId`; none while no
   * base URL is known (a worker started without PKI_PUBLIC_URL and without the API).
   */
  extensionsForIssuer(issuerCertificateId: string, options: { ocsp: boolean } = { ocsp: true }): Extension[] {
    if (!this.#baseUrl) return [];
    return [
      crlDistributionPointsExtension(this.crlUrl(issuerCertificateId)!),
      authorityInfoAccessExtension({
        ...(options.ocsp ? { ocspUrl: this.ocspUrl() } : {}),
        caIssuersUrl: this.caCertificateUrl(issuerCertificateId),
      }),
    ];
  }
}
