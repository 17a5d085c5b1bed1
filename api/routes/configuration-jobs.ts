/**
 * Configuration jobs over HTTP: rolling a template version out to a set of devices, steering and
 * rolling back a rollout, the tenant's drift detection policy, and drift checks on demand. The
 * rollout and drift check services start and read the workflows; these operations declare them.
 */
import { z } from 'zod';
import { driftPolicyInputSchema } from '../../configuration/drift-policies';
import type { DriftChecks } from '../../configuration/drift-checks';
import type { ConfigurationRollouts } from '../../configuration/rollouts';
import { identifierPattern, identifierReason } from '../../registry/identifiers';
import { maximumRolloutConcurrency, maximumRolloutDevices, type RolloutReport } from '../../contracts/configuration';
import { operation, type AnyOperation } from '../operation';

const templates = '/api/v1/provisioning/templates';
const rollouts = '/api/v1/provisioning/rollouts';
const drift = '/api/v1/provisioning/configuration';
const timestamp = z.iso.datetime({ offset: true });
const identifier = z.string().regex(identifierPattern, identifierReason);

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
  rollouts: ConfigurationRollouts;
  driftChecks: DriftChecks;
}

export function configurationJobOperations(deps: ConfigurationJobDependencies): AnyOperation[] {
  const { rollouts: jobs, driftChecks } = deps;

  /** An operation that steers a running rollout and answers with where it now stands. */
  function steering<B>(
    step: { operationId: string; method: 'post' | 'put'; segment: string; summary: string; body?: z.ZodType<B> },
    send: (tenantId: string, rolloutId: string, body: B) => Promise<RolloutReport>,
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
        res.status(202).json(await send(tenantId, params.rolloutId, body));
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
        const report = await jobs.start(tenantId, params.templateId, body, principal.subject);
        res.status(202).location(`${rollouts}/${report.rolloutId}`).json(report);
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
        const running = query.running === undefined ? undefined : query.running === 'true';
        res.json({ rollouts: await jobs.list(tenantId, { running, limit: query.limit }) });
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
        res.json(await jobs.report(tenantId, params.rolloutId));
      },
    }),
    steering(
      { operationId: 'pauseConfigurationRollout', method: 'post', segment: 'pause', summary: 'Stop starting devices until resumed; those in flight finish' },
      (tenantId, rolloutId) => jobs.pause(tenantId, rolloutId),
    ),
    steering(
      { operationId: 'resumeConfigurationRollout', method: 'post', segment: 'resume', summary: 'Start devices again' },
      (tenantId, rolloutId) => jobs.resume(tenantId, rolloutId),
    ),
    steering(
      {
        operationId: 'cancelConfigurationRollout',
        method: 'post',
        segment: 'cancel',
        summary: 'Stop for good: devices in flight finish, the rest are skipped',
        body: z.object({ reason: z.string().trim().min(1).max(500).optional() }).strict().optional(),
      },
      (tenantId, rolloutId, body) => jobs.cancel(tenantId, rolloutId, body?.reason),
    ),
    steering(
      {
        operationId: 'setConfigurationRolloutConcurrency',
        method: 'put',
        segment: 'concurrency',
        summary: 'Change how many devices are in flight at once',
        body: z.object({ concurrency: z.number().int().min(1).max(maximumRolloutConcurrency) }).strict(),
      },
      (tenantId, rolloutId, body) => jobs.setConcurrency(tenantId, rolloutId, body.concurrency),
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
        const report = await jobs.rollBack(tenantId, params.rolloutId, { concurrency: body?.concurrency }, principal.subject);
        res.status(202).location(`${rollouts}/${report.rolloutId}`).json(report);
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
        res.json(await driftChecks.policy(tenantId));
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
        res.json(await driftChecks.setPolicy(tenantId, body, principal.subject));
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
        const check = await driftChecks.start(tenantId, body?.action);
        res.status(202).location(`${drift}/drift-checks/${encodeURIComponent(check.driftCheckId)}`).json(check);
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
        res.json({ driftChecks: await driftChecks.list(tenantId, query.limit) });
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
        res.json(await driftChecks.get(tenantId, params.driftCheckId));
      },
    }),
  ];
}
