/**
 * What stores need to take part in a transaction someone else opened, and to serialise writers
 * across every process that shares the database.
 */
import { createHash } from 'node:crypto';
import { sql } from 'drizzle-orm';
import type { Database } from './client';

export type Transaction = Parameters<Parameters<Database['transaction']>[0]>[0];
/** The database or a transaction on it: a store built on either runs its queries there. */
export type Executor = Database | Transaction;

/**
 * Waits for, then holds until the transaction ends, the advisory lock `key`: a number, or a name
 * turned into a stable 64-bit key by hashing, so no registry of numbers is needed.
 */
export async function holdAdvisoryLock(tx: Transaction, key: number | { name: string; namespace: string }): Promise<void> {
  const id = typeof key === 'number' ? String(key) : createHash('sha256').update(`${key.namespace}/${key.name}`).digest().readBigInt64BE(0).toString();
  await tx.execute(sql`select pg_advisory_xact_lock(${id}::bigint)`);
}
