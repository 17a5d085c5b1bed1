/**
 * Provisioning requests of the API: checked and planned by the planner, started as runs, and their
 * state read back from Temporal. Status is never stored here: it is the `status` query of the run,
 * completed with live retry information from the server.
 */
import { WorkflowUpdateFailedError, WorkflowExecutionAlreadyStartedError, type Client, type WorkflowHandle } from '@temporalio/client';
// The helper the SDK's own client decodes failures with; not re-exported from the package root.
import { decodeOptionalFailureToOptionalError } from '@temporalio/common/lib/internal-non-workflow/codec-helpers.js';
import type { SecretVault } from '../custody/secret-vault';
import { complianceRefusal, recordRefusal } from '../configuration/deployment-gate';
import type { DeviceConfigurations } from '../configuration/device-configurations';
import { ConflictError, ForbiddenError, NotFoundError } from '../foundation/errors';
import { fromWorkflowError, isWorkflowNotFound } from '../foundation/workflow-errors';
import { initialCredentialsPurpose } from '../registry/initial-credentials';
import {
  activateSignal,
  approvalUpdate,
  type ApprovalDecision,
  type ApprovalOutcome,
  cancelSignal,
  parseProvisioningWorkflowId,
  provisioningWorkflowId,
  provisioningStepOf,
  startProvisioning,
  statusQuery,
  type DeviceProvisioningRecord,
  type ProvisionDeviceInput,
} from '../contracts/provisioning';
import type { provisionDevice } from '../workflows/provision-device';
import type { RunArchive } from '../registry/run-archive';
import type { ProvisioningPlanner } from './planner';
import { deviceDescriptorOf, type DeviceProvisioningRequest, type ProvisioningRequest } from './requests';

export interface ProvisioningServiceDependencies {
  client: Client;
  taskQueue: string;
  planner: ProvisioningPlanner;
  vault: SecretVault;
  /** Where a deployment that compliance refused is put on record. */
  configurations: DeviceConfigurations;
  /** Closed runs' final records, answered once Temporal's retention has removed the run. */
  runArchive: Pick<RunArchive, 'latestRecord'>;
}

export interface StartedProvisioning {
  deviceId: string;
  provisioningId: string;
  /** `started`: a new run; `existing`: this device was already being provisioned, nothing new started. */
  outcome: 'started' | 'existing';
  runId: string;
}

export class ProvisioningService {
  constructor(private readonly deps: ProvisioningServiceDependencies) {}

  /**
   * Everything short of starting, as `start` checks it: addresses, duplicates, template and
   * parameters, registry conflicts, and the compliance of each device's configuration.
   */
  async validate(tenantId: string, request: ProvisioningRequest): Promise<DeviceProvisioningRequest[]> {
    return (await this.deps.planner.checkCompliant(tenantId, request)).devices;
  }

  async start(tenantId: string, request: ProvisioningRequest, requestedBy?: string): Promise<StartedProvisioning[]> {
    const { devices, templateVersion, blocked } = await this.deps.planner.check(tenantId, request);
    if (blocked.length > 0) {
      // Refused before any run or device is touched; still a deployment that compliance stopped, so on record.
      const refusal = complianceRefusal(blocked);
      await recordRefusal(this.deps.configurations, tenantId, blocked, refusal, requestedBy);
      throw refusal;
    }

    // The planner refused devices the registry holds as provisioned; a run still under way is the answer for its device.
    const runs = await Promise.all(devices.map((device) => this.latestRun(provisioningWorkflowId(tenantId, device.deviceId))));

    const { skipCertificateGeneration, autoActivate, certificateValidityDays, deviceRetryWindowSeconds } = request.options;
    const inputs = await this.deps.planner.planProvisioning({
      tenantId,
      templateId: request.templateId,
      templateVersion,
      provisioningMethod: request.provisioningMethod,
      options: { skipCertificateGeneration, autoActivate, certificateValidityDays, deviceRetryWindowSeconds },
      requestedBy,
      devices: devices.map((device) => ({
        device: deviceDescriptorOf(device),
        hasInitialCredentials: Boolean(device.credentials),
        ...(device.metadata ? { metadata: device.metadata } : {}),
      })),
    });

    const started: StartedProvisioning[] = [];
    for (const [index, device] of devices.entries()) {
      const running = runs[index]?.status === 'RUNNING' ? runs[index] : undefined;
      started.push(running ? existing(inputs[index]!, running.runId) : await this.startRun(inputs[index]!, device));
    }
    return started;
  }

  private async startRun(input: ProvisionDeviceInput, device: DeviceProvisioningRequest): Promise<StartedProvisioning> {
    // Credentials go to the vault; the run only learns that they exist.
    if (device.credentials) {
      await this.deps.vault.store(input.tenantId, device.deviceId, initialCredentialsPurpose, device.credentials);
    }
    const start = startProvisioning(input);
    try {
      const handle = await this.deps.client.workflow.start<typeof provisionDevice>('provisionDevice', {
        ...start,
        taskQueue: this.deps.taskQueue,
        workflowIdConflictPolicy: 'FAIL',
      });
      return { deviceId: device.deviceId, provisioningId: start.workflowId, outcome: 'started', runId: handle.firstExecutionRunId };
    } catch (error) {
      if (!(error instanceof WorkflowExecutionAlreadyStartedError)) throw error;
      // Lost a race with another start for the same device: that run is the answer.
      const runId = await this.existingRun(start.workflowId);
      if (runId) return existing(input, runId);
      throw new ConflictError(`device ${device.deviceId} is already provisioned`, {
        fields: [{ field: 'deviceId', reason: 'this device is already provisioned' }],
      });
    }
  }

  /**
   * The provisioning record, with the attempt count and last error of a step that is retrying now;
   * from the archive once Temporal's retention has removed the run.
   */
  async status(tenantId: string, provisioningId: string): Promise<DeviceProvisioningRecord> {
    const handle = this.handleFor(tenantId, provisioningId);
    try {
      return await this.liveStatus(handle);
    } catch (error) {
      if (!isWorkflowNotFound(error)) throw fromWorkflowError(error, { what: `provisioning ${provisioningId}` });
      const archived = await this.deps.runArchive.latestRecord(tenantId, provisioningId);
      if (!archived) throw new NotFoundError(`provisioning ${provisioningId} not found`);
      return archived;
    }
  }

  private async liveStatus(handle: WorkflowHandle<typeof provisionDevice>): Promise<DeviceProvisioningRecord> {
    const [record, description] = await Promise.all([handle.query(statusQuery), handle.describe()]);
    for (const pending of description.raw.pendingActivities ?? []) {
      const stepName = provisioningStepOf(pending.activityType?.name ?? '');
      const step = record.provisioningSteps.find((s) => s.step === stepName);
      if (!step || step.status !== 'in_progress') continue;
      step.retryCount = Math.max(step.retryCount, (pending.attempt ?? 1) - 1);
      // The failure converter moved the message into an encrypted payload ("Encoded failure").
      const lastFailure = await decodeOptionalFailureToOptionalError(this.deps.client.options.loadedDataConverter, pending.lastFailure);
      if (lastFailure?.message) step.error = lastFailure.message;
    }
    return record;
  }

  async cancel(tenantId: string, provisioningId: string, reason?: string): Promise<void> {
    const handle = this.handleFor(tenantId, provisioningId);
    await handle.signal(cancelSignal, reason).catch((error) => {
      throw fromWorkflowError(error, { what: `provisioning ${provisioningId}` });
    });
  }

  async activate(tenantId: string, provisioningId: string): Promise<void> {
    const handle = this.handleFor(tenantId, provisioningId);
    await handle.signal(activateSignal).catch((error) => {
      throw fromWorkflowError(error, { what: `provisioning ${provisioningId}` });
    });
  }

  /** An approver's decision, checked by the run itself (tenant, role, not the requester). */
  async decideApproval(
    tenantId: string,
    provisioningId: string,
    decision: ApprovalDecision,
  ): Promise<ApprovalOutcome> {
    const handle = this.handleFor(tenantId, provisioningId);
    try {
      return await handle.executeUpdate(approvalUpdate, { args: [decision] });
    } catch (error) {
      if (error instanceof WorkflowUpdateFailedError) {
        const cause = error.cause as { type?: string; message?: string } | undefined;
        const message = cause?.message ?? error.message;
        if (cause?.type === 'ApproverNotAllowed') throw new ForbiddenError(message);
        throw new ConflictError(message);
      }
      // A run that has ended exists but can no longer take a decision.
      if (isWorkflowNotFound(error) && (await this.latestRun(provisioningId))) {
        throw new ConflictError(`provisioning ${provisioningId} is not waiting for approval`);
      }
      throw fromWorkflowError(error, { what: `provisioning ${provisioningId}` });
    }
  }

  /** Ids of other tenants are indistinguishable from ids that do not exist. */
  private handleFor(tenantId: string, provisioningId: string): WorkflowHandle<typeof provisionDevice> {
    const parsed = parseProvisioningWorkflowId(provisioningId);
    if (!parsed || parsed.tenantId !== tenantId) throw new NotFoundError(`provisioning ${provisioningId} not found`);
    return this.deps.client.workflow.getHandle(provisioningId);
  }

  private async latestRun(workflowId: string): Promise<{ status: string; runId: string } | undefined> {
    try {
      const description = await this.deps.client.workflow.getHandle(workflowId).describe();
      return { status: description.status.name, runId: description.runId };
    } catch (error) {
      if (isWorkflowNotFound(error)) return undefined;
      throw fromWorkflowError(error, { what: `provisioning ${workflowId}` });
    }
  }

  private async existingRun(workflowId: string): Promise<string | undefined> {
    const run = await this.latestRun(workflowId);
    return run?.status === 'RUNNING' ? run.runId : undefined;
  }
}

/** The run already under way for the device: nothing new is started. */
function existing(input: ProvisionDeviceInput, runId: string): StartedProvisioning {
  const { tenantId, device } = input;
  return { deviceId: device.deviceId, provisioningId: provisioningWorkflowId(tenantId, device.deviceId), outcome: 'existing', runId };
}
