/**
 * A device's life after activation, as operators steer it: decommissioning it, replacing it with a
 * new unit (RMA) and provisioning it again on purpose. Each starts one workflow, named for the
 * device, so asking twice answers the job already under way; where it stands is read from the
 * workflow, or from the registry once Temporal's retention has removed a finished one.
 */
import { WorkflowExecutionAlreadyStartedError, type Client, type QueryDefinition } from '@temporalio/client';
import { z } from 'zod';
import type { DeviceCredentials } from '../adapters/device-adapter';
import type { DeviceConfigurations } from '../configuration/device-configurations';
import type { SecretVault } from '../custody/secret-vault';
import { ConflictError } from '../foundation/errors';
import { parseOrThrow } from '../foundation/validation';
import { fromWorkflowError, isWorkflowNotFound } from '../foundation/workflow-errors';
import type { ProvisioningPlanner } from '../provisioning/planner';
import { workflowState } from './device-workflows';
import { defaultRunOptions, deviceDescriptorOf, deviceRequestSchema, type DeviceRequest } from '../provisioning/requests';
import type { DeviceRegistry, RegisteredDevice } from '../registry/device-registry';
import { initialCredentialsPurpose } from '../registry/initial-credentials';
import { provisioningWorkflowId, type ProvisionDeviceInput } from '../contracts/provisioning';
import {
  decommissionProgressQuery,
  decommissionSteps,
  decommissionWorkflowId,
  deviceSearchAttributes,
  replacementProgressQuery,
  replacementWorkflowId,
  reprovisioningProgressQuery,
  reprovisioningWorkflowId,
  startDecommission,
  type DecommissionProgress,
  type ReplacementProgress,
  type ReprovisioningProgress,
} from '../contracts/device-lifecycle';
import type * as lifecycleWorkflows from '../workflows/index';

const reason = z.string().trim().min(1, 'is required').max(500);

export const decommissionRequestSchema = z
  .object({
    reason,
    /** OSDP readers: also put the reader back on its install key (SCBK-D), for use elsewhere. */
    resetToInstallKey: z.boolean().default(false),
  })
  .strict();

export const reprovisionRequestSchema = z.object({ reason }).strict();

/** The new unit: who it is and where it is reached; everything else comes from the device it replaces. */
export function replacementRequestSchema(protocols: readonly string[]) {
  return z
    .object({
      reason,
      device: deviceRequestSchema(protocols).pick({ deviceId: true, serialNumber: true, macAddress: true, address: true, credentials: true }).strict(),
    })
    .strict();
}

export type DecommissionRequest = z.infer<typeof decommissionRequestSchema>;
export type ReprovisionRequest = z.infer<typeof reprovisionRequestSchema>;
export type ReplacementRequest = z.infer<ReturnType<typeof replacementRequestSchema>>;

export interface StartedJob {
  deviceId: string;
  /** The workflow id: `decommission:`, `replace:` or `reprovision:<tenant>:<device>`. */
  jobId: string;
  /** `started`: a new job; `existing`: the same job was already under way or done, nothing new started. */
  outcome: 'started' | 'existing';
}

export interface DeviceLifecycleDependencies {
  client: Client;
  taskQueue: string;
  registry: DeviceRegistry;
  planner: Pick<ProvisioningPlanner, 'checkCompliant' | 'planProvisioning'>;
  vault: SecretVault;
  configurations: Pick<DeviceConfigurations, 'copyParameters'>;
  protocols: readonly string[];
}

type StartOptions = { workflowId: string; args: [unknown]; typedSearchAttributes: ReturnType<typeof deviceSearchAttributes> };
/** The workflows this service starts, by the names the worker registers them under. */
type LifecycleWorkflow = keyof Pick<typeof lifecycleWorkflows, 'decommissionDevice' | 'replaceDevice' | 'reprovisionDevice'>;

export class DeviceLifecycle {
  constructor(private readonly deps: DeviceLifecycleDependencies) {}

  /** Starts decommissioning the device; a device decommissioned, or being decommissioned, answers that job. */
  async decommission(tenantId: string, deviceId: string, request: DecommissionRequest, requestedBy: string): Promise<StartedJob> {
    const device = await this.deps.registry.get(tenantId, deviceId);
    const jobId = decommissionWorkflowId(tenantId, deviceId);
    if (device.lifecycleState === 'decommissioned') return { deviceId, jobId, outcome: 'existing' };
    return this.#start(
      'decommissionDevice',
      startDecommission({ tenantId, deviceId, reason: request.reason, requestedBy, ...(request.resetToInstallKey ? { resetToInstallKey: true } : {}) }),
      deviceId,
    );
  }

  /**
   * Where the decommissioning stands; once Temporal no longer holds the finished workflow, what the
   * registry kept of it.
   */
  async decommissionProgress(tenantId: string, deviceId: string): Promise<DecommissionProgress> {
    const device = await this.deps.registry.get(tenantId, deviceId);
    return this.#query(decommissionWorkflowId(tenantId, deviceId), decommissionProgressQuery, {
      notFound: `device ${deviceId} is not being decommissioned`,
      onRecord: () => (device.lifecycleState === 'decommissioned' ? decommissionOnRecord(device) : undefined),
    });
  }

  /**
   * Provisions a new unit in the device's place, with its site, protocol, type, template,
   * configuration parameters and name, then decommissions the device.
   */
  async replace(tenantId: string, oldDeviceId: string, request: ReplacementRequest, requestedBy: string): Promise<StartedJob> {
    const old = await this.deps.registry.get(tenantId, oldDeviceId);
    const jobId = replacementWorkflowId(tenantId, oldDeviceId);
    // A replacement under way, or done (the device names its successor), is the answer.
    if (old.replacedBy || (await this.#isRunning(jobId))) return { deviceId: oldDeviceId, jobId, outcome: 'existing' };
    if (old.lifecycleState === 'decommissioned') throw new ConflictError(`device ${oldDeviceId} is decommissioned`);
    const templateId = configuredTemplateOf(old);
    const { credentials, ...identity } = request.device;
    const unit: DeviceRequest = {
      ...identity,
      protocol: old.protocol,
      deviceType: old.deviceType as DeviceRequest['deviceType'],
      site: old.site,
      ...(old.name ? { name: old.name } : {}),
    };
    const newDeviceId = unit.deviceId ?? unit.serialNumber;
    // A unit whose provisioning failed (a replacement that did not go through) may be tried again.
    const registered = await this.deps.registry.find(tenantId, newDeviceId);
    if (newDeviceId === oldDeviceId || (registered && registered.lifecycleState !== 'failed' && registered.lifecycleState !== 'registered')) {
      throw new ConflictError(`device ${newDeviceId} is already registered; a replacement is a new unit`, {
        fields: [{ field: 'device.deviceId', reason: 'already registered' }],
      });
    }
    // The new unit renders the same configuration: its predecessor's parameters, secrets included.
    await this.deps.configurations.copyParameters(tenantId, oldDeviceId, newDeviceId, requestedBy);
    const [run] = await this.#plan(tenantId, templateId, unit, {
      requestedBy,
      hasInitialCredentials: credentials !== undefined,
      metadata: { ...old.metadata, replacementOf: oldDeviceId, replacementReason: request.reason },
    });
    if (credentials) await this.deps.vault.store(tenantId, newDeviceId, initialCredentialsPurpose, credentials);
    return this.#start(
      'replaceDevice',
      {
        workflowId: jobId,
        args: [{ tenantId, oldDeviceId, reason: request.reason, requestedBy, provisioning: run! }],
        typedSearchAttributes: deviceSearchAttributes(tenantId, oldDeviceId),
      },
      oldDeviceId,
    );
  }

  /** Where the replacement stands; once Temporal no longer holds the finished workflow, what the registry kept of it. */
  async replacementProgress(tenantId: string, deviceId: string): Promise<ReplacementProgress> {
    const device = await this.deps.registry.get(tenantId, deviceId);
    return this.#query(replacementWorkflowId(tenantId, deviceId), replacementProgressQuery, {
      notFound: `device ${deviceId} has no replacement on record`,
      onRecord: () => (device.replacedBy ? replacementOnRecord(device, device.replacedBy) : undefined),
    });
  }

  /** Provisions an active device again on purpose: new key and certificate, the old one revoked once the new one is in use. */
  async reprovision(tenantId: string, deviceId: string, request: ReprovisionRequest, requestedBy: string): Promise<StartedJob> {
    const device = await this.deps.registry.get(tenantId, deviceId);
    const jobId = reprovisioningWorkflowId(tenantId, deviceId);
    if (await this.#isRunning(jobId)) return { deviceId, jobId, outcome: 'existing' };
    if (device.lifecycleState !== 'active' && device.lifecycleState !== 'provisioned') {
      throw new ConflictError(`device ${deviceId} is ${device.lifecycleState}: only an active device is re-provisioned`, {
        fields: [{ field: 'deviceId', reason: `the device is ${device.lifecycleState}, not active` }],
      });
    }
    if (await this.#isRunning(provisioningWorkflowId(tenantId, deviceId))) {
      throw new ConflictError(`device ${deviceId} has a provisioning run under way; wait for it to finish`, {
        fields: [{ field: 'deviceId', reason: 'a provisioning run of this device is under way' }],
      });
    }
    const credentials = await this.deps.vault.read<DeviceCredentials>(tenantId, deviceId, initialCredentialsPurpose);
    const [run] = await this.#plan(
      tenantId,
      configuredTemplateOf(device),
      {
        deviceId,
        serialNumber: device.serialNumber,
        macAddress: device.macAddress,
        address: device.address,
        protocol: device.protocol,
        deviceType: device.deviceType as DeviceRequest['deviceType'],
        site: device.site,
        ...(device.name ? { name: device.name } : {}),
      },
      { requestedBy, hasInitialCredentials: credentials !== undefined, metadata: { ...device.metadata, reprovisioningReason: request.reason }, reprovisioning: true },
    );
    return this.#start(
      'reprovisionDevice',
      {
        workflowId: jobId,
        args: [
          {
            tenantId,
            deviceId,
            reason: request.reason,
            requestedBy,
            ...(device.activeCertificateId ? { previousCertificateId: device.activeCertificateId } : {}),
            provisioning: run!,
          },
        ],
        typedSearchAttributes: deviceSearchAttributes(tenantId, deviceId),
      },
      deviceId,
    );
  }

  async reprovisioningProgress(tenantId: string, deviceId: string): Promise<ReprovisioningProgress> {
    await this.deps.registry.get(tenantId, deviceId);
    return this.#query(reprovisioningWorkflowId(tenantId, deviceId), reprovisioningProgressQuery, {
      notFound: `device ${deviceId} has no re-provisioning on record`,
    });
  }

  /** The one run input for the device, checked (compliance included) and planned as every run is. */
  async #plan(
    tenantId: string,
    templateId: string,
    device: DeviceRequest,
    run: { requestedBy: string; hasInitialCredentials: boolean; metadata: Record<string, string>; reprovisioning?: boolean },
  ): Promise<ProvisionDeviceInput[]> {
    const { planner } = this.deps;
    // What the registry holds is parsed as a request's device would be, so a stale row fails here, not in the run.
    const parsed = parseOrThrow(deviceRequestSchema(this.deps.protocols), device, 'device', 'device');
    const { devices, templateVersion } = await planner.checkCompliant(tenantId, {
      templateId,
      options: defaultRunOptions,
      devices: [parsed],
      ...(run.reprovisioning ? { reprovisioning: true } : {}),
    });
    return planner.planProvisioning({
      tenantId,
      templateId,
      templateVersion,
      provisioningMethod: 'api',
      options: defaultRunOptions,
      requestedBy: run.requestedBy,
      devices: devices.map((checked) => ({ device: deviceDescriptorOf(checked), hasInitialCredentials: run.hasInitialCredentials, metadata: run.metadata })),
    });
  }

  async #start(workflowType: LifecycleWorkflow, start: StartOptions, deviceId: string): Promise<StartedJob> {
    try {
      await this.deps.client.workflow.start(workflowType, {
        ...start,
        taskQueue: this.deps.taskQueue,
        workflowIdConflictPolicy: 'FAIL',
      });
      return { deviceId, jobId: start.workflowId, outcome: 'started' };
    } catch (error) {
      // Another request for the same device won the race: that job is the answer.
      if (error instanceof WorkflowExecutionAlreadyStartedError) return { deviceId, jobId: start.workflowId, outcome: 'existing' };
      throw fromWorkflowError(error, { what: start.workflowId });
    }
  }

  /** The job's progress from its workflow; once Temporal holds none, what `onRecord` finds in the registry, if anything. */
  async #query<T>(workflowId: string, query: QueryDefinition<T>, answer: { notFound: string; onRecord?: () => T | undefined }): Promise<T> {
    try {
      return await this.deps.client.workflow.getHandle(workflowId).query(query);
    } catch (error) {
      const onRecord = isWorkflowNotFound(error) ? answer.onRecord?.() : undefined;
      if (onRecord) return onRecord;
      throw fromWorkflowError(error, { what: workflowId, notFound: answer.notFound });
    }
  }

  async #isRunning(workflowId: string): Promise<boolean> {
    return (await workflowState(this.deps.client.workflow.getHandle(workflowId))) === 'running';
  }
}

/** A replacement or re-provisioning renders the template the device runs; a device configured by nothing of ours has none to follow. */
function configuredTemplateOf(device: RegisteredDevice): string {
  if (!device.configurationTemplate) {
    throw new ConflictError(`device ${device.deviceId} runs no configuration template of ours; provision it with a provisioning request instead`, {
      fields: [{ field: 'deviceId', reason: 'the device has no configuration template on record' }],
    });
  }
  return device.configurationTemplate;
}

/** What the registry kept of a decommissioning whose workflow Temporal no longer holds. */
function decommissionOnRecord(device: RegisteredDevice): DecommissionProgress {
  return {
    tenantId: device.tenantId,
    deviceId: device.deviceId,
    reason: device.decommissionReason ?? '',
    requestedBy: '',
    state: 'completed',
    steps: decommissionSteps.map((step) => ({ step, status: 'completed', detail: "the workflow's own record has passed Temporal's retention" })),
    endedWorkflows: [],
    revokedCertificates: [],
    startedAt: (device.decommissionedAt ?? device.updatedAt).toISOString(),
    completedAt: (device.decommissionedAt ?? device.updatedAt).toISOString(),
  };
}

/** What the registry kept of a replacement whose workflow Temporal no longer holds. */
function replacementOnRecord(device: RegisteredDevice, newDeviceId: string): ReplacementProgress {
  const at = (device.decommissionedAt ?? device.updatedAt).toISOString();
  return {
    tenantId: device.tenantId,
    oldDeviceId: device.deviceId,
    newDeviceId,
    reason: device.decommissionReason ?? '',
    requestedBy: '',
    state: device.lifecycleState === 'decommissioned' ? 'completed' : 'decommissioning',
    provisioningId: provisioningWorkflowId(device.tenantId, newDeviceId),
    decommissionId: decommissionWorkflowId(device.tenantId, device.deviceId),
    startedAt: at,
    ...(device.lifecycleState === 'decommissioned' ? { completedAt: at } : {}),
  };
}
