/**
 * A device's life after activation: decommissioning it, replacing it with a new unit (RMA) and
 * provisioning it again on purpose. Each POST starts one job (a workflow) and answers 202 with its
 * id; the GET beside it reads where that job stands.
 */
import { z } from 'zod';
import { decommissionSteps } from '../../contracts/device-lifecycle';
import {
  decommissionRequestSchema,
  replacementRequestSchema,
  reprovisionRequestSchema,
  type DeviceLifecycle,
  type StartedJob,
} from '../../fleet/device-lifecycle';
import { identifierPattern } from '../../registry/identifiers';
import { operation, type AnyOperation } from '../operation';

const base = '/api/v1/devices/{deviceId}';
const timestamp = z.iso.datetime({ offset: true });
const deviceParams = z.object({ deviceId: z.string().regex(identifierPattern, 'must be a device id') });

const startedJobSchema = z
  .object({
    deviceId: z.string(),
    jobId: z.string().describe('The workflow id of the job'),
    outcome: z.enum(['started', 'existing']).describe('`existing`: the same job was already under way or done; nothing new started'),
    progressUrl: z.string(),
  })
  .meta({ id: 'DeviceLifecycleJob' });

const decommissionProgressSchema = z
  .object({
    tenantId: z.string(),
    deviceId: z.string(),
    reason: z.string(),
    requestedBy: z.string(),
    state: z.enum(['running', 'completed']),
    steps: z.array(
      z.object({
        step: z.enum(decommissionSteps),
        status: z.enum(['pending', 'in_progress', 'completed', 'failed', 'skipped']),
        detail: z.string().optional(),
      }),
    ),
    endedWorkflows: z.array(z.string()),
    revokedCertificates: z.array(z.string()).describe('Serial numbers revoked with cessationOfOperation'),
    managementAccess: z.object({ removed: z.boolean(), items: z.array(z.string()), reason: z.string().optional() }).optional(),
    removedSecrets: z.number().int().optional(),
    startedAt: timestamp,
    completedAt: timestamp.optional(),
  })
  .meta({ id: 'DecommissionProgress' });

const replacementProgressSchema = z
  .object({
    tenantId: z.string(),
    oldDeviceId: z.string(),
    newDeviceId: z.string(),
    reason: z.string(),
    requestedBy: z.string(),
    state: z.enum(['provisioning', 'decommissioning', 'completed', 'failed']),
    provisioningId: z.string(),
    decommissionId: z.string().optional(),
    error: z.string().optional(),
    startedAt: timestamp,
    completedAt: timestamp.optional(),
  })
  .meta({ id: 'ReplacementProgress' });

const reprovisioningProgressSchema = z
  .object({
    tenantId: z.string(),
    deviceId: z.string(),
    reason: z.string(),
    requestedBy: z.string(),
    state: z.enum(['provisioning', 'revoking', 'completed', 'failed']),
    provisioningId: z.string(),
    previousCertificateId: z.uuid().optional(),
    newCertificateSerial: z.string().optional(),
    previousCertificateRevoked: z.boolean().optional(),
    error: z.string().optional(),
    startedAt: timestamp,
    completedAt: timestamp.optional(),
  })
  .meta({ id: 'ReprovisioningProgress' });

export function deviceLifecycleOperations(deps: { lifecycle: DeviceLifecycle; protocols: string[] }): AnyOperation[] {
  const { lifecycle } = deps;
  const accepted = (job: StartedJob, path: string) => ({ ...job, progressUrl: `/api/v1/devices/${encodeURIComponent(job.deviceId)}/${path}` });

  return [
    operation({
      operationId: 'decommissionDevice',
      method: 'post',
      path: `${base}/decommission`,
      summary: 'Decommission a device: revoke its certificates, end its workflows, remove its secrets and management access',
      tag: 'devices',
      permission: 'devices:lifecycle',
      params: deviceParams,
      body: decommissionRequestSchema,
      responses: { 202: { description: 'Decommissioning started, or the one already under way or done', schema: startedJobSchema } },
      async handle({ res, tenantId, principal, params, body }) {
        const job = accepted(await lifecycle.decommission(tenantId, params.deviceId, body, principal.subject), 'decommission');
        res.status(202).location(job.progressUrl).json(job);
      },
    }),
    operation({
      operationId: 'getDeviceDecommission',
      method: 'get',
      path: `${base}/decommission`,
      summary: "Where a device's decommissioning stands",
      tag: 'devices',
      permission: 'provisioning:read',
      params: deviceParams,
      responses: { 200: { description: 'The decommissioning', schema: decommissionProgressSchema } },
      async handle({ res, tenantId, params }) {
        res.json(await lifecycle.decommissionProgress(tenantId, params.deviceId));
      },
    }),
    operation({
      operationId: 'replaceDevice',
      method: 'post',
      path: `${base}/replace`,
      summary: "Replace a device with a new unit (RMA): the new one gets the old one's site, template, parameters and name, then the old one is decommissioned",
      tag: 'devices',
      permission: 'devices:lifecycle',
      params: deviceParams,
      body: replacementRequestSchema(deps.protocols),
      responses: {
        202: { description: 'Replacement started, or the one already under way', schema: startedJobSchema },
        409: { description: 'The device is decommissioned, or the new unit is already registered' },
        422: { description: "The new unit's configuration breaks the compliance policy" },
      },
      async handle({ res, tenantId, principal, params, body }) {
        const job = accepted(await lifecycle.replace(tenantId, params.deviceId, body, principal.subject), 'replace');
        res.status(202).location(job.progressUrl).json(job);
      },
    }),
    operation({
      operationId: 'getDeviceReplacement',
      method: 'get',
      path: `${base}/replace`,
      summary: "Where a device's replacement stands",
      tag: 'devices',
      permission: 'provisioning:read',
      params: deviceParams,
      responses: { 200: { description: 'The replacement', schema: replacementProgressSchema } },
      async handle({ res, tenantId, params }) {
        res.json(await lifecycle.replacementProgress(tenantId, params.deviceId));
      },
    }),
    operation({
      operationId: 'reprovisionDevice',
      method: 'post',
      path: `${base}/reprovision`,
      summary: 'Provision an active device again on purpose: new key and certificate, the old certificate revoked (superseded) once the new one is in use',
      tag: 'devices',
      permission: 'devices:lifecycle',
      params: deviceParams,
      body: reprovisionRequestSchema,
      responses: {
        202: { description: 'Re-provisioning started, or the one already under way', schema: startedJobSchema },
        409: { description: 'The device is not active' },
      },
      async handle({ res, tenantId, principal, params, body }) {
        const job = accepted(await lifecycle.reprovision(tenantId, params.deviceId, body, principal.subject), 'reprovision');
        res.status(202).location(job.progressUrl).json(job);
      },
    }),
    operation({
      operationId: 'getDeviceReprovisioning',
      method: 'get',
      path: `${base}/reprovision`,
      summary: "Where a device's re-provisioning stands",
      tag: 'devices',
      permission: 'provisioning:read',
      params: deviceParams,
      responses: { 200: { description: 'The re-provisioning', schema: reprovisioningProgressSchema } },
      async handle({ res, tenantId, params }) {
        res.json(await lifecycle.reprovisioningProgress(tenantId, params.deviceId));
      },
    }),
  ];
}
