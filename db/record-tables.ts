/**
 * The service's records as the records backup carries them: the tables that say what the fleet
 * is and what happened to it, read and written row by row as the schema declares them (see
 * row-transfer.ts), in an order that keeps every row's references behind it.
 *
 * Not here, on purpose: certificates, CRLs and CA keys (the CA backup carries them); sealed
 * values (`device_secrets`, `data_encryption_keys`: carried unsealed inside the backup's own
 * encryption and sealed again under the destination's keys); and the state of work under way in
 * Temporal (bulk jobs, zero-touch registrations), whose workflows a fresh install does not have.
 */
import { asc, count, inArray } from 'drizzle-orm';
import type { PgTable } from 'drizzle-orm/pg-core';
import { insertInBatches, rowBatchSize, rowCodec, type EncodedRow } from './row-transfer';
import {
  alerts,
  apiKeys,
  approvalPolicies,
  auditEvents,
  complianceOverrides,
  compliancePolicies,
  configurationDriftPolicies,
  configurationTemplates,
  configurationTemplateVersions,
  deviceConfigurationHistory,
  deviceConfigurationParameters,
  deviceHealthEvents,
  devices,
  discoverySites,
  firmwareCatalogue,
  fleetPolicies,
  provisioningRuns,
} from './schema';
import type { Executor } from './transactions';

/** Each table with the columns it is read in order of (stable, so two backups of the same data are equal). */
const recordTables = {
  devices: { table: devices, order: [devices.tenantId, devices.deviceId] },
  configurationTemplates: { table: configurationTemplates, order: [configurationTemplates.id] },
  configurationTemplateVersions: { table: configurationTemplateVersions, order: [configurationTemplateVersions.templateId, configurationTemplateVersions.version] },
  deviceConfigurationParameters: { table: deviceConfigurationParameters, order: [deviceConfigurationParameters.tenantId, deviceConfigurationParameters.deviceId] },
  deviceConfigurationHistory: { table: deviceConfigurationHistory, order: [deviceConfigurationHistory.occurredAt, deviceConfigurationHistory.id] },
  compliancePolicies: { table: compliancePolicies, order: [compliancePolicies.tenantId, compliancePolicies.ruleId] },
  complianceOverrides: { table: complianceOverrides, order: [complianceOverrides.createdAt, complianceOverrides.id] },
  configurationDriftPolicies: { table: configurationDriftPolicies, order: [configurationDriftPolicies.tenantId] },
  fleetPolicies: { table: fleetPolicies, order: [fleetPolicies.tenantId] },
  firmwareCatalogue: { table: firmwareCatalogue, order: [firmwareCatalogue.tenantId, firmwareCatalogue.vendor, firmwareCatalogue.model, firmwareCatalogue.version] },
  provisioningRuns: { table: provisioningRuns, order: [provisioningRuns.finishedAt, provisioningRuns.id] },
  deviceHealthEvents: { table: deviceHealthEvents, order: [deviceHealthEvents.occurredAt, deviceHealthEvents.id] },
  discoverySites: { table: discoverySites, order: [discoverySites.tenantId, discoverySites.site] },
  approvalPolicies: { table: approvalPolicies, order: [approvalPolicies.tenantId, approvalPolicies.id] },
  apiKeys: { table: apiKeys, order: [apiKeys.createdAt, apiKeys.id] },
  alerts: { table: alerts, order: [alerts.firstRaisedAt, alerts.id] },
  auditEvents: { table: auditEvents, order: [auditEvents.tenantId, auditEvents.sequence] },
} as const;

export type RecordTableName = keyof typeof recordTables;
export const recordTableNames = Object.keys(recordTables) as RecordTableName[];

function entryOf(name: RecordTableName): { table: PgTable & { tenantId: typeof devices.tenantId }; order: readonly unknown[] } {
  return recordTables[name] as never;
}

/**
 * Every row of the table, encoded. Rows of no tenant (the built-in templates and their versions)
 * come along: a device's history may name a built-in version a fresh install does not have.
 */
export async function readRecordRows(executor: Executor, name: RecordTableName): Promise<EncodedRow[]> {
  const { table, order } = entryOf(name);
  const codec = rowCodec(table);
  const rows = await executor
    .select()
    .from(table as PgTable)
    .orderBy(...(order as never[]).map((column) => asc(column)));
  return rows.map((row) => codec.encode(row as Record<string, unknown>));
}

/**
 * Decodes and inserts rows read by `readRecordRows`. Tenant rows are inserted as they are (a clash
 * is the caller's to report); rows of no tenant already present, being the same built-ins, are kept.
 */
export async function insertRecordRows(
  executor: Executor,
  name: RecordTableName,
  encoded: Record<string, unknown>[],
  invalid: new (message: string) => Error,
): Promise<number> {
  const { table } = entryOf(name);
  const codec = rowCodec(table);
  const rows = encoded.map((row, index) => codec.decode(row, `${name} row ${index + 1}`, invalid));
  const shared = rows.filter((row) => (row as { tenantId?: string | null }).tenantId == null);
  const owned = rows.filter((row) => (row as { tenantId?: string | null }).tenantId != null);
  for (let start = 0; start < shared.length; start += rowBatchSize) {
    await executor.insert(table as PgTable).values(shared.slice(start, start + rowBatchSize)).onConflictDoNothing();
  }
  await insertInBatches(executor, table as PgTable, owned);
  return rows.length;
}

/** How many rows of these tenants the table holds (rows of no tenant are not counted). */
export async function countTenantRecordRows(executor: Executor, name: RecordTableName, tenantIds: string[]): Promise<number> {
  if (tenantIds.length === 0) return 0;
  const { table } = entryOf(name);
  const [row] = await executor
    .select({ rows: count() })
    .from(table as PgTable)
    .where(inArray(table.tenantId, tenantIds));
  return row?.rows ?? 0;
}
