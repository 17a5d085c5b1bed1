/**
 * What the API, the CLI and the bulk workflow agree on: its input, the progress query and the
 * signals operators steer a job with. Deterministic imports only.
 */
import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { DeviceDescriptor, ProvisionDeviceInput, ProvisioningStepName } from './provisioning';

export interface BulkCounters {
  total: number;
  completed: number;
  failed: number;
  cancelled: number;
}

/** What a run hands on to the next when it continues as new. */
export interface BulkCarriedState {
  counters: BulkCounters;
  /** deviceId → the row it came from, for every child still running. */
  inFlight: Record<string, { rowNumber: number; startedAt: string }>;
  stepFailures: Partial<Record<ProvisioningStepName, number>>;
  concurrency: number;
  paused: boolean;
  cancelling: boolean;
  /** Seconds spent running (not paused) before this run, for the rate. */
  activeSecondsBefore: number;
  /** Devices already finished when this job's current lifetime began (a re-run), for the rate. */
  finishedBefore: number;
  dispatchSequence: number;
  startedAt: string;
}

export interface BulkProvisionInput {
  jobId: string;
  tenantId: string;
  templateId: string;
  /** The template version judged when the file was imported; absent for jobs imported before versions were pinned. */
  templateVersion?: number;
  options: ProvisionDeviceInput['options'];
  requestedBy: string;
  concurrency: number;
  /** History events per run before continuing as new (default 20,000; small values exercise it). */
  eventsPerRun?: number;
  /** A later run of a finished job: put its failed devices back in the queue first. */
  retryFailed?: boolean;
  state?: BulkCarriedState;
}

/** Where a job stands when its workflow (re)starts: its counts and the devices still running. */
export interface BulkJobState {
  counters: BulkCounters;
  inFlight: { deviceId: string; rowNumber: number; startedAt: string }[];
}

/** A row of the job's file as queued: the device without its credentials, which the vault holds. */
export interface BulkRow {
  /** The row's line in the file. */
  rowNumber: number;
  device: DeviceDescriptor;
  hasCredentials: boolean;
}

/** A child tells its bulk job how it ended (children outlive the parent's runs, so they signal). */
export interface BulkDeviceOutcome {
  rowNumber: number;
  deviceId: string;
  outcome: 'completed' | 'failed' | 'cancelled';
  certificateSerial?: string;
  failedStep?: ProvisioningStepName;
  error?: string;
  startedAt: string;
  finishedAt: string;
}

export interface BulkProgress extends BulkCounters {
  jobId: string;
  state: 'running' | 'paused' | 'cancelling' | 'finished';
  pending: number;
  inProgress: number;
  concurrency: number;
  stepFailures: Partial<Record<ProvisioningStepName, number>>;
  /** Devices finished per second of running time. */
  ratePerSecond: number;
  estimatedSecondsRemaining?: number;
  startedAt: string;
  /**
   * Set when a running job's workflow did not answer in time (a worker replaying its runs after a
   * restart, or none polling): the counts are the job's recorded rows, which trail the workflow by
   * a batch of outcomes (longer while it catches up), and `state` says only that it runs (not
   * whether it is paused).
   */
  answeredFrom?: 'records';
}

export const bulkProgressQuery = defineQuery<BulkProgress>('progress');
export const bulkDeviceFinishedSignal = defineSignal<[BulkDeviceOutcome]>('deviceFinished');
export const pauseBulkSignal = defineSignal<[]>('pause');
export const resumeBulkSignal = defineSignal<[]>('resume');
/** Stops dispatching, cancels the devices in flight (they revoke what they issued) and ends the job. */
export const cancelBulkSignal = defineSignal<[reason?: string]>('cancel');
export const setBulkConcurrencySignal = defineSignal<[concurrency: number]>('setConcurrency');
/** Puts the job's failed devices back in the queue; each runs again as a new provisioning run. */
export const retryFailedBulkSignal = defineSignal<[]>('retryFailed');

export const maximumBulkConcurrency = 2_000;

export function bulkWorkflowId(tenantId: string, jobId: string): string {
  return `bulk:${tenantId}:${jobId}`;
}
