/**
 * Pushing a configuration to one device, for every activity that does (provisioning, rollouts):
 * render it with the device's parameters, check it against the protocol's schema and the tenant's
 * compliance policy before the device hears of it, then send it, and record every attempt in the
 * device's configuration history. A blocked push raises a compliance alert and is audited.
 *
 * Secrets are decrypted here and only here, straight into the settings handed to `send`; nothing
 * returned, recorded, logged or thrown carries them.
 */
import { Context } from '@temporalio/activity';
import type { ConfigurationReceipt, DeviceConfiguration } from '../adapters/device-adapter';
import { alertFingerprint, alertKinds, type AlertStore } from '../alerts/alert-store';
import type { AuditLog } from '../audit/audit-log';
import { describeFindings, type ComplianceFinding } from '../configuration/compliance';
import type { PreparedConfiguration } from '../configuration/configuration-rendering';
import type { DeviceConfigurations } from '../configuration/device-configurations';
import type { DeviceRegistry, RegisteredDevice } from '../registry/device-registry';
import { ComplianceViolationError, ServiceError } from '../foundation/errors';
import type { Logger } from '../foundation/logger';

export interface ConfigurationPushDependencies {
  audit: AuditLog;
  alerts: AlertStore;
  registry: DeviceRegistry;
  configurations: DeviceConfigurations;
  logger: Logger;
}

export interface ConfigurationPushRequest {
  tenantId: string;
  device: RegisteredDevice;
  templateId: string;
  version: number;
  /** Who asked for this push: the caller that started the run or the rollout. */
  requestedBy?: string;
}

export interface ConfigurationPushResult {
  templateId: string;
  version: number;
  /** The hash the device reported for what it applied. */
  hash: string;
  /** Hash of the rendered settings with secrets sealed. */
  settingsHash: string;
}

/** A finding as alerts and audit events carry it: what and where, never a value. */
function summaryOf(finding: ComplianceFinding) {
  return { ruleId: finding.ruleId, field: finding.field, severity: finding.severity, reason: finding.reason };
}

export function configurationPushes(deps: ConfigurationPushDependencies) {
  const { audit, alerts, registry, configurations, logger } = deps;

  return {
    /**
     * Validates, judges and (when allowed) sends the configuration through `send`, which adds what
     * the protocol needs (a signature) and talks to the device.
     */
    async push(
      request: ConfigurationPushRequest,
      send: (configuration: DeviceConfiguration) => Promise<ConfigurationReceipt>,
    ): Promise<ConfigurationPushResult> {
      const { tenantId, device, templateId, version } = request;
      const info = Context.current().info;
      const workflowId = info.workflowExecution?.workflowId;
      const runId = info.workflowExecution?.runId;
      const actor = workflowId ?? 'system';
      const { requestedBy } = request;
      const record = (outcome: 'applied' | 'failed' | 'blocked', details: { prepared?: PreparedConfiguration; deviceHash?: string; error?: string }) =>
        configurations.recordPush({
          tenantId,
          deviceId: device.deviceId,
          templateId,
          templateVersion: version,
          outcome,
          settingsHash: details.prepared?.settingsHash,
          deviceHash: details.deviceHash,
          findings: details.prepared?.findings ?? [],
          workflowId,
          runId,
          attempt: info.attempt,
          actor,
          requestedBy,
          error: details.error,
        });

      let prepared: PreparedConfiguration;
      try {
        prepared = await configurations.prepareForPush(tenantId, device, { templateId, version });
      } catch (error) {
        if (error instanceof ServiceError && !error.retryable) await record('failed', { error: error.message });
        throw error;
      }

      if (prepared.blocking.length > 0) {
        const rules = [...new Set(prepared.blocking.map((f) => f.ruleId))];
        const message = `configuration ${templateId} version ${version} for ${device.deviceId} breaks compliance rule(s) ${rules.join(', ')}: ${describeFindings(prepared.blocking)}; an approver may grant an exception`;
        await record('blocked', { prepared, error: message });
        await alerts.raise({
          tenantId,
          kind: alertKinds.complianceViolation,
          severity: 'critical',
          fingerprint: alertFingerprint(alertKinds.complianceViolation, device.deviceId),
          summary: `configuration ${templateId} v${version} for ${device.deviceId} was not deployed: it breaks ${rules.join(', ')}`,
          details: { deviceId: device.deviceId, templateId, version, findings: prepared.blocking.map(summaryOf), workflowId },
          raisedBy: actor,
        });
        await audit.append({
          tenantId,
          actor,
          actorType: workflowId ? 'workflow' : 'system',
          action: 'configuration.blocked',
          outcome: 'failure',
          targetType: 'device',
          targetId: device.deviceId,
          details: { templateId, version, rules, findings: prepared.blocking.map(summaryOf), requestedBy, runId },
        });
        logger.warn({ tenantId, deviceId: device.deviceId, templateId, version, rules }, 'configuration blocked by compliance policy');
        throw new ComplianceViolationError(message, {
          fields: prepared.blocking.map((f) => ({ field: f.field, reason: `${f.ruleId}: ${f.reason}` })),
        });
      }

      let receipt: ConfigurationReceipt;
      try {
        receipt = await send({ templateId, version, settings: prepared.settings });
      } catch (error) {
        // What a device sends back may quote what it was sent.
        if (error instanceof Error) error.message = prepared.scrub(error.message);
        if (error instanceof ServiceError) error.fields.forEach((field) => (field.reason = prepared.scrub(field.reason)));
        await record('failed', { prepared, error: error instanceof Error ? error.message : String(error) });
        throw error;
      }

      await registry.update(tenantId, device.deviceId, {
        ...(receipt.address ? { address: receipt.address } : {}),
        configurationTemplate: templateId,
        configurationVersion: receipt.version,
        configurationHash: receipt.hash,
      });
      await record('applied', { prepared, deviceHash: receipt.hash });
      await alerts.resolve(tenantId, alertFingerprint(alertKinds.complianceViolation, device.deviceId), actor);
      await audit.append({
        tenantId,
        actor,
        actorType: workflowId ? 'workflow' : 'system',
        action: 'configuration.applied',
        targetType: 'device',
        targetId: device.deviceId,
        details: {
          templateId,
          version: receipt.version,
          hash: receipt.hash,
          settingsHash: prepared.settingsHash,
          // Exceptions that let this configuration through, so each is on record where it was used.
          overrides: [...new Set(prepared.findings.flatMap((f) => (f.override ? [f.override.id] : [])))],
          requestedBy,
          runId,
        },
      });
      return { templateId, version: receipt.version, hash: receipt.hash, settingsHash: prepared.settingsHash };
    },
  };
}
