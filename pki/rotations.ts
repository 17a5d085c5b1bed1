/**
 * Rotations of a site's intermediate CA seen from outside: one started as a tracked job (new key,
 * devices re-issued, the old intermediate revoked after the overlap), and its progress read back by
 * querying the workflow.
 */
import { randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { NotFoundError } from '../foundation/errors';
import { fromWorkflowError } from '../foundation/workflow-errors';
import { rotationProgressQuery, rotationWorkflowId, type IntermediateRotationProgress } from '../contracts/certificates';
import { provisioningSearchAttributes as attributes } from '../contracts/provisioning';
import type { rotateSiteIntermediate } from '../workflows/intermediate-rotation';
import type { CertificateInventory } from './certificate-inventory';

export type IntermediateRotation = IntermediateRotationProgress & { rotationId: string };

export interface RotationRequest {
  /** How long the retired intermediate stays valid for devices not yet re-issued. */
  overlapDays: number;
  requestedBy: string;
  /** How often progress is re-counted; short only for small sites and tests. */
  progressCheckSeconds?: number;
}

export interface IntermediateRotationsDependencies {
  client: Client;
  taskQueue: string;
  inventory: CertificateInventory;
}

export class IntermediateRotations {
  constructor(private readonly deps: IntermediateRotationsDependencies) {}

  /** Starts rotating the site's live intermediate; NotFoundError when the site has none. */
  async start(tenantId: string, site: string, request: RotationRequest): Promise<IntermediateRotation> {
    const live = await this.deps.inventory.list(tenantId, { certificateType: 'intermediate', site, liveOnly: true, limit: 1 });
    if (live.items.length === 0) throw new NotFoundError(`site ${site} has no intermediate CA to rotate`);
    const rotationId = randomUUID();
    try {
      await this.deps.client.workflow.start<typeof rotateSiteIntermediate>('rotateSiteIntermediate', {
        workflowId: rotationWorkflowId(tenantId, rotationId),
        taskQueue: this.deps.taskQueue,
        args: [{ tenantId, site, overlapDays: request.overlapDays, requestedBy: request.requestedBy, progressCheckSeconds: request.progressCheckSeconds }],
        typedSearchAttributes: [
          { key: attributes.tenantId, value: tenantId },
          { key: attributes.site, value: site },
        ],
      });
    } catch (error) {
      throw fromWorkflowError(error, { what: `rotation ${rotationId}`, alreadyStarted: 'this rotation was already started' });
    }
    return { rotationId, tenantId, site, state: 'rotating', devicesTotal: 0, devicesRemaining: 0, startedAt: new Date().toISOString(), notRenewable: [] };
  }

  async progress(tenantId: string, rotationId: string): Promise<IntermediateRotation> {
    try {
      return { rotationId, ...(await this.deps.client.workflow.getHandle(rotationWorkflowId(tenantId, rotationId)).query(rotationProgressQuery)) };
    } catch (error) {
      throw fromWorkflowError(error, { what: `rotation ${rotationId}` });
    }
  }
}
