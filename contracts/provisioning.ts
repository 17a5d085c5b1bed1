/**
 * What the API, the CLI and the workflows agree on: workflow inputs, the provisioning record the
 * `status` query answers with, signals, queries and search attributes. Imported by workflow code,
 * so it may only depend on Temporal's deterministic packages.
 */
import { defineSearchAttributeKey, SearchAttributeType, WorkflowIdReusePolicy, type SearchAttributePair } from '@temporalio/common';
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';

export const provisioningSearchAttributes = {
  tenantId: defineSearchAttributeKey('TenantId', SearchAttributeType.KEYWORD),
  deviceId: defineSearchAttributeKey('DeviceId', SearchAttributeType.KEYWORD),
  deviceSerial: defineSearchAttributeKey('DeviceSerial', SearchAttributeType.KEYWORD),
  status: defineSearchAttributeKey('ProvisioningStatus', SearchAttributeType.KEYWORD),
  method: defineSearchAttributeKey('ProvisioningMethod', SearchAttributeType.KEYWORD),
  bulkJobId: defineSearchAttributeKey('BulkJobId', SearchAttributeType.KEYWORD),
  site: defineSearchAttributeKey('Site', SearchAttributeType.KEYWORD),
};

export const allSearchAttributeKeys = Object.values(provisioningSearchAttributes);

/** Tenant ids as a visibility query may quote them: nothing that could end the string literal. */
const queryableTenantId = /^[A-Za-z0-9._:-]+$/;

/** The visibility query clause that keeps one tenant's executions (by the `TenantId` search attribute). */
export function tenantVisibilityFilter(tenantId: string): string {
  if (!queryableTenantId.test(tenantId)) throw new Error(`tenant id ${JSON.stringify(tenantId)} cannot be used in a visibility query`);
  return `${provisioningSearchAttributes.tenantId.name} = '${tenantId}'`;
}

export type ProvisioningMethod = 'manual' | 'automatic' | 'bulk' | 'api';
export type ProvisioningStatus = 'pending' | 'in_progress' | 'completed' | 'failed';

/**
 * The steps of a provisioning run, in order, each with the activity that performs it (approval is
 * a wait for a person, not an activity). The run's record, the status endpoint's live retry details
 * and the README's step table all follow this list.
 */
export const provisioningStepActivities = {
  identify: 'identifyDevice',
  approval: undefined,
  authenticate: 'authenticateDevice',
  generateCsr: 'requestCertificateSigning',
  issueCertificate: 'issueDeviceCertificate',
  installCertificate: 'installDeviceCertificate',
  pushConfiguration: 'pushDeviceConfiguration',
  selfTest: 'runDeviceSelfTest',
  activate: 'activateDevice',
} as const;
export type ProvisioningStepName = keyof typeof provisioningStepActivities;
export const provisioningStepNames = Object.keys(provisioningStepActivities) as [ProvisioningStepName, ...ProvisioningStepName[]];

/** The step an activity of a provisioning run performs; undefined for its bookkeeping activities. */
export function provisioningStepOf(activityType: string): ProvisioningStepName | undefined {
  return provisioningStepNames.find((step) => provisioningStepActivities[step] === activityType) ?? provisioningStepAlsoPerformedBy[activityType];
}

/** Activities that perform a step besides the one it names: a push through a site's worker, prepared centrally. */
const provisioningStepAlsoPerformedBy: Partial<Record<string, ProvisioningStepName>> = {
  prepareDeviceConfiguration: 'pushConfiguration',
  pushPreparedDeviceConfiguration: 'pushConfiguration',
};

export interface ProvisioningStep {
  step: ProvisioningStepName;
  status: 'pending' | 'in_progress' | 'completed' | 'failed' | 'skipped';
  startedAt?: string;
  completedAt?: string;
  error?: string;
  retryCount: number;
}

export interface CertificateInfo {
  certificateId: string;
  serialNumber: string;
  fingerprint: string;
  issuedAt: string;
  expiresAt: string;
  issuerDN: string;
  subjectDN: string;
  revokedAt?: string;
  /** What a client should pin for this device (see CertificatePins). */
  pins?: { certificateSha256: string; publicKeySha256: string; issuerCertificateSha256: string[] };
}

/** The brief's DeviceProvisioningRecord, as the `status` query returns it. */
export interface DeviceProvisioningRecord {
  id: string;
  tenantId: string;
  deviceId: string;
  provisioningMethod: ProvisioningMethod;
  status: ProvisioningStatus;
  certificateInfo?: CertificateInfo;
  configurationTemplate: string;
  configurationVersion?: number;
  provisioningSteps: ProvisioningStep[];
  metadata: Record<string, unknown>;
  createdAt: string;
  completedAt?: string;
  error?: { type: string; message: string; step?: ProvisioningStepName };
}

/** The device as the provisioning run knows it; never carries a secret, only a reference to one. */
export interface DeviceDescriptor {
  deviceId: string;
  serialNumber: string;
  macAddress: string;
  address: string;
  protocol: string;
  deviceType: string;
  site: string;
  name?: string;
}

export interface ProvisionDeviceInput {
  tenantId: string;
  device: DeviceDescriptor;
  provisioningMethod: ProvisioningMethod;
  templateId: string;
  /**
   * The template version judged when the run was planned: the run pushes exactly this one, however
   * long it waited for approval. Runs started before versions were pinned push the current version.
   */
  templateVersion?: number;
  options: {
    skipCertificateGeneration: boolean;
    /** When false the run waits, durably, for an operator's `activate` signal before activating. */
    autoActivate: boolean;
    certificateValidityDays?: number;
    /** How long to keep retrying a device that does not answer before giving up (default 600 s). */
    deviceRetryWindowSeconds?: number;
  };
  /** Set when an approval policy covers this device: the run waits for an approver after identifying it. */
  approval?: ApprovalRequirement;
  /**
   * Set when the device's site is served by an edge worker: the task queue its device steps run on
   * (see contracts/site-workers.ts). Absent: they run on the run's own queue, as they always did.
   */
  deviceTaskQueue?: string;
  /** Set when the API stored initial credentials in the secret vault; the value never enters history. */
  hasInitialCredentials: boolean;
  bulkJobId?: string;
  /** Set for a device of a bulk job: the run reports its outcome to the job's workflow. */
  bulkParent?: { workflowId: string; rowNumber: number };
  requestedBy?: string;
  metadata?: Record<string, unknown>;
  /**
   * Each step is tried first in the worker that runs the workflow (a local activity: a marker in
   * the history instead of a scheduled task, so far less work for Temporal), and as a regular
   * activity, with heartbeats and the step's whole retry window, only when that attempt fails for a
   * reason a retry may mend. Planned for unattended runs (bulk jobs, zero-touch), where throughput
   * matters more than an answer at once: while a step runs locally, the run's `status` query and
   * signals wait for the workflow task, a few seconds at most. Device steps of a run with a
   * `deviceTaskQueue` stay on that queue: the device is reachable from its site only.
   */
  stepsLocalFirst?: boolean;
}

export interface ApprovalRequirement {
  policyIds: string[];
  /** The request is refused if nobody decides within this time. */
  timeoutSeconds: number;
  /** Without a decision by then, the approval is escalated (alert and audit). */
  escalateAfterSeconds?: number;
}

export interface Approver {
  subject: string;
  tenantId: string;
  role: string;
  name?: string;
}

export interface ApprovalDecision {
  decision: 'approve' | 'reject';
  approver: Approver;
  comment?: string;
}

export interface ApprovalOutcome {
  decision: 'approve' | 'reject';
  decidedBy: string;
  decidedAt: string;
  comment?: string;
}

/** Roles whose members may decide approvals; checked by the update's validator. */
export const approvingRoles = ['approver', 'administrator'];

export const statusQuery = defineQuery<DeviceProvisioningRecord>('status');
/** Stops the run; compensation revokes anything already issued. Same effect as a workflow cancel. */
export const cancelSignal = defineSignal<[reason?: string]>('cancel');
/** Lets a run started with autoActivate=false go on to activate the device. */
export const activateSignal = defineSignal<[]>('activate');

/**
 * An approver's decision on a run waiting for approval. Its validator refuses decisions from other
 * tenants, from roles that may not approve, from the requester, and when nothing is waiting.
 */
export const approvalUpdate = defineUpdate<ApprovalOutcome, [ApprovalDecision]>('approval');

/** One provisioning run per tenant and device at a time: the id is the deduplication key. */
export function provisioningWorkflowId(tenantId: string, deviceId: string): string {
  return `provision:${tenantId}:${deviceId}`;
}

/**
 * How every provisioning run starts, from the API (`client.workflow.start`), a bulk job
 * (`startChild`) or a zero-touch registration (`executeChild`): its id, what may reuse it (a
 * failed device may be provisioned again, a provisioned one not) and the search attributes it is
 * listed by. Callers add only what their kind of start needs (task queue, parent close policy).
 */
export function startProvisioning(input: ProvisionDeviceInput) {
  const { tenantId, device } = input;
  const searchAttributes: SearchAttributePair[] = [
    { key: provisioningSearchAttributes.tenantId, value: tenantId },
    { key: provisioningSearchAttributes.deviceId, value: device.deviceId },
    { key: provisioningSearchAttributes.deviceSerial, value: device.serialNumber },
    { key: provisioningSearchAttributes.method, value: input.provisioningMethod },
    { key: provisioningSearchAttributes.status, value: 'pending' },
    { key: provisioningSearchAttributes.site, value: device.site },
    ...(input.bulkJobId ? [{ key: provisioningSearchAttributes.bulkJobId, value: input.bulkJobId }] : []),
  ];
  return {
    workflowId: provisioningWorkflowId(tenantId, device.deviceId),
    args: [input] as [ProvisionDeviceInput],
    workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
    typedSearchAttributes: searchAttributes,
  };
}

export function parseProvisioningWorkflowId(id: string): { tenantId: string; deviceId: string } | undefined {
  const match = /^provision:([^:]+):([^:]+)$/.exec(id);
  return match ? { tenantId: match[1], deviceId: match[2] } : undefined;
}
