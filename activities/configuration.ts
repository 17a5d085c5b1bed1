/**
 * Activities of configuration rollouts and drift checks: apply a template version to one device
 * (through the same compliance gate, signing and history as provisioning), read back what a device
 * runs and compare it with what it should run, and record how each job ended.
 */
import { Context } from '@temporalio/activity';
import { alertFingerprint, alertKinds, type AlertStore } from '../alerts/alert-store';
import type { AuditLog } from '../audit/audit-log';
import type { DeviceConfigurations } from '../configuration/device-configurations';
import { driftedSettings } from '../configuration/drift';
import type { TemplateCatalog } from '../configuration/templates';
import type { SecretVault } from '../custody/secret-vault';
import type { DeviceAdapter } from '../adapters/device-adapter';
import type { CertificateAuthorityService, ServiceIdentities } from '../pki/certificate-authority';
import { ConfigurationSigner } from '../pki/configuration-signing';
import type { DeviceRegistry } from '../registry/device-registry';
import type { Logger } from '../foundation/logger';
import type { ConfigurationRef, DriftAction, DriftCheckReport, RolloutKind, RolloutReport } from '../contracts/configuration';
import { configurationPushes, type PreparedConfigurationRef } from './configuration-push';
import { deviceSessions } from './device-sessions';
import { provisioningStep } from './step';

export interface ConfigurationActivityDependencies {
  audit: AuditLog;
  alerts: AlertStore;
  registry: DeviceRegistry;
  ca: Pick<CertificateAuthorityService, 'getCertificate'> & Pick<ServiceIdentities, 'ensureServiceIdentity' | 'ensureConfigurationSigner'>;
  vault: SecretVault;
  templates: TemplateCatalog;
  configurations: DeviceConfigurations;
  adapterFor: (protocol: string) => DeviceAdapter;
  /** How long a configuration signature lasts; the signer's default (an hour) unless a test shortens it. */
  configurationSignatureLifetimeMs?: number;
  logger: Logger;
}

export interface ApplyConfigurationInput {
  tenantId: string;
  deviceId: string;
  templateId: string;
  version: number;
  rolloutId: string;
  kind: RolloutKind;
  requestedBy: string;
}

export interface AppliedConfiguration {
  hash: string;
  /** What the device ran before this job touched it; absent when it ran nothing of ours. */
  previous?: ConfigurationRef;
}

export interface DeviceDriftResult {
  deviceId: string;
  state: 'in-sync' | 'drifted' | 'unreadable' | 'unsupported';
  reason?: string;
  /** Setting paths that differ, when drifted. */
  fields?: string[];
  /** The version the device should run. */
  desired?: ConfigurationRef;
  /** Whether the drift check should put the device back. */
  remediate?: boolean;
}

/** Changed settings named in an alert; the full list is in the check's activity result. */
const fieldsInAlert = 50;

export function createConfigurationActivities(deps: ConfigurationActivityDependencies) {
  const { audit, alerts, registry, templates, configurations, logger } = deps;
  const { withDevice } = deviceSessions(deps);
  const signer = new ConfigurationSigner(deps.ca, { lifetimeMs: deps.configurationSignatureLifetimeMs });
  const pushes = configurationPushes(deps);

  /**
   * What the device ran before the job `workflowId` first touched it: the newest configuration
   * applied by anything else. A retried attempt, or a continued run, finds the same answer.
   */
  async function previousConfiguration(tenantId: string, device: { deviceId: string; configurationTemplate: string | null; configurationVersion: number | null }, workflowId: string | undefined) {
    const history = await configurations.history(tenantId, device.deviceId, 200);
    const applied = history.filter((entry) => entry.outcome === 'applied');
    const before = applied.find((entry) => entry.workflowId !== workflowId);
    if (before) return { templateId: before.templateId, version: before.version };
    // Configured before pushes were recorded: what the registry says, unless this job already changed it.
    const touchedByThisJob = applied.some((entry) => entry.workflowId === workflowId);
    if (!touchedByThisJob && device.configurationTemplate && device.configurationVersion !== null) {
      return { templateId: device.configurationTemplate, version: device.configurationVersion };
    }
    return undefined;
  }

  return {
    /** Pushes one template version to one device, signed for it, after the compliance gate. */
    applyDeviceConfiguration: provisioningStep(async (input: ApplyConfigurationInput): Promise<AppliedConfiguration> => {
      const workflowId = Context.current().info.workflowExecution?.workflowId;
      return withDevice(input, async (device, adapter, session) => {
        const previous = await previousConfiguration(input.tenantId, device, workflowId);
        const pushed = await pushes.push(
          { tenantId: input.tenantId, device, templateId: input.templateId, version: input.version, requestedBy: input.requestedBy },
          async (configuration) => adapter.pushConfiguration(session, await signer.sign({ tenantId: input.tenantId, device, configuration })),
        );
        return { hash: pushed.hash, ...(previous ? { previous } : {}) };
      });
    }),

    /**
     * Central: renders, judges and signs the configuration for a device a site's worker reaches, and
     * seals it in the vault for that worker (`applyPreparedDeviceConfiguration`,
     * `pushPreparedDeviceConfiguration`); only a reference comes back. Without `version`, the
     * template's current one (provisioning runs planned before versions were pinned).
     */
    prepareDeviceConfiguration: provisioningStep(
      async (input: { tenantId: string; deviceId: string; templateId: string; version?: number; requestedBy?: string }): Promise<PreparedConfigurationRef> => {
        const device = await registry.get(input.tenantId, input.deviceId);
        const version = input.version ?? (await templates.get(input.tenantId, input.templateId)).version;
        return pushes.prepare(
          { tenantId: input.tenantId, device, templateId: input.templateId, version, requestedBy: input.requestedBy },
          (configuration) => signer.sign({ tenantId: input.tenantId, device, configuration }),
        );
      },
    ),

    /** At the site: `applyDeviceConfiguration` with the configuration prepared and signed centrally. */
    applyPreparedDeviceConfiguration: provisioningStep(async (input: ApplyConfigurationInput & { reference: string }): Promise<AppliedConfiguration> => {
      const workflowId = Context.current().info.workflowExecution?.workflowId;
      return withDevice(input, async (device, adapter, session) => {
        const previous = await previousConfiguration(input.tenantId, device, workflowId);
        const pushed = await pushes.deliverPrepared(
          { tenantId: input.tenantId, device, reference: input.reference, requestedBy: input.requestedBy },
          (signed) => adapter.pushConfiguration(session, signed),
        );
        return { hash: pushed.hash, ...(previous ? { previous } : {}) };
      });
    }),

    /** Central: forgets a prepared configuration that will not be sent. */
    async discardPreparedConfiguration(input: { tenantId: string; deviceId: string; reference: string }): Promise<void> {
      await pushes.discard(input);
    },

    /** The audit record of a finished rollout, and an alert when it halted on its failure rate. */
    async recordRolloutOutcome(input: { tenantId: string; report: RolloutReport; requestedBy: string }): Promise<void> {
      const { tenantId, report } = input;
      const workflowId = Context.current().info.workflowExecution?.workflowId ?? report.rolloutId;
      const failed = report.devices.filter((device) => device.outcome === 'failed');
      await audit.append({
        tenantId,
        actor: workflowId,
        actorType: 'workflow',
        action: `configuration.${report.kind}_finished`,
        outcome: report.state === 'completed' && failed.length === 0 ? 'success' : 'failure',
        targetType: 'rollout',
        targetId: report.rolloutId,
        details: {
          state: report.state,
          total: report.total,
          applied: report.applied,
          failed: report.failed,
          skipped: report.skipped,
          ...(report.rollbackOf ? { rollbackOf: report.rollbackOf } : {}),
          ...(report.haltedBecause ? { haltedBecause: report.haltedBecause } : {}),
          ...(report.cancelledBecause ? { cancelledBecause: report.cancelledBecause } : {}),
          failedDevices: failed.slice(0, 100).map((device) => device.deviceId),
          requestedBy: input.requestedBy,
        },
      });
      if (report.state === 'halted') {
        await alerts.raise({
          tenantId,
          kind: alertKinds.configurationRolloutHalted,
          severity: 'critical',
          fingerprint: alertFingerprint(alertKinds.configurationRolloutHalted, report.rolloutId),
          summary: `${report.kind} ${report.rolloutId} halted: ${report.haltedBecause}; ${report.skipped} device(s) were not started`,
          details: {
            rolloutId: report.rolloutId,
            kind: report.kind,
            failed: report.failed,
            applied: report.applied,
            skipped: report.skipped,
            failedDevices: failed.slice(0, 20).map((device) => ({ deviceId: device.deviceId, error: device.error })),
          },
          raisedBy: workflowId,
        });
      }
      logger.info({ tenantId, rolloutId: report.rolloutId, kind: report.kind, state: report.state, applied: report.applied, failed: report.failed, skipped: report.skipped }, 'configuration job finished');
    },

    /** A page of the devices running a configuration of ours, by device id. */
    async listConfiguredDevices(input: { tenantId: string; after?: string; limit: number }): Promise<string[]> {
      return registry.listConfigured(input.tenantId, { after: input.after, limit: input.limit });
    },

    /**
     * Reads what the device runs and compares it with what its recorded version renders into for
     * it; settings the device keeps secret are left out. A drifted device raises (or keeps open) a
     * drift alert naming the settings; one back in sync resolves it.
     */
    async checkDeviceDrift(input: { tenantId: string; deviceId: string; action: DriftAction }): Promise<DeviceDriftResult> {
      const context = Context.current();
      const heartbeat = setInterval(() => context.heartbeat(), 5_000);
      try {
        return await withDevice(input, async (device, adapter, session): Promise<DeviceDriftResult> => {
          const { deviceId } = device;
          if (!device.configurationTemplate || device.configurationVersion === null) {
            return { deviceId, state: 'unsupported', reason: 'the device runs no configuration of ours' };
          }
          const desired = { templateId: device.configurationTemplate, version: device.configurationVersion };
          if (!adapter.readConfiguration) {
            return { deviceId, state: 'unsupported', reason: `${device.protocol} devices cannot report their running configuration`, desired };
          }
          const version = await templates.getVersion(input.tenantId, desired.templateId, desired.version);
          const [rendered] = await configurations.previewMany(input.tenantId, version, [device]);
          if (!rendered?.prepared) {
            const problems = (rendered?.problems ?? []).map((p) => `${p.field}: ${p.reason}`).join('; ');
            return { deviceId, state: 'unreadable', reason: `the desired configuration cannot be rendered: ${problems}`, desired };
          }
          const running = await adapter.readConfiguration(session);
          const fields = driftedSettings(rendered.prepared.sealedSettings, running.settings, {
            // Secrets are never read back; a device may keep others to itself as well.
            unreported: [...(running.unreported ?? []), ...rendered.prepared.secretFields.map((field) => field.path)],
            inherent: running.inherent ?? [],
          });
          const fingerprint = alertFingerprint(alertKinds.configurationDrift, deviceId);
          if (fields.length === 0) {
            await alerts.resolve(input.tenantId, fingerprint, context.info.workflowExecution?.workflowId ?? 'drift-detection');
            return { deviceId, state: 'in-sync', desired };
          }
          const remediate = input.action === 'remediate';
          await alerts.raise({
            tenantId: input.tenantId,
            kind: alertKinds.configurationDrift,
            severity: 'warning',
            fingerprint,
            summary: `${deviceId} no longer runs ${desired.templateId} v${desired.version} as configured: ${fields.slice(0, 5).join(', ')}${fields.length > 5 ? ` and ${fields.length - 5} more` : ''}${remediate ? '; it is being put back' : ''}`,
            details: { deviceId, ...desired, fields: fields.slice(0, fieldsInAlert), changedSettings: fields.length, runningHash: running.hash, readAt: running.readAt, action: input.action },
            raisedBy: context.info.workflowExecution?.workflowId ?? 'drift-detection',
          });
          return { deviceId, state: 'drifted', fields, desired, remediate };
        });
      } finally {
        clearInterval(heartbeat);
      }
    },

    /** The audit record of a finished drift check. */
    async recordDriftCheck(input: { tenantId: string; report: DriftCheckReport }): Promise<void> {
      const { tenantId, report } = input;
      const workflowId = Context.current().info.workflowExecution?.workflowId ?? 'drift-detection';
      await audit.append({
        tenantId,
        actor: workflowId,
        actorType: 'workflow',
        action: 'configuration.drift_checked',
        outcome: report.drifted === 0 && report.unreadable === 0 ? 'success' : 'failure',
        details: {
          checked: report.checked,
          inSync: report.inSync,
          drifted: report.drifted,
          unreadable: report.unreadable,
          unsupported: report.unsupported,
          driftedDevices: report.driftedDevices.slice(0, 100),
          ...(report.remediationRolloutId ? { remediationRolloutId: report.remediationRolloutId } : {}),
        },
      });
      logger.info({ tenantId, checked: report.checked, drifted: report.drifted, unreadable: report.unreadable }, 'drift check finished');
    },
  };
}

export type ConfigurationActivities = ReturnType<typeof createConfigurationActivities>;
