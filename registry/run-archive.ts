/**
 * Provisioning history archival: each run's final DeviceProvisioningRecord, written once by the run
 * itself as it closes, so that what happened to a device outlives Temporal's retention of the run's
 * history. Rows never change (the database refuses UPDATE and DELETE); a retried write is a no-op.
 */
import { and, desc, eq, lt, or } from 'drizzle-orm';
import type { Database } from '../db/client';
import { provisioningRuns, type ProvisioningRunRow } from '../db/schema';
import type { DeviceProvisioningRecord } from '../contracts/provisioning';
import { storableValue } from '../foundation/validation';

export type ArchivedRunOutcome = ProvisioningRunRow['outcome'];

/** One archived run, as `GET /api/v1/devices/{deviceId}/runs` lists it. */
export interface ArchivedRun {
  workflowId: string;
  runId: string;
  provisioningMethod: string;
  outcome: ArchivedRunOutcome;
  startedAt: string;
  finishedAt: string;
  certificateSerial?: string;
}

export interface RunPosition {
  finishedAt: Date;
  runId: string;
}

function archivedRunOf(row: ProvisioningRunRow): ArchivedRun {
  return {
    workflowId: row.workflowId,
    runId: row.runId,
    provisioningMethod: row.provisioningMethod,
    outcome: row.outcome,
    startedAt: row.startedAt.toISOString(),
    finishedAt: row.finishedAt.toISOString(),
    ...(row.certificateSerial ? { certificateSerial: row.certificateSerial } : {}),
  };
}

export class RunArchive {
  constructor(private readonly db: Database) {}

  /**
   * Keeps the run's final record; a second write of the same run (a retried activity) changes
   * nothing. Text the database cannot hold (a NUL in an approver's comment sent with the CLI) is
   * kept as its `\u0000` escape: the record is never refused.
   */
  async archive(run: { runId: string; outcome: ArchivedRunOutcome; record: DeviceProvisioningRecord }): Promise<void> {
    const record = storableValue(run.record);
    const certificate = record.certificateInfo;
    await this.db
      .insert(provisioningRuns)
      .values({
        tenantId: record.tenantId,
        deviceId: record.deviceId,
        workflowId: record.id,
        runId: run.runId,
        provisioningMethod: record.provisioningMethod,
        outcome: run.outcome,
        startedAt: new Date(record.createdAt),
        finishedAt: new Date(record.completedAt ?? Date.now()),
        certificateSerial: certificate && !certificate.revokedAt ? certificate.serialNumber : null,
        record,
      })
      .onConflictDoNothing({ target: provisioningRuns.runId });
  }

  /** The record of the workflow's latest archived run, if any. */
  async latestRecord(tenantId: string, workflowId: string): Promise<DeviceProvisioningRecord | undefined> {
    const [row] = await this.db
      .select({ record: provisioningRuns.record })
      .from(provisioningRuns)
      .where(and(eq(provisioningRuns.tenantId, tenantId), eq(provisioningRuns.workflowId, workflowId)))
      .orderBy(desc(provisioningRuns.finishedAt), desc(provisioningRuns.runId))
      .limit(1);
    return row?.record as DeviceProvisioningRecord | undefined;
  }

  /** The device's runs, newest first, after `after`. */
  async runsOf(tenantId: string, deviceId: string, page: { limit: number; after?: RunPosition }): Promise<{ items: ArchivedRun[]; next?: RunPosition }> {
    const { after } = page;
    const rows = await this.db
      .select()
      .from(provisioningRuns)
      .where(
        and(
          eq(provisioningRuns.tenantId, tenantId),
          eq(provisioningRuns.deviceId, deviceId),
          ...(after
            ? [or(lt(provisioningRuns.finishedAt, after.finishedAt), and(eq(provisioningRuns.finishedAt, after.finishedAt), lt(provisioningRuns.runId, after.runId)))]
            : []),
        ),
      )
      .orderBy(desc(provisioningRuns.finishedAt), desc(provisioningRuns.runId))
      .limit(page.limit + 1);
    const items = rows.slice(0, page.limit);
    const last = rows.length > page.limit ? items[items.length - 1] : undefined;
    return { items: items.map(archivedRunOf), ...(last ? { next: { finishedAt: last.finishedAt, runId: last.runId } } : {}) };
  }

  /** The device's latest archived run. */
  async lastRunOf(tenantId: string, deviceId: string): Promise<ArchivedRun | undefined> {
    return (await this.runsOf(tenantId, deviceId, { limit: 1 })).items[0];
  }
}
