/**
 * Starts provisioning runs and reads their state back from Temporal. Status is never stored here:
 * it is the `status` query of the run, completed with live retry information from the server.
 */
import {
  WorkflowUpdateFailedError,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  type Client,
  type WorkflowHandle,
} from '@temporalio/client';
// The helper the SDK's own client decodes failures with; not re-exported from the package root.
import { decodeOptionalFailureToOptionalError } from '@temporalio/common/lib/internal-non-workflow/codec-helpers.js';
import type { DeviceAdapter } from '../adapters/device-adapter';
import type { DeviceNetworks } from '../adapters/device-networks';
import type { SecretVault } from '../custody/secret-vault';
import { complianceProblems, complianceRefusal, judgeDeployment, recordRefusal, type BlockedConfiguration } from '../configuration/deployment-gate';
import type { DeviceConfigurations } from '../configuration/device-configurations';
import type { ConfigurationTemplateVersion, TemplateCatalog } from '../configuration/templates';
import { registryConflictError, type DeviceRegistry } from '../registry/device-registry';
import {
  ConflictError,
  DependencyUnavailableError,
  ForbiddenError,
  NotFoundError,
  ServiceError,
  ValidationError,
  type FieldProblem,
} from '../foundation/errors';
import { parseOrThrow } from '../foundation/validation';
import { initialCredentialsPurpose } from '../activities/provisioning';
import type { ApprovalPolicies } from './approval-policies';
import {
  activateSignal,
  approvalUpdate,
  type ApprovalDecision,
  type ApprovalOutcome,
  cancelSignal,
  parseProvisioningWorkflowId,
  provisioningRunSearchAttributes,
  provisioningWorkflowId,
  statusQuery,
  type DeviceProvisioningRecord,
  type ProvisionDeviceInput,
  type ProvisioningStepName,
} from '../workflows/definitions';
import type { provisionDevice } from '../workflows/provision-device';
import {
  deviceDescriptorOf,
  duplicatesWithin,
  provisioningRequestSchema,
  type DeviceProvisioningRequest,
  type ProvisioningRequest,
} from './requests';

export interface ProvisioningServiceDependencies {
  client: Client;
  taskQueue: string;
  registry: DeviceRegistry;
  vault: SecretVault;
  templates: TemplateCatalog;
  /** Renders each device's configuration with its parameters and judges its compliance before anything starts. */
  configurations: DeviceConfigurations;
  adapters: ReadonlyMap<string, DeviceAdapter>;
  /** Where devices may be reached: addresses outside are refused before anything starts. */
  networks: DeviceNetworks;
  approvals: ApprovalPolicies;
}

interface TemplateCheck {
  problems: FieldProblem[];
  blocked: BlockedConfiguration[];
}

export interface StartedProvisioning {
  deviceId: string;
  provisioningId: string;
  /** `started`: a new run; `existing`: this device was already being provisioned, nothing new started. */
  outcome: 'started' | 'existing';
  runId: string;
}

export interface ValidatedProvisioning {
  request: ProvisioningRequest;
  devices: DeviceProvisioningRequest[];
}

/** Which step each activity performs, to attach live retry details to the right step. */
const stepOfActivity: Record<string, ProvisioningStepName> = {
  identifyDevice: 'identify',
  authenticateDevice: 'authenticate',
  requestCertificateSigning: 'generateCsr',
  issueDeviceCertificate: 'issueCertificate',
  installDeviceCertificate: 'installCertificate',
  pushDeviceConfiguration: 'pushConfiguration',
  runDeviceSelfTest: 'selfTest',
  activateDevice: 'activate',
};

/** An approval a registration asks for without a policy: a week for someone to decide. */
const defaultApprovalTimeoutSeconds = 7 * 24 * 60 * 60;

export class ProvisioningService {
  constructor(private readonly deps: ProvisioningServiceDependencies) {}

  /**
   * Everything short of starting: schema, addresses, duplicates, template and parameters, registry
   * conflicts, and the compliance of each device's configuration.
   */
  async validate(tenantId: string, body: unknown): Promise<ValidatedProvisioning> {
    const { validated, blocked } = await this.check(tenantId, body);
    if (blocked.length > 0) throw complianceRefusal(blocked);
    return validated;
  }

  private async check(tenantId: string, body: unknown): Promise<{ validated: ValidatedProvisioning; blocked: BlockedConfiguration[] }> {
    const protocols = [...this.deps.adapters.keys()];
    const request = parseOrThrow(provisioningRequestSchema(protocols), body, 'provisioning request');
    const devices = request.devices.map((device) => ({ ...device, deviceId: device.deviceId ?? device.serialNumber }));

    const problems: FieldProblem[] = [];
    for (const [index, device] of devices.entries()) {
      const reason = await this.deps.networks.addressProblem(this.deps.adapters.get(device.protocol)!, device.address);
      if (reason) problems.push({ field: `devices[${index}].address`, reason });
    }
    problems.push(...duplicatesWithin(devices));
    const templateCheck = await this.checkTemplate(tenantId, request.templateId, devices, request.options);
    problems.push(...templateCheck.problems);
    if (problems.length > 0) {
      throw new ValidationError(`provisioning request is invalid: ${problems.map((p) => `${p.field}: ${p.reason}`).join('; ')}`, {
        fields: problems,
      });
    }

    for (const [index, device] of devices.entries()) {
      const conflicts = await this.deps.registry.conflictsWith(tenantId, device);
      if (conflicts.length > 0) throw registryConflictError(conflicts, `devices[${index}].`);
    }
    return { validated: { request, devices }, blocked: templateCheck.blocked };
  }

  /**
   * The template must exist, suit each device, render with each device's parameters, not lock out a
   * device that gets no certificate, and pass the compliance policy (compliance problems are named
   * `devices[<index>]` with the rule in the reason). Problems about a device name it as `devices[<index>]...`.
   */
  async templateProblemsFor(
    tenantId: string,
    templateId: string,
    devices: DeviceProvisioningRequest[],
    options: Pick<ProvisioningRequest['options'], 'skipCertificateGeneration'>,
  ): Promise<FieldProblem[]> {
    const { problems, blocked } = await this.checkTemplate(tenantId, templateId, devices, options);
    return [...problems, ...blocked.flatMap(complianceProblems)];
  }

  private async checkTemplate(
    tenantId: string,
    templateId: string,
    devices: DeviceProvisioningRequest[],
    options: Pick<ProvisioningRequest['options'], 'skipCertificateGeneration'>,
  ): Promise<TemplateCheck> {
    const template = await this.deps.templates.currentVersion(tenantId, templateId).catch((error) => {
      if (!(error instanceof NotFoundError)) throw error;
      return undefined;
    });
    if (!template) return { problems: [{ field: 'templateId', reason: `no template ${templateId}` }], blocked: [] };
    return this.templateProblems(tenantId, template, devices, options);
  }

  private async templateProblems(
    tenantId: string,
    template: ConfigurationTemplateVersion,
    devices: DeviceProvisioningRequest[],
    options: Pick<ProvisioningRequest['options'], 'skipCertificateGeneration'>,
  ): Promise<TemplateCheck> {
    const problems: FieldProblem[] = [];
    const suited = devices.flatMap((device, index) => {
      if (template.protocol === device.protocol) return [{ device, index }];
      problems.push({
        field: `devices[${index}].protocol`,
        reason: `template ${template.templateId} configures ${template.protocol} devices, not ${device.protocol}`,
      });
      return [];
    });
    const previews = await this.deps.configurations.previewMany(
      tenantId,
      template,
      suited.map(({ device }) => device),
    );
    const judged = judgeDeployment(
      previews,
      suited.map(({ device, index }) => ({ field: `devices[${index}]`, deviceId: device.deviceId })),
    );
    problems.push(...judged.problems);
    const lockout = options.skipCertificateGeneration
      ? previews.map(({ prepared }) => prepared && this.deps.adapters.get(template.protocol)?.settings.requiresDeviceCertificate(prepared.sealedSettings)).find(Boolean)
      : undefined;
    if (lockout) {
      problems.push({ field: 'options.skipCertificateGeneration', reason: `template ${template.templateId} needs device certificates: ${lockout}` });
    }
    return { problems, blocked: judged.blocked };
  }

  async start(tenantId: string, body: unknown, requestedBy?: string): Promise<StartedProvisioning[]> {
    const { validated, blocked } = await this.check(tenantId, body);
    if (blocked.length > 0) {
      // Refused before any run or device is touched; still a deployment that compliance stopped, so on record.
      const refusal = complianceRefusal(blocked);
      await recordRefusal(this.deps.configurations, tenantId, blocked, refusal, requestedBy);
      throw refusal;
    }
    const { request, devices } = validated;

    // A device already provisioned is not provisioned again by accident: refuse the whole request.
    const runs = await Promise.all(devices.map((device) => this.latestRun(provisioningWorkflowId(tenantId, device.deviceId))));
    const finished = runs.flatMap((run, index) => (run?.status === 'COMPLETED' ? [index] : []));
    if (finished.length > 0) {
      throw new ConflictError(`already provisioned: ${finished.map((i) => devices[i].deviceId).join(', ')}`, {
        fields: finished.map((i) => ({ field: `devices[${i}].deviceId`, reason: 'this device is already provisioned' })),
      });
    }

    const started: StartedProvisioning[] = [];
    for (const [index, device] of devices.entries()) {
      started.push(await this.startOne(tenantId, request, device, runs[index], requestedBy));
    }
    return started;
  }

  private async startOne(
    tenantId: string,
    request: ProvisioningRequest,
    device: DeviceProvisioningRequest,
    latest: { status: string; runId: string } | undefined,
    requestedBy?: string,
  ): Promise<StartedProvisioning> {
    const workflowId = provisioningWorkflowId(tenantId, device.deviceId);
    if (latest?.status === 'RUNNING') {
      return { deviceId: device.deviceId, provisioningId: workflowId, outcome: 'existing', runId: latest.runId };
    }

    // Credentials go to the vault; the run only learns that they exist.
    if (device.credentials) {
      await this.deps.vault.store(tenantId, device.deviceId, initialCredentialsPurpose, device.credentials);
    }
    const input = await this.runInput(tenantId, request, device, { hasInitialCredentials: Boolean(device.credentials), requestedBy });
    try {
      const handle = await this.deps.client.workflow.start<typeof provisionDevice>('provisionDevice', {
        workflowId,
        taskQueue: this.deps.taskQueue,
        args: [input],
        workflowIdConflictPolicy: 'FAIL',
        workflowIdReusePolicy: 'ALLOW_DUPLICATE_FAILED_ONLY',
        typedSearchAttributes: provisioningRunSearchAttributes(tenantId, device, request.provisioningMethod),
      });
      return { deviceId: device.deviceId, provisioningId: workflowId, outcome: 'started', runId: handle.firstExecutionRunId };
    } catch (error) {
      if (!(error instanceof WorkflowExecutionAlreadyStartedError)) throw error;
      // Lost a race with another start for the same device: that run is the answer.
      const runId = await this.existingRun(workflowId);
      if (runId) return { deviceId: device.deviceId, provisioningId: workflowId, outcome: 'existing', runId };
      throw new ConflictError(`device ${device.deviceId} is already provisioned`, {
        fields: [{ field: 'deviceId', reason: 'this device is already provisioned' }],
      });
    }
  }

  /** The input of a device's provisioning run, with the approval its policies ask for. */
  async runInput(
    tenantId: string,
    request: ProvisioningRequest,
    device: DeviceProvisioningRequest,
    context: { hasInitialCredentials: boolean; requestedBy?: string; approvalRequired?: boolean },
  ): Promise<ProvisionDeviceInput> {
    const approval =
      (await this.deps.approvals.requirementFor(tenantId, {
        templateId: request.templateId,
        site: device.site,
        deviceType: device.deviceType,
      })) ?? (context.approvalRequired ? { policyIds: [], timeoutSeconds: defaultApprovalTimeoutSeconds } : undefined);
    return {
      tenantId,
      device: deviceDescriptorOf(device),
      provisioningMethod: request.provisioningMethod,
      templateId: request.templateId,
      options: {
        skipCertificateGeneration: request.options.skipCertificateGeneration,
        autoActivate: request.options.autoActivate,
        certificateValidityDays: request.options.certificateValidityDays,
        deviceRetryWindowSeconds: request.options.deviceRetryWindowSeconds,
      },
      hasInitialCredentials: context.hasInitialCredentials,
      approval,
      requestedBy: context.requestedBy,
      metadata: device.metadata,
    };
  }

  /** The provisioning record, with the attempt count and last error of a step that is retrying now. */
  async status(tenantId: string, provisioningId: string): Promise<DeviceProvisioningRecord> {
    const handle = this.handleFor(tenantId, provisioningId);
    try {
      const [record, description] = await Promise.all([handle.query(statusQuery), handle.describe()]);
      for (const pending of description.raw.pendingActivities ?? []) {
        const stepName = stepOfActivity[pending.activityType?.name ?? ''];
        const step = record.provisioningSteps.find((s) => s.step === stepName);
        if (!step || step.status !== 'in_progress') continue;
        step.retryCount = Math.max(step.retryCount, (pending.attempt ?? 1) - 1);
        // The failure converter moved the message into an encrypted payload ("Encoded failure").
        const lastFailure = await decodeOptionalFailureToOptionalError(this.deps.client.options.loadedDataConverter, pending.lastFailure);
        if (lastFailure?.message) step.error = lastFailure.message;
      }
      return record;
    } catch (error) {
      throw translateTemporalError(error, provisioningId);
    }
  }

  async cancel(tenantId: string, provisioningId: string, reason?: string): Promise<void> {
    const handle = this.handleFor(tenantId, provisioningId);
    await handle.signal(cancelSignal, reason).catch((error) => {
      throw translateTemporalError(error, provisioningId);
    });
  }

  async activate(tenantId: string, provisioningId: string): Promise<void> {
    const handle = this.handleFor(tenantId, provisioningId);
    await handle.signal(activateSignal).catch((error) => {
      throw translateTemporalError(error, provisioningId);
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
      if (error instanceof WorkflowNotFoundError && (await this.latestRun(provisioningId))) {
        throw new ConflictError(`provisioning ${provisioningId} is not waiting for approval`);
      }
      throw translateTemporalError(error, provisioningId);
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
      if (error instanceof WorkflowNotFoundError) return undefined;
      throw translateTemporalError(error, workflowId);
    }
  }

  private async existingRun(workflowId: string): Promise<string | undefined> {
    const run = await this.latestRun(workflowId);
    return run?.status === 'RUNNING' ? run.runId : undefined;
  }
}

function translateTemporalError(error: unknown, id: string): Error {
  if (error instanceof ServiceError) return error;
  if (error instanceof WorkflowNotFoundError) return new NotFoundError(`provisioning ${id} not found`);
  const message = error instanceof Error ? error.message : String(error);
  if (/not found/i.test(message)) return new NotFoundError(`provisioning ${id} not found`);
  return new DependencyUnavailableError(`the workflow service could not answer: ${message}`, { cause: error });
}
