import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog } from '../audit/audit-log';
import { openDatabase, type DatabaseHandle } from '../db/client';
import { createLogger } from '../foundation/logger';
import { createServerDatabaseUrl } from '../test/support/database';
import { runScript } from '../test/support/scripts';

/** Runs the script the way `npm run audit:verify` does, against the given database. */
const auditVerify = (databaseUrl: string, ...args: string[]) => runScript('scripts/audit-verify.ts', { DATABASE_URL: databaseUrl }, ...args);

describe('npm run audit:verify', () => {
  let url: string;
  let handle: DatabaseHandle;

  beforeAll(async () => {
    url = await createServerDatabaseUrl();
    handle = await openDatabase({ url });
    const audit = new AuditLog({ db: handle.db, logger: createLogger('silent') });
    for (const [tenantId, count] of [['acme', 3], ['globex', 2]] as const) {
      for (let index = 0; index < count; index++) {
        await audit.append({ tenantId, actor: 'alice', actorType: 'user', action: 'template.updated', details: { index } });
      }
    }
  });
  afterAll(() => handle?.close());

  it('exits 0 and reports every tenant ok when the chains are intact', async () => {
    const { code, stdout, stderr } = await auditVerify(url);
    expect(stderr).toBe('');
    expect(stdout).toBe('acme: ok (3 events, last sequence 3)\nglobex: ok (2 events, last sequence 2)\n');
    expect(code).toBe(0);
  });

  it('exits 1 and names the broken sequence once an event has been changed', async () => {
    const superuser = postgres(url, { max: 1, onnotice: () => {} });
    try {
      await superuser.begin(async (tx) => {
        await tx`alter table audit_events disable trigger user`;
        await tx`update audit_events set actor = 'mallory' where tenant_id = 'acme' and sequence = 2`;
        await tx`alter table audit_events enable trigger user`;
      });
    } finally {
      await superuser.end();
    }

    const all = await auditVerify(url, '--all');
    expect(all.stdout).toMatch(/^acme: BROKEN at sequence 2: .+\nglobex: ok \(2 events, last sequence 2\)\n$/);
    expect(all.code).toBe(1);

    const globexOnly = await auditVerify(url, '--tenant', 'globex');
    expect(globexOnly.stdout).toBe('globex: ok (2 events, last sequence 2)\n');
    expect(globexOnly.code).toBe(0);
  });
});
