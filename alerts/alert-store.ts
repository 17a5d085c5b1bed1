/**
 * Alerts: conditions an operator must hear about (a certificate about to expire, provisioning
 * failing too often, an unknown device on the network, a configuration that breaks policy).
 *
 * Any feature raises one with `AlertStore.raise`:
 *
 *   await alerts.raise({
 *     tenantId,
 *     kind: alertKinds.deviceUnauthorized,
 *     severity: 'critical',
 *     fingerprint: alertFingerprint(alertKinds.deviceUnauthorized, macAddress),
 *     summary: `unknown device ${macAddress} answered at ${address}`,
 *     details: { macAddress, address },
 *   });
 *
 * The fingerprint says which raisings are the same alert: while one is open, raising it again only
 * records that it is still firing, so a condition seen on every evaluation is delivered once. When
 * the condition clears, `resolve` (or, for rules evaluated on a schedule, `resolveMissing`) closes
 * it and queues a `resolved` delivery. Raising it after that opens a new alert.
 *
 * Every alert raised and resolved is written to the audit trail through `recordAudit`, and so is
 * every delivery attempt.
 */
import { and, asc, desc, eq, getTableColumns, inArray, isNotNull, isNull, sql } from 'drizzle-orm';
import { z } from 'zod';
import type { Database } from '../db/client';
import { alerts, type AlertRow } from '../db/schema';
import { parseOrThrow } from '../foundation/validation';

/** Every kind of alert the service raises; receivers route on these, so they never change meaning. */
export const alertKinds = {
  certificateExpiring: 'certificate.expiring',
  certificateExpired: 'certificate.expired',
  certificateRenewalFailing: 'certificate.renewal_failing',
  provisioningFailureRate: 'provisioning.failure_rate',
  deviceUnauthorized: 'device.unauthorized',
  complianceViolation: 'configuration.compliance_violation',
  approvalEscalated: 'provisioning.approval_escalated',
  zeroTouchMismatch: 'zero_touch.identity_mismatch',
  discoveryConflict: 'device.discovery_conflict',
  configurationDrift: 'configuration.drift',
  configurationRolloutHalted: 'configuration.rollout_halted',
  caBackupFailing: 'certificate_authority.backup_failing',
  deviceOffline: 'device.offline',
  deviceCertificateMismatch: 'device.certificate_mismatch',
  credentialRotationFailing: 'device.credential_rotation_failing',
  breakGlassUsed: 'access.break_glass_used',
  firmwareBlocked: 'device.firmware_blocked',
  firmwareUnapproved: 'device.firmware_unapproved',
  siteWorkerMissing: 'site.worker_missing',
} as const;
export type AlertKind = (typeof alertKinds)[keyof typeof alertKinds];

export const alertSeverities = ['info', 'warning', 'critical'] as const;
export type AlertSeverity = (typeof alertSeverities)[number];

/** An alert as the store keeps it: what fired, when, and where its delivery stands. */
export type Alert = AlertRow;

/** `firing` while the condition holds, `resolved` once it has cleared. */
export type AlertState = 'firing' | 'resolved';

/** The fingerprint convention: the kind, then what identifies the subject (`device.unauthorized:02:00:...`). */
export function alertFingerprint(kind: AlertKind, ...subject: string[]): string {
  return [kind, ...subject].join(':');
}

export interface RaiseAlertInput {
  tenantId: string;
  kind: AlertKind;
  severity: AlertSeverity;
  /** Raisings with the same fingerprint are one alert while it is open. */
  fingerprint: string;
  /** One line a person reads in a notification. */
  summary: string;
  /** Stored and delivered as JSON; never put secrets here. */
  details?: Record<string, unknown>;
  /** Who noticed, for the audit trail (`alert-evaluation`, `discovery`, ...). Defaults to `alerts`. */
  raisedBy?: string;
}

export interface RaisedAlert {
  alert: AlertRow;
  /** False when an open alert with this fingerprint already existed and was only marked as still firing. */
  created: boolean;
}

/** The audit entry the store writes; a subset of what the audit log accepts. */
export interface AlertAuditEvent {
  tenantId: string;
  actor: string;
  actorType: 'system';
  action: string;
  targetType?: string;
  targetId?: string;
  outcome?: 'success' | 'failure';
  details?: Record<string, unknown>;
}
export type RecordAlertAudit = (event: AlertAuditEvent) => Promise<unknown>;

/**
 * When a failed delivery is tried again: attempt n+1 is due `initialIntervalMs * (2^0 + ... + 2^(n-1))`
 * after the alert fired (or resolved), each step capped at `maximumIntervalMs`.
 */
export interface DeliveryRetryPolicy {
  initialIntervalMs: number;
  maximumIntervalMs: number;
}
export const defaultDeliveryRetryPolicy: DeliveryRetryPolicy = { initialIntervalMs: 60_000, maximumIntervalMs: 3_600_000 };

export interface AlertStoreDependencies {
  db: Database;
  /** Omitted only where nothing is audited (tests of the store itself). */
  recordAudit?: RecordAlertAudit;
}

const defaultActor = 'alerts';
const defaultListLimit = 100;
const maximumListLimit = 500;
const defaultPendingLimit = 100;
/** Keeps a receiver's long error page out of the table. */
const maximumErrorLength = 500;

const raiseSchema = z.object({
  tenantId: z.string().trim().min(1),
  kind: z.enum(alertKinds),
  severity: z.enum(alertSeverities),
  fingerprint: z.string().min(1).max(500),
  summary: z.string().trim().min(1).max(1000),
  details: z.record(z.string(), z.unknown()).default({}),
  raisedBy: z.string().min(1).default(defaultActor),
});

const listSchema = z.object({
  open: z.boolean().optional(),
  limit: z.number().int().min(1).max(maximumListLimit).default(defaultListLimit),
});

export function alertState(alert: Pick<AlertRow, 'resolvedAt'>): AlertState {
  return alert.resolvedAt ? 'resolved' : 'firing';
}

export class AlertStore {
  readonly #db: Database;
  readonly #recordAudit: RecordAlertAudit;

  constructor(deps: AlertStoreDependencies) {
    this.#db = deps.db;
    this.#recordAudit = deps.recordAudit ?? (async () => undefined);
  }

  /**
   * Opens an alert, or marks the open one with the same fingerprint as still firing. Safe to call
   * from any number of processes at once: the database's unique index on open fingerprints decides
   * which call creates it. Only a new alert is audited (`alert.raised`) and queued for delivery.
   */
  async raise(input: RaiseAlertInput): Promise<RaisedAlert> {
    const alert = parseOrThrow(raiseSchema, input, 'alert');
    const [row] = await this.#db
      .insert(alerts)
      .values({
        tenantId: alert.tenantId,
        kind: alert.kind,
        severity: alert.severity,
        fingerprint: alert.fingerprint,
        summary: alert.summary,
        details: alert.details,
      })
      .onConflictDoUpdate({
        target: [alerts.tenantId, alerts.fingerprint],
        targetWhere: isNull(alerts.resolvedAt),
        set: { lastRaisedAt: sql`now()` },
      })
      // xmax is 0 only on a row version this statement inserted, not on one it updated.
      .returning({ ...getTableColumns(alerts), created: sql<boolean>`(xmax = 0)` });
    const { created, ...stored } = row!;
    const raised: RaisedAlert = { alert: stored, created };
    if (raised.created) {
      await this.#audit(raised.alert, 'alert.raised', alert.raisedBy, {
        kind: raised.alert.kind,
        severity: raised.alert.severity,
        fingerprint: raised.alert.fingerprint,
        summary: raised.alert.summary,
      });
    }
    return raised;
  }

  /** Closes the open alert with this fingerprint and queues its `resolved` delivery; undefined when none is open. */
  async resolve(tenantId: string, fingerprint: string, resolvedBy = defaultActor): Promise<AlertRow | undefined> {
    const [open] = await this.#db
      .select({ id: alerts.id })
      .from(alerts)
      .where(and(eq(alerts.tenantId, tenantId), eq(alerts.fingerprint, fingerprint), isNull(alerts.resolvedAt)));
    return open ? this.#resolveById(open.id, resolvedBy) : undefined;
  }

  /**
   * Closes the tenant's open alerts of `kind` whose fingerprint is not among those still firing:
   * for a rule that reports everything that holds now, what it no longer reports has cleared.
   */
  async resolveMissing(
    tenantId: string,
    kind: AlertKind,
    stillFiringFingerprints: Iterable<string>,
    resolvedBy = defaultActor,
  ): Promise<AlertRow[]> {
    const firing = new Set(stillFiringFingerprints);
    const open = await this.#db
      .select({ id: alerts.id, fingerprint: alerts.fingerprint })
      .from(alerts)
      .where(and(eq(alerts.tenantId, tenantId), eq(alerts.kind, kind), isNull(alerts.resolvedAt)));
    const resolved: AlertRow[] = [];
    for (const alert of open.filter((candidate) => !firing.has(candidate.fingerprint))) {
      const row = await this.#resolveById(alert.id, resolvedBy);
      if (row) resolved.push(row);
    }
    return resolved;
  }

  /**
   * Alerts whose current state (firing, or resolved) has not reached the webhook yet and whose
   * next attempt is due by `now`, oldest first.
   */
  async pendingDelivery(
    options: { retry?: DeliveryRetryPolicy; limit?: number; now?: Date } = {},
  ): Promise<AlertRow[]> {
    const retry = options.retry ?? defaultDeliveryRetryPolicy;
    const now = options.now ? sql`${options.now.toISOString()}::timestamptz` : sql`now()`;
    const since = sql`coalesce(${alerts.resolvedAt}, ${alerts.firstRaisedAt})`;
    // The sum of the waits before each attempt made so far; 2^30 is far past any sensible cap.
    const waitSeconds = sql`(select coalesce(sum(least(${retry.initialIntervalMs / 1000}::float8 * power(2, least(k, 30)), ${
      retry.maximumIntervalMs / 1000
    }::float8)), 0) from generate_series(0, ${alerts.deliveryAttempts} - 1) as k)`;
    return this.#db
      .select()
      .from(alerts)
      .where(and(isNull(alerts.deliveredAt), sql`${since} + make_interval(secs => ${waitSeconds}) <= ${now}`))
      .orderBy(asc(since), asc(alerts.id))
      .limit(options.limit ?? defaultPendingLimit);
  }

  /**
   * Records that the alert's `state` reached the webhook. Undefined (and nothing recorded) when the
   * alert changed state meanwhile, so a resolution that happened during delivery is still sent.
   */
  async markDelivered(id: string, state: AlertState, details: Record<string, unknown> = {}): Promise<AlertRow | undefined> {
    const [row] = await this.#db
      .update(alerts)
      .set({ deliveredAt: sql`now()`, deliveryAttempts: sql`${alerts.deliveryAttempts} + 1`, lastDeliveryError: null })
      .where(and(eq(alerts.id, id), isNull(alerts.deliveredAt), inState(state)))
      .returning();
    if (row) {
      await this.#audit(row, 'alert.delivered', defaultActor, { state, attempts: row.deliveryAttempts, ...details });
    }
    return row;
  }

  /** Records a failed attempt; the alert stays pending and is tried again when its backoff allows. */
  async markDeliveryFailed(
    id: string,
    state: AlertState,
    error: string,
    details: Record<string, unknown> = {},
  ): Promise<AlertRow | undefined> {
    const message = error.length > maximumErrorLength ? `${error.slice(0, maximumErrorLength)}…` : error;
    const [row] = await this.#db
      .update(alerts)
      .set({ deliveryAttempts: sql`${alerts.deliveryAttempts} + 1`, lastDeliveryError: message })
      .where(and(eq(alerts.id, id), isNull(alerts.deliveredAt), inState(state)))
      .returning();
    if (row) {
      await this.#audit(
        row,
        'alert.delivery_failed',
        defaultActor,
        { state, attempts: row.deliveryAttempts, error: message, ...details },
        'failure',
      );
    }
    return row;
  }

  /** The tenant's alerts, most recently raised first; `open` picks open (true) or resolved (false) ones. */
  async list(tenantId: string, options: { open?: boolean; limit?: number } = {}): Promise<AlertRow[]> {
    const { open, limit } = parseOrThrow(listSchema, options, 'alert query');
    return this.#db
      .select()
      .from(alerts)
      .where(
        and(
          eq(alerts.tenantId, tenantId),
          open === undefined ? undefined : open ? isNull(alerts.resolvedAt) : isNotNull(alerts.resolvedAt),
        ),
      )
      .orderBy(desc(alerts.lastRaisedAt), asc(alerts.id))
      .limit(limit);
  }

  /** The open alerts about one device (those whose details name it), most recently raised first. */
  async openAbout(tenantId: string, deviceId: string, limit = 50): Promise<AlertRow[]> {
    return this.#db
      .select()
      .from(alerts)
      .where(and(eq(alerts.tenantId, tenantId), isNull(alerts.resolvedAt), sql`${alerts.details}->>'deviceId' = ${deviceId}`))
      .orderBy(desc(alerts.lastRaisedAt), asc(alerts.id))
      .limit(limit);
  }

  /** Every tenant with an open alert of one of `kinds`. */
  async tenantsWithOpenAlerts(kinds: readonly AlertKind[]): Promise<string[]> {
    const rows = await this.#db
      .selectDistinct({ tenantId: alerts.tenantId })
      .from(alerts)
      .where(and(isNull(alerts.resolvedAt), inArray(alerts.kind, [...kinds])));
    return rows.map((row) => row.tenantId);
  }

  /** How many alerts are open, by tenant, kind and severity; combinations with none are left out. */
  countAllOpen(): Promise<{ tenantId: string; kind: string; severity: AlertSeverity; count: number }[]> {
    return this.#db
      .select({ tenantId: alerts.tenantId, kind: alerts.kind, severity: alerts.severity, count: sql<number>`count(*)::int` })
      .from(alerts)
      .where(isNull(alerts.resolvedAt))
      .groupBy(alerts.tenantId, alerts.kind, alerts.severity);
  }

  /** How many alerts of `kind` are open, by tenant; tenants with none are left out. */
  async countOpen(kind: AlertKind): Promise<Map<string, number>> {
    const rows = await this.#db
      .select({ tenantId: alerts.tenantId, count: sql<number>`count(*)::int` })
      .from(alerts)
      .where(and(eq(alerts.kind, kind), isNull(alerts.resolvedAt)))
      .groupBy(alerts.tenantId);
    return new Map(rows.map((row) => [row.tenantId, row.count]));
  }

  async #resolveById(id: string, resolvedBy: string): Promise<AlertRow | undefined> {
    // Delivery starts over: the receiver has heard `firing` (or nothing) and must now hear `resolved`.
    const [row] = await this.#db
      .update(alerts)
      .set({ resolvedAt: sql`now()`, deliveredAt: null, deliveryAttempts: 0, lastDeliveryError: null })
      .where(and(eq(alerts.id, id), isNull(alerts.resolvedAt)))
      .returning();
    if (row) {
      await this.#audit(row, 'alert.resolved', resolvedBy, {
        kind: row.kind,
        severity: row.severity,
        fingerprint: row.fingerprint,
        firstRaisedAt: row.firstRaisedAt.toISOString(),
      });
    }
    return row;
  }

  #audit(
    alert: AlertRow,
    action: string,
    actor: string,
    details: Record<string, unknown>,
    outcome: 'success' | 'failure' = 'success',
  ): Promise<unknown> {
    return this.#recordAudit({
      tenantId: alert.tenantId,
      actor,
      actorType: 'system',
      action,
      targetType: 'alert',
      targetId: alert.id,
      outcome,
      details,
    });
  }
}

function inState(state: AlertState) {
  return state === 'resolved' ? isNotNull(alerts.resolvedAt) : isNull(alerts.resolvedAt);
}
