/**
 * Bulk jobs once started: their progress (the job workflow's `progress` query, or the rows
 * themselves once the job has ended), the operator's controls, and the per-device report.
 */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { and, asc, desc, eq, sql } from 'drizzle-orm';
import type { Database } from '../db/client';
import { bulkJobDevices, bulkJobs, type BulkJobRow } from '../db/schema';
import { ConflictError, DependencyUnavailableError, NotFoundError } from '../foundation/errors';
import {
  bulkProgressQuery,
  bulkWorkflowId,
  cancelBulkSignal,
  pauseBulkSignal,
  resumeBulkSignal,
  retryFailedBulkSignal,
  setBulkConcurrencySignal,
  type BulkProgress,
} from '../workflows/bulk-definitions';
import type { BulkImporter } from './bulk-import';

export interface BulkJobView {
  jobId: string;
  fileName: string;
  templateId: string;
  rowCount: number;
  requestedBy: string;
  createdAt: string;
  finishedAt: string | null;
  progress: BulkProgress;
}

export interface BulkReportRow {
  line: number;
  deviceId: string;
  serialNumber: string;
  macAddress: string;
  site: string;
  outcome: string;
  attempts: number;
  certificateSerial: string | null;
  failedStep: string | null;
  error: string | null;
  startedAt: string | null;
  finishedAt: string | null;
  durationMs: number | null;
}

export const bulkReportColumns: (keyof BulkReportRow)[] = [
  'line',
  'deviceId',
  'serialNumber',
  'macAddress',
  'site',
  'outcome',
  'attempts',
  'certificateSerial',
  'failedStep',
  'error',
  'startedAt',
  'finishedAt',
  'durationMs',
];

type Control = 'pause' | 'resume' | 'cancel' | 'retry-failed';

export class BulkJobs {
  constructor(private readonly deps: { db: Database; client: Client; importer: BulkImporter }) {}

  private async job(tenantId: string, jobId: string): Promise<BulkJobRow> {
    const [row] = await this.deps.db
      .select()
      .from(bulkJobs)
      .where(and(eq(bulkJobs.id, jobId), eq(bulkJobs.tenantId, tenantId)));
    if (!row) throw new NotFoundError(`bulk job ${jobId} not found`);
    return row;
  }

  private handle(tenantId: string, jobId: string) {
    return this.deps.client.workflow.getHandle(bulkWorkflowId(tenantId, jobId));
  }

  async list(tenantId: string, limit = 50): Promise<BulkJobRow[]> {
    return this.deps.db.select().from(bulkJobs).where(eq(bulkJobs.tenantId, tenantId)).orderBy(desc(bulkJobs.createdAt)).limit(limit);
  }

  async view(tenantId: string, jobId: string): Promise<BulkJobView> {
    const job = await this.job(tenantId, jobId);
    return {
      jobId: job.id,
      fileName: job.fileName,
      templateId: job.templateId,
      rowCount: job.rowCount,
      requestedBy: job.requestedBy,
      createdAt: job.createdAt.toISOString(),
      finishedAt: job.finishedAt?.toISOString() ?? null,
      progress: await this.progress(job),
    };
  }

  /** Live from the job's workflow while it runs; from the rows once it has finished. */
  private async progress(job: BulkJobRow): Promise<BulkProgress> {
    const handle = this.handle(job.tenantId, job.id);
    try {
      const description = await handle.describe();
      if (description.status.name === 'RUNNING') return await handle.query(bulkProgressQuery);
    } catch (error) {
      if (!(error instanceof WorkflowNotFoundError)) {
        throw new DependencyUnavailableError(`the workflow service could not answer: ${(error as Error).message}`);
      }
    }
    const counts = await this.deps.db
      .select({ status: bulkJobDevices.status, count: sql<number>`count(*)::int`, failedStep: bulkJobDevices.failedStep })
      .from(bulkJobDevices)
      .where(eq(bulkJobDevices.jobId, job.id))
      .groupBy(bulkJobDevices.status, bulkJobDevices.failedStep);
    const total = (status: string) => counts.filter((c) => c.status === status).reduce((sum, c) => sum + Number(c.count), 0);
    const stepFailures: BulkProgress['stepFailures'] = {};
    for (const c of counts) {
      if (c.status === 'failed' && c.failedStep) {
        stepFailures[c.failedStep as keyof BulkProgress['stepFailures']] = Number(c.count);
      }
    }
    const options = job.options as { concurrency?: number };
    return {
      jobId: job.id,
      state: 'finished',
      total: job.rowCount,
      completed: total('completed'),
      failed: total('failed'),
      cancelled: total('cancelled'),
      pending: total('pending'),
      inProgress: total('in_progress'),
      concurrency: options.concurrency ?? 0,
      stepFailures,
      ratePerSecond: 0,
      startedAt: job.createdAt.toISOString(),
    };
  }

  async control(tenantId: string, jobId: string, control: Control, reason?: string): Promise<void> {
    const job = await this.job(tenantId, jobId);
    const handle = this.handle(tenantId, jobId);
    const running = await handle
      .describe()
      .then((d) => d.status.name === 'RUNNING')
      .catch(() => false);
    if (!running) {
      // A finished job can only be asked to try its failed devices again: that is a new run.
      if (control !== 'retry-failed') throw new ConflictError(`bulk job ${jobId} has finished`);
      const options = job.options as { concurrency: number; skipCertificateGeneration: boolean; autoActivate: boolean };
      await this.deps.importer.start(
        {
          tenantId,
          templateId: job.templateId,
          concurrency: options.concurrency,
          options: { skipCertificateGeneration: options.skipCertificateGeneration, autoActivate: options.autoActivate },
          requestedBy: job.requestedBy,
        },
        jobId,
        true,
      );
      return;
    }
    if (control === 'pause') await handle.signal(pauseBulkSignal);
    else if (control === 'resume') await handle.signal(resumeBulkSignal);
    else if (control === 'cancel') await handle.signal(cancelBulkSignal, reason);
    else await handle.signal(retryFailedBulkSignal);
  }

  async setConcurrency(tenantId: string, jobId: string, concurrency: number): Promise<void> {
    await this.job(tenantId, jobId);
    await this.handle(tenantId, jobId)
      .signal(setBulkConcurrencySignal, concurrency)
      .catch(() => {
        throw new ConflictError(`bulk job ${jobId} has finished`);
      });
  }

  async report(tenantId: string, jobId: string): Promise<BulkReportRow[]> {
    await this.job(tenantId, jobId);
    const rows = await this.deps.db
      .select()
      .from(bulkJobDevices)
      .where(eq(bulkJobDevices.jobId, jobId))
      .orderBy(asc(bulkJobDevices.rowNumber));
    return rows.map((row) => {
      const request = row.request as { serialNumber: string; macAddress: string; site: string };
      return {
        line: row.rowNumber,
        deviceId: row.deviceId,
        serialNumber: request.serialNumber,
        macAddress: request.macAddress,
        site: request.site,
        outcome: row.status,
        attempts: row.attempts,
        certificateSerial: row.certificateSerial,
        failedStep: row.failedStep,
        error: row.error,
        startedAt: row.startedAt?.toISOString() ?? null,
        finishedAt: row.finishedAt?.toISOString() ?? null,
        durationMs: row.startedAt && row.finishedAt ? row.finishedAt.getTime() - row.startedAt.getTime() : null,
      };
    });
  }
}
