/**
 * Configuration rollouts seen from outside: a template version applied to a set of devices, a few
 * at a time, as one tracked job; steered while it runs (pause, resume, cancel, concurrency) and
 * rolled back once it has finished. Each rollout is a workflow; where it stands is read by querying
 * it, never stored here.
 */
import { randomUUID } from 'node:crypto';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { ConflictError, ValidationError, type FieldProblem } from '../foundation/errors';
import { fromWorkflowError } from '../foundation/workflow-errors';
import type { DeviceRegistry, RegisteredDevice } from '../registry/device-registry';
import {
  cancelRolloutSignal,
  maximumRolloutDevices,
  pauseRolloutSignal,
  resumeRolloutSignal,
  rolloutListing,
  rolloutReportQuery,
  rolloutWorkflowId,
  setRolloutConcurrencySignal,
  type ConfigurationRolloutInput,
  type RolloutKind,
  type RolloutMemo,
  type RolloutReport,
  type RolloutTarget,
} from '../contracts/configuration';
import type { configRollout } from '../workflows/configuration-rollout';
import { tenantVisibilityFilter } from '../contracts/provisioning';
import { complianceRefusal, judgeDeployment, recordRefusal } from './deployment-gate';
import type { DeviceConfigurations } from './device-configurations';
import type { TemplateCatalog } from './templates';

/** A rollout of one template version to the devices named, or to every device of a site. */
export interface RolloutRequest {
  /** Chosen by the caller to make the request idempotent; generated when absent. */
  rolloutId?: string;
  /** The template's current version when absent. */
  version?: number;
  /** Exactly one of `deviceIds` and `site`. */
  deviceIds?: string[];
  site?: string;
  concurrency: number;
  maxFailureRate: number;
  minimumDevicesBeforeHalt: number;
}

/** A rollout as the workflow service lists it; its outcome is in the rollout's own report. */
export interface RolloutSummary {
  rolloutId: string;
  kind?: RolloutKind;
  rollbackOf?: string;
  total?: number;
  requestedBy?: string;
  /** The workflow execution status: `running`, `completed`, `failed`, `terminated`, … */
  execution: string;
  startedAt: string;
  closedAt?: string;
}

export interface ConfigurationRolloutsDependencies {
  client: Client;
  taskQueue: string;
  templates: TemplateCatalog;
  /** Renders each device's configuration and judges its compliance before anything starts. */
  configurations: DeviceConfigurations;
  registry: DeviceRegistry;
}

/** Problems listed in one refusal; the rest are counted. */
const problemsListed = 20;

export class ConfigurationRollouts {
  constructor(private readonly deps: ConfigurationRolloutsDependencies) {}

  /**
   * Starts a rollout once every device can take the configuration: judged now, through the same
   * gate as provisioning requests, so a rollout that could only fail is refused before any device
   * hears of it. A refusal by the compliance policy goes into each blocked device's history.
   */
  async start(tenantId: string, templateId: string, request: RolloutRequest, requestedBy: string): Promise<RolloutReport> {
    const { templates, configurations } = this.deps;
    const version =
      request.version === undefined ? await templates.currentVersion(tenantId, templateId) : await templates.getVersion(tenantId, templateId, request.version);
    const devices = await this.devicesNamed(tenantId, request, version.protocol);
    const { problems, blocked } = judgeDeployment(
      await configurations.previewMany(tenantId, version, devices),
      devices.map((device, index) => ({ field: request.deviceIds ? `deviceIds[${index}]` : `site:${device.deviceId}`, deviceId: device.deviceId })),
    );
    refuseIf(problems, 'the configuration cannot be rendered for every device');
    if (blocked.length > 0) {
      const refusal = complianceRefusal(blocked);
      await recordRefusal(configurations, tenantId, blocked, refusal, requestedBy);
      throw refusal;
    }
    const rolloutId = request.rolloutId ?? `rollout-${randomUUID()}`;
    const targets: RolloutTarget[] = devices.map((device) => ({ deviceId: device.deviceId, templateId: version.templateId, version: version.version }));
    return this.run({
      rolloutId,
      tenantId,
      kind: 'rollout',
      targets,
      concurrency: request.concurrency,
      maxFailureRate: request.maxFailureRate,
      minimumDevicesBeforeHalt: request.minimumDevicesBeforeHalt,
      requestedBy,
    });
  }

  /** Rollouts, rollbacks and remediations, newest first; `running` picks those still running or finished. */
  async list(tenantId: string, options: { running?: boolean; limit: number }): Promise<RolloutSummary[]> {
    const prefix = rolloutWorkflowId(tenantId, '');
    const filters = [`WorkflowType = 'configRollout'`, tenantVisibilityFilter(tenantId)];
    if (options.running !== undefined) filters.push(options.running ? `ExecutionStatus = 'Running'` : `ExecutionStatus != 'Running'`);
    const listed: RolloutSummary[] = [];
    try {
      for await (const execution of this.deps.client.workflow.list({ query: filters.join(' AND '), pageSize: options.limit })) {
        if (!execution.workflowId.startsWith(prefix)) continue;
        const memo = (execution.memo ?? {}) as Partial<RolloutMemo>;
        listed.push({
          rolloutId: execution.workflowId.slice(prefix.length),
          ...(memo.kind ? { kind: memo.kind } : {}),
          ...(memo.rollbackOf ? { rollbackOf: memo.rollbackOf } : {}),
          ...(memo.total !== undefined ? { total: memo.total } : {}),
          ...(memo.requestedBy ? { requestedBy: memo.requestedBy } : {}),
          execution: execution.status.name.toLowerCase(),
          startedAt: execution.startTime.toISOString(),
          ...(execution.closeTime ? { closedAt: execution.closeTime.toISOString() } : {}),
        });
        if (listed.length >= options.limit) break;
      }
    } catch (error) {
      throw fromWorkflowError(error, { what: 'the rollouts' });
    }
    return listed;
  }

  /** Counts, state and each device finished so far. */
  async report(tenantId: string, rolloutId: string): Promise<RolloutReport> {
    return (await this.state(tenantId, rolloutId)).report;
  }

  /** Stop starting devices until resumed; those in flight finish. */
  pause(tenantId: string, rolloutId: string): Promise<RolloutReport> {
    return this.steer(tenantId, rolloutId, (handle) => handle.signal(pauseRolloutSignal));
  }

  resume(tenantId: string, rolloutId: string): Promise<RolloutReport> {
    return this.steer(tenantId, rolloutId, (handle) => handle.signal(resumeRolloutSignal));
  }

  /** Stop for good: devices in flight finish, the rest are skipped. */
  cancel(tenantId: string, rolloutId: string, reason = 'cancelled by an operator'): Promise<RolloutReport> {
    return this.steer(tenantId, rolloutId, (handle) => handle.signal(cancelRolloutSignal, reason));
  }

  setConcurrency(tenantId: string, rolloutId: string, concurrency: number): Promise<RolloutReport> {
    return this.steer(tenantId, rolloutId, (handle) => handle.signal(setRolloutConcurrencySignal, concurrency));
  }

  /**
   * Puts every device a finished rollout changed back to the configuration it ran before, as a
   * rollout of its own. One per rollout: its id follows from the rollout's, so a second is refused.
   */
  async rollBack(tenantId: string, rolloutId: string, options: { concurrency?: number }, requestedBy: string): Promise<RolloutReport> {
    const { report: original, running } = await this.state(tenantId, rolloutId);
    if (running) throw new ConflictError(`rollout ${rolloutId} is still running; cancel it first`);
    const targets = original.devices.flatMap((device) => (device.outcome === 'applied' && device.previous ? [{ deviceId: device.deviceId, ...device.previous }] : []));
    if (targets.length === 0) throw new ConflictError(`rollout ${rolloutId} changed no device that ran an earlier configuration of ours`);
    return this.run({
      rolloutId: `${rolloutId.slice(0, 55)}.rollback`,
      tenantId,
      kind: 'rollback',
      rollbackOf: rolloutId,
      targets,
      concurrency: options.concurrency ?? original.concurrency,
      maxFailureRate: original.maxFailureRate,
      minimumDevicesBeforeHalt: 5,
      requestedBy,
    });
  }

  private handle(tenantId: string, rolloutId: string): WorkflowHandle<typeof configRollout> {
    return this.deps.client.workflow.getHandle<typeof configRollout>(rolloutWorkflowId(tenantId, rolloutId));
  }

  private async state(tenantId: string, rolloutId: string): Promise<{ report: RolloutReport; running: boolean }> {
    const handle = this.handle(tenantId, rolloutId);
    try {
      const description = await handle.describe();
      return { report: await handle.query(rolloutReportQuery), running: description.status.name === 'RUNNING' };
    } catch (error) {
      throw fromWorkflowError(error, { what: `rollout ${rolloutId}` });
    }
  }

  /** Sends an instruction to a running rollout and answers with where it now stands. */
  private async steer(tenantId: string, rolloutId: string, send: (handle: WorkflowHandle<typeof configRollout>) => Promise<void>): Promise<RolloutReport> {
    const { running } = await this.state(tenantId, rolloutId);
    if (!running) throw new ConflictError(`rollout ${rolloutId} has finished`);
    try {
      await send(this.handle(tenantId, rolloutId));
    } catch (error) {
      throw fromWorkflowError(error, { what: `rollout ${rolloutId}` });
    }
    return this.report(tenantId, rolloutId);
  }

  /** Starts the rollout's workflow and answers with its first report. */
  private async run(input: ConfigurationRolloutInput): Promise<RolloutReport> {
    try {
      await this.deps.client.workflow.start<typeof configRollout>('configRollout', {
        workflowId: rolloutWorkflowId(input.tenantId, input.rolloutId),
        taskQueue: this.deps.taskQueue,
        args: [input],
        // A rollout id names one job for good: a repeated request cannot start a second.
        workflowIdReusePolicy: 'REJECT_DUPLICATE',
        ...rolloutListing(input),
      });
    } catch (error) {
      throw fromWorkflowError(error, { what: `rollout ${input.rolloutId}`, alreadyStarted: `rollout ${input.rolloutId} already exists` });
    }
    return this.report(input.tenantId, input.rolloutId);
  }

  /** The devices a request names, each registered and speaking the template's protocol. */
  private async devicesNamed(tenantId: string, request: RolloutRequest, protocol: string): Promise<RegisteredDevice[]> {
    const { registry } = this.deps;
    if (request.site !== undefined) {
      const devices = await registry.listAtSite(tenantId, request.site, protocol, maximumRolloutDevices + 1);
      if (devices.length === 0) {
        throw new ValidationError(`no ${protocol} device is registered at site ${request.site}`, {
          fields: [{ field: 'site', reason: `no ${protocol} device is registered there` }],
        });
      }
      if (devices.length > maximumRolloutDevices) {
        throw new ValidationError(`site ${request.site} has more than ${maximumRolloutDevices} devices`, {
          fields: [{ field: 'site', reason: `more than ${maximumRolloutDevices} devices; name them in batches` }],
        });
      }
      return devices;
    }
    const ids = request.deviceIds!;
    const byId = new Map((await registry.findMany(tenantId, ids)).map((device) => [device.deviceId, device]));
    const problems: FieldProblem[] = [];
    ids.forEach((id, index) => {
      const device = byId.get(id);
      if (!device) problems.push({ field: `deviceIds[${index}]`, reason: `no device ${id} is registered` });
      else if (device.protocol !== protocol) problems.push({ field: `deviceIds[${index}]`, reason: `speaks ${device.protocol}, the template is for ${protocol}` });
    });
    refuseIf(problems, 'devices cannot take this configuration');
    return ids.map((id) => byId.get(id)!);
  }
}

function refuseIf(problems: FieldProblem[], message: string): void {
  if (problems.length === 0) return;
  const listed = problems.slice(0, problemsListed);
  const more = problems.length - listed.length;
  throw new ValidationError(`${message}${more > 0 ? ` (${more} more problem(s) not listed)` : ''}`, { fields: listed });
}
