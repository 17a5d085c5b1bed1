/**
 * Configuration management over HTTP: a device's parameter values (secrets write-only), the record
 * of every configuration pushed to it, compliance reports, the tenant's compliance policy and the
 * exceptions approvers grant to it.
 */
import { z } from 'zod';
import type { AuditLog } from '../../audit/audit-log';
import { complianceRules, complianceSeverities } from '../../configuration/compliance';
import {
  complianceOverrideInputSchema,
  compliancePolicyInputSchema,
  type CompliancePolicies,
} from '../../configuration/compliance-policies';
import type { DeviceConfigurations } from '../../configuration/device-configurations';
import { deviceParametersInputSchema } from '../../configuration/parameters';
import type { TemplateCatalog } from '../../configuration/templates';
import type { DeviceRegistry } from '../../registry/device-registry';
import { identifierPattern, identifierReason } from '../../registry/identifiers';
import { ForbiddenError, NotFoundError, ValidationError } from '../../foundation/errors';
import { operation, type AnyOperation } from '../operation';

const devices = '/api/v1/provisioning/devices';
const compliance = '/api/v1/provisioning/compliance';
const timestamp = z.iso.datetime({ offset: true });
const deviceParams = z.object({ deviceId: z.string().regex(identifierPattern, identifierReason) });
const overrideParams = z.object({ overrideId: z.string().min(1).max(64) });

const verdictSchema = z.object({ acceptable: z.boolean(), reasons: z.array(z.string()) });

const deviceParametersSchema = z
  .object({
    deviceId: z.string(),
    values: z.record(z.string(), z.unknown()),
    secrets: z
      .array(z.object({ name: z.string(), setAt: timestamp, setBy: z.string(), strength: verdictSchema }))
      .describe('Which secrets are set; their values are never returned'),
    updatedAt: timestamp.nullable(),
    updatedBy: z.string().nullable(),
  })
  .meta({ id: 'DeviceConfigurationParameters' });

const findingSchema = z
  .object({
    ruleId: z.string(),
    field: z.string(),
    severity: z.enum(complianceSeverities),
    reason: z.string(),
    override: z.object({ id: z.string(), approvedBy: z.string(), expiresAt: timestamp }).optional(),
  })
  .meta({ id: 'ComplianceFinding' });

const fieldProblemSchema = z.object({ field: z.string(), reason: z.string() });

const historyEntrySchema = z
  .object({
    id: z.uuid(),
    deviceId: z.string(),
    templateId: z.string(),
    version: z.number().int(),
    outcome: z.enum(['applied', 'failed', 'blocked']),
    settingsHash: z.string().nullable().describe('SHA-256 of the rendered settings, secrets sealed'),
    deviceHash: z.string().nullable().describe('The hash the device reported for what it applied'),
    findings: z.array(findingSchema),
    workflowId: z.string().nullable(),
    runId: z.string().nullable(),
    attempt: z.number().int().nullable(),
    actor: z.string(),
    requestedBy: z.string().nullable(),
    error: z.string().nullable(),
    occurredAt: timestamp,
  })
  .meta({ id: 'ConfigurationHistoryEntry' });

const deviceConfigurationSchema = z
  .object({
    deviceId: z.string(),
    current: z.object({ templateId: z.string(), version: z.number().int(), hash: z.string().nullable() }).nullable(),
    history: z.array(historyEntrySchema),
  })
  .meta({ id: 'DeviceConfiguration' });

const complianceStatus = z.enum(['compliant', 'non-compliant', 'invalid']);

const deviceReportSchema = z
  .object({
    deviceId: z.string(),
    templateId: z.string(),
    version: z.number().int(),
    runningVersion: z.number().int().nullable(),
    evaluatedAt: timestamp,
    status: complianceStatus,
    deployable: z.boolean().describe('Whether a push of this configuration would go ahead now'),
    findings: z.array(findingSchema),
    problems: z.array(fieldProblemSchema),
    rulesEvaluated: z.array(z.string()),
  })
  .meta({ id: 'DeviceComplianceReport' });

const tenantReportSchema = z
  .object({
    tenantId: z.string(),
    evaluatedAt: timestamp,
    devices: z.number().int(),
    compliant: z.number().int(),
    nonCompliant: z.number().int(),
    invalid: z.number().int(),
    notConfigured: z.number().int(),
    byRule: z.array(z.object({ ruleId: z.string(), devices: z.number().int() })),
    attention: z.array(
      z.object({
        deviceId: z.string(),
        templateId: z.string(),
        version: z.number().int(),
        status: complianceStatus,
        deployable: z.boolean(),
        findings: z.array(findingSchema),
        problems: z.array(fieldProblemSchema),
      }),
    ),
  })
  .meta({ id: 'TenantComplianceReport' });

const policySchema = z
  .object({
    tenantId: z.string(),
    updatedAt: timestamp.nullable(),
    updatedBy: z.string().nullable(),
    rules: z.array(
      z.object({
        id: z.string(),
        title: z.string(),
        description: z.string(),
        protocols: z.array(z.string()),
        mandatory: z.boolean(),
        enabled: z.boolean(),
        severity: z.enum(complianceSeverities),
        blocking: z.boolean().describe('Critical findings stop deployment unless an approver grants an exception'),
        parameters: z.record(z.string(), z.unknown()),
        source: z.enum(['default', 'tenant']),
      }),
    ),
  })
  .meta({ id: 'CompliancePolicy' });

const overrideSchema = z
  .object({
    id: z.uuid(),
    tenantId: z.string(),
    ruleId: z.string(),
    scope: z.enum(['device', 'template']),
    deviceId: z.string().optional(),
    templateId: z.string().optional(),
    reason: z.string(),
    requestedBy: z.string().nullable(),
    approvedBy: z.string(),
    createdAt: timestamp,
    expiresAt: timestamp,
    revokedAt: timestamp.nullable(),
    revokedBy: z.string().nullable(),
    active: z.boolean(),
  })
  .meta({ id: 'ComplianceOverride' });

const overrideQuery = z
  .object({
    deviceId: z.string().regex(identifierPattern, identifierReason).optional(),
    templateId: z.string().min(1).max(63).optional(),
    active: z.enum(['true', 'false']).optional(),
  })
  .strict();

const historyQuery = z.object({ limit: z.coerce.number().int().min(1).max(500).optional() }).strict();

export interface ConfigurationApiDependencies {
  configurations: DeviceConfigurations;
  compliance: CompliancePolicies;
  templates: TemplateCatalog;
  registry: DeviceRegistry;
  audit: AuditLog;
}

export function configurationOperations(deps: ConfigurationApiDependencies): AnyOperation[] {
  const { configurations, compliance: policies, templates, registry, audit } = deps;

  async function policyView(tenantId: string) {
    const [policy, change] = await Promise.all([policies.policyFor(tenantId), policies.lastChange(tenantId)]);
    return {
      tenantId,
      updatedAt: change?.updatedAt ?? null,
      updatedBy: change?.updatedBy ?? null,
      rules: complianceRules.map((rule) => ({
        id: rule.id,
        title: rule.title,
        description: rule.description,
        protocols: [...rule.protocols],
        mandatory: rule.mandatory,
        ...policy[rule.id],
        blocking: policy[rule.id].enabled && policy[rule.id].severity === 'critical',
      })),
    };
  }

  return [
    operation({
      operationId: 'getDeviceConfigurationParameters',
      method: 'get',
      path: `${devices}/{deviceId}/configuration/parameters`,
      summary: "Read a device's configuration parameters (secret values are never shown)",
      tag: 'configuration',
      permission: 'configuration:read',
      params: deviceParams,
      responses: { 200: { description: 'Values, and which secrets are set', schema: deviceParametersSchema } },
      async handle({ res, tenantId, params }) {
        const parameters = await configurations.parameters(tenantId, params.deviceId);
        if (!parameters) throw new NotFoundError(`device ${params.deviceId} has no configuration parameters`);
        res.json(parameters);
      },
    }),
    operation({
      operationId: 'putDeviceConfigurationParameters',
      method: 'put',
      path: `${devices}/{deviceId}/configuration/parameters`,
      summary: "Set a device's configuration parameters",
      tag: 'configuration',
      permission: 'configuration:write',
      params: deviceParams,
      body: deviceParametersInputSchema,
      responses: {
        200: {
          description:
            'Plain values are replaced; each secret named is set (sealed in the vault) or, when null, removed; secrets not named stay',
          schema: deviceParametersSchema,
        },
      },
      async handle({ res, tenantId, principal, params, body }) {
        const written = await configurations.writeParameters(tenantId, params.deviceId, body, principal.subject);
        await audit.append({
          tenantId,
          actor: principal.subject,
          actorType: principal.kind === 'api-key' ? 'api-key' : 'user',
          action: 'configuration.parameters_changed',
          targetType: 'device',
          targetId: params.deviceId,
          // Names only: what was set and removed, never a value.
          details: {
            values: Object.keys(body.values),
            sealedValuesSet: Object.entries(body.secrets).flatMap(([name, value]) => (value === null ? [] : [name])),
            sealedValuesRemoved: Object.entries(body.secrets).flatMap(([name, value]) => (value === null ? [name] : [])),
          },
        });
        res.json(written);
      },
    }),
    operation({
      operationId: 'getDeviceConfiguration',
      method: 'get',
      path: `${devices}/{deviceId}/configuration`,
      summary: 'Read the configuration a device runs and every push made to it',
      tag: 'configuration',
      permission: 'configuration:read',
      params: deviceParams,
      query: historyQuery,
      responses: { 200: { description: 'Current configuration and history, newest first', schema: deviceConfigurationSchema } },
      async handle({ res, tenantId, params, query }) {
        const history = await configurations.history(tenantId, params.deviceId, query.limit);
        const device = await registry.find(tenantId, params.deviceId);
        const current =
          device?.configurationTemplate && device.configurationVersion !== null
            ? { templateId: device.configurationTemplate, version: device.configurationVersion, hash: device.configurationHash }
            : null;
        res.json({ deviceId: params.deviceId, current, history });
      },
    }),
    operation({
      operationId: 'getDeviceCompliance',
      method: 'get',
      path: `${devices}/{deviceId}/compliance`,
      summary: "Judge a device's configuration against the compliance policy now",
      tag: 'compliance',
      permission: 'compliance:read',
      params: deviceParams,
      responses: {
        200: { description: 'Findings for the version the device runs (or last tried), with its parameters', schema: deviceReportSchema },
        409: { description: 'The device has no configuration to judge yet' },
      },
      async handle({ res, tenantId, params }) {
        res.json(await configurations.deviceReport(tenantId, params.deviceId));
      },
    }),
    operation({
      operationId: 'getComplianceReport',
      method: 'get',
      path: `${compliance}/report`,
      summary: "Judge every device of the tenant against the compliance policy now",
      tag: 'compliance',
      permission: 'compliance:read',
      responses: { 200: { description: 'Counts, findings per rule and the devices that need attention', schema: tenantReportSchema } },
      async handle({ res, tenantId }) {
        res.json(await configurations.tenantReport(tenantId));
      },
    }),
    operation({
      operationId: 'getCompliancePolicy',
      method: 'get',
      path: `${compliance}/policy`,
      summary: "Read the tenant's compliance policy",
      tag: 'compliance',
      permission: 'compliance:read',
      responses: { 200: { description: 'Every rule as it applies to this tenant', schema: policySchema } },
      async handle({ res, tenantId }) {
        res.json(await policyView(tenantId));
      },
    }),
    operation({
      operationId: 'putCompliancePolicy',
      method: 'put',
      path: `${compliance}/policy`,
      summary: "Replace the tenant's compliance policy",
      tag: 'compliance',
      permission: 'compliance:manage',
      body: compliancePolicyInputSchema,
      responses: { 200: { description: 'The policy now; rules not named are back at their defaults', schema: policySchema } },
      async handle({ res, tenantId, principal, body }) {
        await policies.replacePolicy(tenantId, body, principal.subject);
        res.json(await policyView(tenantId));
      },
    }),
    operation({
      operationId: 'listComplianceOverrides',
      method: 'get',
      path: `${compliance}/overrides`,
      summary: 'List exceptions to the compliance policy',
      tag: 'compliance',
      permission: 'compliance:read',
      query: overrideQuery,
      responses: { 200: { description: 'Newest first', schema: z.object({ overrides: z.array(overrideSchema) }) } },
      async handle({ res, tenantId, query }) {
        const overrides = await policies.listOverrides(tenantId, {
          deviceId: query.deviceId,
          templateId: query.templateId,
          activeOnly: query.active === 'true',
        });
        res.json({ overrides: query.active === 'false' ? overrides.filter((o) => !o.active) : overrides });
      },
    }),
    operation({
      operationId: 'createComplianceOverride',
      method: 'post',
      path: `${compliance}/overrides`,
      summary: 'Grant an exception to one compliance rule for a device or a template',
      tag: 'compliance',
      permission: 'compliance:override',
      body: complianceOverrideInputSchema,
      responses: {
        201: { description: 'Granted; it lets blocked configurations through until it expires or is revoked', schema: overrideSchema },
        403: { description: 'The role may not approve exceptions, or the approver is the one who asked for it' },
      },
      async handle({ res, tenantId, principal, body }) {
        if (body.templateId !== undefined) {
          await templates.get(tenantId, body.templateId).catch((error) => {
            if (!(error instanceof NotFoundError)) throw error;
            throw new ValidationError(`no template ${body.templateId}`, { fields: [{ field: 'templateId', reason: 'no such template' }] });
          });
        }
        // Four eyes: whoever asked for the blocked configuration, as the records name them, cannot also excuse it.
        const requestedBy = await configurations.requesterOf(
          tenantId,
          body.deviceId !== undefined ? { deviceId: body.deviceId } : { templateId: body.templateId! },
        );
        if (requestedBy === principal.subject) {
          throw new ForbiddenError('the approver of an exception must not be its requester');
        }
        const created = await policies.createOverride(tenantId, body, principal.subject, requestedBy);
        await audit.append({
          tenantId,
          actor: principal.subject,
          actorType: principal.kind === 'api-key' ? 'api-key' : 'user',
          action: 'compliance.override_granted',
          targetType: created.scope,
          targetId: created.deviceId ?? created.templateId,
          details: { overrideId: created.id, ruleId: created.ruleId, reason: created.reason, expiresAt: created.expiresAt, requestedBy },
        });
        res.status(201).location(`${compliance}/overrides/${created.id}`).json(created);
      },
    }),
    operation({
      operationId: 'getComplianceOverride',
      method: 'get',
      path: `${compliance}/overrides/{overrideId}`,
      summary: 'Read an exception to the compliance policy',
      tag: 'compliance',
      permission: 'compliance:read',
      params: overrideParams,
      responses: { 200: { description: 'The exception', schema: overrideSchema } },
      async handle({ res, tenantId, params }) {
        res.json(await policies.getOverride(tenantId, params.overrideId));
      },
    }),
    operation({
      operationId: 'revokeComplianceOverride',
      method: 'delete',
      path: `${compliance}/overrides/{overrideId}`,
      summary: 'Revoke an exception to the compliance policy',
      tag: 'compliance',
      permission: 'compliance:override',
      params: overrideParams,
      responses: { 204: { description: 'Revoked; it stays on record' } },
      async handle({ res, tenantId, principal, params }) {
        const revoked = await policies.revokeOverride(tenantId, params.overrideId, principal.subject);
        await audit.append({
          tenantId,
          actor: principal.subject,
          actorType: principal.kind === 'api-key' ? 'api-key' : 'user',
          action: 'compliance.override_revoked',
          targetType: revoked.scope,
          targetId: revoked.deviceId ?? revoked.templateId,
          details: { overrideId: revoked.id, ruleId: revoked.ruleId },
        });
        res.status(204).end();
      },
    }),
  ];
}
