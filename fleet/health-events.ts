/**
 * What happened to a device's health after activation: it went offline or came back, rebooted, or
 * presented a certificate other than ours. Transitions only, never a row per probe, so a device
 * probed every minute for years has a short history.
 */
import { and, desc, eq, lt, or } from 'drizzle-orm';
import type { Database } from '../db/client';
import { deviceHealthEvents, type DeviceHealthEventRow } from '../db/schema';

export type HealthEventKind = DeviceHealthEventRow['kind'];
export const healthEventKinds: readonly HealthEventKind[] = ['online', 'offline', 'rebooted', 'certificate_mismatch'];

export interface HealthEvent {
  id: string;
  deviceId: string;
  kind: HealthEventKind;
  details: Record<string, unknown>;
  occurredAt: string;
}

export interface NewHealthEvent {
  tenantId: string;
  deviceId: string;
  kind: HealthEventKind;
  /** Never secrets: what was seen (fingerprints, uptimes, the probe's error). */
  details: Record<string, unknown>;
  occurredAt: Date;
}

/** Where a page of events ends, to ask for the next (older) one. */
export interface HealthEventPosition {
  occurredAt: Date;
  id: string;
}

function toHealthEvent(row: DeviceHealthEventRow): HealthEvent {
  return { id: row.id, deviceId: row.deviceId, kind: row.kind, details: row.details as Record<string, unknown>, occurredAt: row.occurredAt.toISOString() };
}

export class DeviceHealthEvents {
  constructor(private readonly db: Database) {}

  async record(events: readonly NewHealthEvent[]): Promise<void> {
    if (events.length === 0) return;
    await this.db.insert(deviceHealthEvents).values([...events]);
  }

  /** A device's events, newest first, keyset-paged: `next` continues after the last one returned. */
  async list(
    tenantId: string,
    deviceId: string,
    page: { limit: number; before?: HealthEventPosition },
  ): Promise<{ items: HealthEvent[]; next?: HealthEventPosition }> {
    const { before } = page;
    const rows = await this.db
      .select()
      .from(deviceHealthEvents)
      .where(
        and(
          eq(deviceHealthEvents.tenantId, tenantId),
          eq(deviceHealthEvents.deviceId, deviceId),
          before
            ? or(lt(deviceHealthEvents.occurredAt, before.occurredAt), and(eq(deviceHealthEvents.occurredAt, before.occurredAt), lt(deviceHealthEvents.id, before.id)))
            : undefined,
        ),
      )
      .orderBy(desc(deviceHealthEvents.occurredAt), desc(deviceHealthEvents.id))
      .limit(page.limit + 1);
    const items = rows.slice(0, page.limit);
    const last = items.at(-1);
    return { items: items.map(toHealthEvent), ...(rows.length > page.limit && last ? { next: { occurredAt: last.occurredAt, id: last.id } } : {}) };
  }
}
