/**
 * `npm run -s api-key -- create --tenant acme --role operator --name "line 3 installer" [--principal user:jdoe] [--expires-in-days 90]`
 * `npm run -s api-key -- list --tenant acme`
 * `npm run -s api-key -- revoke --tenant acme --id <uuid>`
 * `npm run -s api-key -- break-glass --tenant acme [--name "emergency 2026"] [--expires-in-days 365]`
 * Manages API keys directly in the service's database (configured as for `npm start`). A created
 * key is printed once, on stdout, as JSON. `--principal` names the person the key acts for (as the
 * identity provider names them, `user:<sub>`), so their keys and tokens count as one person in
 * four-eyes checks; without it the key is a principal of its own. On the embedded database it
 * refuses while the service runs (only one process may open it); use the API then.
 *
 * `break-glass` makes the emergency administrator key, only here (never through the API): the API
 * takes it only with a reason in `X-Break-Glass-Reason`, and alerts and audits every use. Its
 * making is audited too. Print it once, keep it offline (a safe, split between two people).
 */
import { parseArgs } from 'node:util';
import { ApiKeyStore, breakGlassReasonHeader, principalPattern } from '../access/api-keys';
import { AuditLog } from '../audit/audit-log';
import { createLogger } from '../foundation/logger';
import { roles, type Role } from '../access/roles';
import { openDatabase } from '../db/client';
import { DirectoryInUseError } from '../db/directory-lock';
import { loadConfig } from '../service/config';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    tenant: { type: 'string' },
    role: { type: 'string' },
    name: { type: 'string' },
    principal: { type: 'string' },
    id: { type: 'string' },
    'expires-in-days': { type: 'string' },
  },
});

function fail(message: string): never {
  process.stderr.write(`api-key: ${message}\n`);
  process.exit(2);
}

const command = positionals[0];
if (!['create', 'list', 'revoke', 'break-glass'].includes(command ?? '')) fail('usage: api-key create|list|revoke|break-glass --tenant T [...]');
if (!values.tenant) fail('--tenant is required');

const config = loadConfig();
const database = await openDatabase({ url: config.database.url, embeddedDir: config.database.embeddedDir }).catch((error: unknown) => {
  if (!(error instanceof DirectoryInUseError)) throw error;
  // The embedded database takes one process at a time: the running service holds it.
  fail(
    `the service is running on the embedded database in ${config.database.embeddedDir} (pid ${error.holderPid}); ` +
      'create keys through the running service (POST /api/v1/access/api-keys with an administrator key), or stop the service first',
  );
});
const apiKeys = new ApiKeyStore(database.db);
try {
  if (command === 'create') {
    if (!roles.includes(values.role as Role)) fail(`--role must be one of ${roles.join(', ')}`);
    if (!values.name) fail('--name is required');
    if (values.principal !== undefined && !principalPattern.test(values.principal)) fail('--principal must look like user:<name>');
    const days = values['expires-in-days'] ? Number(values['expires-in-days']) : undefined;
    if (days !== undefined && !(Number.isInteger(days) && days > 0)) fail('--expires-in-days must be a positive integer');
    const created = await apiKeys.create({
      tenantId: values.tenant,
      role: values.role as Role,
      name: values.name,
      ...(values.principal ? { principal: values.principal } : {}),
      createdBy: `cli:${process.env.USER ?? 'unknown'}`,
      ...(days ? { expiresAt: new Date(Date.now() + days * 86_400_000) } : {}),
    });
    process.stdout.write(`${JSON.stringify({ id: created.id, tenantId: values.tenant, role: values.role, principal: created.row.principal, key: created.key })}\n`);
  } else if (command === 'break-glass') {
    const days = values['expires-in-days'] ? Number(values['expires-in-days']) : undefined;
    if (days !== undefined && !(Number.isInteger(days) && days > 0)) fail('--expires-in-days must be a positive integer');
    const createdBy = `cli:${process.env.USER ?? 'unknown'}`;
    const created = await apiKeys.create({
      tenantId: values.tenant,
      role: 'administrator',
      name: values.name ?? 'break-glass',
      breakGlass: true,
      createdBy,
      ...(days ? { expiresAt: new Date(Date.now() + days * 86_400_000) } : {}),
    });
    await new AuditLog({ db: database.db, logger: createLogger('warn') }).append({
      tenantId: values.tenant,
      actor: createdBy,
      actorType: 'user',
      action: 'access.break_glass_created',
      targetType: 'api-key',
      targetId: created.id,
      details: { name: created.row.name, ...(days ? { expiresAt: created.row.expiresAt?.toISOString() } : {}) },
    });
    process.stdout.write(
      `${JSON.stringify({ id: created.id, tenantId: values.tenant, role: 'administrator', breakGlass: true, key: created.key, use: `send ${breakGlassReasonHeader}: <why> with every request` })}\n`,
    );
  } else if (command === 'list') {
    for (const row of await apiKeys.list(values.tenant)) {
      const { secretHash: _hidden, ...visible } = row;
      process.stdout.write(`${JSON.stringify(visible)}\n`);
    }
  } else {
    if (!values.id) fail('--id is required');
    const row = await apiKeys.revoke(values.tenant, values.id);
    process.stdout.write(`${JSON.stringify({ id: row.id, revokedAt: row.revokedAt })}\n`);
  }
} finally {
  await database.close();
}
