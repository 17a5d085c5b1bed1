/**
 * Configuration jobs over HTTP: rolling a template version out to a set of devices, steering and
 * rolling back a rollout, the tenant's drift detection policy, and drift checks on demand. Each
 * job is a workflow; what it has done is read by querying it.
 */
import { randomUUID } from 'node:crypto';
import { WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError, type Client, type WorkflowHandle } from '@temporalio/client';
import { and, asc, eq, inArray } from 'drizzle-orm';
import { z } from 'zod';
import { complianceRefusal, judgeDeployment, recordRefusal } from '../../configuration/deployment-gate';
import type { DeviceConfigurations } from '../../configuration/device-configurations';
import {
  applyDriftSchedule,
  driftCheckPrefix,
  driftCheckSearchAttributes,
  driftPolicyInputSchema,
  driftScheduleId,
  type DriftPolicies,
} from '../../configuration/drift-policies';
import type { TemplateCatalog } from '../../configuration/templates';
import type { Database } from '../../db/client';
import { devices as deviceTable, type DeviceRow } from '../../db/schema';
import { identifierPattern, identifierReason } from '../../registry/identifiers';
import { ConflictError, NotFoundError, ValidationError, type FieldProblem } from '../../foundation/errors';
import {
  cancelRolloutSignal,
  driftCheckProgressQuery,
  maximumRolloutConcurrency,
  maximumRolloutDevices,
  pauseRolloutSignal,
  resumeRolloutSignal,
  rolloutListing,
  rolloutReportQuery,
  rolloutWorkflowId,
  setRolloutConcurrencySignal,
  type ConfigurationRolloutInput,
  type RolloutMemo,
  type RolloutReport,
  type RolloutTarget,
} from '../../workflows/configuration-definitions';
import type { configurationDriftCheck } from '../../workflows/configuration-drift';
import type { configRollout } from '../../workflows/configuration-rollout';
import { tenantVisibilityFilter } from '../../workflows/definitions';
import { operation, type AnyOperation } from '../operation';

const templates = '/api/v1/provisioning/templates';
const rollouts = '/api/v1/provisioning/rollouts';
const drift = '/api/v1/provisioning/configuration';
const timestamp = z.iso.datetime({ offset: true });
const identifier = z.string().regex(identifierPattern, identifierReason);

/** Problems listed in one refusal; the rest are counted. */
const problemsListed = 20;

const rolloutBody = z
  .object({
    rolloutId: identifier.optional().describe('Chosen by the caller to make the request idempotent; generated when absent'),
    version: z.number().int().min(1).optional().describe("The template version to apply; the template's current one when absent"),
    deviceIds: z.array(identifier).min(1).max(maximumRolloutDevices).optional(),
    site: identifier.optional().describe("Every device at the site that speaks the template's protocol"),
    concurrency: z.number().int().min(1).max(maximumRolloutConcurrency).default(10),
    maxFailureRate: z.number().min(0).max(1).default(0.1).describe('Halt once more than this fraction of the devices tried failed'),
    minimumDevicesBeforeHalt: z.number().int().min(1).max(1000).default(5).describe('Devices tried before the failure rate is judged'),
  })
  .strict()
  .superRefine((body, context) => {
    if ((body.deviceIds === undefined) === (body.site === undefined)) {
      context.addIssue({ code: 'custom', path: ['deviceIds'], message: 'give exactly one of deviceIds and site' });
    }
    const duplicates = (body.deviceIds ?? []).filter((id, index, all) => all.indexOf(id) !== index);
    if (duplicates.length > 0) context.addIssue({ code: 'custom', path: ['deviceIds'], message: `lists ${duplicates[0]} more than once` });
  });

const deviceResultSchema = z.object({
  deviceId: z.string(),
  outcome: z.enum(['applied', 'failed', 'skipped']),
  previous: z.object({ templateId: z.string(), version: z.number().int() }).optional(),
  applied: z.object({ templateId: z.string(), version: z.number().int(), hash: z.string() }).optional(),
  error: z.string().optional(),
  errorType: z.string().optional(),
});

const rolloutSchema = z
  .object({
    rolloutId: z.string(),
    kind: z.enum(['rollout', 'rollback', 'remediation']),
    rollbackOf: z.string().optional(),
    state: z.enum(['running', 'paused', 'halted', 'cancelled', 'completed']),
    total: z.number().int(),
    applied: z.number().int(),
    failed: z.number().int(),
    skipped: z.number().int(),
    pending: z.number().int(),
    inProgress: z.number().int(),
    concurrency: z.number().int(),
    maxFailureRate: z.number(),
    haltedBecause: z.string().optional(),
    cancelledBecause: z.string().optional(),
    startedAt: timestamp,
    finishedAt: timestamp.optional(),
    devices: z.array(deviceResultSchema),
  })
  .meta({ id: 'ConfigurationRollout' });

const rolloutSummarySchema = z
  .object({
    rolloutId: z.string(),
    kind: z.enum(['rollout', 'rollback', 'remediation']).optional(),
    rollbackOf: z.string().optional(),
    total: z.number().int().optional(),
    requestedBy: z.string().optional(),
    execution: z.string().describe('The workflow execution status: `running`, `completed`, `failed`, `terminated`, …; the outcome is in the rollout itself'),
    startedAt: timestamp,
    closedAt: timestamp.optional(),
  })
  .meta({ id: 'ConfigurationRolloutSummary' });

const rolloutParams = z.object({ rolloutId: identifier });
const templateParams = z.object({ templateId: z.string().min(1).max(63) });
const driftCheckParams = z.object({ driftCheckId: z.string().min(1).max(200) });

const driftPolicySchema = z
  .object({
    tenantId: z.string(),
    enabled: z.boolean(),
    action: z.enum(['alert', 'remediate']),
    intervalMinutes: z.number().int(),
    scheduleId: z.string().optional(),
    updatedBy: z.string().nullable(),
    updatedAt: timestamp.nullable(),
  })
  .meta({ id: 'DriftPolicy' });

const driftCheckSummarySchema = z
  .object({
    driftCheckId: z.string(),
    trigger: z.enum(['schedule', 'on-demand']),
    execution: z.string().describe('The workflow execution status: `running`, `completed`, `failed`, …'),
    startedAt: timestamp,
    closedAt: timestamp.optional(),
  })
  .meta({ id: 'DriftCheckSummary' });

const driftCheckSchema = z
  .object({
    driftCheckId: z.string(),
    state: z.enum(['running', 'completed', 'failed']),
    action: z.enum(['alert', 'remediate']).optional(),
    checked: z.number().int(),
    inSync: z.number().int(),
    drifted: z.number().int(),
    unreadable: z.number().int(),
    unsupported: z.number().int(),
    driftedDevices: z.array(z.string()),
    unreadableDevices: z.array(z.string()),
    remediationRolloutId: z.string().optional(),
    error: z.string().optional(),
  })
  .meta({ id: 'DriftCheck' });

export interface ConfigurationJobDependencies {
  database: { db: Database };
  templates: TemplateCatalog;
  configurations: DeviceConfigurations;
  driftPolicies: DriftPolicies;
  client: Client;
  taskQueue: string;
}

export function configurationJobOperations(deps: ConfigurationJobDependencies): AnyOperation[] {
  const { database, templates: catalog, configurations, driftPolicies, client, taskQueue } = deps;
  const { db } = database;

  async function devicesNamed(tenantId: string, body: z.infer<typeof rolloutBody>, protocol: string): Promise<DeviceRow[]> {
    if (body.site !== undefined) {
      const rows = await db
        .select()
        .from(deviceTable)
        .where(and(eq(deviceTable.tenantId, tenantId), eq(deviceTable.site, body.site), eq(deviceTable.protocol, protocol)))
        .orderBy(asc(deviceTable.deviceId))
        .limit(maximumRolloutDevices + 1);
      if (rows.length === 0) throw new ValidationError(`no ${protocol} device is registered at site ${body.site}`, { fields: [{ field: 'site', reason: `no ${protocol} device is registered there` }] });
      if (rows.length > maximumRolloutDevices) {
        throw new ValidationError(`site ${body.site} has more than ${maximumRolloutDevices} devices`, { fields: [{ field: 'site', reason: `more than ${maximumRolloutDevices} devices; name them in batches` }] });
      }
      return rows;
    }
    const ids = body.deviceIds!;
    const rows: DeviceRow[] = [];
    for (let start = 0; start < ids.length; start += 500) {
      const chunk = ids.slice(start, start + 500);
      rows.push(...(await db.select().from(deviceTable).where(and(eq(deviceTable.tenantId, tenantId), inArray(deviceTable.deviceId, chunk)))));
    }
    const byId = new Map(rows.map((row) => [row.deviceId, row]));
    const problems: FieldProblem[] = [];
    ids.forEach((id, index) => {
      const row = byId.get(id);
      if (!row) problems.push({ field: `deviceIds[${index}]`, reason: `no device ${id} is registered` });
      else if (row.protocol !== protocol) problems.push({ field: `deviceIds[${index}]`, reason: `speaks ${row.protocol}, the template is for ${protocol}` });
    });
    refuseIf(problems, 'devices cannot take this configuration');
    return ids.map((id) => byId.get(id)!);
  }

  function rolloutHandle(tenantId: string, rolloutId: string): WorkflowHandle<typeof configRollout> {
    return client.workflow.getHandle<typeof configRollout>(rolloutWorkflowId(tenantId, rolloutId));
  }

  async function report(tenantId: string, rolloutId: string): Promise<{ report: RolloutReport; running: boolean }> {
    const handle = rolloutHandle(tenantId, rolloutId);
    try {
      const description = await handle.describe();
      return { report: await handle.query(rolloutReportQuery), running: description.status.name === 'RUNNING' };
    } catch (error) {
      if (error instanceof WorkflowNotFoundError) throw new NotFoundError(`rollout ${rolloutId} not found`);
      throw error;
    }
  }

  async function startRollout(input: ConfigurationRolloutInput): Promise<void> {
    try {
      await client.workflow.start<typeof configRollout>('configRollout', {
        workflowId: rolloutWorkflowId(input.tenantId, input.rolloutId),
        taskQueue,
        args: [input],
        // A rollout id names one job for good: a repeated request cannot start a second.
        workflowIdReusePolicy: 'REJECT_DUPLICATE',
        ...rolloutListing(input),
      });
    } catch (error) {
      if (error instanceof WorkflowExecutionAlreadyStartedError) throw new ConflictError(`rollout ${input.rolloutId} already exists`);
      throw error;
    }
  }

  /** An operation that sends a signal to a running rollout and answers with where it now stands. */
  function steering<B>(
    step: { operationId: string; method: 'post' | 'put'; segment: string; summary: string; body?: z.ZodType<B> },
    send: (handle: WorkflowHandle<typeof configRollout>, body: B) => Promise<void>,
  ): AnyOperation {
    return operation<z.infer<typeof rolloutParams>, Record<string, unknown>, B>({
      operationId: step.operationId,
      method: step.method,
      path: `${rollouts}/{rolloutId}/${step.segment}`,
      summary: step.summary,
      tag: 'configuration',
      permission: 'configuration:deploy',
      params: rolloutParams,
      ...(step.body ? { body: step.body } : {}),
      responses: {
        202: { description: 'The rollout took the instruction', schema: rolloutSchema },
        409: { description: 'The rollout has finished' },
      },
      async handle({ res, tenantId, params, body }) {
        const { running } = await report(tenantId, params.rolloutId);
        if (!running) throw new ConflictError(`rollout ${params.rolloutId} has finished`);
        await send(rolloutHandle(tenantId, params.rolloutId), body);
        res.status(202).json((await report(tenantId, params.rolloutId)).report);
      },
    });
  }

  return [
    operation({
      operationId: 'startConfigurationRollout',
      method: 'post',
      path: `${templates}/{templateId}/rollouts`,
      summary: 'Apply a template version to a set of devices, a few at a time, halting when too many fail',
      tag: 'configuration',
      permission: 'configuration:deploy',
      params: templateParams,
      body: rolloutBody,
      responses: {
        202: { description: 'The rollout started; follow it at the Location', schema: rolloutSchema },
        400: { description: 'A device is unknown, speaks another protocol, or its configuration cannot be rendered' },
        409: { description: 'A rollout of that id exists' },
        422: { description: "A device's configuration breaks the compliance policy and no exception covers it" },
      },
      async handle({ res, tenantId, principal, params, body }) {
        const version = body.version === undefined ? await catalog.currentVersion(tenantId, params.templateId) : await catalog.getVersion(tenantId, params.templateId, body.version);
        const devices = await devicesNamed(tenantId, body, version.protocol);
        // Judged now, through the same gate as provisioning requests, so a rollout that could only
        // fail is refused before any device hears of it.
        const { problems, blocked } = judgeDeployment(
          await configurations.previewMany(tenantId, version, devices),
          devices.map((device, index) => ({ field: body.deviceIds ? `deviceIds[${index}]` : `site:${device.deviceId}`, deviceId: device.deviceId })),
        );
        refuseIf(problems, 'the configuration cannot be rendered for every device');
        if (blocked.length > 0) {
          const refusal = complianceRefusal(blocked);
          await recordRefusal(configurations, tenantId, blocked, refusal, principal.subject);
          throw refusal;
        }
        const rolloutId = body.rolloutId ?? `rollout-${randomUUID()}`;
        const targets: RolloutTarget[] = devices.map((device) => ({ deviceId: device.deviceId, templateId: version.templateId, version: version.version }));
        await startRollout({
          rolloutId,
          tenantId,
          kind: 'rollout',
          targets,
          concurrency: body.concurrency,
          maxFailureRate: body.maxFailureRate,
          minimumDevicesBeforeHalt: body.minimumDevicesBeforeHalt,
          requestedBy: principal.subject,
        });
        res.status(202).location(`${rollouts}/${rolloutId}`).json((await report(tenantId, rolloutId)).report);
      },
    }),
    operation({
      operationId: 'listConfigurationRollouts',
      method: 'get',
      path: rollouts,
      summary: 'Rollouts, rollbacks and remediations, newest first',
      tag: 'configuration',
      permission: 'configuration:read',
      query: z.object({
        running: z.enum(['true', 'false']).optional().describe('Only those still running (`true`) or finished (`false`)'),
        limit: z.coerce.number().int().min(1).max(200).default(50),
      }),
      responses: { 200: { description: 'The rollouts; each one in full at its own path', schema: z.object({ rollouts: z.array(rolloutSummarySchema) }) } },
      async handle({ res, tenantId, query }) {
        const prefix = rolloutWorkflowId(tenantId, '');
        const filters = [`WorkflowType = 'configRollout'`, tenantVisibilityFilter(tenantId)];
        if (query.running !== undefined) filters.push(query.running === 'true' ? `ExecutionStatus = 'Running'` : `ExecutionStatus != 'Running'`);
        const listed: z.infer<typeof rolloutSummarySchema>[] = [];
        for await (const execution of client.workflow.list({ query: filters.join(' AND '), pageSize: query.limit })) {
          if (!execution.workflowId.startsWith(prefix)) continue;
          const memo = (execution.memo ?? {}) as Partial<RolloutMemo>;
          listed.push({
            rolloutId: execution.workflowId.slice(prefix.length),
            ...(memo.kind ? { kind: memo.kind } : {}),
            ...(memo.rollbackOf ? { rollbackOf: memo.rollbackOf } : {}),
            ...(memo.total !== undefined ? { total: memo.total } : {}),
            ...(memo.requestedBy ? { requestedBy: memo.requestedBy } : {}),
            execution: execution.status.name.toLowerCase(),
            startedAt: execution.startTime.toISOString(),
            ...(execution.closeTime ? { closedAt: execution.closeTime.toISOString() } : {}),
          });
          if (listed.length >= query.limit) break;
        }
        res.json({ rollouts: listed });
      },
    }),
    operation({
      operationId: 'getConfigurationRollout',
      method: 'get',
      path: `${rollouts}/{rolloutId}`,
      summary: 'Where a rollout, rollback or remediation stands, device by device',
      tag: 'configuration',
      permission: 'configuration:read',
      params: rolloutParams,
      responses: { 200: { description: 'Counts, state and each device finished so far', schema: rolloutSchema } },
      async handle({ res, tenantId, params }) {
        res.json((await report(tenantId, params.rolloutId)).report);
      },
    }),
    steering(
      { operationId: 'pauseConfigurationRollout', method: 'post', segment: 'pause', summary: 'Stop starting devices until resumed; those in flight finish' },
      (handle) => handle.signal(pauseRolloutSignal),
    ),
    steering(
      { operationId: 'resumeConfigurationRollout', method: 'post', segment: 'resume', summary: 'Start devices again' },
      (handle) => handle.signal(resumeRolloutSignal),
    ),
    steering(
      {
        operationId: 'cancelConfigurationRollout',
        method: 'post',
        segment: 'cancel',
        summary: 'Stop for good: devices in flight finish, the rest are skipped',
        body: z.object({ reason: z.string().trim().min(1).max(500).optional() }).strict().optional(),
      },
      (handle, body) => handle.signal(cancelRolloutSignal, body?.reason ?? 'cancelled by an operator'),
    ),
    steering(
      {
        operationId: 'setConfigurationRolloutConcurrency',
        method: 'put',
        segment: 'concurrency',
        summary: 'Change how many devices are in flight at once',
        body: z.object({ concurrency: z.number().int().min(1).max(maximumRolloutConcurrency) }).strict(),
      },
      (handle, body) => handle.signal(setRolloutConcurrencySignal, body.concurrency),
    ),
    operation({
      operationId: 'rollBackConfigurationRollout',
      method: 'post',
      path: `${rollouts}/{rolloutId}/rollback`,
      summary: 'Put every device a finished rollout changed back to the configuration it ran before, as one tracked job',
      tag: 'configuration',
      permission: 'configuration:deploy',
      params: rolloutParams,
      body: z.object({ concurrency: z.number().int().min(1).max(maximumRolloutConcurrency).optional() }).strict().optional(),
      responses: {
        202: { description: 'The rollback started', schema: rolloutSchema },
        409: { description: 'The rollout is still running, changed nothing that can be put back, or was rolled back already' },
      },
      async handle({ res, tenantId, principal, params, body }) {
        const { report: original, running } = await report(tenantId, params.rolloutId);
        if (running) throw new ConflictError(`rollout ${params.rolloutId} is still running; cancel it first`);
        const targets = original.devices.flatMap((device) => (device.outcome === 'applied' && device.previous ? [{ deviceId: device.deviceId, ...device.previous }] : []));
        if (targets.length === 0) throw new ConflictError(`rollout ${params.rolloutId} changed no device that ran an earlier configuration of ours`);
        // One rollback per rollout: its id follows from the rollout's, so a second request is refused.
        const rolloutId = `${params.rolloutId.slice(0, 55)}.rollback`;
        await startRollout({
          rolloutId,
          tenantId,
          kind: 'rollback',
          rollbackOf: params.rolloutId,
          targets,
          concurrency: body?.concurrency ?? original.concurrency,
          maxFailureRate: original.maxFailureRate,
          minimumDevicesBeforeHalt: 5,
          requestedBy: principal.subject,
        });
        res.status(202).location(`${rollouts}/${rolloutId}`).json((await report(tenantId, rolloutId)).report);
      },
    }),
    operation({
      operationId: 'getDriftPolicy',
      method: 'get',
      path: `${drift}/drift-policy`,
      summary: "The tenant's drift detection: whether and how often devices are checked, and what a drifted one gets",
      tag: 'configuration',
      permission: 'configuration:read',
      responses: { 200: { description: 'The policy', schema: driftPolicySchema } },
      async handle({ res, tenantId }) {
        const policy = await driftPolicies.get(tenantId);
        res.json({ ...policy, ...(policy.enabled ? { scheduleId: driftScheduleId(tenantId) } : {}) });
      },
    }),
    operation({
      operationId: 'putDriftPolicy',
      method: 'put',
      path: `${drift}/drift-policy`,
      summary: 'Set the drift detection policy; its Temporal Schedule follows',
      tag: 'configuration',
      permission: 'compliance:manage',
      body: driftPolicyInputSchema,
      responses: { 200: { description: 'The policy in force', schema: driftPolicySchema } },
      async handle({ res, tenantId, principal, body }) {
        const policy = await driftPolicies.put(tenantId, body, principal.subject);
        const schedule = await applyDriftSchedule(client, policy, taskQueue);
        res.json({ ...policy, ...(schedule ? { scheduleId: schedule.scheduleId } : {}) });
      },
    }),
    operation({
      operationId: 'startDriftCheck',
      method: 'post',
      path: `${drift}/drift-checks`,
      summary: "Check every configured device's running configuration now",
      tag: 'configuration',
      permission: 'configuration:deploy',
      body: z.object({ action: z.enum(['alert', 'remediate']).optional().describe("The policy's action when absent") }).strict().optional(),
      responses: { 202: { description: 'The check started', schema: driftCheckSchema } },
      async handle({ res, tenantId, body }) {
        const action = body?.action ?? (await driftPolicies.get(tenantId)).action;
        const driftCheckId = `${driftCheckPrefix(tenantId)}${randomUUID()}`;
        await client.workflow.start<typeof configurationDriftCheck>('configurationDriftCheck', {
          workflowId: driftCheckId,
          taskQueue,
          args: [{ tenantId, action }],
          workflowExecutionTimeout: '6h',
          typedSearchAttributes: driftCheckSearchAttributes(tenantId),
        });
        res
          .status(202)
          .location(`${drift}/drift-checks/${encodeURIComponent(driftCheckId)}`)
          .json({ driftCheckId, state: 'running', action, checked: 0, inSync: 0, drifted: 0, unreadable: 0, unsupported: 0, driftedDevices: [], unreadableDevices: [] });
      },
    }),
    operation({
      operationId: 'listDriftChecks',
      method: 'get',
      path: `${drift}/drift-checks`,
      summary: 'Drift checks, scheduled and on demand, newest first',
      tag: 'configuration',
      permission: 'configuration:read',
      query: z.object({ limit: z.coerce.number().int().min(1).max(200).default(50) }),
      responses: {
        200: { description: 'The checks; what each found is at its own path', schema: z.object({ driftChecks: z.array(driftCheckSummarySchema) }) },
      },
      async handle({ res, tenantId, query }) {
        const listed: z.infer<typeof driftCheckSummarySchema>[] = [];
        const filter = `WorkflowType = 'configurationDriftCheck' AND ${tenantVisibilityFilter(tenantId)}`;
        for await (const execution of client.workflow.list({ query: filter, pageSize: query.limit })) {
          if (!execution.workflowId.startsWith(driftScheduleId(tenantId))) continue;
          listed.push({
            driftCheckId: execution.workflowId,
            trigger: execution.workflowId.startsWith(driftCheckPrefix(tenantId)) ? 'on-demand' : 'schedule',
            execution: execution.status.name.toLowerCase(),
            startedAt: execution.startTime.toISOString(),
            ...(execution.closeTime ? { closedAt: execution.closeTime.toISOString() } : {}),
          });
          if (listed.length >= query.limit) break;
        }
        res.json({ driftChecks: listed });
      },
    }),
    operation({
      operationId: 'getDriftCheck',
      method: 'get',
      path: `${drift}/drift-checks/{driftCheckId}`,
      summary: 'What a drift check found so far, or in all',
      tag: 'configuration',
      permission: 'configuration:read',
      params: driftCheckParams,
      responses: { 200: { description: 'Counts and the devices that drifted or could not be read', schema: driftCheckSchema } },
      async handle({ res, tenantId, params }) {
        const notFound = new NotFoundError(`drift check ${params.driftCheckId} not found`);
        // Scheduled checks are named after the schedule, on-demand ones after the prefix.
        if (!params.driftCheckId.startsWith(driftScheduleId(tenantId))) throw notFound;
        const handle = client.workflow.getHandle<typeof configurationDriftCheck>(params.driftCheckId);
        let status: string;
        try {
          status = (await handle.describe()).status.name;
        } catch (error) {
          if (error instanceof WorkflowNotFoundError) throw notFound;
          throw error;
        }
        if (status !== 'RUNNING' && status !== 'COMPLETED') {
          return void res.json({ driftCheckId: params.driftCheckId, state: 'failed', checked: 0, inSync: 0, drifted: 0, unreadable: 0, unsupported: 0, driftedDevices: [], unreadableDevices: [], error: `the check ended ${status.toLowerCase()}` });
        }
        const progress = await handle.query(driftCheckProgressQuery);
        // Another tenant whose id extends this one's shares the prefix; the check knows its tenant.
        if (progress.report.tenantId !== tenantId) throw notFound;
        const { tenantId: _tenant, ...counts } = progress.report;
        res.json({ driftCheckId: params.driftCheckId, state: progress.state, action: progress.action, ...counts });
      },
    }),
  ];
}

function refuseIf(problems: FieldProblem[], message: string): void {
  if (problems.length === 0) return;
  const listed = problems.slice(0, problemsListed);
  const more = problems.length - listed.length;
  throw new ValidationError(`${message}${more > 0 ? ` (${more} more problem(s) not listed)` : ''}`, { fields: listed });
}
