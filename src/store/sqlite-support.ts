/**
 * What the SQLite sub-stores share: the row type, readers of row values, the mapping of SQLite
 * errors, the runner of write transactions that `SqliteStore` hands them, and the base class
 * holding the connection and its statements.
 */
import type { DatabaseSync, SQLInputValue } from 'node:sqlite';
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

/**
 * The base of every sub-store: the shared connection, and the statements each of them runs in the
 * same few ways (one row, every row, a change, an insert of a record that must be new).
 */
export abstract class SqliteTables {
  protected readonly db: DatabaseSync;

  constructor(db: DatabaseSync) {
    this.db = db;
  }

  /** The first row a query answers, or undefined. */
  protected row(sql: string, ...params: SQLInputValue[]): Row | undefined {
    return this.db.prepare(sql).get(...params) as Row | undefined;
  }

  /** Every row a query answers. */
  protected rows(sql: string, ...params: SQLInputValue[]): Row[] {
    return this.db.prepare(sql).all(...params) as Row[];
  }

  /**
   * The rows of `table` in `order` (newest first, as the lists are), at most `limit` of them; only
   * those whose column is the value when `filter` names one.
   */
  protected listed(
    table: string,
    order: string,
    limit: number,
    filter: { column: string; value: string | undefined },
  ): Row[] {
    return filter.value === undefined
      ? this.rows(`SELECT * FROM ${table} ORDER BY ${order} LIMIT ?`, limit)
      : this.rows(
          `SELECT * FROM ${table} WHERE ${filter.column} = ? ORDER BY ${order} LIMIT ?`,
          filter.value,
          limit,
        );
  }

  /** How many rows of `table` have each value of `column`. */
  protected countBy(table: string, column: string): Record<string, number> {
    const rows = this.rows(`SELECT ${column}, COUNT(*) AS n FROM ${table} GROUP BY ${column}`);
    return Object.fromEntries(rows.map((r) => [String(r[column]), Number(r.n)]));
  }

  /** Run a statement; how many rows it changed. */
  protected run(sql: string, ...params: SQLInputValue[]): number {
    return Number(this.db.prepare(sql).run(...params).changes);
  }

  /**
   * Insert a record that must not be there yet: a UNIQUE violation is CONFLICT `conflict`; any
   * other failure is the STORE_ERROR `failure` (with the cause's message), or else thrown as it is.
   */
  protected insertNew(
    sql: string,
    params: SQLInputValue[],
    errors: { conflict: string; failure?: string },
  ): void {
    try {
      this.run(sql, ...params);
    } catch (e) {
      if (isUniqueViolation(e)) throw new GatehouseError('CONFLICT', errors.conflict, { cause: e });
      throw errors.failure === undefined ? e : storeError(errors.failure, e);
    }
  }
}
