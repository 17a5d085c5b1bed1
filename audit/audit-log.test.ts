import { sql } from 'drizzle-orm';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type DatabaseHandle } from '../db/client';
import { auditEvents, type AuditEventRow } from '../db/schema';
import { ValidationError } from '../foundation/errors';
import { createLogger } from '../foundation/logger';
import { createServerDatabaseUrl, databaseKinds, openTestDatabase } from '../test/support/database';
import { AuditLog, genesisHash, hashAuditEvent, type AuditEventInput, type ChainedAuditFields } from './audit-log';

const logger = createLogger('silent');
let tenantCounter = 0;
const newTenant = () => `tenant-${++tenantCounter}`;

function event(tenantId: string, overrides: Partial<AuditEventInput> = {}): AuditEventInput {
  return {
    tenantId,
    actor: 'alice',
    actorType: 'user',
    action: 'provisioning.started',
    targetType: 'device',
    targetId: 'cam-1',
    details: { site: 'hq' },
    ...overrides,
  };
}

async function appendMany(audit: AuditLog, tenantId: string, count: number): Promise<AuditEventRow[]> {
  const rows: AuditEventRow[] = [];
  for (let index = 0; index < count; index++) {
    rows.push(await audit.append(event(tenantId, { targetId: `cam-${index + 1}`, details: { index } })));
  }
  return rows;
}

/** The PostgreSQL error code and message behind a failed query, however the driver wraps it. */
async function refusal(query: Promise<unknown>): Promise<{ code?: unknown; message: string }> {
  try {
    await query;
  } catch (error) {
    for (let current: unknown = error; current instanceof Object; current = (current as { cause?: unknown }).cause) {
      const { code, message } = current as { code?: unknown; message: string };
      if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return { code, message };
    }
    throw error;
  }
  throw new Error('the statement was not refused');
}

describe.each(databaseKinds)('audit log on the %s database', (kind) => {
  let handle: DatabaseHandle;
  /** Set for the server database: tampering connects to it on its own, as the superuser. */
  let url: string | undefined;
  let audit: AuditLog;

  beforeAll(async () => {
    if (kind === 'server') {
      url = await createServerDatabaseUrl();
      handle = await openDatabase({ url });
    } else {
      handle = await openTestDatabase(kind);
    }
    audit = new AuditLog({ db: handle.db, logger });
  });
  afterAll(() => handle?.close());

  /** Runs statements with the append-only triggers switched off, as a superuser covering tracks would. */
  async function tamper(...statements: string[]) {
    const steps = [
      'alter table audit_events disable trigger user',
      ...statements,
      'alter table audit_events enable trigger user',
    ];
    if (kind === 'server') {
      const superuser = postgres(url!, { max: 1, onnotice: () => {} });
      try {
        await superuser.begin(async (tx) => {
          for (const step of steps) await tx.unsafe(step);
        });
      } finally {
        await superuser.end();
      }
    } else {
      await handle.db.transaction(async (tx) => {
        for (const step of steps) await tx.execute(sql.raw(step));
      });
    }
  }

  it('chains each appended event to the one before it', async () => {
    const tenantId = newTenant();
    const occurredAt = new Date('2025-03-04T05:06:07.089Z');
    const first = await audit.append(event(tenantId, { occurredAt, details: { at: occurredAt, skipped: undefined } }));
    const second = await audit.append(
      event(tenantId, { action: 'certificate.issued', targetType: 'certificate', targetId: 'c-1', outcome: 'failure' }),
    );
    const third = await audit.append({ tenantId, actor: 'system', actorType: 'system', action: 'approval.granted' });

    expect(first).toMatchObject({ sequence: 1, previousHash: genesisHash, outcome: 'success', occurredAt });
    expect(first.details).toEqual({ at: '2025-03-04T05:06:07.089Z' });
    expect(second).toMatchObject({ sequence: 2, previousHash: first.hash, outcome: 'failure', targetId: 'c-1' });
    expect(third).toMatchObject({ sequence: 3, previousHash: second.hash, targetType: null, targetId: null, details: {} });
    for (const row of [first, second, third]) {
      expect(row.hash).toMatch(/^[0-9a-f]{64}$/);
      expect(hashAuditEvent(row)).toBe(row.hash);
    }
    expect(await audit.verify(tenantId)).toEqual({ ok: true, eventsChecked: 3, lastSequence: 3 });
  });

  it('gives 50 concurrent appends for one tenant the sequences 1 to 50 and a valid chain', async () => {
    const tenantId = newTenant();
    // Several writers with their own connections, as several service processes would be.
    const extraHandles = kind === 'server' ? await Promise.all([openDatabase({ url }), openDatabase({ url })]) : [];
    try {
      const writers = [handle, ...extraHandles, handle].map(({ db }) => new AuditLog({ db, logger }));
      const appended = await Promise.all(
        Array.from({ length: 50 }, (_, index) =>
          writers[index % writers.length]!.append(event(tenantId, { details: { index } })),
        ),
      );
      expect(appended.map((row) => row.sequence).sort((a, b) => a - b)).toEqual(
        Array.from({ length: 50 }, (_, index) => index + 1),
      );
      expect(new Set(appended.map((row) => row.previousHash)).size).toBe(50);
      expect(await audit.verify(tenantId)).toEqual({ ok: true, eventsChecked: 50, lastSequence: 50 });
    } finally {
      await Promise.all(extraHandles.map((extra) => extra.close()));
    }
  });

  it('keeps an independent chain per tenant', async () => {
    const [acme, globex] = [newTenant(), newTenant()];
    const rows = await Promise.all([acme, globex, acme, globex, acme].map((tenantId) => audit.append(event(tenantId))));

    const acmeEvents = await audit.list(acme);
    const globexEvents = await audit.list(globex);
    expect(acmeEvents.map((row) => row.sequence)).toEqual([1, 2, 3]);
    expect(globexEvents.map((row) => row.sequence)).toEqual([1, 2]);
    expect(acmeEvents[0]!.previousHash).toBe(genesisHash);
    expect(globexEvents[0]!.previousHash).toBe(genesisHash);
    expect(rows.every((row) => row.tenantId === acme || row.tenantId === globex)).toBe(true);
    expect(await audit.verify(acme)).toMatchObject({ ok: true, eventsChecked: 3 });
    expect(await audit.verify(globex)).toMatchObject({ ok: true, eventsChecked: 2 });
    expect(await audit.tenantIds()).toEqual(expect.arrayContaining([acme, globex]));
  });

  it('refuses UPDATE, DELETE and TRUNCATE on audit_events', async () => {
    const tenantId = newTenant();
    await appendMany(audit, tenantId, 2);

    for (const statement of [
      sql`update audit_events set actor = 'mallory' where tenant_id = ${tenantId}`,
      sql`delete from audit_events where tenant_id = ${tenantId}`,
      sql`truncate audit_events`,
    ]) {
      const { code, message } = await refusal(handle.db.execute(statement));
      expect(code).toBe('42501');
      expect(message).toMatch(/append-only/);
    }
    expect(await audit.list(tenantId)).toHaveLength(2);
    expect(await audit.verify(tenantId)).toMatchObject({ ok: true, eventsChecked: 2 });
  });

  it('reports an event whose details were changed at its own sequence', async () => {
    const tenantId = newTenant();
    await appendMany(audit, tenantId, 5);
    await tamper(
      `update audit_events set details = '{"index": 99}' where tenant_id = '${tenantId}' and sequence = 3`,
    );

    const result = await audit.verify(tenantId);
    expect(result).toMatchObject({ ok: false, eventsChecked: 2, lastSequence: 2, firstProblem: { sequence: 3 } });
    expect(result.firstProblem!.problem).toMatch(/do not match its hash/);
  });

  it('reports a changed event whose own hash was recomputed at the event after it', async () => {
    const tenantId = newTenant();
    const rows = await appendMany(audit, tenantId, 5);
    const forged = { ...rows[2]!, details: { index: 99 } };
    await tamper(
      `update audit_events set details = '{"index": 99}', hash = '${hashAuditEvent(forged)}'
        where tenant_id = '${tenantId}' and sequence = 3`,
    );

    const result = await audit.verify(tenantId);
    expect(result).toMatchObject({ ok: false, eventsChecked: 3, firstProblem: { sequence: 4 } });
    expect(result.firstProblem!.problem).toMatch(/previous hash does not match the hash of event 3/);
  });

  it('reports a deleted middle event at the missing sequence', async () => {
    const tenantId = newTenant();
    await appendMany(audit, tenantId, 5);
    await tamper(`delete from audit_events where tenant_id = '${tenantId}' and sequence = 3`);

    const result = await audit.verify(tenantId);
    expect(result).toMatchObject({ ok: false, eventsChecked: 2, lastSequence: 2, firstProblem: { sequence: 3 } });
    expect(result.firstProblem!.problem).toMatch(/event 3 is missing/);
  });

  it('reports two events swapped in order at the first of them', async () => {
    const tenantId = newTenant();
    await appendMany(audit, tenantId, 4);
    const where = `where tenant_id = '${tenantId}' and sequence =`;
    await tamper(
      `update audit_events set sequence = -2 ${where} 2`,
      `update audit_events set sequence = 2 ${where} 3`,
      `update audit_events set sequence = 3 ${where} -2`,
    );

    expect(await audit.verify(tenantId)).toMatchObject({ ok: false, eventsChecked: 1, firstProblem: { sequence: 2 } });
  });

  it('verifies chains longer than one page and finds a change deep inside them', async () => {
    const tenantId = newTenant();
    const rows: (ChainedAuditFields & { hash: string })[] = [];
    let previousHash = genesisHash;
    for (let sequence = 1; sequence <= 2500; sequence++) {
      const fields: ChainedAuditFields = {
        tenantId,
        sequence,
        occurredAt: new Date(Date.UTC(2025, 0, 1) + sequence),
        actor: 'provision:acme:cam-1',
        actorType: 'workflow',
        action: 'provisioning.step_completed',
        targetType: 'device',
        targetId: `cam-${sequence}`,
        outcome: 'success',
        details: { sequence },
        previousHash,
      };
      previousHash = hashAuditEvent(fields);
      rows.push({ ...fields, hash: previousHash });
    }
    for (let start = 0; start < rows.length; start += 1000) {
      await handle.db.insert(auditEvents).values(rows.slice(start, start + 1000));
    }
    expect(await audit.verify(tenantId)).toEqual({ ok: true, eventsChecked: 2500, lastSequence: 2500 });

    await tamper(`update audit_events set actor = 'mallory' where tenant_id = '${tenantId}' and sequence = 2222`);
    expect(await audit.verify(tenantId)).toMatchObject({ ok: false, eventsChecked: 2221, firstProblem: { sequence: 2222 } });
  });

  it('redacts secrets at any depth before storing and hashing the details', async () => {
    const tenantId = newTenant();
    const stored = await audit.append(
      event(tenantId, {
        action: 'provisioning.started',
        details: {
          serialNumber: 'RD-0001',
          credentials: { username: 'admin', password: 'zz-password' },
          device: { adminPassword: 'zz-admin', mapping: 'kept', pinned: true, hsm: { PIN: 'zz-pin', userPin: 'zz-user-pin' } },
          steps: [{ client_secret: 'zz-secret', accessToken: 'zz-token', privateKeyPem: 'zz-private-key' }],
          authorization: 'Bearer zz-bearer',
          keyEncryptionKey: 'zz-kek',
        },
      }),
    );

    const expected = {
      serialNumber: 'RD-0001',
      credentials: '[redacted]',
      device: { adminPassword: '[redacted]', mapping: 'kept', pinned: true, hsm: { PIN: '[redacted]', userPin: '[redacted]' } },
      steps: [{ client_secret: '[redacted]', accessToken: '[redacted]', privateKeyPem: '[redacted]' }],
      authorization: '[redacted]',
      keyEncryptionKey: '[redacted]',
    };
    expect(stored.details).toEqual(expected);
    const [readBack] = await audit.list(tenantId);
    expect(readBack!.details).toEqual(expected);
    expect(JSON.stringify(readBack)).not.toContain('zz-');
    expect(await audit.verify(tenantId)).toMatchObject({ ok: true, eventsChecked: 1 });
  });

  it('lists events oldest first, filtered by action and target, in pages', async () => {
    const tenantId = newTenant();
    await audit.append(event(tenantId, { action: 'certificate.issued', targetType: 'certificate', targetId: 'c-1' }));
    await audit.append(event(tenantId, { action: 'certificate.revoked', targetType: 'certificate', targetId: 'c-1' }));
    await audit.append(event(tenantId, { action: 'certificate.issued', targetType: 'certificate', targetId: 'c-2' }));
    await audit.append(event(tenantId, { action: 'template.updated', targetType: 'template', targetId: 'default' }));

    const sequences = (rows: AuditEventRow[]) => rows.map((row) => row.sequence);
    expect(sequences(await audit.list(tenantId))).toEqual([1, 2, 3, 4]);
    expect(sequences(await audit.list(tenantId, { after: 1, limit: 2 }))).toEqual([2, 3]);
    expect(sequences(await audit.list(tenantId, { action: 'certificate.issued' }))).toEqual([1, 3]);
    expect(sequences(await audit.list(tenantId, { targetType: 'certificate', targetId: 'c-1' }))).toEqual([1, 2]);
    expect(await audit.list(newTenant())).toEqual([]);
    await expect(audit.list(tenantId, { limit: 501 })).rejects.toThrow(ValidationError);
  });

  it('refuses an event without a dotted action, a known actor type or an actor', async () => {
    const tenantId = newTenant();
    await expect(audit.append(event(tenantId, { action: 'login' }))).rejects.toThrow(ValidationError);
    await expect(audit.append(event(tenantId, { actorType: 'robot' as never }))).rejects.toThrow(ValidationError);
    await expect(audit.append(event(tenantId, { actor: '' }))).rejects.toThrow(ValidationError);
    expect(await audit.list(tenantId)).toEqual([]);
  });

  it.runIf(kind === 'server')('appends again when a writer that skipped the lock took the next sequence', async () => {
    const tenantId = newTenant();
    const first = await audit.append(event(tenantId));
    const intruding: ChainedAuditFields = {
      tenantId,
      sequence: 2,
      occurredAt: new Date(),
      actor: 'legacy-importer',
      actorType: 'system',
      action: 'import.completed',
      targetType: null,
      targetId: null,
      outcome: 'success',
      details: {},
      previousHash: first.hash,
    };
    const intruder = postgres(url!, { max: 1, onnotice: () => {} });
    const observer = postgres(url!, { max: 1, onnotice: () => {} });
    let appended: Promise<AuditEventRow> | undefined;
    try {
      await intruder.begin(async (tx) => {
        await tx`insert into audit_events
          (tenant_id, sequence, occurred_at, actor, actor_type, action, outcome, details, previous_hash, hash)
          values (${tenantId}, 2, ${intruding.occurredAt}, 'legacy-importer', 'system', 'import.completed', 'success',
            '{}', ${first.hash}, ${hashAuditEvent(intruding)})`;
        appended = audit.append(event(tenantId, { action: 'certificate.issued' }));
        appended.catch(() => {});
        // Commit only once the append is waiting on the row this transaction inserted.
        for (let waited = 0; ; waited += 20) {
          const [{ count }] = await observer`select count(*)::int as count from pg_stat_activity
            where datname = current_database() and wait_event_type = 'Lock' and query like 'insert into "audit_events"%'`;
          if (count > 0) break;
          if (waited > 10_000) throw new Error('the append never waited on the intruding row');
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      });
      const row = await appended!;
      expect(row).toMatchObject({ sequence: 3, previousHash: hashAuditEvent(intruding) });
      expect(await audit.verify(tenantId)).toEqual({ ok: true, eventsChecked: 3, lastSequence: 3 });
    } finally {
      await intruder.end();
      await observer.end();
    }
  });
});
