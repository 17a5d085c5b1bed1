/**
 * What the API and the device lifecycle workflows agree on: decommissioning a device, replacing it
 * with a new unit (RMA) and provisioning it again on purpose. Ids, queries, inputs and the progress
 * each workflow answers with. Imported by workflow code, so only Temporal's deterministic packages.
 */
import type { SearchAttributePair } from '@temporalio/common';
import { defineQuery } from '@temporalio/workflow';
import { provisioningSearchAttributes, type ProvisionDeviceInput } from './provisioning';

export interface DecommissionInput {
  tenantId: string;
  deviceId: string;
  reason: string;
  requestedBy: string;
  /** OSDP: also put the reader back on its install key (SCBK-D), so it can be enrolled elsewhere. */
  resetToInstallKey?: boolean;
  /** Set when the device is decommissioned because another took its place. */
  replacedBy?: string;
}

export const decommissionSteps = ['endWorkflows', 'removeManagementAccess', 'revokeCertificates', 'removeSecrets', 'markDecommissioned'] as const;
export type DecommissionStepName = (typeof decommissionSteps)[number];

export interface DecommissionStep {
  step: DecommissionStepName;
  status: 'pending' | 'in_progress' | 'completed' | 'failed' | 'skipped';
  /** What the step did, or why it did not (a device that could not be reached, say). */
  detail?: string;
}

export interface DecommissionProgress {
  tenantId: string;
  deviceId: string;
  reason: string;
  requestedBy: string;
  state: 'running' | 'completed';
  steps: DecommissionStep[];
  /** The device's workflows that were ended (renewal, zero-touch, a provisioning run under way). */
  endedWorkflows: string[];
  /** Serial numbers of the certificates revoked (`cessationOfOperation`). */
  revokedCertificates: string[];
  /** What was removed from the device itself; `removed: false` says it could not be, and why. */
  managementAccess?: { removed: boolean; items: string[]; reason?: string };
  /** How many per-device secrets were removed from the vault. */
  removedSecrets?: number;
  startedAt: string;
  completedAt?: string;
}

export interface ReplaceDeviceInput {
  tenantId: string;
  oldDeviceId: string;
  reason: string;
  requestedBy: string;
  /** The new unit's run, planned with the old device's site, template, parameters and name. */
  provisioning: ProvisionDeviceInput;
}

export interface ReplacementProgress {
  tenantId: string;
  oldDeviceId: string;
  newDeviceId: string;
  reason: string;
  requestedBy: string;
  state: 'provisioning' | 'decommissioning' | 'completed' | 'failed';
  provisioningId: string;
  decommissionId?: string;
  error?: string;
  startedAt: string;
  completedAt?: string;
}

export interface ReprovisionInput {
  tenantId: string;
  deviceId: string;
  reason: string;
  requestedBy: string;
  /** The certificate the device holds now: revoked (`superseded`) once the new one is in use. */
  previousCertificateId?: string;
  provisioning: ProvisionDeviceInput;
}

export interface ReprovisioningProgress {
  tenantId: string;
  deviceId: string;
  reason: string;
  requestedBy: string;
  state: 'provisioning' | 'revoking' | 'completed' | 'failed';
  provisioningId: string;
  previousCertificateId?: string;
  /** Serial number of the certificate the new run issued. */
  newCertificateSerial?: string;
  previousCertificateRevoked?: boolean;
  error?: string;
  startedAt: string;
  completedAt?: string;
}

export const decommissionProgressQuery = defineQuery<DecommissionProgress>('decommissionProgress');
export const replacementProgressQuery = defineQuery<ReplacementProgress>('replacementProgress');
export const reprovisioningProgressQuery = defineQuery<ReprovisioningProgress>('reprovisioningProgress');

/** One decommissioning per device, whoever asks (an operator, a replacement). */
export function decommissionWorkflowId(tenantId: string, deviceId: string): string {
  return `decommission:${tenantId}:${deviceId}`;
}

/** One replacement of a device: the id names the unit being replaced. */
export function replacementWorkflowId(tenantId: string, oldDeviceId: string): string {
  return `replace:${tenantId}:${oldDeviceId}`;
}

export function reprovisioningWorkflowId(tenantId: string, deviceId: string): string {
  return `reprovision:${tenantId}:${deviceId}`;
}

/** How every decommissioning starts, from the API or a replacement: its id and the search attributes it is listed by. */
export function startDecommission(input: DecommissionInput) {
  return {
    workflowId: decommissionWorkflowId(input.tenantId, input.deviceId),
    args: [input] as [DecommissionInput],
    typedSearchAttributes: deviceSearchAttributes(input.tenantId, input.deviceId),
  };
}

export function deviceSearchAttributes(tenantId: string, deviceId: string): SearchAttributePair[] {
  return [
    { key: provisioningSearchAttributes.tenantId, value: tenantId },
    { key: provisioningSearchAttributes.deviceId, value: deviceId },
  ];
}
