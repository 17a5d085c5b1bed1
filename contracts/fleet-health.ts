/**
 * What the API, the schedules and the health sweep workflow agree on: the sweep's ids, input,
 * progress query and report. Deterministic imports only.
 */
import type { SearchAttributePair } from '@temporalio/common';
import { defineQuery } from '@temporalio/workflow';
import { provisioningSearchAttributes } from './provisioning';

/** The schedule of a site's sweeps; scheduled runs are named after it and the time they were due. */
export function healthScheduleId(tenantId: string, site: string): string {
  return `health:${tenantId}:${site}`;
}

/** Sweeps run on demand are named after the schedule too, with this in between, then a unique part. */
export function healthSweepOnDemandPrefix(tenantId: string, site: string): string {
  return `${healthScheduleId(tenantId, site)}:now:`;
}

/** What every sweep carries for finding a tenant's (and a site's) sweeps in Temporal's visibility. */
export function healthSweepSearchAttributes(tenantId: string, site: string): SearchAttributePair[] {
  return [
    { key: provisioningSearchAttributes.tenantId, value: tenantId },
    { key: provisioningSearchAttributes.site, value: site },
  ];
}

export interface HealthSweepCounts {
  probed: number;
  online: number;
  /** Devices that did not answer this time (offline or not yet past the threshold). */
  unanswered: number;
  wentOffline: number;
  cameBack: number;
  rebooted: number;
  certificateMismatches: number;
  /** Devices whose protocol has no probe. */
  unsupported: number;
}

export interface HealthSweepInput {
  tenantId: string;
  site: string;
  /** Carried over when the sweep continues as new past a large site. */
  state?: { after?: string; counts: HealthSweepCounts };
}

export interface HealthSweepReport extends HealthSweepCounts {
  tenantId: string;
  site: string;
}

export interface HealthSweepProgress {
  state: 'running' | 'completed';
  report: HealthSweepReport;
}

export const healthSweepProgressQuery = defineQuery<HealthSweepProgress>('progress');

export const noHealthSweepCounts = (): HealthSweepCounts => ({
  probed: 0,
  online: 0,
  unanswered: 0,
  wentOffline: 0,
  cameBack: 0,
  rebooted: 0,
  certificateMismatches: 0,
  unsupported: 0,
});

export function addHealthSweepCounts(total: HealthSweepCounts, page: HealthSweepCounts): void {
  for (const key of Object.keys(total) as (keyof HealthSweepCounts)[]) total[key] += page[key];
}
