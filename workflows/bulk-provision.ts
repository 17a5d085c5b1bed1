/**
 * One bulk job: its rows (in the database, not in history) are provisioned by `provisionDevice`
 * children, at most `concurrency` at a time. Children outlive this run (they are abandoned, not
 * awaited) and report back by signal, so the job can continue as new at any moment without
 * waiting for slow devices and stays far inside Temporal's history and pending-children limits.
 */
import {
  ParentClosePolicy,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  proxyActivities,
  setHandler,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type { BulkActivities, DispatchedBulkRow } from '../activities/bulk';
import {
  bulkDeviceFinishedSignal,
  bulkProgressQuery,
  cancelBulkSignal,
  maximumBulkConcurrency,
  pauseBulkSignal,
  resumeBulkSignal,
  retryFailedBulkSignal,
  setBulkConcurrencySignal,
  type BulkCarriedState,
  type BulkDeviceOutcome,
  type BulkProgress,
  type BulkProvisionInput,
  type BulkRow,
} from '../contracts/bulk';
import {
  cancelSignal,
  provisioningSearchAttributes as attributes,
  provisioningWorkflowId,
  startProvisioning,
  type ProvisionDeviceInput,
} from '../contracts/provisioning';
import type { provisionDevice } from './provision-device';

const jobStore = proxyActivities<BulkActivities>({
  startToCloseTimeout: '2m',
  // The activities heartbeat: one whose worker died is retried in seconds, not minutes.
  heartbeatTimeout: '10s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s' },
});

/** Rows taken from the queue per dispatch; bounded so one activity result stays small. */
const dispatchBatch = 250;
/** Outcomes written to the job's rows per batch. */
const outcomeBatch = 250;
/** Without news from children for this long, ask Temporal which ones ended without telling us. */
const reconcileAfterMs = 5 * 60_000;
/** Continue as new well before the history grows large. */
const defaultEventsPerRun = 20_000;

export async function bulkProvision(input: BulkProvisionInput): Promise<BulkProgress> {
  const info = workflowInfo();
  const eventsPerRun = input.eventsPerRun ?? defaultEventsPerRun;
  // Handlers are registered before anything is awaited, so a query or signal never finds the job
  // without them; a fresh job's counts are loaded right after.
  const state: BulkCarriedState = input.state ?? emptyState(input);
  /** When the current stretch of running (not paused) time began. */
  let activeSinceMs = Date.now();
  let pendingOutcomes: BulkDeviceOutcome[] = [];
  let retryRequested = false;
  let cancelRequested: string | undefined;
  let wake = false;
  let lastNewsMs = Date.now();
  const childStarts = new Set<Promise<void>>();

  const activeSeconds = () => state.activeSecondsBefore + (state.paused ? 0 : (Date.now() - activeSinceMs) / 1000);
  const finished = () => state.counters.completed + state.counters.failed + state.counters.cancelled;
  const progress = (): BulkProgress => {
    const inProgress = Object.keys(state.inFlight).length;
    const seconds = activeSeconds();
    const ratePerSecond = seconds > 0 ? (finished() - state.finishedBefore) / seconds : 0;
    const remaining = state.counters.total - finished();
    return {
      jobId: input.jobId,
      state: state.cancelling ? 'cancelling' : state.paused ? 'paused' : 'running',
      ...state.counters,
      pending: Math.max(0, remaining - inProgress),
      inProgress,
      concurrency: state.concurrency,
      stepFailures: state.stepFailures,
      ratePerSecond: Math.round(ratePerSecond * 100) / 100,
      ...(ratePerSecond > 0 ? { estimatedSecondsRemaining: Math.round(remaining / ratePerSecond) } : {}),
      startedAt: state.startedAt,
    };
  };

  function finish(outcome: BulkDeviceOutcome) {
    const flight = state.inFlight[outcome.deviceId];
    // A late or repeated report (e.g. after reconciliation already counted it) is ignored.
    if (!flight || flight.rowNumber !== outcome.rowNumber) return;
    delete state.inFlight[outcome.deviceId];
    state.counters[outcome.outcome] += 1;
    if (outcome.outcome === 'failed' && outcome.failedStep) {
      state.stepFailures[outcome.failedStep] = (state.stepFailures[outcome.failedStep] ?? 0) + 1;
    }
    pendingOutcomes.push(outcome);
    lastNewsMs = Date.now();
    wake = true;
  }

  setHandler(bulkProgressQuery, progress);
  setHandler(bulkDeviceFinishedSignal, finish);
  setHandler(pauseBulkSignal, () => {
    if (!state.paused) state.activeSecondsBefore = activeSeconds();
    state.paused = true;
    wake = true;
  });
  setHandler(resumeBulkSignal, () => {
    if (state.paused) activeSinceMs = Date.now();
    state.paused = false;
    wake = true;
  });
  setHandler(setBulkConcurrencySignal, (concurrency) => {
    if (Number.isInteger(concurrency) && concurrency >= 1) state.concurrency = Math.min(concurrency, maximumBulkConcurrency);
    wake = true;
  });
  setHandler(retryFailedBulkSignal, () => {
    retryRequested = true;
    wake = true;
  });
  setHandler(cancelBulkSignal, (reason) => {
    cancelRequested = reason ?? 'bulk job cancelled';
    wake = true;
  });

  upsertSearchAttributes([
    { key: attributes.tenantId, value: input.tenantId },
    { key: attributes.bulkJobId, value: input.jobId },
    { key: attributes.method, value: 'bulk' },
  ]);
  if (!input.state) {
    const loaded = await jobStore.bulkJobState({ jobId: input.jobId });
    state.counters = loaded.counters;
    state.finishedBefore = loaded.counters.completed + loaded.counters.failed + loaded.counters.cancelled;
    // Devices still running from an earlier run of this job report here; a report that raced this
    // load is recovered by reconciliation.
    for (const row of loaded.inFlight) state.inFlight[row.deviceId] = { rowNumber: row.rowNumber, startedAt: row.startedAt };
    if (input.retryFailed) retryRequested = true;
  }

  async function flushOutcomes() {
    while (pendingOutcomes.length > 0) {
      const batch = pendingOutcomes.slice(0, outcomeBatch);
      await jobStore.recordBulkOutcomes({ jobId: input.jobId, outcomes: batch });
      pendingOutcomes = pendingOutcomes.slice(batch.length);
    }
  }

  async function dispatch(): Promise<boolean> {
    const free = state.concurrency - Object.keys(state.inFlight).length;
    if (free <= 0 || state.paused || state.cancelling) return false;
    state.dispatchSequence += 1;
    const { rows } = await jobStore.dispatchBulkRows({
      job: {
        jobId: input.jobId,
        tenantId: input.tenantId,
        templateId: input.templateId,
        templateVersion: input.templateVersion,
        options: input.options,
        requestedBy: input.requestedBy,
        workflowId: info.workflowId,
      },
      // Unique per job lifetime (a re-run of a finished job starts a new chain of runs).
      dispatchId: `${info.workflowId}/${info.firstExecutionRunId}/${state.dispatchSequence}`,
      limit: Math.min(free, dispatchBatch),
    });
    const startedAt = new Date().toISOString();
    // Not awaited: waiting for every child's start event before taking the next rows would let the
    // window drain while the server is busy; starts are awaited only before continuing as new.
    for (const row of rows) {
      const run = plannedRun(row, input, info.workflowId);
      const { deviceId } = run.device;
      const starting = (async () => {
        state.inFlight[deviceId] = { rowNumber: row.rowNumber, startedAt };
        try {
          await startChild<typeof provisionDevice>('provisionDevice', {
            ...startProvisioning(run),
            parentClosePolicy: ParentClosePolicy.ABANDON,
          });
        } catch (error) {
          if (!(error instanceof WorkflowExecutionAlreadyStartedError)) throw error;
          finish({
            rowNumber: row.rowNumber,
            deviceId,
            outcome: 'failed',
            error: 'the device is already provisioned, or being provisioned by another request',
            startedAt,
            finishedAt: new Date().toISOString(),
          });
        }
      })();
      childStarts.add(starting);
      void starting.finally(() => childStarts.delete(starting));
    }
    return rows.length > 0;
  }

  async function cancelEverything(reason: string) {
    state.cancelling = true;
    const { cancelled } = await jobStore.cancelPendingBulkRows({ jobId: input.jobId });
    state.counters.cancelled += cancelled;
    await Promise.all(
      Object.keys(state.inFlight).map((deviceId) =>
        getExternalWorkflowHandle(provisioningWorkflowId(input.tenantId, deviceId))
          .signal(cancelSignal, reason)
          .catch(() => undefined),
      ),
    );
  }

  for (;;) {
    wake = false;
    if (cancelRequested && !state.cancelling) await cancelEverything(cancelRequested);
    if (retryRequested && !state.cancelling) {
      retryRequested = false;
      const { requeued } = await jobStore.requeueFailedBulkRows({ jobId: input.jobId });
      state.counters.failed -= requeued;
      state.stepFailures = {};
    }
    while (await dispatch()) {
      if (workflowInfo().historyLength > eventsPerRun) break;
    }
    if (pendingOutcomes.length >= outcomeBatch || (pendingOutcomes.length > 0 && !wake)) await flushOutcomes();

    const inFlight = Object.keys(state.inFlight).length;
    if (inFlight === 0 && finished() >= state.counters.total) break;
    if (inFlight === 0 && state.cancelling) break;

    if (workflowInfo().continueAsNewSuggested || workflowInfo().historyLength > eventsPerRun) {
      await Promise.all(childStarts);
      await flushOutcomes();
      state.activeSecondsBefore = activeSeconds();
      await continueAsNew<typeof bulkProvision>({ ...input, retryFailed: false, state });
    }

    const news = await condition(() => wake, reconcileAfterMs);
    if (!news && Date.now() - lastNewsMs >= reconcileAfterMs && inFlight > 0) {
      // Children that were terminated never report; ask Temporal how they ended.
      const { outcomes } = await jobStore.findFinishedBulkChildren({
        tenantId: input.tenantId,
        children: Object.entries(state.inFlight).map(([deviceId, flight]) => ({ deviceId, ...flight })),
      });
      outcomes.forEach(finish);
      lastNewsMs = Date.now();
    }
  }

  await Promise.all(childStarts);
  await flushOutcomes();
  await jobStore.finishBulkJob({ jobId: input.jobId });
  return { ...progress(), state: 'finished' };
}

/**
 * The run a dispatched row starts, as the activity planned it. Dispatches recorded before rows were
 * planned carry the device alone; such a row runs as every bulk device did then.
 */
function plannedRun(row: DispatchedBulkRow | BulkRow, input: BulkProvisionInput, workflowId: string): ProvisionDeviceInput {
  if ('input' in row) return row.input;
  return {
    tenantId: input.tenantId,
    device: row.device,
    provisioningMethod: 'bulk',
    templateId: input.templateId,
    options: input.options,
    hasInitialCredentials: row.hasCredentials,
    bulkJobId: input.jobId,
    bulkParent: { workflowId, rowNumber: row.rowNumber },
    requestedBy: input.requestedBy,
  };
}

function emptyState(input: BulkProvisionInput): BulkCarriedState {
  return {
    counters: { total: 0, completed: 0, failed: 0, cancelled: 0 },
    inFlight: {},
    stepFailures: {},
    concurrency: Math.min(Math.max(1, input.concurrency), maximumBulkConcurrency),
    paused: false,
    cancelling: false,
    activeSecondsBefore: 0,
    finishedBefore: 0,
    dispatchSequence: 0,
    startedAt: new Date().toISOString(),
  };
}
