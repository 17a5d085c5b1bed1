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
   * terminates those still running then. Returns the ids of the workflows that were running.
   */
  async end(tenantId: string, deviceId: string, reason: string, waitMs: number): Promise<string[]> {
    const running: Handle[] = [];
    for (const workflow of deviceWorkflows) {
      const handle = this.deps.client.workflow.getHandle(workflow.id(tenantId, deviceId));
      if (!(await this.#isRunning(handle))) continue;
      running.push(handle);
      await workflow.stop(handle, reason).catch((error) => {
        if (!isWorkflowNotFound(error)) throw fromWorkflowError(error, { what: handle.workflowId });
      });
    }
    const deadline = Date.now() + waitMs;
    for (const handle of running) {
      while ((await this.#isRunning(handle)) && Date.now() < deadline) await sleep(pollIntervalMs);
      if (await this.#isRunning(handle)) {
        await handle.terminate(`device decommissioned: ${reason}`).catch((error) => {
          if (!isWorkflowNotFound(error)) throw fromWorkflowError(error, { what: handle.workflowId });
        });
      }
    }
    return running.map((handle) => handle.workflowId);
  }

  async #isRunning(handle: Handle): Promise<boolean> {
    try {
      return (await handle.describe()).status.name === 'RUNNING';
    } catch (error) {
      if (isWorkflowNotFound(error)) return false;
      throw fromWorkflowError(error, { what: handle.workflowId });
    }
  }
}
