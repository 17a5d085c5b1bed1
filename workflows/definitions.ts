/**
 * What the API, the CLI and the workflows agree on: workflow inputs, the provisioning record the
 * `status` query answers with, signals, queries and search attributes. Imported by workflow code,
 * so it may only depend on Temporal's deterministic packages.
 */
import { defineSearchAttributeKey, SearchAttributeType, type SearchAttributePair } from '@temporalio/common';
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

/** The search attributes a provisioning run starts with, however it is started. */
export function provisioningRunSearchAttributes(
  tenantId: string,
  device: { deviceId: string; serialNumber: string; site: string },
  method: ProvisioningMethod,
  bulkJobId?: string,
): SearchAttributePair[] {
  return [
    { key: provisioningSearchAttributes.tenantId, value: tenantId },
    { key: provisioningSearchAttributes.deviceId, value: device.deviceId },
    { key: provisioningSearchAttributes.deviceSerial, value: device.serialNumber },
    { key: provisioningSearchAttributes.method, value: method },
    { key: provisioningSearchAttributes.status, value: 'pending' },
    { key: provisioningSearchAttributes.site, value: device.site },
    ...(bulkJobId ? [{ key: provisioningSearchAttributes.bulkJobId, value: bulkJobId }] : []),
  ];
}

export type ProvisioningMethod = 'manual' | 'automatic' | 'bulk' | 'api';
export type ProvisioningStatus = 'pending' | 'in_progress' | 'completed' | 'failed';

export const provisioningStepNames = [
  'identify',
  'approval',
  'authenticate',
  'generateCsr',
  'issueCertificate',
  'installCertificate',
  'pushConfiguration',
  'selfTest',
  'activate',
] as const;
export type ProvisioningStepName = (typeof provisioningStepNames)[number];

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
  /** Set when the API stored initial credentials in the secret vault; the value never enters history. */
  hasInitialCredentials: boolean;
  bulkJobId?: string;
  /** Set for a device of a bulk job: the run reports its outcome to the job's workflow. */
  bulkParent?: { workflowId: string; rowNumber: number };
  requestedBy?: string;
  metadata?: Record<string, unknown>;
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

export function parseProvisioningWorkflowId(id: string): { tenantId: string; deviceId: string } | undefined {
  const match = /^provision:([^:]+):([^:]+)$/.exec(id);
  return match ? { tenantId: match[1], deviceId: match[2] } : undefined;
}
