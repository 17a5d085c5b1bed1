/**
 * Verifies the audit hash chains in the database the service is configured with:
 *
 *   npm run audit:verify -- [--tenant T]... | --all     (default: --all)
 *
 * Prints one line per tenant and exits 0 when every chain is intact, 1 when any is broken, and 2
 * when the check could not be run (bad arguments, database unreachable). The embedded database
 * allows one process at a time, so stop the service first or point DATABASE_URL at the server.
 */
import { AuditLog } from '../audit/audit-log';
import { openDatabase } from '../db/client';
import { loadConfig } from '../service/config';
import { createLogger } from '../foundation/logger';
import { readCommandLine, runCommand, usageError } from './command-line';

const usage = 'usage: npm run audit:verify -- [--tenant <id>]... | --all';

async function main(): Promise<number> {
  const options = readCommandLine(
    {
      tenant: { type: 'string', multiple: true },
      all: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    usage,
  );
  if (typeof options === 'number') return options;
  if (options.all && options.tenant) return usageError('--tenant and --all exclude each other', usage);

  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  const database = await openDatabase(config.database);
  try {
    const audit = new AuditLog({ db: database.db, logger });
    const tenants = options.tenant ?? (await audit.tenantIds());
    if (tenants.length === 0) console.log('no audit events');
    let broken = 0;
    for (const tenantId of tenants) {
      const result = await audit.verify(tenantId);
      if (result.ok) {
        console.log(`${tenantId}: ok (${result.eventsChecked} events, last sequence ${result.lastSequence})`);
      } else {
        broken++;
        console.log(`${tenantId}: BROKEN at sequence ${result.firstProblem!.sequence}: ${result.firstProblem!.problem}`);
      }
    }
    return broken > 0 ? 1 : 0;
  } finally {
    await database.close();
  }
}

runCommand(main, 'audit verification could not run', 2);
