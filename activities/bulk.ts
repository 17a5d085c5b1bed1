/**
 * The bulk job's rows are its queue: dispatching takes pending rows and marks them in progress
 * under a dispatch id (a retried dispatch returns the same rows, never loses them), outcomes are
 * written back in batches, and the report is read from the same rows.
 */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { and, asc, eq, inArray, sql } from 'drizzle-orm';
import type { Database } from '../db/client';
import { storableText } from '../foundation/validation';
import { bulkJobDevices, bulkJobs } from '../db/schema';
import type { BulkCounters, BulkDeviceOutcome } from '../workflows/bulk-definitions';
import { provisioningWorkflowId, statusQuery, type DeviceDescriptor } from '../workflows/definitions';

export interface BulkRow {
  rowNumber: number;
  device: DeviceDescriptor;
  hasCredentials: boolean;
}

export function createBulkActivities(deps: { db: Database; client: Client }) {
  const { db, client } = deps;

  return {
    async bulkJobState(input: { jobId: string }): Promise<{
      counters: BulkCounters;
      inFlight: { deviceId: string; rowNumber: number; startedAt: string }[];
    }> {
      const counts = await db
        .select({ status: bulkJobDevices.status, count: sql<number>`count(*)::int` })
        .from(bulkJobDevices)
        .where(eq(bulkJobDevices.jobId, input.jobId))
        .groupBy(bulkJobDevices.status);
      const byStatus = Object.fromEntries(counts.map((c) => [c.status, Number(c.count)]));
      const inFlight = await db
        .select({ deviceId: bulkJobDevices.deviceId, rowNumber: bulkJobDevices.rowNumber, startedAt: bulkJobDevices.startedAt })
        .from(bulkJobDevices)
        .where(and(eq(bulkJobDevices.jobId, input.jobId), eq(bulkJobDevices.status, 'in_progress')));
      return {
        counters: {
          total: Object.values(byStatus).reduce((sum, n) => sum + n, 0),
          completed: byStatus.completed ?? 0,
          failed: byStatus.failed ?? 0,
          cancelled: byStatus.cancelled ?? 0,
        },
        inFlight: inFlight.map((row) => ({ ...row, startedAt: (row.startedAt ?? new Date()).toISOString() })),
      };
    },

    /** Takes up to `limit` pending rows, in file order, for one dispatch. */
    async dispatchBulkRows(input: { jobId: string; dispatchId: string; limit: number }): Promise<{ rows: BulkRow[] }> {
      const rows = await db.transaction(async (tx) => {
        const already = await tx
          .select()
          .from(bulkJobDevices)
          .where(and(eq(bulkJobDevices.jobId, input.jobId), eq(bulkJobDevices.dispatchId, input.dispatchId)));
        if (already.length > 0) return already;
        // Two statements, not UPDATE ... WHERE IN (SELECT ... LIMIT): PostgreSQL may evaluate such a
        // subquery more than once and so take more rows than the limit.
        const next = (
          await tx
            .select({ rowNumber: bulkJobDevices.rowNumber })
            .from(bulkJobDevices)
            .where(and(eq(bulkJobDevices.jobId, input.jobId), eq(bulkJobDevices.status, 'pending')))
            .orderBy(asc(bulkJobDevices.rowNumber))
            .limit(input.limit)
            .for('update', { skipLocked: true })
        ).map((row) => row.rowNumber);
        if (next.length === 0) return [];
        return tx
          .update(bulkJobDevices)
          .set({
            status: 'in_progress',
            dispatchId: input.dispatchId,
            attempts: sql`${bulkJobDevices.attempts} + 1`,
            startedAt: new Date(),
            finishedAt: null,
            error: null,
            failedStep: null,
          })
          .where(and(eq(bulkJobDevices.jobId, input.jobId), inArray(bulkJobDevices.rowNumber, next)))
          .returning();
      });
      rows.sort((a, b) => a.rowNumber - b.rowNumber);
      return {
        rows: rows.map((row) => ({
          rowNumber: row.rowNumber,
          device: row.request as DeviceDescriptor,
          hasCredentials: row.hasCredentials,
        })),
      };
    },

    async recordBulkOutcomes(input: { jobId: string; outcomes: BulkDeviceOutcome[] }): Promise<void> {
      await db.transaction(async (tx) => {
        for (const outcome of input.outcomes) {
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
            .where(and(eq(bulkJobDevices.jobId, input.jobId), eq(bulkJobDevices.rowNumber, outcome.rowNumber)));
        }
      });
    },

    /** Failed rows go back to pending, to run again; returns how many. */
    async requeueFailedBulkRows(input: { jobId: string }): Promise<{ requeued: number }> {
      const rows = await db
        .update(bulkJobDevices)
        .set({ status: 'pending', dispatchId: null })
        .where(and(eq(bulkJobDevices.jobId, input.jobId), eq(bulkJobDevices.status, 'failed')))
        .returning({ rowNumber: bulkJobDevices.rowNumber });
      return { requeued: rows.length };
    },

    async cancelPendingBulkRows(input: { jobId: string }): Promise<{ cancelled: number }> {
      const rows = await db
        .update(bulkJobDevices)
        .set({ status: 'cancelled', error: 'the bulk job was cancelled before this device started', finishedAt: new Date() })
        .where(and(eq(bulkJobDevices.jobId, input.jobId), eq(bulkJobDevices.status, 'pending')))
        .returning({ rowNumber: bulkJobDevices.rowNumber });
      return { cancelled: rows.length };
    },

    async finishBulkJob(input: { jobId: string }): Promise<void> {
      await db.update(bulkJobs).set({ finishedAt: new Date() }).where(eq(bulkJobs.id, input.jobId));
    },

    /**
     * How children that never reported ended (an operator may have terminated one): their runs are
     * described, and closed ones become outcomes.
     */
    async findFinishedBulkChildren(input: {
      tenantId: string;
      children: { deviceId: string; rowNumber: number; startedAt: string }[];
    }): Promise<{ outcomes: BulkDeviceOutcome[] }> {
      const outcomes: BulkDeviceOutcome[] = [];
      for (const child of input.children) {
        const handle = client.workflow.getHandle(provisioningWorkflowId(input.tenantId, child.deviceId));
        try {
          const description = await handle.describe();
          if (description.status.name === 'RUNNING') continue;
          const record = await handle.query(statusQuery).catch(() => undefined);
          outcomes.push({
            rowNumber: child.rowNumber,
            deviceId: child.deviceId,
            outcome: description.status.name === 'COMPLETED' ? 'completed' : description.status.name === 'CANCELLED' ? 'cancelled' : 'failed',
            certificateSerial: record?.certificateInfo?.serialNumber,
            failedStep: record?.error?.step,
            error: record?.error?.message ?? `the provisioning run ended as ${description.status.name.toLowerCase()}`,
            startedAt: child.startedAt,
            finishedAt: (description.closeTime ?? new Date()).toISOString(),
          });
        } catch (error) {
          if (!(error instanceof WorkflowNotFoundError)) throw error;
          outcomes.push({
            rowNumber: child.rowNumber,
            deviceId: child.deviceId,
            outcome: 'failed',
            error: 'the provisioning run no longer exists',
            startedAt: child.startedAt,
            finishedAt: new Date().toISOString(),
          });
        }
      }
      return { outcomes };
    },
  };
}

export type BulkActivities = ReturnType<typeof createBulkActivities>;
