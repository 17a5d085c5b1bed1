/**
 * Rows carried out of the database and back (CA backups), column by column as the schema declares
 * them, so a new column travels without code of its own: dates as ISO text, bytes as base64.
 */
import { getTableColumns, type Column } from 'drizzle-orm';
import type { PgTable } from 'drizzle-orm/pg-core';
import type { Executor } from './transactions';

export type EncodedValue = string | number | boolean | null | EncodedValue[] | { [key: string]: EncodedValue };
export type EncodedRow = Record<string, EncodedValue>;

/** Rows written or looked up per statement, well within PostgreSQL's limit on parameters. */
export const rowBatchSize = 500;

export interface RowCodec<Insert> {
  encode(row: Record<string, unknown>): EncodedRow;
  /** `invalid` makes the error for a row that is not one of this table's (a value missing or of the wrong type). */
  decode(encoded: Record<string, unknown>, what: string, invalid: new (message: string) => Error): Insert;
}

export function rowCodec<T extends PgTable>(table: T): RowCodec<T['$inferInsert']> {
  const columns = Object.entries(getTableColumns(table)) as [string, Column][];
  return {
    encode(row) {
      const encoded: EncodedRow = {};
      for (const [key, column] of columns) {
        if (!(key in row)) continue;
        const value = row[key];
        if (value === null || value === undefined) encoded[key] = null;
        else if (column.dataType === 'date') encoded[key] = (value as Date).toISOString();
        else if (column.dataType === 'custom') {
          if (!(value instanceof Uint8Array)) throw new Error(`column ${column.name} holds no bytes`);
          encoded[key] = Buffer.from(value).toString('base64');
        } else encoded[key] = value as EncodedValue;
      }
      return encoded;
    },
    decode(encoded, what, invalid) {
      const row: Record<string, unknown> = {};
      for (const [key, column] of columns) {
        const value = encoded[key];
        if (value === undefined || value === null) {
          if (column.notNull && !column.hasDefault) throw new invalid(`${what} has no ${column.name}`);
          if (value === null) row[key] = null;
          continue;
        }
        if (column.dataType === 'date') {
          const date = typeof value === 'string' ? new Date(value) : undefined;
          if (!date || Number.isNaN(date.getTime())) throw new invalid(`${what} has an invalid ${column.name}`);
          row[key] = date;
        } else if (column.dataType === 'custom') {
          if (typeof value !== 'string') throw new invalid(`${what} has an invalid ${column.name}`);
          row[key] = new Uint8Array(Buffer.from(value, 'base64'));
        } else if (column.dataType === 'string' && typeof value !== 'string') {
          throw new invalid(`${what} has an invalid ${column.name}`);
        } else if (column.dataType === 'number' && typeof value !== 'number') {
          throw new invalid(`${what} has an invalid ${column.name}`);
        } else row[key] = value;
      }
      return row as T['$inferInsert'];
    },
  };
}

export async function insertInBatches<T extends PgTable>(executor: Executor, table: T, rows: T['$inferInsert'][]): Promise<void> {
  for (let start = 0; start < rows.length; start += rowBatchSize) {
    await executor.insert(table).values(rows.slice(start, start + rowBatchSize));
  }
}
