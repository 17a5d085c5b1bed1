/**
 * The record of every configuration push to a device: what was sent, how it was judged, what came
 * of it, and who asked.
 */
import { and, desc, eq, isNotNull } from 'drizzle-orm';
import type { Database } from '../db/client';
import { deviceConfigurationHistory, type DeviceConfigurationHistoryRow } from '../db/schema';
import { NotFoundError } from '../foundation/errors';
import type { DeviceRegistry } from '../registry/device-registry';
import type { ComplianceFinding } from './compliance';
import type { TemplateCatalog } from './templates';

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

export interface ConfigurationHistoryDependencies {
  db: Database;
  registry: DeviceRegistry;
  templates: TemplateCatalog;
}

export class ConfigurationHistory {
  constructor(private readonly deps: ConfigurationHistoryDependencies) {}

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

  /** The template version last tried on the device, whatever came of it. */
  async lastTried(tenantId: string, deviceId: string): Promise<{ templateId: string; version: number } | undefined> {
    const [latest] = await this.deps.db
      .select({ templateId: deviceConfigurationHistory.templateId, version: deviceConfigurationHistory.templateVersion })
      .from(deviceConfigurationHistory)
      .where(and(eq(deviceConfigurationHistory.tenantId, tenantId), eq(deviceConfigurationHistory.deviceId, deviceId)))
      .orderBy(desc(deviceConfigurationHistory.occurredAt))
      .limit(1);
    return latest;
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
