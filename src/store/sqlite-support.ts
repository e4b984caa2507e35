/**
 * What the SQLite sub-stores share: the row type, readers of row values, the mapping of SQLite
 * errors, and the runner of write transactions that `SqliteStore` hands them.
 */
import type { SQLInputValue } from 'node:sqlite';
import { GatehouseError } from '../common/errors.ts';

/** One result row, column name to value. */
export type Row = Record<string, SQLInputValue>;

/** Runs a synchronous body inside BEGIN IMMEDIATE unless a transaction is already open. */
export type Immediate = <T>(fn: () => T) => T;

/** A STORE_ERROR naming what failed and why. */
export function storeError(what: string, cause: unknown): GatehouseError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new GatehouseError('STORE_ERROR', `${what}: ${detail}`, { cause });
}

/** Whether an insert failed on a UNIQUE constraint (the record is already there). */
export function isUniqueViolation(e: unknown): boolean {
  return String(e).includes('UNIQUE');
}

/** A BLOB column as a fresh Uint8Array. */
export function blob(value: SQLInputValue | undefined): Uint8Array {
  return new Uint8Array(value as Uint8Array);
}
