/**
 * DATA_DIR holds the database, Temporal's history, keys and the bootstrap API key: only the
 * service's own user may read it. Files made from now on are private (umask), and what an earlier
 * version left readable by others is made private too.
 */
import { chmodSync, lstatSync, mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';

const privateBits = 0o077;

function restrict(entry: string): void {
  const stat = lstatSync(entry);
  if (stat.isSymbolicLink()) return;
  if ((stat.mode & privateBits) !== 0) chmodSync(entry, stat.mode & 0o7700);
  if (stat.isDirectory()) for (const name of readdirSync(entry)) restrict(path.join(entry, name));
}

/** Sets this process's umask to 077 and makes DATA_DIR and everything in it private to its owner. */
export function secureDataDirectory(dataDir: string): void {
  process.umask(privateBits);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  restrict(dataDir);
}
