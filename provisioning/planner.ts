/**
 * The one path into a provisioning run, whoever asks (the API, a bulk job, a zero-touch
 * registration): a typed request is checked against everything short of starting (addresses,
 * duplicates, template, parameters and compliance, registry conflicts), and `planProvisioning`
 * turns it into the runs' inputs, with the approval each device needs resolved and the template
 * version that was judged pinned, so what a run pushes is what was checked, however long it waits.
 */
import type { DeviceAdapter } from '../adapters/device-adapter';
import type { DeviceNetworks } from '../adapters/device-networks';
import { complianceProblems, complianceRefusal, judgeDeployment, type BlockedConfiguration } from '../configuration/deployment-gate';
import type { DeviceConfigurations } from '../configuration/device-configurations';
import type { ConfigurationTemplateVersion, TemplateCatalog } from '../configuration/templates';
import { ConflictError, NotFoundError, ValidationError, type FieldProblem } from '../foundation/errors';
import { registryConflictError, type DeviceRegistry } from '../registry/device-registry';
import type { ApprovalRequirement, DeviceDescriptor, ProvisioningMethod, ProvisionDeviceInput } from '../contracts/provisioning';
import type { SiteWorkers } from '../discovery/site-workers';
import type { ApprovalPolicies } from './approval-policies';
import { duplicatesWithin, type DeviceProvisioningRequest, type DeviceRequest, type ProvisioningRequest } from './requests';

export interface ProvisioningPlannerDependencies {
  registry: DeviceRegistry;
  templates: TemplateCatalog;
  /** Renders each device's configuration with its parameters and judges its compliance before anything starts. */
  configurations: DeviceConfigurations;
  adapters: ReadonlyMap<string, DeviceAdapter>;
  /** Where devices may be reached: addresses outside are refused before anything starts. */
  networks: DeviceNetworks;
  approvals: Pick<ApprovalPolicies, 'requirementFor'>;
  /** Where each site's device steps run; every device step runs centrally when absent. */
  sites?: Pick<SiteWorkers, 'deviceTaskQueue'>;
  /** Whether bulk and zero-touch runs try their steps locally first; true when absent. */
  unattendedStepsLocalFirst?: boolean;
}

type TemplateOptions = Pick<ProvisioningRequest['options'], 'skipCertificateGeneration'>;

/** What a check needs of a request: its devices, as parsed, and the template they are to run. */
export interface CheckableRequest {
  templateId: string;
  options: TemplateOptions;
  devices: DeviceRequest[];
  /** Set only when an active device is provisioned again on purpose (new key and certificate). */
  reprovisioning?: boolean;
}

export interface CheckedProvisioning {
  /** The request's devices, each with its device id. */
  devices: DeviceProvisioningRequest[];
  /** The template version the devices' configurations were judged with: the one to pin. */
  templateVersion: number;
  /** Configurations the compliance policy refuses; the caller decides whether that is on record. */
  blocked: BlockedConfiguration[];
}

/** The template's verdict on a set of devices; `devices[<index>]...` names the device a problem is about. */
export interface TemplateVerdict {
  problems: FieldProblem[];
  blocked: BlockedConfiguration[];
  /** Absent when the template does not exist. */
  templateVersion?: number;
}

/** A device of a plan: what the run is told about it. */
export interface PlannedDevice {
  device: DeviceDescriptor;
  /** Its initial credentials are sealed in the vault; the run only learns that they exist. */
  hasInitialCredentials: boolean;
  metadata?: Record<string, string>;
  /** For a bulk job's device: the line of the file it came from. */
  rowNumber?: number;
}

export interface ProvisioningPlanRequest {
  tenantId: string;
  templateId: string;
  /**
   * The version the request was judged with. Absent only for bulk jobs imported before versions
   * were pinned: their runs push the version current when they get there, as they always did.
   */
  templateVersion?: number;
  provisioningMethod: ProvisioningMethod;
  options: ProvisionDeviceInput['options'];
  requestedBy?: string;
  /** A zero-touch registration may ask for an approver where no policy does. */
  approvalRequired?: boolean;
  /** Set for a bulk job's devices: their runs report to the job's workflow. */
  bulkJob?: { jobId: string; workflowId: string };
  devices: PlannedDevice[];
}

/** An approval a registration asks for without a policy: a week for someone to decide. */
const defaultApprovalTimeoutSeconds = 7 * 24 * 60 * 60;

export class ProvisioningPlanner {
  constructor(private readonly deps: ProvisioningPlannerDependencies) {}

  /**
   * Everything short of starting: addresses, duplicates, template and parameters, registry
   * conflicts, and the compliance of each device's configuration (returned, not thrown, as
   * `blocked`). Throws a ValidationError naming every problem, or a ConflictError for the registry.
   */
  async check(tenantId: string, request: CheckableRequest): Promise<CheckedProvisioning> {
    const devices = request.devices.map((device) => ({ ...device, deviceId: device.deviceId ?? device.serialNumber }));
    const problems: FieldProblem[] = [];
    for (const [index, device] of devices.entries()) {
      const reason = await this.deps.networks.addressProblem(this.deps.adapters.get(device.protocol)!, device.address);
      if (reason) problems.push({ field: `devices[${index}].address`, reason });
    }
    problems.push(...duplicatesWithin(devices));
    const verdict = await this.judgeTemplate(tenantId, request.templateId, devices, request.options);
    problems.push(...verdict.problems);
    if (problems.length > 0 || verdict.templateVersion === undefined) {
      throw new ValidationError(`provisioning request is invalid: ${problems.map((p) => `${p.field}: ${p.reason}`).join('; ')}`, {
        fields: problems,
      });
    }

    for (const [index, device] of devices.entries()) {
      const conflicts = await this.deps.registry.conflictsWith(tenantId, device);
      if (conflicts.length > 0) throw registryConflictError(conflicts, `devices[${index}].`);
    }
    if (!request.reprovisioning) await this.refuseSettledDevices(tenantId, devices);
    return { devices, templateVersion: verdict.templateVersion, blocked: verdict.blocked };
  }

  /**
   * A device already provisioned is not provisioned again by accident, and a decommissioned one not
   * at all: the registry's lifecycle state says so, however long ago its run ended (re-provisioning
   * on purpose is a request of its own).
   */
  private async refuseSettledDevices(tenantId: string, devices: readonly { deviceId: string }[]): Promise<void> {
    const registered = new Map((await this.deps.registry.findMany(tenantId, devices.map((d) => d.deviceId))).map((d) => [d.deviceId, d]));
    const problems: FieldProblem[] = [];
    for (const [index, { deviceId }] of devices.entries()) {
      const state = registered.get(deviceId)?.lifecycleState;
      if (state === 'active' || state === 'provisioned') {
        problems.push({ field: `devices[${index}].deviceId`, reason: 'this device is already provisioned' });
      } else if (state === 'decommissioned') {
        problems.push({ field: `devices[${index}].deviceId`, reason: 'this device is decommissioned' });
      }
    }
    if (problems.length > 0) {
      const ids = problems.map((p) => devices[Number(/\[(\d+)\]/.exec(p.field)![1])]!.deviceId);
      throw new ConflictError(`already provisioned or decommissioned: ${ids.join(', ')}`, { fields: problems });
    }
  }

  /** As `check`, refusing a request whose configurations the compliance policy blocks. */
  async checkCompliant(tenantId: string, request: CheckableRequest): Promise<Omit<CheckedProvisioning, 'blocked'>> {
    const { blocked, ...checked } = await this.check(tenantId, request);
    if (blocked.length > 0) throw complianceRefusal(blocked);
    return checked;
  }

  /**
   * The template's problems for these devices as field problems, compliance included (named
   * `devices[<index>]` with the rule in the reason), and the version judged: for requests checked
   * row by row, such as a bulk file.
   */
  async templateProblemsFor(
    tenantId: string,
    templateId: string,
    devices: DeviceProvisioningRequest[],
    options: TemplateOptions,
  ): Promise<{ problems: FieldProblem[]; templateVersion?: number }> {
    const { problems, blocked, templateVersion } = await this.judgeTemplate(tenantId, templateId, devices, options);
    return { problems: [...problems, ...blocked.flatMap(complianceProblems)], templateVersion };
  }

  /** One run input per device, with the approval its policies ask for and the template version pinned. */
  async planProvisioning(request: ProvisioningPlanRequest): Promise<ProvisionDeviceInput[]> {
    const { tenantId, templateId } = request;
    // A bulk dispatch plans hundreds of devices of a few sites and kinds: one look-up per kind.
    const requirements = new Map<string, Promise<ApprovalRequirement | undefined>>();
    const approvalFor = (device: DeviceDescriptor) => {
      const key = JSON.stringify([device.site, device.deviceType]);
      if (!requirements.has(key)) {
        requirements.set(key, this.deps.approvals.requirementFor(tenantId, { templateId, site: device.site, deviceType: device.deviceType }));
      }
      return requirements.get(key)!;
    };
    // Nobody watches an unattended run's steps one by one: they run locally first (see the input).
    const unattended =
      (this.deps.unattendedStepsLocalFirst ?? true) && (request.provisioningMethod === 'bulk' || request.provisioningMethod === 'automatic');
    // A site served by an edge worker has its device steps run on the site's own queue.
    const queues = new Map<string, Promise<string | undefined>>();
    const deviceTaskQueueOf = (site: string) => {
      if (!queues.has(site)) queues.set(site, this.deps.sites?.deviceTaskQueue(tenantId, site) ?? Promise.resolve(undefined));
      return queues.get(site)!;
    };
    const inputs: ProvisionDeviceInput[] = [];
    for (const planned of request.devices) {
      const approval =
        (await approvalFor(planned.device)) ??
        (request.approvalRequired ? { policyIds: [], timeoutSeconds: defaultApprovalTimeoutSeconds } : undefined);
      const deviceTaskQueue = await deviceTaskQueueOf(planned.device.site);
      inputs.push({
        tenantId,
        device: planned.device,
        ...(deviceTaskQueue ? { deviceTaskQueue } : {}),
        provisioningMethod: request.provisioningMethod,
        templateId,
        ...(request.templateVersion !== undefined ? { templateVersion: request.templateVersion } : {}),
        options: request.options,
        hasInitialCredentials: planned.hasInitialCredentials,
        ...(approval ? { approval } : {}),
        ...(request.bulkJob ? { bulkJobId: request.bulkJob.jobId } : {}),
        ...(request.bulkJob && planned.rowNumber !== undefined
          ? { bulkParent: { workflowId: request.bulkJob.workflowId, rowNumber: planned.rowNumber } }
          : {}),
        ...(request.requestedBy ? { requestedBy: request.requestedBy } : {}),
        ...(planned.metadata ? { metadata: planned.metadata } : {}),
        ...(unattended ? { stepsLocalFirst: true } : {}),
      });
    }
    return inputs;
  }

  /**
   * The template must exist, suit each device, render with each device's parameters, not lock out a
   * device that gets no certificate, and pass the compliance policy.
   */
  private async judgeTemplate(
    tenantId: string,
    templateId: string,
    devices: DeviceProvisioningRequest[],
    options: TemplateOptions,
  ): Promise<TemplateVerdict> {
    const template = await this.deps.templates.currentVersion(tenantId, templateId).catch((error) => {
      if (!(error instanceof NotFoundError)) throw error;
      return undefined;
    });
    if (!template) return { problems: [{ field: 'templateId', reason: `no template ${templateId}` }], blocked: [] };
    return { ...(await this.judgeVersion(tenantId, template, devices, options)), templateVersion: template.version };
  }

  private async judgeVersion(
    tenantId: string,
    template: ConfigurationTemplateVersion,
    devices: DeviceProvisioningRequest[],
    options: TemplateOptions,
  ): Promise<Omit<TemplateVerdict, 'templateVersion'>> {
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
}
