/**
 * The audit trail: provisioning events, certificate issuance and revocation, configuration
 * changes, approvals and login failures, appended with who, which tenant, when and what.
 *
 * Each tenant's events form a hash chain: event N stores the hash of event N-1 and its own hash
 * covers every field plus that link, so changing, removing or reordering a stored event is found by
 * `verify`. The database triggers already refuse UPDATE, DELETE and TRUNCATE; the chain is what
 * catches someone able to switch them off. Cutting events off the end leaves a shorter chain that
 * is still valid, so keep `lastSequence` from earlier verifications to compare against.
 */
import { createHash, randomUUID } from 'node:crypto';
import { and, asc, desc, eq, gt, sql } from 'drizzle-orm';
import { z } from 'zod';
import type { Database } from '../db/client';
import { auditEvents, type AuditEventRow } from '../db/schema';
import { ValidationError, type FieldProblem } from '../foundation/errors';
import type { Logger } from '../foundation/logger';
import { parseOrThrow, refuseUnstorableText, storableText } from '../foundation/validation';
import { KeyedMutex } from '../foundation/keyed-mutex';

export const auditActorTypes = ['user', 'api-key', 'system', 'workflow', 'anonymous'] as const;
export type AuditActorType = (typeof auditActorTypes)[number];
export const auditOutcomes = ['success', 'failure'] as const;
export type AuditOutcome = (typeof auditOutcomes)[number];

/** An event as the trail holds it: numbered, chained to the one before, never changed. */
export type AuditEvent = AuditEventRow;

export interface AuditEventInput {
  tenantId: string;
  /** Who acted: a user name, an API key id, a workflow id, or a client address for anonymous callers. */
  actor: string;
  actorType: AuditActorType;
  /** Dotted lower-case words, e.g. `provisioning.started`, `certificate.revoked`, `auth.login_failed`. */
  action: string;
  targetType?: string | null;
  targetId?: string | null;
  /** Defaults to `success`. */
  outcome?: AuditOutcome;
  /** Stored as JSON; values under secret-sounding keys are replaced by `[redacted]`. */
  details?: Record<string, unknown>;
  /** Defaults to now; kept to the millisecond. */
  occurredAt?: Date;
}

export interface AuditEventQuery {
  /** Only events with a greater sequence: pass the last sequence of the previous page. */
  after?: number;
  /** 1 to 500, default 100. */
  limit?: number;
  action?: string;
  targetType?: string;
  targetId?: string;
}

export interface AuditChainVerification {
  ok: boolean;
  /** Events found intact, counted from the first; verification stops at the first problem. */
  eventsChecked: number;
  /** Sequence of the last intact event (0 when there is none). */
  lastSequence: number;
  firstProblem?: { sequence: number; problem: string };
}

export interface AuditLogDependencies {
  db: Database;
  logger: Logger;
}

/** The fields an event's hash covers, in the form they are hashed. */
export interface ChainedAuditFields {
  tenantId: string;
  sequence: number;
  occurredAt: Date;
  actor: string;
  actorType: AuditActorType;
  action: string;
  targetType: string | null;
  targetId: string | null;
  outcome: AuditOutcome;
  details: unknown;
  previousHash: string;
}

/** What the first event of every tenant links to. */
/**
 * Stores the event and returns its row as stored: every column is known here (the id is made here
 * too), so nothing is read back (reading the row back cost a third of an append).
 */
async function insertEvent(db: Pick<Database, 'insert'>, chained: ChainedAuditFields): Promise<AuditEventRow> {
  const row: AuditEventRow = { id: randomUUID(), ...chained, hash: hashAuditEvent(chained) };
  await db.insert(auditEvents).values(row);
  return row;
}

export const genesisHash = '0'.repeat(64);
export const redactedValue = '[redacted]';

const maximumListLimit = 500;
const defaultListLimit = 100;
/** Rows held in memory at once while verifying; keeps a chain of millions of events cheap to check. */
const verifyPageSize = 1000;
/** Only a writer that skips the advisory lock can cause a clash, so a few tries are plenty. */
// Writers that append lock-free after their cached head can beat the locked path; each round someone wins.
const maximumAppendAttempts = 25;

const actionPattern = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$/;
const optionalName = z
  .string()
  .min(1)
  .nullish()
  .transform((value) => value ?? null);

const eventInputSchema = z.object({
  tenantId: z.string().trim().min(1),
  actor: z.string().min(1),
  actorType: z.enum(auditActorTypes),
  action: z.string().regex(actionPattern, 'must be dotted lower-case words, e.g. certificate.issued'),
  targetType: optionalName,
  targetId: optionalName,
  outcome: z.enum(auditOutcomes).default('success'),
  details: z.record(z.string(), z.unknown()).default({}),
  occurredAt: z.date().optional(),
});

/** Sequences are PostgreSQL integers; a larger `after` could only fail in the database. */
export const maximumAuditSequence = 2_147_483_647;

const querySchema = z.object({
  after: z.number().int().min(0).max(maximumAuditSequence).optional(),
  limit: z.number().int().min(1).max(maximumListLimit).default(defaultListLimit),
  action: z.string().min(1).optional(),
  targetType: z.string().min(1).optional(),
  targetId: z.string().min(1).optional(),
});

const tenantIdSchema = z.string().trim().min(1);

export class AuditLog {
  readonly #db: Database;
  readonly #logger: Logger;
  readonly #tenantQueues = new KeyedMutex();
  /**
   * The last event this process wrote or read per tenant. Appending after it needs no lock and no
   * read: rows never change, so if (sequence + 1) is still free the link is right, and if another
   * process took it the unique index refuses the insert and we re-read under the lock.
   */
  readonly #heads = new Map<string, { sequence: number; hash: string }>();

  constructor(deps: AuditLogDependencies) {
    this.#db = deps.db;
    this.#logger = deps.logger;
  }

  /**
   * Appends an event to its tenant's chain and returns the stored row. Throws when the event is
   * invalid (ValidationError, also for text the database cannot store) or cannot be written;
   * whether to go on without it is the caller's call.
   */
  async append(event: AuditEventInput): Promise<AuditEventRow> {
    const input = parseOrThrow(eventInputSchema, event, 'audit event');
    // Retrying could never store it: refused here, as a ValidationError, rather than by the database.
    refuseUnstorableText(input, 'audit event');
    const occurredAt = input.occurredAt ?? new Date();
    const details = redactSecrets(plainJson(input.details));

    // Queued per tenant in this process so a burst of events waits here rather than holding every
    // pooled connection while blocked on the advisory lock.
    return this.#tenantQueues.run(input.tenantId, async () => {
      const chainedAfter = (last: { sequence: number; hash: string } | undefined): ChainedAuditFields => ({
        tenantId: input.tenantId,
        sequence: (last?.sequence ?? 0) + 1,
        occurredAt,
        actor: input.actor,
        actorType: input.actorType,
        action: input.action,
        targetType: input.targetType,
        targetId: input.targetId,
        outcome: input.outcome,
        details,
        previousHash: last?.hash ?? genesisHash,
      });
      const remember = (row: AuditEventRow) => {
        this.#heads.set(input.tenantId, { sequence: row.sequence, hash: row.hash });
        return row;
      };

      const head = this.#heads.get(input.tenantId);
      if (head) {
        const chained = chainedAfter(head);
        try {
          return remember(await insertEvent(this.#db, chained));
        } catch (error) {
          if (!isUniqueViolation(error)) throw error;
          this.#heads.delete(input.tenantId);
        }
      }

      for (let attempt = 1; ; attempt++) {
        try {
          return remember(
            await this.#db.transaction(async (tx) => {
              // Serialises appenders of one tenant across processes; released at commit.
              await tx.execute(sql`select pg_advisory_xact_lock(${chainLockId(input.tenantId)}::bigint)`);
              const [last] = await tx
                .select({ sequence: auditEvents.sequence, hash: auditEvents.hash })
                .from(auditEvents)
                .where(eq(auditEvents.tenantId, input.tenantId))
                .orderBy(desc(auditEvents.sequence))
                .limit(1);
              return insertEvent(tx, chainedAfter(last));
            }),
          );
        } catch (error) {
          if (!isUniqueViolation(error) || attempt >= maximumAppendAttempts) throw error;
          this.#logger.warn(
            { tenantId: input.tenantId, action: input.action, attempt },
            'another writer took the next audit sequence; appending again',
          );
        }
      }
    });
  }

  /**
   * Puts on record that `event` was refused (it holds text the database cannot store, say): who,
   * what and on what, the problems, and the whole event as JSON, which escapes such text, with
   * secrets redacted as always. For bookkeeping that must not lose an event it cannot store.
   */
  async appendRefused(event: AuditEventInput, problems: FieldProblem[]): Promise<AuditEventRow> {
    const optional = (text: string | null | undefined) => (typeof text === 'string' ? storableText(text) : null);
    return this.append({
      tenantId: event.tenantId,
      actor: optional(event.actor) || 'unknown',
      actorType: auditActorTypes.includes(event.actorType) ? event.actorType : 'system',
      action: 'audit.event_refused',
      targetType: optional(event.targetType),
      targetId: optional(event.targetId),
      outcome: 'failure',
      details: {
        action: optional(event.action),
        problems: problems.map(({ field, reason }) => ({ field: storableText(field), reason: storableText(reason) })),
        event: JSON.stringify(redactSecrets({ ...event, details: event.details ?? {} })),
      },
    });
  }

  /**
   * Recomputes the tenant's chain from the first event, page by page, and reports the first place
   * it breaks: a missing sequence, an event whose contents no longer match its hash, or a link to a
   * previous hash that is not the one before it.
   */
  async verify(tenantId: string): Promise<AuditChainVerification> {
    const tenant = parseOrThrow(tenantIdSchema, tenantId, 'tenantId');
    let eventsChecked = 0;
    let lastSequence = 0;
    let previousHash = genesisHash;
    for (;;) {
      const page = await this.#db
        .select()
        .from(auditEvents)
        .where(and(eq(auditEvents.tenantId, tenant), gt(auditEvents.sequence, lastSequence)))
        .orderBy(asc(auditEvents.sequence))
        .limit(verifyPageSize);
      for (const event of page) {
        const firstProblem = chainProblem(event, lastSequence + 1, previousHash);
        if (firstProblem) return { ok: false, eventsChecked, lastSequence, firstProblem };
        eventsChecked++;
        lastSequence = event.sequence;
        previousHash = event.hash;
      }
      if (page.length < verifyPageSize) return { ok: true, eventsChecked, lastSequence };
    }
  }

  /** A tenant's events oldest first, filtered; page with `after` set to the last sequence seen. */
  async list(tenantId: string, query: AuditEventQuery = {}): Promise<AuditEventRow[]> {
    const tenant = parseOrThrow(tenantIdSchema, tenantId, 'tenantId');
    const { after, limit, action, targetType, targetId } = parseOrThrow(querySchema, query, 'audit query');
    return this.#db
      .select()
      .from(auditEvents)
      .where(
        and(
          eq(auditEvents.tenantId, tenant),
          after === undefined ? undefined : gt(auditEvents.sequence, after),
          action === undefined ? undefined : eq(auditEvents.action, action),
          targetType === undefined ? undefined : eq(auditEvents.targetType, targetType),
          targetId === undefined ? undefined : eq(auditEvents.targetId, targetId),
        ),
      )
      .orderBy(asc(auditEvents.sequence))
      .limit(limit);
  }

  /** Every tenant that has audit events, in order. */
  async tenantIds(): Promise<string[]> {
    const rows = await this.#db
      .selectDistinct({ tenantId: auditEvents.tenantId })
      .from(auditEvents)
      .orderBy(asc(auditEvents.tenantId));
    return rows.map((row) => row.tenantId);
  }
}

/** SHA-256 (lower-case hex) of the canonical JSON of the fields an event's hash covers. */
export function hashAuditEvent(event: ChainedAuditFields): string {
  const covered = {
    tenantId: event.tenantId,
    sequence: event.sequence,
    occurredAt: event.occurredAt.toISOString(),
    actor: event.actor,
    actorType: event.actorType,
    action: event.action,
    targetType: event.targetType,
    targetId: event.targetId,
    outcome: event.outcome,
    details: event.details,
    previousHash: event.previousHash,
  };
  return createHash('sha256').update(canonicalJson(covered), 'utf8').digest('hex');
}

/**
 * JSON with object keys sorted (by UTF-16 code units) and no white space, so one value always has
 * one encoding, whatever key order the database hands back (RFC 8785 style).
 */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    const members = Object.keys(record)
      .filter((key) => record[key] !== undefined)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonicalJson(record[key])}`);
    return `{${members.join(',')}}`;
  }
  const encoded = JSON.stringify(value);
  if (encoded === undefined) throw new TypeError(`${typeof value} has no JSON form`);
  return encoded;
}

/**
 * A copy with the value of every secret-sounding key, at any depth, replaced by `[redacted]`:
 * audit records are kept for years and read by many, so credentials must never reach them.
 */
export function redactSecrets<T>(value: T): T {
  if (Array.isArray(value)) return value.map(redactSecrets) as T;
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value).map(([key, inner]) => [key, isSecretKey(key) ? redactedValue : redactSecrets(inner)]),
  ) as T;
}

/** Matched inside longer names too (`adminPassword`, `client_secret`, `accessToken`, `privateKeyPem`). */
const secretKeyFragments = [
  'password',
  'passwd',
  'passphrase',
  'secret',
  'privatekey',
  'keyencryptionkey',
  'token',
  'credential',
  'authorization',
];

function isSecretKey(key: string): boolean {
  const compact = key.toLowerCase().replace(/[^a-z0-9]/g, '');
  if (secretKeyFragments.some((fragment) => compact.includes(fragment))) return true;
  // "pin" only as a word of its own or an ending (`pin`, `hsmPin`, `user_pin`, `PIN_CODE`), not `mapping`.
  const words = key
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .toLowerCase()
    .split(/[^a-z0-9]+/);
  return words.includes('pin') || compact.endsWith('pin');
}

/**
 * The details exactly as they will come back from a jsonb column (dates as strings, undefined
 * members dropped), so the hash computed now is the one `verify` recomputes later.
 */
function plainJson(details: Record<string, unknown>): Record<string, unknown> {
  try {
    return JSON.parse(JSON.stringify(details)) as Record<string, unknown>;
  } catch (error) {
    throw new ValidationError(`audit event details cannot be stored as JSON: ${(error as Error).message}`, {
      fields: [{ field: 'details', reason: 'must be JSON-serialisable' }],
      cause: error,
    });
  }
}

function chainProblem(event: AuditEventRow, expectedSequence: number, previousHash: string) {
  if (event.sequence !== expectedSequence) {
    const missing =
      event.sequence - expectedSequence === 1
        ? `event ${expectedSequence} is missing`
        : `events ${expectedSequence} to ${event.sequence - 1} are missing`;
    return { sequence: expectedSequence, problem: missing };
  }
  if (hashAuditEvent(event) !== event.hash) {
    return { sequence: event.sequence, problem: 'its contents do not match its hash (changed after it was written)' };
  }
  if (event.previousHash !== previousHash) {
    return {
      sequence: event.sequence,
      problem:
        event.sequence === 1
          ? 'the first event does not link to the genesis hash'
          : `its previous hash does not match the hash of event ${event.sequence - 1}`,
    };
  }
  return undefined;
}

/** PostgreSQL's unique_violation, however the driver (and drizzle around it) wraps it. */
function isUniqueViolation(error: unknown): boolean {
  for (let current = error; current instanceof Object; current = (current as { cause?: unknown }).cause) {
    if ((current as { code?: unknown }).code === '23505') return true;
  }
  return false;
}

/** A stable 64-bit advisory lock key per tenant chain. */
function chainLockId(tenantId: string): string {
  const digest = createHash('sha256').update(`device-provisioning/audit-chain/${tenantId}`).digest();
  return digest.readBigInt64BE(0).toString();
}
