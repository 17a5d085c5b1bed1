/**
 * Compliance reports: each device's configuration (the version it runs, else the one last tried)
 * rendered and judged now, one device at a time or a whole tenant with counts per rule.
 */
import type { DeviceRow } from '../db/schema';
import { ConflictError, NotFoundError, type FieldProblem } from '../foundation/errors';
import type { DeviceRegistry } from '../registry/device-registry';
import type { ComplianceFinding, ComplianceRuleId } from './compliance';
import type { ConfigurationHistory } from './configuration-history';
import type { ConfigurationRenderer } from './configuration-rendering';
import type { TemplateCatalog } from './templates';

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

export interface ComplianceReportsDependencies {
  registry: DeviceRegistry;
  templates: TemplateCatalog;
  renderer: ConfigurationRenderer;
  history: ConfigurationHistory;
}

export class ComplianceReports {
  constructor(private readonly deps: ComplianceReportsDependencies) {}

  /** The device's configuration (the version it runs, else the one last tried) judged now. */
  async deviceReport(tenantId: string, deviceId: string): Promise<DeviceComplianceReport> {
    const device = await this.deps.registry.get(tenantId, deviceId).catch((error) => {
      throw error instanceof NotFoundError ? new NotFoundError(`device ${deviceId} not found`) : error;
    });
    const target = await this.#configurationOf(device);
    if (!target) throw new ConflictError(`device ${deviceId} has no configuration to judge yet`);
    const [report] = await this.#judge(tenantId, target.templateId, target.version, [device]);
    return report;
  }

  /** Every registered device of the tenant judged now, with counts per rule. */
  async tenantReport(tenantId: string): Promise<TenantComplianceReport> {
    const devices = await this.deps.registry.list(tenantId);
    const groups = new Map<string, { templateId: string; version: number; devices: DeviceRow[] }>();
    let notConfigured = 0;
    for (const device of devices) {
      const target = await this.#configurationOf(device);
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
    for (const group of groups.values()) reports.push(...(await this.#judge(tenantId, group.templateId, group.version, group.devices)));
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

  async #configurationOf(device: DeviceRow): Promise<{ templateId: string; version: number } | undefined> {
    if (device.configurationTemplate && device.configurationVersion !== null) {
      return { templateId: device.configurationTemplate, version: device.configurationVersion };
    }
    return this.deps.history.lastTried(device.tenantId, device.deviceId);
  }

  async #judge(tenantId: string, templateId: string, version: number, devices: DeviceRow[]): Promise<DeviceComplianceReport[]> {
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
    const previews = await this.deps.renderer.previewMany(tenantId, templateVersion, devices);
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

function statusOf(findings: ComplianceFinding[]): ComplianceStatus {
  return findings.some((finding) => !finding.override) ? 'non-compliant' : 'compliant';
}
