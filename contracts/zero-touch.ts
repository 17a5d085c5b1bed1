/**
 * Signals, queries and inputs of zero-touch provisioning, shared by the workflow, the activities
 * and services that feed it (discovery, DHCP events, enrolment tokens) and the API.
 */
import { defineQuery, defineSignal } from '@temporalio/workflow';

/** One time the network showed a device that may be the one registered. */
export interface DeviceSighting {
  via: 'discovery' | 'dhcp' | 'enrolment-token';
  observedAt: string;
  ip?: string;
  macAddress?: string;
  serialNumber?: string;
  /** Where adapters can reach it, by protocol. */
  endpoints: { protocol: string; address: string }[];
}

/** A registration a sighting was handed to, and what recognises its device. */
export interface ZeroTouchMatch {
  registrationId: string;
  deviceId: string;
  serialNumber?: string;
  macAddress?: string;
}

export interface ZeroTouchInput {
  tenantId: string;
  registrationId: string;
  deviceId: string;
  expected: { serialNumber?: string; macAddress?: string };
  protocol: string;
  expiresAt: string;
}

export type ZeroTouchState = 'waiting' | 'provisioning' | 'provisioned' | 'failed' | 'expired' | 'cancelled';

export interface ZeroTouchMismatch {
  at: string;
  via: DeviceSighting['via'];
  reason: string;
}

export interface ZeroTouchStatus {
  registrationId: string;
  deviceId: string;
  state: ZeroTouchState;
  expiresAt: string;
  /** The most recent sightings (bounded). */
  sightings: DeviceSighting[];
  mismatches: ZeroTouchMismatch[];
  provisioningId?: string;
  error?: string;
  completedAt?: string;
}

export const deviceSeenSignal = defineSignal<[DeviceSighting]>('deviceSeen');
export const cancelRegistrationSignal = defineSignal<[{ reason: string }]>('cancelRegistration');
export const zeroTouchStatusQuery = defineQuery<ZeroTouchStatus>('zeroTouchStatus');

export function zeroTouchWorkflowId(tenantId: string, deviceId: string): string {
  return `zero-touch:${tenantId}:${deviceId}`;
}
