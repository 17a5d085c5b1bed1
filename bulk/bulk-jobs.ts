/**
 * Bulk jobs once started: their progress (the job workflow's `progress` query, or the rows
 * themselves once the job has ended), the operator's controls, and the per-device report.
 */
import type { Client } from '@temporalio/client';
import { ConflictError } from '../foundation/errors';
import { fromWorkflowError, isWorkflowNotFound } from '../foundation/workflow-errors';
import {
  bulkProgressQuery,
  bulkWorkflowId,
  cancelBulkSignal,
  pauseBulkSignal,
  resumeBulkSignal,
  retryFailedBulkSignal,
  setBulkConcurrencySignal,
  type BulkProgress,
} from '../contracts/bulk';
import type { BulkImporter } from './bulk-import';
import type { BulkJob, BulkJobSettings, BulkJobStore } from './bulk-job-store';

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

/**
 * How long the job's workflow has to answer its progress query. A worker that has just started
 * again replays every run in flight before it answers; meanwhile the job's recorded rows answer.
 */
const defaultProgressQueryTimeoutMs = 5_000;

export class BulkJobs {
  constructor(
    private readonly deps: { store: BulkJobStore; client: Client; importer: BulkImporter; progressQueryTimeoutMs?: number },
  ) {}

  private handle(tenantId: string, jobId: string) {
    return this.deps.client.workflow.getHandle(bulkWorkflowId(tenantId, jobId));
  }

  async list(tenantId: string, limit = 50): Promise<BulkJob[]> {
    return this.deps.store.list(tenantId, limit);
  }

  async view(tenantId: string, jobId: string): Promise<BulkJobView> {
    const job = await this.deps.store.get(tenantId, jobId);
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

  /**
   * Live from the job's workflow while it runs; from the rows once it has finished, and while it
   * runs but cannot answer in time (its worker catching up after a restart, or none polling).
   */
  private async progress(job: BulkJob): Promise<BulkProgress> {
    const handle = this.handle(job.tenantId, job.id);
    let running = false;
    try {
      running = (await handle.describe()).status.name === 'RUNNING';
    } catch (error) {
      if (!isWorkflowNotFound(error)) throw fromWorkflowError(error, { what: `bulk job ${job.id}` });
    }
    if (running) {
      const deadline = Date.now() + (this.deps.progressQueryTimeoutMs ?? defaultProgressQueryTimeoutMs);
      const live = await this.deps.client
        .withDeadline(deadline, () => handle.query(bulkProgressQuery))
        .catch(() => undefined);
      if (live) return live;
    }
    return this.recordedProgress(job, running);
  }

  /** What the job's rows say; they trail a running job's workflow by a batch of outcomes. */
  private async recordedProgress(job: BulkJob, running: boolean): Promise<BulkProgress> {
    const counts = await this.deps.store.outcomeCounts(job.id);
    const total = (status: string) => counts.filter((c) => c.status === status).reduce((sum, c) => sum + c.count, 0);
    const stepFailures: BulkProgress['stepFailures'] = {};
    for (const c of counts) {
      if (c.status === 'failed' && c.failedStep) {
        stepFailures[c.failedStep as keyof BulkProgress['stepFailures']] = c.count;
      }
    }
    const settings = job.options as Partial<BulkJobSettings>;
    return {
      jobId: job.id,
      state: running ? 'running' : 'finished',
      ...(running ? { answeredFrom: 'records' as const } : {}),
      total: job.rowCount,
      completed: total('completed'),
      failed: total('failed'),
      cancelled: total('cancelled'),
      pending: total('pending'),
      inProgress: total('in_progress'),
      concurrency: settings.concurrency ?? 0,
      stepFailures,
      ratePerSecond: 0,
      startedAt: job.createdAt.toISOString(),
    };
  }

  async control(tenantId: string, jobId: string, control: Control, reason?: string): Promise<void> {
    const job = await this.deps.store.get(tenantId, jobId);
    const handle = this.handle(tenantId, jobId);
    const running = await handle
      .describe()
      .then((d) => d.status.name === 'RUNNING')
      .catch(() => false);
    if (!running) {
      // A finished job can only be asked to try its failed devices again: that is a new run.
      if (control !== 'retry-failed') throw new ConflictError(`bulk job ${jobId} has finished`);
      await this.deps.importer.start(job, true);
      return;
    }
    if (control === 'pause') await handle.signal(pauseBulkSignal);
    else if (control === 'resume') await handle.signal(resumeBulkSignal);
    else if (control === 'cancel') await handle.signal(cancelBulkSignal, reason);
    else await handle.signal(retryFailedBulkSignal);
  }

  async setConcurrency(tenantId: string, jobId: string, concurrency: number): Promise<void> {
    await this.deps.store.get(tenantId, jobId);
    await this.handle(tenantId, jobId)
      .signal(setBulkConcurrencySignal, concurrency)
      .catch(() => {
        throw new ConflictError(`bulk job ${jobId} has finished`);
      });
  }

  async report(tenantId: string, jobId: string): Promise<BulkReportRow[]> {
    await this.deps.store.get(tenantId, jobId);
    const rows = await this.deps.store.devices(jobId);
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
