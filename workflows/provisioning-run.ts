/**
 * The bookkeeping of one provisioning run, beside `provisionDevice` so that the workflow reads as
 * its steps: the record the `status` query answers with and the signals that steer it, the status
 * search attribute, metrics, the audit trail, the approval wait's escalation, and the report to a
 * bulk job. Everything here is deterministic workflow code.
 */
import {
  ApplicationFailure,
  CancellationScope,
  CancelledFailure,
  condition,
  getExternalWorkflowHandle,
  isCancellation,
  log,
  patched,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
  type ActivityInterfaceFor,
  type ActivityOptions,
} from '@temporalio/workflow';
import type { ProvisioningActivities } from '../activities/provisioning';
import { awaitApproval } from './approval';
import { bulkDeviceFinishedSignal, type BulkDeviceOutcome } from '../contracts/bulk';
import {
  activateSignal,
  cancelSignal,
  provisioningSearchAttributes as attributes,
  provisioningStepActivities,
  provisioningStepNames,
  statusQuery,
  type ApprovalRequirement,
  type CertificateInfo,
  type DeviceProvisioningRecord,
  type ProvisionDeviceInput,
  type ProvisioningStatus,
  type ProvisioningStepName,
} from '../contracts/provisioning';
import { attemptsOf, describeFailure, failureType, isFailureForGood } from './failures';
import { activityRoute, callLocalFirst, type ActivityRoute } from './local-first';
import { recordProvisioningRun, recordStepAttempts, type ProvisioningOutcome, type ProvisioningRunLabels } from './metrics';

/** Marks runs that archive their final record in the database as they close. */
const archivesItsRecord = 'archives-its-record';

/** The identify step's word on the device's firmware, and the approval it needs, if any. */
type FirmwareJudged = NonNullable<Awaited<ReturnType<ProvisioningActivities['identifyDevice']>>['firmware']>;

/** Marks runs that go on when an audit event is refused for good (the activity put the refusal on record). */
const refusedAuditEventDoesNotStopRun = 'refused-audit-event-does-not-stop-run';

/** Record keeping (audit, escalation): must not be lost, but never worth failing a run over quickly. */
const bookkeepingOptions: ActivityOptions = {
  startToCloseTimeout: '30s',
  scheduleToCloseTimeout: '1h',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m' },
};
const bookkeeping = proxyActivities<ProvisioningActivities>(bookkeepingOptions);

/** The steps an activity performs, and the activity each one names in `provisioningStepActivities`. */
type PerformedStep = Exclude<ProvisioningStepName, 'approval'>;
type StepActivity<S extends PerformedStep> = (typeof provisioningStepActivities)[S];
type Activities = ActivityInterfaceFor<ProvisioningActivities>;
/** Where a step's activity runs: see `ProvisionDeviceInput.stepsLocalFirst`. */
export type StepRoute = ActivityRoute<ProvisioningActivities>;

export class ProvisioningRun {
  readonly record: DeviceProvisioningRecord;
  /** Where the steps run: cancelled by the `cancel` signal, as by a workflow cancellation. */
  readonly scope = new CancellationScope();
  readonly #input: ProvisionDeviceInput;
  readonly #metricLabels: ProvisioningRunLabels;
  #activationRequested: boolean;
  /** Audit events and the archive: locally first in unattended runs, as their steps. */
  readonly #records: StepRoute;

  /** Registers the `status` query and the `activate` and `cancel` signals before anything is awaited. */
  constructor(input: ProvisionDeviceInput) {
    const { device } = input;
    const info = workflowInfo();
    this.#input = input;
    this.#metricLabels = { tenant: input.tenantId, method: input.provisioningMethod, protocol: device.protocol };
    this.#activationRequested = input.options.autoActivate;
    this.#records = activityRoute<ProvisioningActivities>(bookkeepingOptions, input.stepsLocalFirst === true, '10s');
    this.record = {
      id: info.workflowId,
      tenantId: input.tenantId,
      deviceId: device.deviceId,
      provisioningMethod: input.provisioningMethod,
      status: 'pending',
      configurationTemplate: input.templateId,
      provisioningSteps: provisioningStepNames.map((step) => ({ step, status: 'pending', retryCount: 0 })),
      metadata: {
        ...input.metadata,
        serialNumber: device.serialNumber,
        macAddress: device.macAddress,
        address: device.address,
        protocol: device.protocol,
        site: device.site,
        ...(input.bulkJobId ? { bulkJobId: input.bulkJobId } : {}),
        ...(input.requestedBy ? { requestedBy: input.requestedBy } : {}),
      },
      createdAt: info.startTime.toISOString(),
    };
    setHandler(statusQuery, () => this.record);
    setHandler(activateSignal, () => {
      this.#activationRequested = true;
    });
    setHandler(cancelSignal, (reason) => {
      this.record.metadata.cancellationReason = reason ?? 'cancelled by operator';
      this.scope.cancel();
    });
  }

  async begin(): Promise<void> {
    this.#setStatus('in_progress');
    await this.#audit('provisioning.started', 'success', this.#input.requestedBy ?? 'workflow', {
      method: this.#input.provisioningMethod,
      templateId: this.#input.templateId,
    });
  }

  /**
   * Runs the step's activity (the one `provisioningStepActivities` names) where `route` says,
   * recording its attempts, local and regular, and its outcome. `performedBy`, when given, does the
   * step instead, with activities of its own (still one step on record).
   */
  async step<S extends PerformedStep>(
    name: S,
    route: StepRoute,
    input: Parameters<Activities[StepActivity<S>]>[0],
    performedBy?: () => Promise<Awaited<ReturnType<Activities[StepActivity<S>]>>>,
  ): Promise<Awaited<ReturnType<Activities[StepActivity<S>]>>> {
    type Result = Awaited<ReturnType<Activities[StepActivity<S>]>>;
    const perform = (activities: Activities) =>
      performedBy ? performedBy() : (activities[provisioningStepActivities[name]] as (input: unknown) => Promise<Result>)(input);
    const entry = this.#stepEntry(name);
    entry.status = 'in_progress';
    entry.startedAt = new Date().toISOString();
    let localAttempts = 0;
    try {
      const result = await callLocalFirst(route, perform, (attempts) => {
        localAttempts = attempts;
        entry.retryCount = attempts;
      });
      entry.status = 'completed';
      entry.retryCount = localAttempts + result.attempt - 1;
      recordStepAttempts(this.#metricLabels, name, 'completed', entry.retryCount);
      return result;
    } catch (error) {
      entry.status = 'failed';
      entry.error = describeFailure(error);
      entry.retryCount = Math.max(0, localAttempts + attemptsOf(error) - 1);
      recordStepAttempts(this.#metricLabels, name, isCancellation(error) ? 'cancelled' : 'failed', entry.retryCount);
      throw error;
    } finally {
      entry.completedAt = new Date().toISOString();
    }
  }

  skip(...names: ProvisioningStepName[]): void {
    for (const name of names) this.#stepEntry(name).status = 'skipped';
  }

  /** The approval step: waits for an approver's decision, escalating when nobody decides in time. */
  async awaitApproval(requirement: ApprovalRequirement): Promise<void> {
    const { tenantId, device } = this.#input;
    const provisioningId = this.record.id;
    await awaitApproval(requirement, {
      tenantId,
      requestedBy: this.#input.requestedBy,
      record: this.record,
      audit: (action, outcome, actor, details) => this.#audit(action, outcome, actor, details),
      escalate: async (waitingSince) => {
        await bookkeeping.escalateApproval({ tenantId, deviceId: device.deviceId, provisioningId, waitingSince });
      },
      closeEscalation: async () => {
        await bookkeeping.closeApprovalEscalation({ tenantId, provisioningId });
      },
    });
  }

  /**
   * Puts the firmware verdict on the record and returns the approval the run must wait for: the
   * approval policy's, the firmware's, or both as one decision (the longer wait, the earlier escalation).
   */
  firmwareJudged(firmware: FirmwareJudged | undefined): ApprovalRequirement | undefined {
    const policy = this.#input.approval;
    if (!firmware) return policy;
    const { approval: ofFirmware, ...verdict } = firmware;
    this.record.metadata.firmware = verdict;
    if (!ofFirmware || !policy) return ofFirmware ?? policy;
    const escalations = [policy.escalateAfterSeconds, ofFirmware.escalateAfterSeconds].filter((s): s is number => s !== undefined);
    return {
      policyIds: [...policy.policyIds, ...ofFirmware.policyIds],
      timeoutSeconds: Math.max(policy.timeoutSeconds, ofFirmware.timeoutSeconds),
      ...(escalations.length > 0 ? { escalateAfterSeconds: Math.min(...escalations) } : {}),
    };
  }

  certificateIssued(certificate: CertificateInfo): void {
    this.record.certificateInfo = certificate;
  }

  certificateRevoked(): void {
    if (this.record.certificateInfo) this.record.certificateInfo = { ...this.record.certificateInfo, revokedAt: new Date().toISOString() };
  }

  configurationPushed(configuration: { version: number; hash: string }): void {
    this.record.configurationVersion = configuration.version;
    this.record.metadata.configurationHash = configuration.hash;
  }

  /** A run started with `autoActivate: false` waits here, durably, for the `activate` signal. */
  async activationAllowed(): Promise<void> {
    if (this.#activationRequested) return;
    this.record.metadata.awaitingActivation = true;
    await condition(() => this.#activationRequested);
    delete this.record.metadata.awaitingActivation;
  }

  async complete(): Promise<DeviceProvisioningRecord> {
    this.record.completedAt = new Date().toISOString();
    this.#setStatus('completed');
    await this.#audit('provisioning.completed', 'success', 'workflow', { certificateSerial: this.record.certificateInfo?.serialNumber });
    await this.#reportToBulkJob('completed');
    this.#recordRun('completed');
    await this.#archive('completed');
    return this.record;
  }

  /**
   * Puts a run that failed for good, or was cancelled, on record after `undo` (which is told why)
   * has run, even under cancellation. Returns the failure the workflow ends with: Cancelled when
   * Temporal cancelled the run, a failure caused by cancellation when the `cancel` signal did.
   */
  async fail(error: unknown, undo: (reason: string) => Promise<void>): Promise<Error> {
    const failedStep = this.record.provisioningSteps.find((s) => s.status === 'failed')?.step;
    const cancelled = isCancellation(error);
    const failure = {
      type: cancelled ? 'Cancelled' : failureType(error),
      message: cancelled ? String(this.record.metadata.cancellationReason ?? 'cancelled') : describeFailure(error),
      step: failedStep,
    };
    this.record.error = failure;
    await CancellationScope.nonCancellable(async () => {
      await undo(failure.message);
      await this.#audit(cancelled ? 'provisioning.cancelled' : 'provisioning.failed', 'failure', 'workflow', { error: failure });
      await this.#reportToBulkJob(cancelled ? 'cancelled' : 'failed');
    });
    this.record.completedAt = new Date().toISOString();
    this.#setStatus('failed');
    this.#recordRun(cancelled ? 'cancelled' : 'failed');
    await CancellationScope.nonCancellable(() => this.#archive(cancelled ? 'cancelled' : 'failed'));
    if (cancelled) return new CancelledFailure(failure.message);
    return ApplicationFailure.nonRetryable(
      `provisioning of ${this.record.deviceId} failed${failedStep ? ` at ${failedStep}` : ''}: ${failure.message}`,
      'ProvisioningFailed',
      failure,
    );
  }

  /** The final record goes to the archive, where status and the device's runs are read once Temporal has forgotten the run. */
  async #archive(outcome: 'completed' | 'failed' | 'cancelled'): Promise<void> {
    if (!patched(archivesItsRecord)) return;
    const archived = { runId: workflowInfo().runId, outcome, record: this.record };
    await callLocalFirst(this.#records, (activities) => activities.archiveProvisioningRun(archived));
  }

  #stepEntry(name: ProvisioningStepName) {
    return this.record.provisioningSteps.find((s) => s.step === name)!;
  }

  #setStatus(status: ProvisioningStatus): void {
    this.record.status = status;
    upsertSearchAttributes([{ key: attributes.status, value: status }]);
  }

  #recordRun(outcome: ProvisioningOutcome): void {
    recordProvisioningRun(this.#metricLabels, outcome, (Date.now() - workflowInfo().startTime.getTime()) / 1000);
  }

  async #audit(action: string, outcome: 'success' | 'failure', actor: string, details: Record<string, unknown> = {}): Promise<void> {
    const info = workflowInfo();
    try {
      const event: Parameters<Activities['recordAuditEvent']>[0] = {
        tenantId: this.#input.tenantId,
        actor: actor === 'workflow' ? info.workflowId : actor,
        actorType: actor === 'workflow' ? 'workflow' : 'user',
        action,
        outcome,
        targetType: 'device',
        targetId: this.#input.device.deviceId,
        details: { provisioningId: info.workflowId, runId: info.runId, ...details },
      };
      await callLocalFirst(this.#records, (activities) => activities.recordAuditEvent(event));
    } catch (error) {
      // An event that can never be stored (text from a CLI signal, say) must not hold the run up for
      // an hour or fail it: the activity has put the refusal on record. Runs before this rule failed.
      if (!isFailureForGood(error) || !patched(refusedAuditEventDoesNotStopRun)) throw error;
      log.warn('audit event refused; the run goes on', { action, error: describeFailure(error) });
    }
  }

  async #reportToBulkJob(outcome: BulkDeviceOutcome['outcome']): Promise<void> {
    const parent = this.#input.bulkParent;
    if (!parent) return;
    const { record } = this;
    const report: BulkDeviceOutcome = {
      rowNumber: parent.rowNumber,
      deviceId: record.deviceId,
      outcome,
      ...(record.certificateInfo && !record.certificateInfo.revokedAt ? { certificateSerial: record.certificateInfo.serialNumber } : {}),
      ...(record.error ? { error: record.error.message, failedStep: record.error.step } : {}),
      startedAt: record.createdAt,
      finishedAt: new Date().toISOString(),
    };
    // A job that has ended no longer listens; the device's own record still stands.
    await getExternalWorkflowHandle(parent.workflowId)
      .signal(bulkDeviceFinishedSignal, report)
      .catch(() => undefined);
  }
}
