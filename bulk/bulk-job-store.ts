/**
 * Where bulk jobs and their rows are kept, and the only code that reads or writes them. A job's
 * rows are its queue: dispatching takes pending rows and marks them in progress under a dispatch
 * id (a retried dispatch returns the same rows, never loses them), outcomes are written back in
 * batches, and reports and finished jobs' progress are read from the same rows.
 */
import { and, asc, desc, eq, inArray, sql } from 'drizzle-orm';
import type { Database } from '../db/client';
import { bulkJobDevices, bulkJobs, type BulkJobDeviceRow, type BulkJobRow } from '../db/schema';
import { NotFoundError } from '../foundation/errors';
import { storableText } from '../foundation/validation';
import type { BulkDeviceOutcome, BulkJobState, BulkRow } from '../contracts/bulk';
import type { DeviceDescriptor } from '../contracts/provisioning';

export type BulkJob = BulkJobRow;
export type BulkJobDevice = BulkJobDeviceRow;
export type NewBulkJob = Omit<typeof bulkJobs.$inferInsert, 'id' | 'options' | 'createdAt' | 'finishedAt'> & { id: string; options: BulkJobSettings };

/** How a job runs, stored with it (`options`) so that a re-run of its failed devices runs the same way. */
export interface BulkJobSettings {
  concurrency: number;
  skipCertificateGeneration: boolean;
  autoActivate: boolean;
  /** The template version judged at import; absent for jobs imported before versions were pinned. */
  templateVersion?: number;
}


/** How many rows of a job stand where, by status and (for failures) the step that failed. */
export interface BulkOutcomeCount {
  status: BulkJobDevice['status'];
  failedStep: string | null;
  count: number;
}

/** Small enough that building one statement never holds the API's thread for long. */
const rowsPerInsert = 250;

export class BulkJobStore {
  constructor(private readonly db: Database) {}

  /** The job and all its rows, in one transaction: a job is never seen half stored. */
  async create(job: NewBulkJob, rows: BulkRow[]): Promise<void> {
    await this.db.transaction(async (tx) => {
      await tx.insert(bulkJobs).values(job);
      for (let start = 0; start < rows.length; start += rowsPerInsert) {
        await tx.insert(bulkJobDevices).values(
          rows.slice(start, start + rowsPerInsert).map((row) => ({
            jobId: job.id,
            rowNumber: row.rowNumber,
            deviceId: row.device.deviceId,
            request: row.device,
            hasCredentials: row.hasCredentials,
          })),
        );
      }
    });
  }

  async get(tenantId: string, jobId: string): Promise<BulkJob> {
    const [row] = await this.db
      .select()
      .from(bulkJobs)
      .where(and(eq(bulkJobs.id, jobId), eq(bulkJobs.tenantId, tenantId)));
    if (!row) throw new NotFoundError(`bulk job ${jobId} not found`);
    return row;
  }

  async list(tenantId: string, limit: number): Promise<BulkJob[]> {
    return this.db.select().from(bulkJobs).where(eq(bulkJobs.tenantId, tenantId)).orderBy(desc(bulkJobs.createdAt)).limit(limit);
  }

  async finish(jobId: string): Promise<void> {
    await this.db.update(bulkJobs).set({ finishedAt: new Date() }).where(eq(bulkJobs.id, jobId));
  }

  async outcomeCounts(jobId: string): Promise<BulkOutcomeCount[]> {
    const counts = await this.db
      .select({ status: bulkJobDevices.status, failedStep: bulkJobDevices.failedStep, count: sql<number>`count(*)::int` })
      .from(bulkJobDevices)
      .where(eq(bulkJobDevices.jobId, jobId))
      .groupBy(bulkJobDevices.status, bulkJobDevices.failedStep);
    return counts.map((c) => ({ ...c, count: Number(c.count) }));
  }

  /** Where a job stands when its workflow (re)starts: its counts and the devices still running. */
  async state(jobId: string): Promise<BulkJobState> {
    const counts = await this.outcomeCounts(jobId);
    const total = (status?: BulkJobDevice['status']) =>
      counts.filter((c) => status === undefined || c.status === status).reduce((sum, c) => sum + c.count, 0);
    const inFlight = await this.db
      .select({ deviceId: bulkJobDevices.deviceId, rowNumber: bulkJobDevices.rowNumber, startedAt: bulkJobDevices.startedAt })
      .from(bulkJobDevices)
      .where(and(eq(bulkJobDevices.jobId, jobId), eq(bulkJobDevices.status, 'in_progress')));
    return {
      counters: { total: total(), completed: total('completed'), failed: total('failed'), cancelled: total('cancelled') },
      inFlight: inFlight.map((row) => ({ ...row, startedAt: (row.startedAt ?? new Date()).toISOString() })),
    };
  }

  /** Every row of the job, in file order. */
  async devices(jobId: string): Promise<BulkJobDevice[]> {
    return this.db.select().from(bulkJobDevices).where(eq(bulkJobDevices.jobId, jobId)).orderBy(asc(bulkJobDevices.rowNumber));
  }

  /** Takes up to `limit` pending rows, in file order, for one dispatch. */
  async dispatch(jobId: string, dispatchId: string, limit: number): Promise<BulkRow[]> {
    const rows = await this.db.transaction(async (tx) => {
      const already = await tx
        .select()
        .from(bulkJobDevices)
        .where(and(eq(bulkJobDevices.jobId, jobId), eq(bulkJobDevices.dispatchId, dispatchId)));
      if (already.length > 0) return already;
      // Two statements, not UPDATE ... WHERE IN (SELECT ... LIMIT): PostgreSQL may evaluate such a
      // subquery more than once and so take more rows than the limit.
      const next = (
        await tx
          .select({ rowNumber: bulkJobDevices.rowNumber })
          .from(bulkJobDevices)
          .where(and(eq(bulkJobDevices.jobId, jobId), eq(bulkJobDevices.status, 'pending')))
          .orderBy(asc(bulkJobDevices.rowNumber))
          .limit(limit)
          .for('update', { skipLocked: true })
      ).map((row) => row.rowNumber);
      if (next.length === 0) return [];
      return tx
        .update(bulkJobDevices)
        .set({
          status: 'in_progress',
          dispatchId,
          attempts: sql`${bulkJobDevices.attempts} + 1`,
          startedAt: new Date(),
          finishedAt: null,
          error: null,
          failedStep: null,
        })
        .where(and(eq(bulkJobDevices.jobId, jobId), inArray(bulkJobDevices.rowNumber, next)))
        .returning();
    });
    rows.sort((a, b) => a.rowNumber - b.rowNumber);
    return rows.map((row) => ({ rowNumber: row.rowNumber, device: row.request as DeviceDescriptor, hasCredentials: row.hasCredentials }));
  }

  async recordOutcomes(jobId: string, outcomes: BulkDeviceOutcome[]): Promise<void> {
    await this.db.transaction(async (tx) => {
      for (const outcome of outcomes) {
        await tx
          .update(bulkJobDevices)
          .set({
            status: outcome.outcome,
            certificateSerial: outcome.certificateSerial ?? null,
            // Quoted from devices and operators: stored with what PostgreSQL cannot hold escaped,
            // rather than refused on every retry for as long as the job runs.
            failedStep: outcome.failedStep === undefined ? null : storableText(outcome.failedStep),
            error: outcome.error === undefined ? null : storableText(outcome.error),
            startedAt: new Date(outcome.startedAt),
            finishedAt: new Date(outcome.finishedAt),
          })
          .where(and(eq(bulkJobDevices.jobId, jobId), eq(bulkJobDevices.rowNumber, outcome.rowNumber)));
      }
    });
  }

  /** Failed rows go back to pending, to run again; returns how many. */
  async requeueFailed(jobId: string): Promise<number> {
    const rows = await this.db
      .update(bulkJobDevices)
      .set({ status: 'pending', dispatchId: null })
      .where(and(eq(bulkJobDevices.jobId, jobId), eq(bulkJobDevices.status, 'failed')))
      .returning({ rowNumber: bulkJobDevices.rowNumber });
    return rows.length;
  }

  /** Rows that never started are cancelled with the job; returns how many. */
  async cancelPending(jobId: string): Promise<number> {
    const rows = await this.db
      .update(bulkJobDevices)
      .set({ status: 'cancelled', error: 'the bulk job was cancelled before this device started', finishedAt: new Date() })
      .where(and(eq(bulkJobDevices.jobId, jobId), eq(bulkJobDevices.status, 'pending')))
      .returning({ rowNumber: bulkJobDevices.rowNumber });
    return rows.length;
  }
}
