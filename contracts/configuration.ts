/**
 * What the API, the CLI and the configuration workflows agree on: rollout input, progress and
 * report, the signals operators steer a rollout with, and the drift check's input and report.
 * Deterministic imports only.
 */
import type { SearchAttributePair } from '@temporalio/common';
import { defineQuery, defineSignal } from '@temporalio/workflow';
import { provisioningSearchAttributes } from './provisioning';

/** The most devices one rollout takes; larger fleets are rolled out site by site. */
export const maximumRolloutDevices = 5_000;
export const maximumRolloutConcurrency = 200;

export type RolloutKind = 'rollout' | 'rollback' | 'remediation';

/** One device and the configuration it should run. */
export interface RolloutTarget {
  deviceId: string;
  templateId: string;
  version: number;
}

export interface ConfigurationRef {
  templateId: string;
  version: number;
}

export interface DeviceRolloutResult {
  deviceId: string;
  outcome: 'applied' | 'failed' | 'skipped';
  /** What the device ran before, when it ran anything we configured: what a rollback re-applies. */
  previous?: ConfigurationRef;
  applied?: ConfigurationRef & { hash: string };
  error?: string;
  errorType?: string;
}

export interface RolloutCounters {
  total: number;
  applied: number;
  failed: number;
  skipped: number;
}

/** What a run hands on to the next when it continues as new. */
export interface RolloutCarriedState {
  next: number;
  results: DeviceRolloutResult[];
  concurrency: number;
  paused: boolean;
  cancelledBecause?: string;
  haltedBecause?: string;
  startedAt: string;
}

export interface ConfigurationRolloutInput {
  rolloutId: string;
  tenantId: string;
  kind: RolloutKind;
  /** The rollout a rollback undoes. */
  rollbackOf?: string;
  targets: RolloutTarget[];
  concurrency: number;
  /**
   * Stop starting devices once more than this fraction of the devices tried so far failed (after
   * at least `minimumDevicesBeforeHalt`); the devices not yet started are skipped.
   */
  maxFailureRate: number;
  minimumDevicesBeforeHalt: number;
  requestedBy: string;
  state?: RolloutCarriedState;
}

export interface RolloutProgress extends RolloutCounters {
  rolloutId: string;
  kind: RolloutKind;
  rollbackOf?: string;
  state: 'running' | 'paused' | 'halted' | 'cancelled' | 'completed';
  pending: number;
  inProgress: number;
  concurrency: number;
  maxFailureRate: number;
  haltedBecause?: string;
  cancelledBecause?: string;
  startedAt: string;
  finishedAt?: string;
}

export interface RolloutReport extends RolloutProgress {
  devices: DeviceRolloutResult[];
}

export const rolloutProgressQuery = defineQuery<RolloutProgress>('progress');
export const rolloutReportQuery = defineQuery<RolloutReport>('report');
export const pauseRolloutSignal = defineSignal<[]>('pause');
export const resumeRolloutSignal = defineSignal<[]>('resume');
/** Stops starting devices; those in flight finish; the rest are skipped. */
export const cancelRolloutSignal = defineSignal<[reason?: string]>('cancel');
export const setRolloutConcurrencySignal = defineSignal<[concurrency: number]>('setConcurrency');

export function rolloutWorkflowId(tenantId: string, rolloutId: string): string {
  return `config-rollout:${tenantId}:${rolloutId}`;
}

/** What a rollout carries for listing: its tenant to search by, and what it is in the memo. */
export function rolloutListing(input: Pick<ConfigurationRolloutInput, 'tenantId' | 'kind' | 'rollbackOf' | 'targets' | 'requestedBy'>): {
  typedSearchAttributes: SearchAttributePair[];
  memo: RolloutMemo;
} {
  return {
    typedSearchAttributes: [{ key: provisioningSearchAttributes.tenantId, value: input.tenantId }],
    memo: { kind: input.kind, total: input.targets.length, requestedBy: input.requestedBy, ...(input.rollbackOf ? { rollbackOf: input.rollbackOf } : {}) },
  };
}

// A type rather than an interface, so that it is a memo's `Record<string, unknown>`.
export type RolloutMemo = {
  kind: RolloutKind;
  total: number;
  requestedBy: string;
  rollbackOf?: string;
};

/** What a drift check does with a device whose running configuration differs from the desired one. */
export type DriftAction = 'alert' | 'remediate';

export interface DriftCheckInput {
  tenantId: string;
  action: DriftAction;
  /** Devices in flight at once while reading configurations. */
  concurrency?: number;
}

export interface DriftCheckReport {
  tenantId: string;
  checked: number;
  inSync: number;
  drifted: number;
  unreadable: number;
  /** Devices whose protocol cannot report its running configuration. */
  unsupported: number;
  /** The first thousand of each, by device id. */
  driftedDevices: string[];
  unreadableDevices: string[];
  /** The remediation rollout started for the drifted devices, when the policy is to remediate. */
  remediationRolloutId?: string;
}

export interface DriftCheckProgress {
  state: 'running' | 'completed';
  action: DriftAction;
  report: DriftCheckReport;
}

export const driftCheckProgressQuery = defineQuery<DriftCheckProgress>('progress');
