/**
 * The database's environment, recorded by the first start and checked by every later one, so a
 * test installation never starts against a production database nor the other way round.
 */
import { eq } from 'drizzle-orm';
import { environmentMismatch } from '../foundation/installation-environment';
import type { Database } from './client';
import { installationEnvironment } from './schema';

const installationRow = 'installation';

/** Records `environment` when the database has none yet; throws when it has another. */
export async function claimDatabaseEnvironment(db: Database, environment: string): Promise<void> {
  // Several processes may start at once against a fresh database: the first insert wins, all read it.
  await db.insert(installationEnvironment).values({ id: installationRow, environment }).onConflictDoNothing();
  const [row] = await db.select().from(installationEnvironment).where(eq(installationEnvironment.id, installationRow));
  if (row && row.environment !== environment) throw environmentMismatch({ kind: 'database' }, row.environment, environment);
}
