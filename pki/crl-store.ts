/**
 * Every CRL a CA has signed, as signed: the one place that reads or writes them, for the CRL
 * publisher and for backups. Built on the database or on a transaction someone else opened.
 */
import { asc, desc, eq, sql } from 'drizzle-orm';
import { insertInBatches, rowCodec } from '../db/row-transfer';
import { certificateRevocationLists, type CertificateRevocationListRow } from '../db/schema';
import type { Executor } from '../db/transactions';

export type { CertificateRevocationListRow };
export type NewCertificateRevocationListRow = typeof certificateRevocationLists.$inferInsert;

/** Rows of this table as a CA backup carries them. */
export const crlRowCodec = rowCodec(certificateRevocationLists);

export class CrlStore {
  readonly #db: Executor;

  constructor(db: Executor) {
    this.#db = db;
  }

  async newest(caCertificateId: string): Promise<CertificateRevocationListRow | undefined> {
    const [row] = await this.#db
      .select()
      .from(certificateRevocationLists)
      .where(eq(certificateRevocationLists.caCertificateId, caCertificateId))
      .orderBy(desc(certificateRevocationLists.crlNumber))
      .limit(1);
    return row;
  }

  /** The number the CA's next CRL takes: one above the highest so far. */
  async nextNumber(caCertificateId: string): Promise<number> {
    const [{ next }] = (await this.#db
      .select({ next: sql<number>`coalesce(max(${certificateRevocationLists.crlNumber}), 0) + 1`.mapWith(Number) })
      .from(certificateRevocationLists)
      .where(eq(certificateRevocationLists.caCertificateId, caCertificateId))) as [{ next: number }];
    return next;
  }

  /** A unique violation when another publisher took the number first. */
  async insert(row: NewCertificateRevocationListRow): Promise<CertificateRevocationListRow> {
    const [inserted] = await this.#db.insert(certificateRevocationLists).values(row).returning();
    return inserted!;
  }

  /** Every CRL, or one tenant's, by CA and number. */
  async all(tenantId?: string): Promise<CertificateRevocationListRow[]> {
    return this.#db
      .select()
      .from(certificateRevocationLists)
      .where(tenantId === undefined ? undefined : eq(certificateRevocationLists.tenantId, tenantId))
      .orderBy(asc(certificateRevocationLists.caCertificateId), asc(certificateRevocationLists.crlNumber));
  }

  /** Rows as they were elsewhere (a restore), ids and all. */
  async insertAll(rows: NewCertificateRevocationListRow[]): Promise<void> {
    await insertInBatches(this.#db, certificateRevocationLists, rows);
  }
}
