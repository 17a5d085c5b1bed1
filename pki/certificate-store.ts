/**
 * The certificates table and every question asked of it: the one place that reads or writes the
 * certificates the CA issued, for the CA itself, CRLs, OCSP, EST, backups, alerts and metrics.
 * Built on the database or on a transaction someone else opened.
 */
import { and, asc, count, eq, gt, inArray, isNotNull, isNull, lte, or, sql, type SQL } from 'drizzle-orm';
import { alias } from 'drizzle-orm/pg-core';
import { isUniqueViolation } from '../db/client';
import { insertInBatches, rowCodec } from '../db/row-transfer';
import { certificates, type CertificateRow, type NewCertificateRow } from '../db/schema';
import { holdAdvisoryLock, type Executor } from '../db/transactions';
import { NotFoundError } from '../foundation/errors';
import { publicKeyPin, type CertificateInventory, type CertificatePins, type CertificateQuery } from './certificate-inventory';

export type { CertificateRow, NewCertificateRow };
export type CertificateType = CertificateRow['certificateType'];
export const certificateTypes = certificates.certificateType.enumValues;

/** Certificates that issue others: a tenant's root, its sites' intermediates and its services intermediate. */
export const caCertificateTypes = ['root', 'intermediate', 'services-intermediate'] as const;
export type CaCertificateType = (typeof caCertificateTypes)[number];

export function isCaCertificateType(certificateType: string): certificateType is CaCertificateType {
  return (caCertificateTypes as readonly string[]).includes(certificateType);
}

/** CRLReason names (RFC 5280 section 5.3.1), as a revocation records them. */
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

/**
 * Where one live certificate at a time belongs: a tenant's root, a site's intermediate, a tenant's
 * service identity, a CA's OCSP responder. Live means neither revoked nor retired.
 */
export interface LiveCertificateSlot {
  certificateType: CertificateType;
  tenantId?: string;
  site?: string;
  issuerCertificateId?: string;
}

/** What a CRL or an OCSP response says of a revoked certificate. */
export type RevocationEntry = Pick<CertificateRow, 'serialNumber' | 'revokedAt' | 'revocationReason'>;

/** Rows of this table as a CA backup carries them. */
export const certificateRowCodec = rowCodec(certificates);

/** The certificates table again, as the CA that issued a row. */
const issuingCa = alias(certificates, 'issuing_ca');
const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Root, intermediate, device: a longer issuer chain means corrupt data, not a deeper hierarchy. */
const maximumChainLength = 4;

/** What chains and pins need of an issuer: fixed once the certificate exists. */
type IssuerLink = Pick<CertificateRow, 'pem' | 'fingerprint' | 'issuerCertificateId'>;
/** Issuers met while building chains and pins, by id, each read once per process. */
const issuerLinks = new Map<string, IssuerLink>();
const maximumRememberedIssuers = 10_000;

function rememberIssuer(row: CertificateRow): IssuerLink {
  const link = { pem: row.pem, fingerprint: row.fingerprint, issuerCertificateId: row.issuerCertificateId };
  if (issuerLinks.size >= maximumRememberedIssuers) issuerLinks.delete(issuerLinks.keys().next().value!);
  issuerLinks.set(row.id, link);
  return link;
}

export class CertificateStore implements CertificateInventory {
  readonly #db: Executor;

  constructor(db: Executor) {
    this.#db = db;
  }

  /** NotFoundError for an unknown id, and for anything but a UUID (which PostgreSQL would refuse as a type error). */
  async get(certificateId: string): Promise<CertificateRow> {
    const row = uuidPattern.test(certificateId) ? await this.find(certificateId) : undefined;
    if (!row) throw new NotFoundError(`certificate ${certificateId} not found`);
    return row;
  }

  async find(certificateId: string): Promise<CertificateRow | undefined> {
    const [row] = await this.#db.select().from(certificates).where(eq(certificates.id, certificateId));
    return row;
  }

  async findByIssuanceKey(issuanceKey: string): Promise<CertificateRow | undefined> {
    const [row] = await this.#db.select().from(certificates).where(eq(certificates.issuanceKey, issuanceKey));
    return row;
  }

  async findByFingerprint(fingerprint: string): Promise<CertificateRow | undefined> {
    const [row] = await this.#db.select().from(certificates).where(eq(certificates.fingerprint, fingerprint));
    return row;
  }

  async findLive(slot: LiveCertificateSlot): Promise<CertificateRow | undefined> {
    const [row] = await this.#db
      .select()
      .from(certificates)
      .where(
        and(
          eq(certificates.certificateType, slot.certificateType),
          slot.tenantId === undefined ? undefined : eq(certificates.tenantId, slot.tenantId),
          slot.site === undefined ? undefined : eq(certificates.site, slot.site),
          slot.issuerCertificateId === undefined ? undefined : eq(certificates.issuerCertificateId, slot.issuerCertificateId),
          isNull(certificates.revokedAt),
          // A retired CA still validates what it issued but no longer issues.
          isNull(certificates.retiredAt),
        ),
      );
    return row;
  }

  /**
   * Whether a CA may still issue: neither it nor the CA that issued it revoked or retired (a root
   * replaced since leaves its intermediates unusable). One narrow query, for a caller that keeps
   * the CA's row between issuances.
   */
  async issuesWithLiveIssuer(caCertificateId: string): Promise<boolean> {
    if (!uuidPattern.test(caCertificateId)) return false;
    const [row] = await this.#db
      .select({ id: certificates.id })
      .from(certificates)
      .leftJoin(issuingCa, eq(issuingCa.id, certificates.issuerCertificateId))
      .where(
        and(
          eq(certificates.id, caCertificateId),
          isNull(certificates.revokedAt),
          isNull(certificates.retiredAt),
          or(isNull(certificates.issuerCertificateId), and(isNull(issuingCa.revokedAt), isNull(issuingCa.retiredAt))),
        ),
      );
    return row !== undefined;
  }

  /** Tenants with a live root. */
  async tenantsWithRoot(): Promise<string[]> {
    const rows = await this.#db
      .select({ tenantId: certificates.tenantId })
      .from(certificates)
      .where(and(eq(certificates.certificateType, 'root'), isNull(certificates.revokedAt), isNull(certificates.retiredAt)));
    return rows.map((row) => row.tenantId);
  }

  /** Every tenant with any certificate. */
  async tenantIds(): Promise<string[]> {
    const rows = await this.#db.selectDistinct({ tenantId: certificates.tenantId }).from(certificates);
    return rows.map((row) => row.tenantId);
  }

  async insert(row: NewCertificateRow): Promise<CertificateRow> {
    const [inserted] = await this.#db.insert(certificates).values(row).returning();
    return inserted!;
  }

  /**
   * Inserts a certificate that a repeated request (same issuance key) may already have issued: the
   * earlier one is the answer then, whichever request got there first.
   */
  async insertOnce(row: NewCertificateRow & { issuanceKey: string }): Promise<{ row: CertificateRow; inserted: boolean }> {
    try {
      return { row: await this.insert(row), inserted: true };
    } catch (error) {
      const earlier = isUniqueViolation(error) ? await this.findByIssuanceKey(row.issuanceKey) : undefined;
      if (!earlier) throw error;
      return { row: earlier, inserted: false };
    }
  }

  /** Revokes once: undefined when the certificate is unknown or was revoked before. */
  async revoke(certificateId: string, reason: RevocationReason): Promise<CertificateRow | undefined> {
    if (!uuidPattern.test(certificateId)) return undefined;
    const [revoked] = await this.#db
      .update(certificates)
      .set({ revokedAt: new Date(), revocationReason: reason })
      .where(and(eq(certificates.id, certificateId), isNull(certificates.revokedAt)))
      .returning();
    return revoked;
  }

  /** Replaced by a successor: revoked as superseded. */
  async supersede(certificateId: string): Promise<void> {
    await this.#db.update(certificates).set({ revokedAt: new Date(), revocationReason: 'superseded' }).where(eq(certificates.id, certificateId));
  }

  /** A CA that stops issuing but stays valid for what it issued. */
  async retire(certificateId: string): Promise<CertificateRow> {
    const [retired] = await this.#db.update(certificates).set({ retiredAt: new Date() }).where(eq(certificates.id, certificateId)).returning();
    return retired!;
  }

  /**
   * Runs `work` in a transaction that holds the CA lock `lockName`, so processes sharing the
   * database take turns at what one live certificate a slot may have.
   */
  async exclusively<T>(lockName: string, work: (certificates: CertificateStore) => Promise<T>): Promise<T> {
    return this.#db.transaction(async (tx) => {
      await holdAdvisoryLock(tx, { namespace: 'device-provisioning/ca-lock', name: lockName });
      return work(new CertificateStore(tx));
    });
  }

  /**
   * PEMs of the certificate's issuers up to and including the root, nearest first. A CA's PEM and
   * issuer never change, so each is read once per process (every device installation asks).
   */
  async chainPem(certificate: string | Pick<CertificateRow, 'id' | 'issuerCertificateId'>): Promise<string[]> {
    const { id, issuerCertificateId } =
      typeof certificate === 'string' ? { id: certificate, ...(issuerLinks.get(certificate) ?? (await this.get(certificate))) } : certificate;
    const issuers = await this.#issuersFrom(issuerCertificateId, id);
    const missing = issuers.length > 0 ? issuers.at(-1)!.issuerCertificateId : issuerCertificateId;
    if (missing) throw new NotFoundError(`certificate ${missing} in the issuer chain of ${id} not found`);
    return issuers.map((issuer) => issuer.pem);
  }

  /** The issuers above a certificate, nearest first; an issuer that is not stored ends the walk. */
  async #issuersFrom(issuerId: string | null, certificateId: string): Promise<IssuerLink[]> {
    const issuers: IssuerLink[] = [];
    while (issuerId) {
      if (issuers.length >= maximumChainLength) throw new Error(`issuer chain of certificate ${certificateId} does not end`);
      let issuer = issuerLinks.get(issuerId);
      if (!issuer) {
        const row = await this.find(issuerId);
        if (!row) break;
        issuer = rememberIssuer(row);
      }
      issuers.push(issuer);
      issuerId = issuer.issuerCertificateId;
    }
    return issuers;
  }

  // --- issuers: CRLs, OCSP, EST --------------------------------------------------------------

  /**
   * CAs whose CRL is still read: unexpired, and not revoked or revoked after `revokedAfter`
   * (relying parties may still hold their last CRL).
   */
  async casPublishingCrls(options: { tenantId?: string; now: Date; revokedAfter: Date }): Promise<Pick<CertificateRow, 'id' | 'certificateType'>[]> {
    return this.#db
      .select({ id: certificates.id, certificateType: certificates.certificateType })
      .from(certificates)
      .where(
        and(
          inArray(certificates.certificateType, [...caCertificateTypes]),
          options.tenantId === undefined ? undefined : eq(certificates.tenantId, options.tenantId),
          gt(certificates.expiresAt, options.now),
          or(isNull(certificates.revokedAt), gt(certificates.revokedAt, options.revokedAfter)),
        ),
      );
  }

  /**
   * Every CA certificate, live ones last: a renewed services intermediate shares name and key with
   * the one it superseded, so whoever indexes them by name and key keeps the live one.
   */
  async caCertificatesLiveLast(): Promise<Pick<CertificateRow, 'id' | 'pem' | 'revokedAt' | 'expiresAt'>[]> {
    return this.#db
      .select({ id: certificates.id, pem: certificates.pem, revokedAt: certificates.revokedAt, expiresAt: certificates.expiresAt })
      .from(certificates)
      .where(inArray(certificates.certificateType, [...caCertificateTypes]))
      .orderBy(sql`${certificates.revokedAt} is null`, certificates.issuedAt);
  }

  /** A tenant's unrevoked, unexpired roots or site intermediates (retired ones included), oldest first. */
  async unexpiredCas(tenantId: string, certificateType: 'root' | 'intermediate'): Promise<CertificateRow[]> {
    return this.#db
      .select()
      .from(certificates)
      .where(
        and(
          eq(certificates.tenantId, tenantId),
          eq(certificates.certificateType, certificateType),
          isNull(certificates.revokedAt),
          gt(certificates.expiresAt, new Date()),
        ),
      )
      .orderBy(certificates.issuedAt);
  }

  /** Revoked certificates a CA issued that expire after `unexpiredAt`: what its CRL lists, in order. */
  async revokedIssuedBy(caCertificateId: string, unexpiredAt: Date): Promise<RevocationEntry[]> {
    return this.#db
      .select({ serialNumber: certificates.serialNumber, revokedAt: certificates.revokedAt, revocationReason: certificates.revocationReason })
      .from(certificates)
      .where(revokedIssuedBy(caCertificateId, unexpiredAt))
      .orderBy(certificates.revokedAt, certificates.serialNumber);
  }

  async countRevokedIssuedBy(caCertificateId: string, unexpiredAt: Date): Promise<number> {
    const [row] = await this.#db.select({ count: count() }).from(certificates).where(revokedIssuedBy(caCertificateId, unexpiredAt));
    return row?.count ?? 0;
  }

  /** The revocation state of each of these serials the CA issued; serials it never issued are missing. */
  async revocationStates(caCertificateId: string, serialNumbers: string[]): Promise<RevocationEntry[]> {
    return this.#db
      .select({ serialNumber: certificates.serialNumber, revokedAt: certificates.revokedAt, revocationReason: certificates.revocationReason })
      .from(certificates)
      .where(and(eq(certificates.issuerCertificateId, caCertificateId), inArray(certificates.serialNumber, serialNumbers)));
  }

  // --- the inventory ------------------------------------------------------------------------

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

  async liveDeviceCertificatesIssuedBy(caCertificateId: string, limit: number, afterId?: string): Promise<CertificateRow[]> {
    return this.#db
      .select()
      .from(certificates)
      .where(and(liveDeviceCertificatesOf(caCertificateId), afterId ? gt(certificates.id, afterId) : undefined))
      .orderBy(asc(certificates.id))
      .limit(limit);
  }

  async countLiveDeviceCertificatesIssuedBy(caCertificateId: string): Promise<number> {
    const [row] = await this.#db.select({ count: count() }).from(certificates).where(liveDeviceCertificatesOf(caCertificateId));
    return row?.count ?? 0;
  }

  async pinsOf(row: CertificateRow): Promise<CertificatePins> {
    const issuers = await this.#issuersFrom(row.issuerCertificateId, row.id);
    return {
      certificateSha256: row.fingerprint,
      publicKeySha256: publicKeyPin(row.publicKey),
      issuerCertificateSha256: issuers.map((issuer) => issuer.fingerprint),
    };
  }

  // --- alerts and metrics -------------------------------------------------------------------

  /** Live certificates of these types expiring by `horizon` (expired ones too), soonest first. */
  async liveExpiringBy(tenantId: string, certificateTypes: readonly CertificateType[], horizon: Date): Promise<CertificateRow[]> {
    return this.#db
      .select()
      .from(certificates)
      .where(
        and(
          eq(certificates.tenantId, tenantId),
          isNull(certificates.revokedAt),
          inArray(certificates.certificateType, [...certificateTypes]),
          lte(certificates.expiresAt, horizon),
        ),
      )
      .orderBy(asc(certificates.expiresAt), asc(certificates.id));
  }

  /**
   * Live certificates counted per tenant, type and expiry bucket, bucketed in the database: each in
   * the first of `expired` (by `now`), the bounds in days, and `later` that holds it.
   */
  async countLiveByExpiry(now: Date, boundsDays: readonly number[]): Promise<{ tenantId: string; certificateType: CertificateType; bucket: string; count: number }[]> {
    const bound = (days: number) => sql`${new Date(now.getTime() + days * 86_400_000).toISOString()}::timestamptz`;
    const bucket = sql<string>`case when ${certificates.expiresAt} <= ${bound(0)} then 'expired' ${sql.join(
      boundsDays.map((days) => sql`when ${certificates.expiresAt} <= ${bound(days)} then ${`${days}`}::text`),
      sql` `,
    )} else 'later' end`;
    return this.#db
      .select({ tenantId: certificates.tenantId, certificateType: certificates.certificateType, bucket, count: sql<number>`count(*)::int` })
      .from(certificates)
      .where(isNull(certificates.revokedAt))
      // By position: the bucket expression carries parameters, which Postgres would not match to the select list's.
      .groupBy(sql`1, 2, 3`);
  }

  // --- backups ------------------------------------------------------------------------------

  /** Every certificate, or one tenant's, in the order they were made. */
  async all(tenantId?: string): Promise<CertificateRow[]> {
    return this.#db
      .select()
      .from(certificates)
      .where(tenantId === undefined ? undefined : eq(certificates.tenantId, tenantId))
      .orderBy(asc(certificates.createdAt), asc(certificates.id));
  }

  /** Rows as they were elsewhere (a restore), ids and all. */
  async insertAll(rows: NewCertificateRow[]): Promise<void> {
    await insertInBatches(this.#db, certificates, rows);
  }
}

function revokedIssuedBy(caCertificateId: string, unexpiredAt: Date): SQL | undefined {
  return and(
    eq(certificates.issuerCertificateId, caCertificateId),
    isNotNull(certificates.revokedAt),
    // An expired certificate fails validation anyway; RFC 5280 lets it drop off the list.
    gt(certificates.expiresAt, unexpiredAt),
  );
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
