/**
 * Signals, queries and inputs of the certificate lifecycle workflows (renewal per device, rotation
 * of a site's intermediate CA), shared by the workflows, the activities that start them and the API.
 */
import { defineQuery, defineSignal } from '@temporalio/workflow';

/** The certificate a renewal workflow looks after. */
export interface RenewableCertificate {
  certificateId: string;
  serialNumber: string;
  issuedAt: string;
  expiresAt: string;
}

export interface CertificateRenewalInput {
  tenantId: string;
  deviceId: string;
  certificate: RenewableCertificate;
  /** Renew once this fraction of the certificate's lifetime has passed (e.g. 2/3). */
  renewAtFraction: number;
  /** Carried across continue-as-new so alerts and counters survive a renewal cycle. */
  completedRenewals?: number;
}

export type RenewalState = 'waiting' | 'renewing' | 'retrying' | 'stopped';

export interface RenewalStatus {
  tenantId: string;
  deviceId: string;
  state: RenewalState;
  certificate: RenewableCertificate;
  renewAt: string;
  /** Failed renewal attempts of the current certificate. */
  failedAttempts: number;
  nextAttemptAt?: string;
  lastError?: string;
  /** Renewals completed by this workflow over its lifetime. */
  completedRenewals: number;
  /** Why the workflow stopped (certificate revoked, device re-provisioned elsewhere). */
  stoppedBecause?: string;
}

/** A newer certificate was issued to the device by other means (re-provisioning, EST): look after it instead. */
export const certificateReplacedSignal = defineSignal<[RenewableCertificate]>('certificateReplaced');
/** Renew now rather than at the renewal time (issuer rotated, key compromise suspected, operator). */
export const renewNowSignal = defineSignal<[{ reason: string }]>('renewNow');
export const renewalStatusQuery = defineQuery<RenewalStatus>('renewalStatus');

export function renewalWorkflowId(tenantId: string, deviceId: string): string {
  return `renew:${tenantId}:${deviceId}`;
}

export interface IntermediateRotationInput {
  tenantId: string;
  site: string;
  /** How long the retired intermediate stays valid for devices not yet re-issued. */
  overlapDays: number;
  requestedBy: string;
}

export interface IntermediateRotationProgress {
  tenantId: string;
  site: string;
  state: 'rotating' | 'reissuing' | 'completed' | 'overlap-ended';
  previousCertificateId?: string;
  currentCertificateId?: string;
  /** Device certificates from the retired intermediate when the rotation began. */
  devicesTotal: number;
  /** Still holding a live certificate from the retired intermediate. */
  devicesRemaining: number;
  overlapEndsAt?: string;
  startedAt: string;
  completedAt?: string;
  /** Devices whose renewal workflow could not be asked to renew. */
  notRenewable: string[];
}

export const rotationProgressQuery = defineQuery<IntermediateRotationProgress>('rotationProgress');

/** The tenant comes from the caller's credentials, so one tenant can never name another's rotation. */
export function rotationWorkflowId(tenantId: string, rotationId: string): string {
  return `rotate-intermediate:${tenantId}:${rotationId}`;
}
