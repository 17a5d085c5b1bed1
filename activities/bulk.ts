/**
 * Activities of a bulk job: its rows are its queue (kept by the job store), each dispatched row's
 * run is planned as every provisioning run is, and children that never reported are asked after.
 */
import type { Client } from '@temporalio/client';
import { isWorkflowNotFound } from '../foundation/workflow-errors';
import type { ProvisioningPlanner } from '../provisioning/planner';
import type { BulkDeviceOutcome, BulkJobState, BulkProvisionInput, BulkRow } from '../contracts/bulk';
import { provisioningWorkflowId, statusQuery, type ProvisionDeviceInput } from '../contracts/provisioning';
import { heartbeatingAll } from './step';

/** A job's rows, as its store (bulk/bulk-job-store.ts) keeps them. */
export interface BulkJobQueue {
  state(jobId: string): Promise<BulkJobState>;
  /** Up to `limit` pending rows, in file order; the same rows again for a dispatch id already used. */
  dispatch(jobId: string, dispatchId: string, limit: number): Promise<BulkRow[]>;
  recordOutcomes(jobId: string, outcomes: BulkDeviceOutcome[]): Promise<void>;
  requeueFailed(jobId: string): Promise<number>;
  cancelPending(jobId: string): Promise<number>;
  finish(jobId: string): Promise<void>;
}

/** A row taken for one dispatch, with the run planned for its device. */
export interface DispatchedBulkRow {
  rowNumber: number;
  input: ProvisionDeviceInput;
}

/** What each dispatched row's run is planned with: the job as its workflow knows it. */
export type BulkJobPlan = Pick<BulkProvisionInput, 'jobId' | 'tenantId' | 'templateId' | 'templateVersion' | 'options' | 'requestedBy'> & {
  /** The job's workflow, which each run reports to. */
  workflowId: string;
};

export function createBulkActivities(deps: { store: BulkJobQueue; planner: Pick<ProvisioningPlanner, 'planProvisioning'>; client: Client }) {
  const { store, planner, client } = deps;

  // A dispatch plans up to a few hundred runs: a worker that dies meanwhile is noticed by its silence.
  return heartbeatingAll({
    async bulkJobState(input: { jobId: string }): Promise<BulkJobState> {
      return store.state(input.jobId);
    },

    /** Takes up to `limit` pending rows, in file order, and plans each one's run. */
    async dispatchBulkRows(input: { job: BulkJobPlan; dispatchId: string; limit: number }): Promise<{ rows: DispatchedBulkRow[] }> {
      const { job } = input;
      const rows = await store.dispatch(job.jobId, input.dispatchId, input.limit);
      const inputs = await planner.planProvisioning({
        tenantId: job.tenantId,
        templateId: job.templateId,
        templateVersion: job.templateVersion,
        provisioningMethod: 'bulk',
        options: job.options,
        requestedBy: job.requestedBy,
        bulkJob: { jobId: job.jobId, workflowId: job.workflowId },
        devices: rows.map((row) => ({ device: row.device, hasInitialCredentials: row.hasCredentials, rowNumber: row.rowNumber })),
      });
      return { rows: rows.map((row, index) => ({ rowNumber: row.rowNumber, input: inputs[index]! })) };
    },

    async recordBulkOutcomes(input: { jobId: string; outcomes: BulkDeviceOutcome[] }): Promise<void> {
      await store.recordOutcomes(input.jobId, input.outcomes);
    },

    /** Failed rows go back to pending, to run again; returns how many. */
    async requeueFailedBulkRows(input: { jobId: string }): Promise<{ requeued: number }> {
      return { requeued: await store.requeueFailed(input.jobId) };
    },

    async cancelPendingBulkRows(input: { jobId: string }): Promise<{ cancelled: number }> {
      return { cancelled: await store.cancelPending(input.jobId) };
    },

    async finishBulkJob(input: { jobId: string }): Promise<void> {
      await store.finish(input.jobId);
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
          if (!isWorkflowNotFound(error)) throw error;
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
  });
}

export type BulkActivities = ReturnType<typeof createBulkActivities>;
