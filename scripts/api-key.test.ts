import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiKeyStore } from '../access/api-keys';
import { AuditLog } from '../audit/audit-log';
import { openDatabase, type DatabaseHandle } from '../db/client';
import { createLogger } from '../foundation/logger';
import { createServerDatabaseUrl } from '../test/support/database';
import { runScript } from '../test/support/scripts';

const apiKey = (databaseUrl: string, ...args: string[]) => runScript('scripts/api-key.ts', { DATABASE_URL: databaseUrl }, ...args);


describe('npm run -s api-key -- break-glass', () => {
  let url: string;
  let handle: DatabaseHandle;

  beforeAll(async () => {
    url = await createServerDatabaseUrl();
    handle = await openDatabase({ url });
  });

  afterAll(async () => {
    await handle?.close();
  });

  it('prints a break-glass administrator key once, stores only its hash, and audits its making', async () => {
    const result = await apiKey(url, 'break-glass', '--tenant', 'acme', '--name', 'safe 1');
    expect(result.code).toBe(0);
    const printed = JSON.parse(result.stdout) as { id: string; key: string; role: string; breakGlass: boolean; use: string };
    expect(printed).toMatchObject({ role: 'administrator', breakGlass: true });
    expect(printed.use).toContain('X-Break-Glass-Reason');

    const store = new ApiKeyStore(handle.db);
    const [row] = (await store.list('acme')).filter((key) => key.id === printed.id);
    expect(row).toMatchObject({ name: 'safe 1', role: 'administrator', breakGlass: true });
    expect(JSON.stringify(row)).not.toContain(printed.key.split('_')[2]);
    expect(await store.authenticate(printed.key)).toMatchObject({ tenantId: 'acme', role: 'administrator', breakGlass: true });

    const events = await new AuditLog({ db: handle.db, logger: createLogger('silent') }).list('acme', { action: 'access.break_glass_created' });
    expect(events).toEqual([expect.objectContaining({ targetId: printed.id, actorType: 'user' })]);
  });

  it('refuses without a tenant', async () => {
    const result = await apiKey(url, 'break-glass');
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
  });
});
