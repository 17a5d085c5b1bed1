/**
 * Rotation of devices' per-device management secrets, seen from outside: an operator asks for one
 * device now, and each tenant whose fleet policy sets `credentialRotationDays` has a Temporal
 * Schedule (`credential-rotation:<tenant>`) whose daily sweep rotates every active device whose
 * secrets are older. The policy lives in the database, so every start brings the schedules back.
 */
import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import type { DeviceAdapter } from '../adapters/device-adapter';
import type { DeviceRegistry } from '../registry/device-registry';
import { ConflictError, NotFoundError, NotImplementedError } from '../foundation/errors';
import { deleteSchedule, ensureIntervalSchedule } from '../foundation/schedules';
import { fromWorkflowError } from '../foundation/workflow-errors';
import { provisioningSearchAttributes as attributes } from '../contracts/provisioning';
import {
  credentialRotationScheduleId,
  credentialRotationWorkflowId,
  type CredentialRotationOutcome,
} from '../contracts/credential-rotation';
import type { credentialRotationSweep, rotateDeviceCredentials } from '../workflows/credential-rotation';
import type { FleetPolicies } from './fleet-policies';

/** A device's latest rotation, as its workflow tells it. */
export interface CredentialRotationStatus {
  tenantId: string;
  deviceId: string;
  workflowId: string;
  state: 'running' | 'completed' | 'failed';
  startedAt: string;
  closedAt?: string;
  /** What was rotated, once completed. */
  rotated?: string[];
  error?: string;
}

export interface CredentialRotationsDependencies {
  client: Client;
  taskQueue: string;
  registry: DeviceRegistry;
  policies: FleetPolicies;
  adapters: ReadonlyMap<string, DeviceAdapter>;
  /** How long a rotation keeps trying an unreachable device before it fails and alerts. */
  retryWindowSeconds?: number;
  /** False where the cluster has no custom search attributes (the time-skipping test server). */
  searchAttributes?: boolean;
}

/** Sweeps run once a day; a device is rotated within a day of falling due. */
const sweepInterval = '24h';

export class CredentialRotations {
  constructor(private readonly deps: CredentialRotationsDependencies) {}

  /**
   * Rotates an active device's management secrets now. A rotation already under way is answered
   * instead of starting a second one.
   */
  async start(tenantId: string, deviceId: string, request: { reason: string; requestedBy: string }): Promise<CredentialRotationStatus> {
    const device = await this.deps.registry.find(tenantId, deviceId);
    if (!device) throw new NotFoundError(`device ${deviceId} is not registered`);
    if (device.lifecycleState !== 'active') {
      throw new ConflictError(`device ${deviceId} is ${device.lifecycleState}: only an active device's management secrets are rotated`);
    }
    if (!this.deps.adapters.get(device.protocol)?.rotateCredentials) {
      throw new NotImplementedError(`${device.protocol} devices hold no per-device management secret of ours to rotate`);
    }
    const workflowId = credentialRotationWorkflowId(tenantId, deviceId);
    try {
      await this.deps.client.workflow.start<typeof rotateDeviceCredentials>('rotateDeviceCredentials', {
        workflowId,
        taskQueue: this.deps.taskQueue,
        args: [
          {
            tenantId,
            deviceId,
            reason: request.reason,
            requestedBy: request.requestedBy,
            ...(this.deps.retryWindowSeconds ? { retryWindowSeconds: this.deps.retryWindowSeconds } : {}),
          },
        ],
        ...(this.deps.searchAttributes === false
          ? {}
          : { typedSearchAttributes: [{ key: attributes.tenantId, value: tenantId }, { key: attributes.deviceId, value: deviceId }] }),
      });
    } catch (error) {
      if (!(error instanceof WorkflowExecutionAlreadyStartedError)) throw fromWorkflowError(error, { what: `the credential rotation of ${deviceId}` });
    }
    return this.status(tenantId, deviceId);
  }

  /** The device's latest rotation: running, or how it ended. */
  async status(tenantId: string, deviceId: string): Promise<CredentialRotationStatus> {
    const workflowId = credentialRotationWorkflowId(tenantId, deviceId);
    const handle = this.deps.client.workflow.getHandle<typeof rotateDeviceCredentials>(workflowId);
    try {
      const execution = await handle.describe();
      const status: CredentialRotationStatus = {
        tenantId,
        deviceId,
        workflowId,
        state: 'running',
        startedAt: execution.startTime.toISOString(),
        ...(execution.closeTime ? { closedAt: execution.closeTime.toISOString() } : {}),
      };
      if (execution.status.name === 'RUNNING') return status;
      if (execution.status.name !== 'COMPLETED') return { ...status, state: 'failed', error: `the rotation ended ${execution.status.name.toLowerCase()}` };
      const outcome: CredentialRotationOutcome = await handle.result();
      return { ...status, state: 'completed', rotated: outcome.rotated };
    } catch (error) {
      throw fromWorkflowError(error, { what: `the credential rotation of ${deviceId}`, notFound: `device ${deviceId} has had no credential rotation` });
    }
  }

  /** Creates, updates or removes the tenant's sweep schedule to follow its fleet policy. */
  async followPolicy(tenantId: string): Promise<string | undefined> {
    const policy = await this.deps.policies.get(tenantId);
    const scheduleId = credentialRotationScheduleId(tenantId);
    if (policy.credentialRotationDays === null) {
      await deleteSchedule(this.deps.client, scheduleId);
      return undefined;
    }
    await ensureIntervalSchedule<typeof credentialRotationSweep>(this.deps.client, {
      scheduleId,
      workflowType: 'credentialRotationSweep',
      args: [{ tenantId }],
      taskQueue: this.deps.taskQueue,
      every: sweepInterval,
      workflowExecutionTimeout: '23h',
      ...(this.deps.searchAttributes === false ? {} : { typedSearchAttributes: [{ key: attributes.tenantId, value: tenantId }] }),
    });
    return scheduleId;
  }

  /**
   * At start: the schedule of every tenant that rotates exists, and none of a tenant that stopped.
   * With `CREDENTIAL_ROTATION_DAYS` set every tenant with devices rotates, unless its policy says not.
   * Returns how many schedules there are.
   */
  async ensureSchedules(): Promise<number> {
    const tenants = new Set(await this.deps.policies.tenants());
    if (this.deps.policies.defaults.credentialRotationDays !== null) {
      for (const tenantId of await this.deps.registry.tenants()) tenants.add(tenantId);
    }
    let scheduled = 0;
    for (const tenantId of tenants) if (await this.followPolicy(tenantId)) scheduled += 1;
    return scheduled;
  }
}
