/**
 * Questions asked of the certificate database rather than of the CA: what a tenant holds, what
 * expires soon, what a CA has issued, and what a client should pin.
 */
import { createHash } from 'node:crypto';
import { and, asc, count, eq, gt, isNull, lte, or, type SQL } from 'drizzle-orm';
import type { Database } from '../db/client';
import { certificates, type CertificateRow } from '../db/schema';
import { fromPem } from '../x509/pem';

export type CertificateType = CertificateRow['certificateType'];

export interface CertificateQuery {
  certificateType?: CertificateType;
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

export class CertificateInventory {
  readonly #db: Database;

  constructor(db: Database) {
    this.#db = db;
  }

  /** One page, soonest expiry first; `next` is the position to continue from. */
  async list(tenantId: string, query: CertificateQuery): Promise<{ items: CertificateRow[]; next?: { expiresAt: Date; id: string } }> {
    const conditions: (SQL | undefined)[] = [eq(certificates.tenantId, tenantId)];
    if (query.certificateType) conditions.push(eq(certificates.certificateType, query.certificateType));
    if (query.deviceId) conditions.push(eq(certificates.deviceId, query.deviceId));
    if (query.site) conditions.push(eq(certificates.site, query.site));
    if (query.liveOnly || query.expiringWithinDays !== undefined) conditions.push(isNull(certificates.revokedAt));
    if (query.expiringWithinDays !== undefined) {
      conditions.push(lte(certificates.expiresAt, new Date(Date.now() + query.expiringWithinDays * 86_400_000)));
    }
    if (query.after) {
      // Keyset pagination on (expires_at, id): stable while certificates are issued meanwhile.
      const { expiresAt, id } = query.after;
      conditions.push(or(gt(certificates.expiresAt, expiresAt), and(eq(certificates.expiresAt, expiresAt), gt(certificates.id, id))));
    }
    const rows = await this.#db
      .select()
      .from(certificates)
      .where(and(...conditions))
      .orderBy(asc(certificates.expiresAt), asc(certificates.id))
      .limit(query.limit + 1);
    const items = rows.slice(0, query.limit);
    const last = items.at(-1);
    return rows.length > query.limit && last ? { items, next: { expiresAt: last.expiresAt, id: last.id } } : { items };
  }

  /** Device certificates a CA issued that are still in use: neither revoked nor expired. */
  async liveDeviceCertificatesIssuedBy(caCertificateId: string, limit: number, afterId?: string): Promise<CertificateRow[]> {
    return this.#db
      .select()
      .from(certificates)
      .where(and(liveDeviceCertificatesOf(caCertificateId), afterId ? gt(certificates.id, afterId) : undefined))
      .orderBy(asc(certificates.id))
      .limit(limit);
  }

  async countLiveDeviceCertificatesIssuedBy(caCertificateId: string): Promise<number> {
    const [row] = await this.#db
      .select({ count: count() })
      .from(certificates)
      .where(liveDeviceCertificatesOf(caCertificateId));
    return row?.count ?? 0;
  }

  async pinsOf(row: CertificateRow): Promise<CertificatePins> {
    const issuers: string[] = [];
    let issuerId = row.issuerCertificateId;
    // Root, intermediate, device: anything longer is corrupt data, not a deeper hierarchy.
    while (issuerId && issuers.length < 4) {
      const [issuer] = await this.#db
        .select({ fingerprint: certificates.fingerprint, issuerCertificateId: certificates.issuerCertificateId })
        .from(certificates)
        .where(eq(certificates.id, issuerId));
      if (!issuer) break;
      issuers.push(issuer.fingerprint);
      issuerId = issuer.issuerCertificateId;
    }
    return { certificateSha256: row.fingerprint, publicKeySha256: publicKeyPin(row.publicKey), issuerCertificateSha256: issuers };
  }
}

/** Device certificates a CA issued that are still in use: neither revoked nor expired. */
function liveDeviceCertificatesOf(caCertificateId: string): SQL | undefined {
  return and(
    eq(certificates.issuerCertificateId, caCertificateId),
    eq(certificates.certificateType, 'device'),
    isNull(certificates.revokedAt),
    gt(certificates.expiresAt, new Date()),
  );
}

/** RFC 7469 pin of a PEM public key. */
export function publicKeyPin(publicKeyPem: string): string {
  const spki = fromPem(publicKeyPem, ['PUBLIC KEY']);
  if (!spki) throw new Error('stored public key is not a PEM SubjectPublicKeyInfo');
  return createHash('sha256').update(spki).digest('base64');
}
