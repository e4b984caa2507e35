/**
 * What the PostgreSQL sub-stores share: the connection they run a statement on (the open
 * transaction's when there is one, else the pool), the mapping of driver errors, and readers of
 * column values. Every statement is a tagged template: values travel as bind parameters, never
 * inside the SQL text.
 */
import type { AsyncLocalStorage } from 'node:async_hooks';
import type postgres from 'postgres';
import { GatehouseError } from '../common/errors.ts';

/** A pooled connection set, or the one connection of an open transaction. */
export type Sql = postgres.Sql;

/** One result row, column name to value. */
export type PgRow = Record<string, unknown>;

/** Where the sub-stores find the connection to use: the pool, unless a transaction is open. */
export interface PgConnection {
  readonly pool: Sql;
  readonly transaction: AsyncLocalStorage<Sql>;
}

/** The SQLSTATE of a failed statement, if the driver reported one. */
export function sqlState(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Whether a statement failed on a UNIQUE or PRIMARY KEY constraint (23505). */
export function isUniqueViolation(e: unknown): boolean {
  return sqlState(e) === '23505';
}

/** A STORE_ERROR naming what failed and why (the driver's message, which carries no password). */
export function pgError(what: string, cause: unknown): GatehouseError {
  if (cause instanceof GatehouseError) return cause;
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new GatehouseError('STORE_ERROR', `${what}: ${detail}`, { cause });
}

/** A BYTEA column as a fresh Uint8Array. */
export function bytes(value: unknown): Uint8Array {
  return new Uint8Array(value as Uint8Array);
}

/** A Uint8Array as the Buffer the driver sends as BYTEA. */
export function bytea(value: Uint8Array): Buffer {
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

/** A nullable TEXT column: the string, or undefined for NULL. */
export function optional(value: unknown): string | undefined {
  return value === null || value === undefined ? undefined : String(value);
}

/**
 * The base of every sub-store: the statement runner that picks the open transaction's connection
 * (so that a sub-store's writes inside `Store.transaction` land with the others) or the pool.
 */
export abstract class PgTables {
  readonly #connection: PgConnection;

  constructor(connection: PgConnection) {
    this.#connection = connection;
  }

  /** The connection a statement runs on now. */
  protected get sql(): Sql {
    return this.#connection.transaction.getStore() ?? this.#connection.pool;
  }

  /**
   * Run `fn` in a transaction: the open one when there is one (its writes land with the rest of
   * it), else a new one on a pooled connection, committed when `fn` returns.
   */
  protected atomically<T>(fn: (sql: Sql) => Promise<T>): Promise<T> {
    const open = this.#connection.transaction.getStore();
    if (open !== undefined) return fn(open);
    return this.#connection.pool.begin((tx) =>
      this.#connection.transaction.run(tx as unknown as Sql, () => fn(tx as unknown as Sql)),
    ) as Promise<T>;
  }

  /**
   * Run a statement, mapping a failure to STORE_ERROR `what` (or CONFLICT `conflict` for a
   * unique violation, when given).
   */
  protected async query<T>(what: string, run: (sql: Sql) => Promise<T>, conflict?: string): Promise<T> {
    const open = this.#connection.transaction.getStore();
    try {
      // Inside a transaction a failed statement aborts all of it: one that may fail on a unique
      // key (reported as CONFLICT, which callers may handle) runs under a savepoint instead.
      if (open !== undefined && conflict !== undefined)
        return (await (open as unknown as postgres.TransactionSql).savepoint((sp) =>
          run(sp as unknown as Sql),
        )) as T;
      return await run(this.sql);
    } catch (e) {
      if (conflict !== undefined && isUniqueViolation(e))
        throw new GatehouseError('CONFLICT', conflict, { cause: e });
      throw pgError(what, e);
    }
  }
}
