/**
 * Configuration management per device, made of its parts: the values a device has for its
 * template's parameters (device-parameters.ts), the configuration a template version renders into
 * for it and that configuration's compliance findings (configuration-rendering.ts), the record of
 * every push (configuration-history.ts), and compliance reports (compliance-reports.ts).
 */
import type { SecretVault } from '../custody/secret-vault';
import type { Database } from '../db/client';
import type { FieldProblem } from '../foundation/errors';
import type { DeviceRegistry } from '../registry/device-registry';
import type { CompliancePolicies } from './compliance-policies';
import { ComplianceReports, type DeviceComplianceReport, type TenantComplianceReport } from './compliance-reports';
import { ConfigurationHistory, type ConfigurationHistoryEntry, type ConfigurationPushRecord } from './configuration-history';
import { ConfigurationRenderer, type DeviceFacts, type PreparedConfiguration } from './configuration-rendering';
import { DeviceParameterValues, type DeviceParameters } from './device-parameters';
import type { DeviceParametersInput } from './parameters';
import type { ConfigurationTemplateVersion, TemplateCatalog } from './templates';

export interface DeviceConfigurationsDependencies {
  db: Database;
  vault: SecretVault;
  templates: TemplateCatalog;
  compliance: CompliancePolicies;
  registry: DeviceRegistry;
}

export class DeviceConfigurations {
  readonly #parameters: DeviceParameterValues;
  readonly #renderer: ConfigurationRenderer;
  readonly #history: ConfigurationHistory;
  readonly #reports: ComplianceReports;

  constructor(deps: DeviceConfigurationsDependencies) {
    this.#parameters = new DeviceParameterValues(deps);
    this.#renderer = new ConfigurationRenderer({ parameters: this.#parameters, templates: deps.templates, compliance: deps.compliance });
    this.#history = new ConfigurationHistory(deps);
    this.#reports = new ComplianceReports({ registry: deps.registry, templates: deps.templates, renderer: this.#renderer, history: this.#history });
  }

  parameters(tenantId: string, deviceId: string): Promise<DeviceParameters | undefined> {
    return this.#parameters.parameters(tenantId, deviceId);
  }

  writeParameters(tenantId: string, deviceId: string, input: DeviceParametersInput, actor: string): Promise<DeviceParameters> {
    return this.#parameters.writeParameters(tenantId, deviceId, input, actor);
  }

  copyParameters(tenantId: string, fromDeviceId: string, toDeviceId: string, actor: string): Promise<void> {
    return this.#parameters.copyParameters(tenantId, fromDeviceId, toDeviceId, actor);
  }

  previewMany(
    tenantId: string,
    version: ConfigurationTemplateVersion,
    devices: DeviceFacts[],
  ): Promise<Array<{ prepared?: PreparedConfiguration; problems: FieldProblem[] }>> {
    return this.#renderer.previewMany(tenantId, version, devices);
  }

  prepareForPush(tenantId: string, device: DeviceFacts, ref: { templateId: string; version: number }): Promise<PreparedConfiguration> {
    return this.#renderer.prepareForPush(tenantId, device, ref);
  }

  recordPush(entry: ConfigurationPushRecord): Promise<ConfigurationHistoryEntry> {
    return this.#history.recordPush(entry);
  }

  history(tenantId: string, deviceId: string, limit?: number): Promise<ConfigurationHistoryEntry[]> {
    return this.#history.history(tenantId, deviceId, limit);
  }

  requesterOf(tenantId: string, target: { deviceId: string } | { templateId: string }): Promise<string | undefined> {
    return this.#history.requesterOf(tenantId, target);
  }

  deviceReport(tenantId: string, deviceId: string): Promise<DeviceComplianceReport> {
    return this.#reports.deviceReport(tenantId, deviceId);
  }

  tenantReport(tenantId: string): Promise<TenantComplianceReport> {
    return this.#reports.tenantReport(tenantId);
  }
}
