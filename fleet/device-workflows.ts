/**
 * The workflows that look after or act on one device (its provisioning run, its zero-touch
 * registration, its certificate renewal), ended when the device leaves the fleet.
 *
 * Each is asked to stop its own way rather than terminated: a provisioning run told to cancel
 * revokes what it issued and puts its failure on record, a zero-touch registration told to cancel
 * records itself cancelled, and the renewal workflow's wait ends with the cancellation. Termination
 * is kept for what has not ended within the bound (a worker that is down, an undo that is stuck), so
 * a decommissioning never waits for ever.
 */
import type { Client } from '@temporalio/client';
import { setTimeout as sleep } from 'node:timers/promises';
import { renewalWorkflowId } from '../contracts/certificates';
import { cancelSignal, provisioningWorkflowId } from '../contracts/provisioning';
import { cancelRegistrationSignal, zeroTouchWorkflowId } from '../contracts/zero-touch';
import { fromWorkflowError, isWorkflowNotFound } from '../foundation/workflow-errors';

type Handle = ReturnType<Client['workflow']['getHandle']>;

/** How each of a device's workflows is asked to stop. */
const deviceWorkflows: { id: (tenantId: string, deviceId: string) => string; stop: (handle: Handle, reason: string) => Promise<void> }[] = [
  { id: provisioningWorkflowId, stop: (handle, reason) => handle.signal(cancelSignal, reason) },
  { id: zeroTouchWorkflowId, stop: (handle, reason) => handle.signal(cancelRegistrationSignal, { reason }) },
  { id: renewalWorkflowId, stop: async (handle) => void (await handle.cancel()) },
];

const pollIntervalMs = 500;

export class DeviceWorkflows {
  constructor(private readonly deps: { client: Client }) {}

  /**
   * Asks each of the device's running workflows to stop, waits up to `waitMs` for them to end, and
   * terminates those still running then. Returns the ids of the workflows ended since `since`: a
   * repeated call (a retry after a worker died) still names those an earlier call ended.
   */
  async end(tenantId: string, deviceId: string, reason: string, options: { waitMs: number; since: Date }): Promise<string[]> {
    const ended: string[] = [];
    const running: Handle[] = [];
    for (const workflow of deviceWorkflows) {
      const handle = this.deps.client.workflow.getHandle(workflow.id(tenantId, deviceId));
      const state = await workflowState(handle);
      if (state === 'running') {
        running.push(handle);
        await workflow.stop(handle, reason).catch((error) => {
          if (!isWorkflowNotFound(error)) throw fromWorkflowError(error, { what: handle.workflowId });
        });
      }
      if (state === 'running' || (state instanceof Date && state >= options.since)) ended.push(handle.workflowId);
    }
    const deadline = Date.now() + options.waitMs;
    for (const handle of running) {
      while ((await workflowState(handle)) === 'running' && Date.now() < deadline) await sleep(pollIntervalMs);
      if ((await workflowState(handle)) === 'running') {
        await handle.terminate(`device decommissioned: ${reason}`).catch((error) => {
          if (!isWorkflowNotFound(error)) throw fromWorkflowError(error, { what: handle.workflowId });
        });
      }
    }
    return ended;
  }
}

/** `running`, when the latest run of the workflow closed, or undefined when Temporal holds none. */
export async function workflowState(handle: Handle): Promise<'running' | Date | undefined> {
  try {
    const description = await handle.describe();
    return description.status.name === 'RUNNING' ? 'running' : (description.closeTime ?? undefined);
  } catch (error) {
    if (isWorkflowNotFound(error)) return undefined;
    throw fromWorkflowError(error, { what: handle.workflowId });
  }
}
