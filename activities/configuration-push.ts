/**
 * Pushing a configuration to one device, for every activity that does (provisioning, rollouts):
 * render it with the device's parameters, check it against the protocol's schema and the tenant's
 * compliance policy before the device hears of it, then send it, and record every attempt in the
 * device's configuration history. A blocked push raises a compliance alert and is audited.
 *
 * Secrets are decrypted here and only here, straight into the settings handed to `send`; nothing
 * returned, recorded, logged or thrown carries them.
 *
 * A device reached from its site's queue gets the same push in two halves: `prepare` renders,
 * judges and signs it centrally (where the CA's key custody is) and leaves it sealed in the vault,
 * and `deliverPrepared`, at the site, sends what it finds there and records the outcome. Workflow
 * history carries only the package's reference.
 */
import { Context } from '@temporalio/activity';
import type { ConfigurationReceipt, DeviceConfiguration } from '../adapters/device-adapter';
import { alertFingerprint, alertKinds, type AlertStore } from '../alerts/alert-store';
import type { AuditLog } from '../audit/audit-log';
import { describeFindings, type ComplianceFinding } from '../configuration/compliance';
import { secretScrubber, type PreparedConfiguration } from '../configuration/configuration-rendering';
import type { DeviceConfigurations } from '../configuration/device-configurations';
import type { SecretVault } from '../custody/secret-vault';
import type { SignedDeviceConfiguration } from '../pki/configuration-signing';
import type { DeviceRegistry, RegisteredDevice } from '../registry/device-registry';
import { ComplianceViolationError, PreparedConfigurationExpiredError, ServiceError, ValidationError } from '../foundation/errors';
import type { Logger } from '../foundation/logger';

export interface ConfigurationPushDependencies {
  audit: AuditLog;
  alerts: AlertStore;
  registry: DeviceRegistry;
  configurations: DeviceConfigurations;
  /** Where configurations prepared for a site's worker wait, sealed under the key-encryption key. */
  vault: SecretVault;
  logger: Logger;
}

/**
 * Vault purposes of configurations prepared centrally for a site's worker to push. Their own
 * prefix, so nothing else reads one as a device's secret, and (unlike configuration secrets) they
 * are sealed under the key-encryption key, which an edge worker holds, not under a data key in
 * key custody, which it does not.
 */
export const preparedConfigurationPurposePrefix = 'signed-configuration:';

/** What a central `prepare` hands the workflow: no settings, no secrets. */
export interface PreparedConfigurationRef {
  /** The vault purpose the package is sealed under, for the device. */
  reference: string;
  settingsHash: string;
  /** When the signature expires; the package is prepared again after it. */
  expiresAt: string;
}

/** The sealed package: the signed configuration and what the push's records need. */
interface PreparedPackage {
  configuration: SignedDeviceConfiguration;
  settingsHash: string;
  findings: ComplianceFinding[];
  secretValues: Record<string, string>;
}

/** What a push needs of a configuration that passed the compliance gate. */
type ClearedConfiguration = Pick<PreparedConfiguration, 'settingsHash' | 'findings' | 'scrub'>;

/**
 * A signature is sent only with some of its lifetime left (a tenth, at most 30 s), so the device,
 * whose clock may run a little ahead, does not refuse it for good on arrival.
 */
function signatureExpired(signature: SignedDeviceConfiguration['signature'], now: number): boolean {
  const expiresAt = Date.parse(signature.expiresAt);
  const margin = Math.min(30_000, (expiresAt - Date.parse(signature.signedAt)) / 10);
  return now >= expiresAt - margin;
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
  const { audit, alerts, registry, configurations, vault, logger } = deps;

  /** The run and attempt a push belongs to, and how it records each outcome in the device's history. */
  function pushContext(request: ConfigurationPushRequest) {
    const { tenantId, device, templateId, version, requestedBy } = request;
    const info = Context.current().info;
    const workflowId = info.workflowExecution?.workflowId;
    const runId = info.workflowExecution?.runId;
    const actor = workflowId ?? 'system';
    const record = (outcome: 'applied' | 'failed' | 'blocked', details: { prepared?: ClearedConfiguration; deviceHash?: string; error?: string }) =>
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
    /** The push's event in the audit trail, by the run (or the system) that made it. */
    const recordAudit = (action: string, details: Record<string, unknown>, outcome: 'success' | 'failure' = 'success') =>
      audit.append({ tenantId, actor, actorType: workflowId ? 'workflow' : 'system', action, outcome, targetType: 'device', targetId: device.deviceId, details });
    return { workflowId, runId, actor, record, recordAudit };
  }

  /** Renders, validates and judges the configuration; a blocked one is recorded, alerted, audited and refused. */
  async function clear(request: ConfigurationPushRequest): Promise<PreparedConfiguration> {
    const { tenantId, device, templateId, version, requestedBy } = request;
    const { workflowId, runId, actor, record, recordAudit } = pushContext(request);
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
      await recordAudit('configuration.blocked', { templateId, version, rules, findings: prepared.blocking.map(summaryOf), requestedBy, runId }, 'failure');
      logger.warn({ tenantId, deviceId: device.deviceId, templateId, version, rules }, 'configuration blocked by compliance policy');
      throw new ComplianceViolationError(message, {
        fields: prepared.blocking.map((f) => ({ field: f.field, reason: `${f.ruleId}: ${f.reason}` })),
      });
    }
    return prepared;
  }

  /** Sends a cleared configuration through `send` and records what came of it. */
  async function deliver(
    request: ConfigurationPushRequest,
    prepared: ClearedConfiguration,
    send: () => Promise<ConfigurationReceipt>,
  ): Promise<ConfigurationPushResult> {
    const { tenantId, device, templateId, requestedBy } = request;
    const { runId, actor, record, recordAudit } = pushContext(request);
    let receipt: ConfigurationReceipt;
    try {
      receipt = await send();
    } catch (error) {
      // What a device sends back may quote what it was sent.
      if (error instanceof Error) error.message = prepared.scrub(error.message);
      if (error instanceof ServiceError) error.fields.forEach((field) => (field.reason = prepared.scrub(field.reason)));
      await record('failed', { prepared, error: error instanceof Error ? error.message : String(error) });
      throw error;
    }

    await registry.change(tenantId, device.deviceId, {
      ...(receipt.address ? { address: receipt.address } : {}),
      configurationTemplate: templateId,
      configurationVersion: receipt.version,
      configurationHash: receipt.hash,
    });
    await record('applied', { prepared, deviceHash: receipt.hash });
    await alerts.resolve(tenantId, alertFingerprint(alertKinds.complianceViolation, device.deviceId), actor);
    await recordAudit('configuration.applied', {
      templateId,
      version: receipt.version,
      hash: receipt.hash,
      settingsHash: prepared.settingsHash,
      // Exceptions that let this configuration through, so each is on record where it was used.
      overrides: [...new Set(prepared.findings.flatMap((f) => (f.override ? [f.override.id] : [])))],
      requestedBy,
      runId,
    });
    return { templateId, version: receipt.version, hash: receipt.hash, settingsHash: prepared.settingsHash };
  }

  function checkedReference(reference: string): string {
    if (!reference.startsWith(preparedConfigurationPurposePrefix)) {
      throw new ValidationError('not a prepared configuration', { fields: [{ field: 'reference', reason: `must start with ${preparedConfigurationPurposePrefix}` }] });
    }
    return reference;
  }

  return {
    /**
     * Validates, judges and (when allowed) sends the configuration through `send`, which adds what
     * the protocol needs (a signature) and talks to the device.
     */
    async push(
      request: ConfigurationPushRequest,
      send: (configuration: DeviceConfiguration) => Promise<ConfigurationReceipt>,
    ): Promise<ConfigurationPushResult> {
      const prepared = await clear(request);
      return deliver(request, prepared, () => send({ templateId: request.templateId, version: request.version, settings: prepared.settings }));
    },

    /**
     * The central half of a push to a device a site's worker reaches: the compliance gate as in
     * `push`, then `sign`, then the signed configuration sealed in the vault under a purpose of
     * this run (a retried preparation replaces it; the site's retries find it).
     */
    async prepare(
      request: ConfigurationPushRequest,
      sign: (configuration: DeviceConfiguration) => Promise<SignedDeviceConfiguration>,
    ): Promise<PreparedConfigurationRef> {
      const prepared = await clear(request);
      const configuration = await sign({ templateId: request.templateId, version: request.version, settings: prepared.settings });
      const { workflowId, runId } = pushContext(request);
      const reference = `${preparedConfigurationPurposePrefix}${workflowId ?? 'system'}:${runId ?? ''}`;
      const sealed: PreparedPackage = { configuration, settingsHash: prepared.settingsHash, findings: prepared.findings, secretValues: prepared.secretValues };
      await vault.store(request.tenantId, request.device.deviceId, reference, sealed);
      return { reference, settingsHash: prepared.settingsHash, expiresAt: configuration.signature.expiresAt };
    },

    /**
     * The site's half: sends the package `reference` names through `send` and records the outcome
     * as `push` does, then forgets the package. One whose signature has (nearly) expired, or that
     * is gone, is refused with `PreparedConfigurationExpiredError`: the workflow prepares it again.
     */
    async deliverPrepared(
      request: Omit<ConfigurationPushRequest, 'templateId' | 'version'> & { reference: string },
      send: (configuration: SignedDeviceConfiguration) => Promise<ConfigurationReceipt>,
    ): Promise<ConfigurationPushResult> {
      const { tenantId, device } = request;
      const reference = checkedReference(request.reference);
      const stored = await vault.read<PreparedPackage>(tenantId, device.deviceId, reference);
      if (!stored) throw new PreparedConfigurationExpiredError(`the configuration prepared for ${device.deviceId} is no longer stored`);
      const { configuration } = stored;
      if (signatureExpired(configuration.signature, Date.now())) {
        await vault.remove(tenantId, device.deviceId, reference);
        throw new PreparedConfigurationExpiredError(
          `the configuration signed for ${device.deviceId} expires at ${configuration.signature.expiresAt}, too soon to send`,
        );
      }
      const pushed = await deliver(
        { ...request, templateId: configuration.templateId, version: configuration.version },
        { settingsHash: stored.settingsHash, findings: stored.findings, scrub: secretScrubber(stored.secretValues) },
        () => send(configuration),
      );
      await vault.remove(tenantId, device.deviceId, reference);
      return pushed;
    },

    /** Forgets a package that will not be sent (its push failed for good, or the run was cancelled). */
    async discard(request: { tenantId: string; deviceId: string; reference: string }): Promise<void> {
      await vault.remove(request.tenantId, request.deviceId, checkedReference(request.reference));
    },
  };
}
