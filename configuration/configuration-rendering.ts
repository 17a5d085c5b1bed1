/**
 * The configuration a template version renders into for a device, with its parameters, and that
 * configuration judged under the tenant's compliance policy and exceptions.
 *
 * Rendering comes in two forms. `sealed` puts a marker where each secret goes: it is what previews,
 * validation, compliance reports and hashes see, and the only form that leaves this module.
 * `plaintext` fills in the secrets from the vault; only the activity that pushes to the device asks
 * for it, and it hands the settings straight to the adapter.
 */
import { canonicalHash } from '../foundation/canonical-json';
import { eventLoopTurns } from '../foundation/cooperative';
import { ServiceError, ValidationError, type FieldProblem } from '../foundation/errors';
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
} from './compliance';
import type { CompliancePolicies } from './compliance-policies';
import { passwordRule, type DeviceParameterValues, type StoredParameters } from './device-parameters';
import { resolveParameters, sealedMarker } from './parameters';
import { renderSettings, templateContextFor, type ConfigurationTemplateVersion, type SecretField, type TemplateCatalog } from './templates';

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
  /** The secrets in plaintext by name, when prepared for a push: what `scrub` looks for. */
  secretValues: Record<string, string>;
}

/** Replaces each secret's plaintext in a text by its marker (values too short to tell apart are left). */
export function secretScrubber(secretValues: Record<string, string>): (text: string) => string {
  const secrets = Object.entries(secretValues).filter(([, value]) => value.length >= 3);
  return (text) => secrets.reduce((out, [name, value]) => out.split(value).join(sealedMarker(name)), text);
}

export interface ConfigurationRendererDependencies {
  parameters: DeviceParameterValues;
  templates: TemplateCatalog;
  compliance: CompliancePolicies;
}

export class ConfigurationRenderer {
  constructor(private readonly deps: ConfigurationRendererDependencies) {}

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
    const [policy, stored, overrides] = await Promise.all([
      this.deps.compliance.policyFor(tenantId),
      this.deps.parameters.storedForEach(tenantId, ids),
      this.deps.compliance.activeFor(tenantId, { deviceIds: ids, templateId: version.templateId }),
    ]);
    const previews: Array<{ prepared?: PreparedConfiguration; problems: FieldProblem[] }> = [];
    const giveWay = eventLoopTurns();
    for (const device of devices) {
      await giveWay();
      try {
        const prepared = this.#prepare(tenantId, version, device, stored.get(device.deviceId), policy, overrides.get(device.deviceId) ?? []);
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
    const [policy, stored, overrides] = await Promise.all([
      this.deps.compliance.policyFor(tenantId),
      this.deps.parameters.stored(tenantId, device.deviceId),
      this.deps.compliance.activeFor(tenantId, { deviceIds: [device.deviceId], templateId: version.templateId }),
    ]);
    const secretNames = Object.entries(version.parameters).flatMap(([name, declaration]) => (declaration.type === 'secret' ? [name] : []));
    const plaintext = await this.deps.parameters.secretPlaintexts(tenantId, device.deviceId, secretNames, stored);
    return this.#prepare(tenantId, version, device, stored, policy, overrides.get(device.deviceId) ?? [], plaintext);
  }

  #prepare(
    tenantId: string,
    version: ConfigurationTemplateVersion,
    device: DeviceFacts,
    stored: StoredParameters | undefined,
    policy: CompliancePolicy,
    overrides: ApplicableOverride[],
    plaintext?: Record<string, string>,
  ): PreparedConfiguration {
    const resolved = resolveParameters(version.parameters, stored?.values ?? {});
    const sealed = stored?.sealed ?? {};
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
    const renderable = { templateId: version.templateId, body: version.body };
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

    const scrub = secretScrubber(plaintext ?? {});
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
      secretValues: plaintext ?? {},
    };
  }
}
