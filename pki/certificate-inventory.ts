/**
 * Questions asked of the certificate database rather than of the CA: what a tenant holds, what
 * expires soon, what a CA has issued, and what a client should pin. The certificate store answers
 * them; the API and the lifecycle activities ask.
 */
import { createHash } from 'node:crypto';
import type { CertificateRow } from '../db/schema';
import { fromPem } from '../x509/pem';

export interface CertificateQuery {
  certificateType?: CertificateRow['certificateType'];
  deviceId?: string;
  site?: string;
  /** Only certificates not revoked (expired ones included unless `expiringWithinDays` excludes them). */
  liveOnly?: boolean;
  /** Live certificates whose expiry falls within this many days from now (already expired ones too). */
  expiringWithinDays?: number;
  limit: number;
  /** Continue after this (expiresAt, id) position of the previous page. */
  after?: { expiresAt: Date; id: string };
}

/** What a client should pin for a device: its certificate, its key, and the CAs above it. */
export interface CertificatePins {
  /** SHA-256 of the DER certificate, hex: changes at every renewal. */
  certificateSha256: string;
  /** RFC 7469 `pin-sha256`: base64 SHA-256 of the SubjectPublicKeyInfo; changes when the key does. */
  publicKeySha256: string;
  /** SHA-256 (hex) of each issuer up to the root, nearest first: pins that survive renewal. */
  issuerCertificateSha256: string[];
}

export interface CertificateInventory {
  /** One page, soonest expiry first; `next` is the position to continue from. */
  list(tenantId: string, query: CertificateQuery): Promise<{ items: CertificateRow[]; next?: { expiresAt: Date; id: string } }>;
  /** Device certificates a CA issued that are still in use: neither revoked nor expired. */
  liveDeviceCertificatesIssuedBy(caCertificateId: string, limit: number, afterId?: string): Promise<CertificateRow[]>;
  countLiveDeviceCertificatesIssuedBy(caCertificateId: string): Promise<number>;
  pinsOf(row: CertificateRow): Promise<CertificatePins>;
}

/** RFC 7469 pin of a PEM public key. */
export function publicKeyPin(publicKeyPem: string): string {
  const spki = fromPem(publicKeyPem, ['PUBLIC KEY']);
  if (!spki) throw new Error('stored public key is not a PEM SubjectPublicKeyInfo');
  return createHash('sha256').update(spki).digest('base64');
}
