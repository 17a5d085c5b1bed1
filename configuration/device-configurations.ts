/**
 * Configuration management per device: the values a device has for its template's parameters
 * (secret ones sealed in the vault), the configuration a template version renders into for it,
 * that configuration's compliance findings, and the record of every push.
 *
 * Rendering comes in two forms. `sealed` puts a marker where each secret goes: it is what previews,
 * validation, compliance reports and hashes see, and the only form that leaves this module.
 * `plaintext` fills in the secrets from the vault; only the activity that pushes to the device asks
 * for it, and it hands the settings straight to the adapter.
 */
import { and, desc, eq, inArray, isNotNull } from 'drizzle-orm';
import type { Database } from '../db/client';
import {
  deviceConfigurationHistory,
  deviceConfigurationParameters,
  devices as deviceTable,
  type DeviceConfigurationHistoryRow,
  type DeviceConfigurationParametersRow,
  type DeviceRow,
} from '../db/schema';
import type { SecretVault } from '../custody/secret-vault';
import type { DeviceRegistry } from '../registry/device-registry';
import { ConflictError, NotFoundError, ServiceError, ValidationError, type FieldProblem } from '../foundation/errors';
import { eventLoopTurns } from '../foundation/cooperative';
import { canonicalHash } from '../foundation/canonical-json';
import {
  applyOverrides,
  assessPassword,
  blockingFindings,
  evaluateCompliance,
  passwordRuleParameters,
  rulesFor,
  type ApplicableOverride,
  type ComplianceFinding,
  type CompliancePolicy,
  type ComplianceRuleId,
  type PasswordVerdict,
} from './compliance';
import type { CompliancePolicies } from './compliance-policies';
import { resolveParameters, sealedMarker, type DeviceParametersInput, type ParameterValue } from './parameters';
import {
  renderSettings,
  templateContextFor,
  type ConfigurationTemplateVersion,
  type SecretField,
  type TemplateCatalog,
} from './templates';

/** Vault purposes of configuration secrets, apart from the service's own (initial credentials, device keys). */
const secretPurposePrefix = 'configuration-secret:';

/**
 * Configuration secrets are sealed under the tenant's data key for this purpose, which key custody
 * holds wrapped (see custody/data-keys.ts); the vault asks here which of its values that covers.
 */
export const configurationSecretsDataKey = 'configuration-secrets';
export function dataKeyPurposeOf(vaultPurpose: string): string | undefined {
  return vaultPurpose.startsWith(secretPurposePrefix) ? configurationSecretsDataKey : undefined;
}
const passwordRule: ComplianceRuleId = 'no-default-or-weak-passwords';

interface SealedValueRecord {
  purpose: string;
  setAt: string;
  setBy: string;
  strength: PasswordVerdict;
}

export interface DeviceParameters {
  deviceId: string;
  values: Record<string, ParameterValue>;
  /** Which secrets are set, when and by whom, and how strong; never their values. */
  secrets: { name: string; setAt: string; setBy: string; strength: PasswordVerdict }[];
  updatedAt: string | null;
  updatedBy: string | null;
}

/** What a device needs to be rendered for: its identity and where it is. */
export interface DeviceFacts {
  deviceId: string;
  serialNumber: string;
  macAddress: string;
  site: string;
  name?: string | null;
}

export interface PreparedConfiguration {
  templateId: string;
  version: number;
  protocol: string;
  /** The settings to send: secrets in plaintext when prepared for a push, sealed markers otherwise. */
  settings: Record<string, unknown>;
  /** The settings with every secret as its sealed marker. */
  sealedSettings: Record<string, unknown>;
  secretFields: SecretField[];
  /** SHA-256 of the canonical JSON of the sealed settings: equal for equal configurations, secrets aside. */
  settingsHash: string;
  findings: ComplianceFinding[];
  /** Critical findings no exception covers. */
  blocking: ComplianceFinding[];
  rulesEvaluated: ComplianceRuleId[];
  /** Replaces any secret plaintext in a text (an error a device sent back) by its marker. */
  scrub(text: string): string;
}

export type ConfigurationPushOutcome = DeviceConfigurationHistoryRow['outcome'];

export interface ConfigurationPushRecord {
  tenantId: string;
  deviceId: string;
  templateId: string;
  templateVersion: number;
  outcome: ConfigurationPushOutcome;
  settingsHash?: string;
  deviceHash?: string;
  findings: ComplianceFinding[];
  workflowId?: string;
  runId?: string;
  attempt?: number;
  actor: string;
  requestedBy?: string;
  error?: string;
}

export interface ConfigurationHistoryEntry {
  id: string;
  deviceId: string;
  templateId: string;
  version: number;
  outcome: ConfigurationPushOutcome;
  settingsHash: string | null;
  deviceHash: string | null;
  findings: ComplianceFinding[];
  workflowId: string | null;
  runId: string | null;
  attempt: number | null;
  actor: string;
  requestedBy: string | null;
  error: string | null;
  occurredAt: string;
}

export type ComplianceStatus = 'compliant' | 'non-compliant' | 'invalid';

export interface DeviceComplianceReport {
  deviceId: string;
  templateId: string;
  version: number;
  /** The version the device runs, when it runs one we pushed. */
  runningVersion: number | null;
  evaluatedAt: string;
  /** `invalid` when the configuration cannot be rendered (a parameter or secret missing). */
  status: ComplianceStatus;
  /** Whether a push of this configuration would go ahead now. */
  deployable: boolean;
  findings: ComplianceFinding[];
  problems: FieldProblem[];
  rulesEvaluated: ComplianceRuleId[];
}

export interface TenantComplianceReport {
  tenantId: string;
  evaluatedAt: string;
  devices: number;
  compliant: number;
  nonCompliant: number;
  invalid: number;
  /** Registered devices with no configuration of ours to judge yet. */
  notConfigured: number;
  byRule: { ruleId: string; devices: number }[];
  /** Every device that is not compliant, at most 500. */
  attention: { deviceId: string; templateId: string; version: number; status: ComplianceStatus; deployable: boolean; findings: ComplianceFinding[]; problems: FieldProblem[] }[];
}

export interface DeviceConfigurationsDependencies {
  db: Database;
  vault: SecretVault;
  templates: TemplateCatalog;
  compliance: CompliancePolicies;
  registry: DeviceRegistry;
}

function toParameters(deviceId: string, row: DeviceConfigurationParametersRow | undefined): DeviceParameters {
  const sealed = (row?.sealedValues ?? {}) as Record<string, SealedValueRecord>;
  return {
    deviceId,
    values: (row?.values ?? {}) as Record<string, ParameterValue>,
    secrets: Object.entries(sealed)
      .map(([name, record]) => ({ name, setAt: record.setAt, setBy: record.setBy, strength: record.strength }))
      .sort((a, b) => a.name.localeCompare(b.name)),
    updatedAt: row?.updatedAt.toISOString() ?? null,
    updatedBy: row?.updatedBy ?? null,
  };
}

function toHistoryEntry(row: DeviceConfigurationHistoryRow): ConfigurationHistoryEntry {
  return {
    id: row.id,
    deviceId: row.deviceId,
    templateId: row.templateId,
    version: row.templateVersion,
    outcome: row.outcome,
    settingsHash: row.settingsHash,
    deviceHash: row.deviceHash,
    findings: row.findings as ComplianceFinding[],
    workflowId: row.workflowId,
    runId: row.runId,
    attempt: row.attempt,
    actor: row.actor,
    requestedBy: row.requestedBy,
    error: row.error,
    occurredAt: row.occurredAt.toISOString(),
  };
}

function statusOf(findings: ComplianceFinding[]): ComplianceStatus {
  return findings.some((finding) => !finding.override) ? 'non-compliant' : 'compliant';
}

export class DeviceConfigurations {
  constructor(private readonly deps: DeviceConfigurationsDependencies) {}

  // --- parameters -------------------------------------------------------------------------

  /** The device's values; undefined when it has none and is not registered either. */
  async parameters(tenantId: string, deviceId: string): Promise<DeviceParameters | undefined> {
    const row = await this.parametersRow(tenantId, deviceId);
    if (!row && !(await this.deps.registry.find(tenantId, deviceId))) return undefined;
    return toParameters(deviceId, row);
  }

  /**
   * Replaces the device's plain values and sets or removes the secrets named (others stay). Each
   * secret is judged for strength now, while its plaintext is at hand, and only the verdict kept.
   */
  async writeParameters(tenantId: string, deviceId: string, input: DeviceParametersInput, actor: string): Promise<DeviceParameters> {
    const policy = await this.deps.compliance.policyFor(tenantId);
    const passwordParameters = passwordRuleParameters.parse(policy[passwordRule].parameters);
    const existing = await this.parametersRow(tenantId, deviceId);
    const sealed = { ...((existing?.sealedValues ?? {}) as Record<string, SealedValueRecord>) };
    const now = new Date().toISOString();
    for (const [name, value] of Object.entries(input.secrets)) {
      const purpose = secretPurposePrefix + name;
      if (value === null) {
        await this.deps.vault.remove(tenantId, deviceId, purpose);
        delete sealed[name];
        continue;
      }
      await this.deps.vault.store(tenantId, deviceId, purpose, value);
      sealed[name] = { purpose, setAt: now, setBy: actor, strength: assessPassword(value, passwordParameters) };
    }
    const [row] = await this.deps.db
      .insert(deviceConfigurationParameters)
      .values({ tenantId, deviceId, values: input.values, sealedValues: sealed, updatedBy: actor })
      .onConflictDoUpdate({
        target: [deviceConfigurationParameters.tenantId, deviceConfigurationParameters.deviceId],
        set: { values: input.values, sealedValues: sealed, updatedBy: actor, updatedAt: new Date() },
      })
      .returning();
    return toParameters(deviceId, row);
  }

  private async parametersRow(tenantId: string, deviceId: string): Promise<DeviceConfigurationParametersRow | undefined> {
    const [row] = await this.deps.db
      .select()
      .from(deviceConfigurationParameters)
      .where(and(eq(deviceConfigurationParameters.tenantId, tenantId), eq(deviceConfigurationParameters.deviceId, deviceId)));
    return row;
  }

  private async parametersRows(tenantId: string, deviceIds: string[]): Promise<Map<string, DeviceConfigurationParametersRow>> {
    if (deviceIds.length === 0) return new Map();
    const rows: DeviceConfigurationParametersRow[] = [];
    for (let start = 0; start < deviceIds.length; start += 500) {
      rows.push(
        ...(await this.deps.db
          .select()
          .from(deviceConfigurationParameters)
          .where(
            and(
              eq(deviceConfigurationParameters.tenantId, tenantId),
              inArray(deviceConfigurationParameters.deviceId, deviceIds.slice(start, start + 500)),
            ),
          )),
      );
    }
    return new Map(rows.map((row) => [row.deviceId, row]));
  }

  // --- rendering and compliance -----------------------------------------------------------

  /**
   * Renders a template version for each device with its parameters, secrets sealed, and judges the
   * result under the tenant's policy and exceptions. A device whose configuration cannot be
   * rendered gets its problems instead (fields as `params.x`, `secret.y`, `body.a.b`).
   */
  async previewMany(
    tenantId: string,
    version: ConfigurationTemplateVersion,
    devices: DeviceFacts[],
  ): Promise<Array<{ prepared?: PreparedConfiguration; problems: FieldProblem[] }>> {
    const ids = devices.map((device) => device.deviceId);
    const [policy, rows, overrides] = await Promise.all([
      this.deps.compliance.policyFor(tenantId),
      this.parametersRows(tenantId, ids),
      this.deps.compliance.activeFor(tenantId, { deviceIds: ids, templateId: version.templateId }),
    ]);
    const previews: Array<{ prepared?: PreparedConfiguration; problems: FieldProblem[] }> = [];
    const giveWay = eventLoopTurns();
    for (const device of devices) {
      await giveWay();
      try {
        const prepared = this.prepare(tenantId, version, device, rows.get(device.deviceId), policy, overrides.get(device.deviceId) ?? []);
        previews.push({ prepared, problems: [] });
      } catch (error) {
        if (!(error instanceof ServiceError)) throw error;
        previews.push({ problems: error.fields.length > 0 ? error.fields : [{ field: '(configuration)', reason: error.message }] });
      }
    }
    return previews;
  }

  /**
   * The configuration to push to one device, secrets in plaintext from the vault. For the activity
   * that pushes it and nothing else: the result must go nowhere but to the device's adapter.
   */
  async prepareForPush(tenantId: string, device: DeviceFacts, ref: { templateId: string; version: number }): Promise<PreparedConfiguration> {
    const version = await this.deps.templates.getVersion(tenantId, ref.templateId, ref.version);
    const [policy, row, overrides] = await Promise.all([
      this.deps.compliance.policyFor(tenantId),
      this.parametersRow(tenantId, device.deviceId),
      this.deps.compliance.activeFor(tenantId, { deviceIds: [device.deviceId], templateId: version.templateId }),
    ]);
    const sealed = (row?.sealedValues ?? {}) as Record<string, SealedValueRecord>;
    const plaintext: Record<string, string> = {};
    for (const [name, declaration] of Object.entries(version.parameters)) {
      if (declaration.type !== 'secret' || !sealed[name]) continue;
      const value = await this.deps.vault.read<string>(tenantId, device.deviceId, sealed[name].purpose);
      if (typeof value === 'string') plaintext[name] = value;
    }
    return this.prepare(tenantId, version, device, row, policy, overrides.get(device.deviceId) ?? [], plaintext);
  }

  private prepare(
    tenantId: string,
    version: ConfigurationTemplateVersion,
    device: DeviceFacts,
    row: DeviceConfigurationParametersRow | undefined,
    policy: CompliancePolicy,
    overrides: ApplicableOverride[],
    plaintext?: Record<string, string>,
  ): PreparedConfiguration {
    const resolved = resolveParameters(version.parameters, (row?.values ?? {}) as Record<string, unknown>);
    const sealed = (row?.sealedValues ?? {}) as Record<string, SealedValueRecord>;
    const problems = [...resolved.problems];
    for (const name of resolved.secretNames) {
      const available = plaintext ? plaintext[name] !== undefined : sealed[name] !== undefined;
      if (!available) problems.push({ field: `secret.${name}`, reason: 'not set for this device' });
    }
    if (problems.length > 0) {
      throw new ValidationError(
        `template ${version.templateId} version ${version.version} cannot be rendered for ${device.deviceId}: ${problems.map((p) => `${p.field}: ${p.reason}`).join('; ')}`,
        { fields: problems },
      );
    }

    const context = { ...templateContextFor(tenantId, device), params: resolved.params };
    const markers = Object.fromEntries(resolved.secretNames.map((name) => [name, sealedMarker(name)]));
    const renderable = { templateId: version.templateId, protocol: version.protocol, body: version.body };
    const protocolSettings = this.deps.templates.settingsFor(version.protocol);
    const { settings: sealedSettings, secretFields } = renderSettings(protocolSettings, renderable, { ...context, secret: markers });

    const passwordParameters = passwordRuleParameters.parse(policy[passwordRule].parameters);
    const findings = applyOverrides(
      evaluateCompliance(
        {
          protocol: version.protocol,
          settings: sealedSettings,
          secretFields,
          passwordVerdict: (name) =>
            plaintext ? (plaintext[name] === undefined ? undefined : assessPassword(plaintext[name], passwordParameters)) : sealed[name]?.strength,
        },
        policy,
      ),
      overrides,
    );

    const secrets = Object.entries(plaintext ?? {}).filter(([, value]) => value.length >= 3);
    const scrub = (text: string) => secrets.reduce((out, [name, value]) => out.split(value).join(sealedMarker(name)), text);
    let settings = sealedSettings;
    if (plaintext) {
      try {
        settings = renderSettings(protocolSettings, renderable, { ...context, secret: plaintext }).settings;
      } catch (error) {
        // Schema messages name fields, not values; scrubbing is for the day one does not.
        if (error instanceof Error) error.message = scrub(error.message);
        if (error instanceof ServiceError) error.fields.forEach((field) => (field.reason = scrub(field.reason)));
        throw error;
      }
    }
    return {
      templateId: version.templateId,
      version: version.version,
      protocol: version.protocol,
      settings,
      sealedSettings,
      secretFields,
      settingsHash: canonicalHash(sealedSettings),
      findings,
      blocking: blockingFindings(findings),
      rulesEvaluated: rulesFor(version.protocol, policy),
      scrub,
    };
  }

  // --- history ----------------------------------------------------------------------------

  async recordPush(entry: ConfigurationPushRecord): Promise<ConfigurationHistoryEntry> {
    const [row] = await this.deps.db
      .insert(deviceConfigurationHistory)
      .values({
        tenantId: entry.tenantId,
        deviceId: entry.deviceId,
        templateId: entry.templateId,
        templateVersion: entry.templateVersion,
        outcome: entry.outcome,
        settingsHash: entry.settingsHash ?? null,
        deviceHash: entry.deviceHash ?? null,
        findings: entry.findings,
        workflowId: entry.workflowId ?? null,
        runId: entry.runId ?? null,
        attempt: entry.attempt ?? null,
        actor: entry.actor,
        requestedBy: entry.requestedBy ?? null,
        error: entry.error?.slice(0, 2000) ?? null,
      })
      .returning();
    return toHistoryEntry(row);
  }

  /** Newest first; a device neither registered nor ever pushed to is not found. */
  async history(tenantId: string, deviceId: string, limit = 100): Promise<ConfigurationHistoryEntry[]> {
    const rows = await this.deps.db
      .select()
      .from(deviceConfigurationHistory)
      .where(and(eq(deviceConfigurationHistory.tenantId, tenantId), eq(deviceConfigurationHistory.deviceId, deviceId)))
      .orderBy(desc(deviceConfigurationHistory.occurredAt))
      .limit(limit);
    if (rows.length === 0 && !(await this.deps.registry.find(tenantId, deviceId))) {
      throw new NotFoundError(`device ${deviceId} not found`);
    }
    return rows.map(toHistoryEntry);
  }

  /**
   * Who asked for the configuration an exception would excuse, as the records say, never as a
   * caller claims: whoever requested the latest deployment the policy blocked (of the device, or of
   * any device on the template); for a template nothing has been blocked on yet, whoever saved its
   * current version.
   */
  async requesterOf(tenantId: string, target: { deviceId: string } | { templateId: string }): Promise<string | undefined> {
    const [row] = await this.deps.db
      .select({ requestedBy: deviceConfigurationHistory.requestedBy })
      .from(deviceConfigurationHistory)
      .where(
        and(
          eq(deviceConfigurationHistory.tenantId, tenantId),
          'deviceId' in target
            ? eq(deviceConfigurationHistory.deviceId, target.deviceId)
            : eq(deviceConfigurationHistory.templateId, target.templateId),
          eq(deviceConfigurationHistory.outcome, 'blocked'),
          isNotNull(deviceConfigurationHistory.requestedBy),
        ),
      )
      .orderBy(desc(deviceConfigurationHistory.occurredAt))
      .limit(1);
    if (row?.requestedBy) return row.requestedBy;
    if ('deviceId' in target) return undefined;
    return (await this.deps.templates.currentVersion(tenantId, target.templateId)).createdBy;
  }

  // --- reports ----------------------------------------------------------------------------

  /** The device's configuration (the version it runs, else the one last tried) judged now. */
  async deviceReport(tenantId: string, deviceId: string): Promise<DeviceComplianceReport> {
    const device = await this.deps.registry.get(tenantId, deviceId).catch((error) => {
      throw error instanceof NotFoundError ? new NotFoundError(`device ${deviceId} not found`) : error;
    });
    const target = await this.configurationOf(device);
    if (!target) throw new ConflictError(`device ${deviceId} has no configuration to judge yet`);
    const [report] = await this.judge(tenantId, target.templateId, target.version, [device]);
    return report;
  }

  /** Every registered device of the tenant judged now, with counts per rule. */
  async tenantReport(tenantId: string): Promise<TenantComplianceReport> {
    const devices = await this.deps.db.select().from(deviceTable).where(eq(deviceTable.tenantId, tenantId)).orderBy(deviceTable.deviceId);
    const groups = new Map<string, { templateId: string; version: number; devices: DeviceRow[] }>();
    let notConfigured = 0;
    for (const device of devices) {
      const target = await this.configurationOf(device);
      if (!target) {
        notConfigured += 1;
        continue;
      }
      const key = `${target.templateId}@${target.version}`;
      const group = groups.get(key) ?? { ...target, devices: [] };
      group.devices.push(device);
      groups.set(key, group);
    }
    const reports: DeviceComplianceReport[] = [];
    for (const group of groups.values()) reports.push(...(await this.judge(tenantId, group.templateId, group.version, group.devices)));
    const byRule = new Map<string, number>();
    for (const report of reports) {
      for (const ruleId of new Set(report.findings.filter((f) => !f.override).map((f) => f.ruleId))) {
        byRule.set(ruleId, (byRule.get(ruleId) ?? 0) + 1);
      }
    }
    const attention = reports.filter((report) => report.status !== 'compliant');
    return {
      tenantId,
      evaluatedAt: new Date().toISOString(),
      devices: devices.length,
      compliant: reports.filter((r) => r.status === 'compliant').length,
      nonCompliant: reports.filter((r) => r.status === 'non-compliant').length,
      invalid: reports.filter((r) => r.status === 'invalid').length,
      notConfigured,
      byRule: [...byRule].map(([ruleId, count]) => ({ ruleId, devices: count })).sort((a, b) => b.devices - a.devices),
      attention: attention.slice(0, 500).map((r) => ({
        deviceId: r.deviceId,
        templateId: r.templateId,
        version: r.version,
        status: r.status,
        deployable: r.deployable,
        findings: r.findings,
        problems: r.problems,
      })),
    };
  }

  private async configurationOf(device: DeviceRow): Promise<{ templateId: string; version: number } | undefined> {
    if (device.configurationTemplate && device.configurationVersion !== null) {
      return { templateId: device.configurationTemplate, version: device.configurationVersion };
    }
    const [latest] = await this.deps.db
      .select({ templateId: deviceConfigurationHistory.templateId, version: deviceConfigurationHistory.templateVersion })
      .from(deviceConfigurationHistory)
      .where(and(eq(deviceConfigurationHistory.tenantId, device.tenantId), eq(deviceConfigurationHistory.deviceId, device.deviceId)))
      .orderBy(desc(deviceConfigurationHistory.occurredAt))
      .limit(1);
    return latest;
  }

  private async judge(tenantId: string, templateId: string, version: number, devices: DeviceRow[]): Promise<DeviceComplianceReport[]> {
    const evaluatedAt = new Date().toISOString();
    const templateVersion = await this.deps.templates.getVersion(tenantId, templateId, version).catch((error) => {
      if (error instanceof NotFoundError) return undefined;
      throw error;
    });
    if (!templateVersion) {
      return devices.map((device) => ({
        deviceId: device.deviceId,
        templateId,
        version,
        runningVersion: device.configurationVersion,
        evaluatedAt,
        status: 'invalid' as const,
        deployable: false,
        findings: [],
        problems: [{ field: 'templateId', reason: `template ${templateId} has no version ${version} this tenant may use` }],
        rulesEvaluated: [],
      }));
    }
    const previews = await this.previewMany(tenantId, templateVersion, devices);
    return devices.map((device, index) => {
      const { prepared, problems } = previews[index];
      return {
        deviceId: device.deviceId,
        templateId,
        version,
        runningVersion: device.configurationTemplate === templateId ? device.configurationVersion : null,
        evaluatedAt,
        status: prepared ? statusOf(prepared.findings) : 'invalid',
        deployable: prepared ? prepared.blocking.length === 0 : false,
        findings: prepared?.findings ?? [],
        problems,
        rulesEvaluated: prepared?.rulesEvaluated ?? [],
      };
    });
  }
}
