import { GatehouseError } from '../common/errors.ts';
import { bytes, type PgConnection, PgTables, pgError, type Sql } from './postgres-support.ts';
import type { LogEntryRecord, LogNodeRecord, LogStore, NewLogEntryRecord } from './store.ts';

/**
 * The advisory lock class of the logs' sequencers (an arbitrary constant, "glog" in ASCII), and
 * within it one key per log (its table and shard): whoever holds it in a transaction is the only
 * writer of that log until the transaction ends.
 */
const SEQUENCER_LOCK = 0x676c_6f67;

/** The tables holding one log: the transparency log's, or one shard of the CT log's (migration 14). */
export interface PgLogTables {
  entries: string;
  nodes: string;
  /** The shard's value of the `shard` column; absent for tables holding one log. */
  shard?: string;
}

const TRANSPARENCY_LOG: PgLogTables = { entries: 'log_entries', nodes: 'log_nodes' };
/** Rows per INSERT: PostgreSQL takes at most 65,535 bind parameters in one statement. */
const ROWS_PER_INSERT = 10_000;
/**
 * How long a sequencer may sit idle inside its transaction before the server ends its session
 * (its lease runs out, and whatever it had not committed is gone: it is fenced off), and how long
 * another instance waits for the lock before it reports the log busy.
 */
const LEASE = '30s';

function chunks<T>(rows: readonly T[]): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < rows.length; i += ROWS_PER_INSERT) out.push(rows.slice(i, i + ROWS_PER_INSERT));
  return out;
}

/**
 * The transparency log's tables in PostgreSQL: entries and the interior node hashes the log hands
 * in with them. No hash is computed here. Several control-plane instances share one log: every
 * append runs under the sequencer's advisory lock and checks, in the same transaction, that it
 * starts at the current size; the primary key on the index refuses a second entry at any index.
 */
export class PostgresLogStore extends PgTables implements LogStore {
  readonly #t: PgLogTables;

  constructor(connection: PgConnection, tables: PgLogTables = TRANSPARENCY_LOG) {
    super(connection);
    this.#t = tables;
  }

  /** The condition that picks this log's rows (its shard, or every row). */
  #mine(sql: Sql) {
    return this.#t.shard === undefined ? sql`TRUE` : sql`shard = ${this.#t.shard}`;
  }

  /** The `(columns) VALUES …` of rows as inserted: with the shard column when the tables are sharded. */
  #values(sql: Sql, rows: Record<string, unknown>[], ...cols: string[]) {
    const { shard } = this.#t;
    const all = shard === undefined ? rows : rows.map((r) => ({ shard, ...r }));
    const columns = shard === undefined ? cols : ['shard', ...cols];
    return (sql as unknown as (rows: unknown, ...columns: string[]) => ReturnType<Sql['array']>)(
      all,
      ...columns,
    );
  }

  /** Take the sequencer lock in the open transaction, bounded in how long it waits and idles. */
  async #lock(sql: Sql): Promise<void> {
    await sql`SELECT set_config('lock_timeout', ${LEASE}, true), set_config('idle_in_transaction_session_timeout', ${LEASE}, true)`;
    try {
      const key = `${this.#t.entries}/${this.#t.shard ?? ''}`;
      await sql`SELECT pg_advisory_xact_lock(${SEQUENCER_LOCK}::int, hashtext(${key}))`;
    } catch (e) {
      throw pgError(`the log sequencer lock was not free within ${LEASE} (another instance holds it)`, e);
    }
  }

  async sequence<T>(fn: () => Promise<T>): Promise<T> {
    return this.atomically(async (sql) => {
      await this.#lock(sql);
      return fn();
    });
  }

  async append(
    start: number,
    entries: readonly NewLogEntryRecord[],
    nodes: readonly LogNodeRecord[],
  ): Promise<number[]> {
    try {
      return await this.atomically(async (sql) => {
        await this.#lock(sql);
        const size = await this.#size(sql);
        if (start !== size)
          throw new GatehouseError(
            'CONFLICT',
            `the log has ${size} entries, not ${start}: appended concurrently`,
          );
        for (const part of chunks(entries.map((e, i) => ({ e, i })))) {
          const rows = part.map(({ e, i }) => ({
            idx: start + i,
            body: e.body,
            leaf_hash: e.leafHash,
            integrated_time: e.integratedTime,
          }));
          await sql`INSERT INTO ${sql(this.#t.entries)} ${this.#values(sql, rows, 'idx', 'body', 'leaf_hash', 'integrated_time')}`;
        }
        await this.#insertNodes(sql, nodes);
        return entries.map((_, i) => start + i);
      });
    } catch (e) {
      throw pgError('cannot append to the log', e);
    }
  }

  async addNodes(nodes: readonly LogNodeRecord[]): Promise<void> {
    try {
      await this.atomically((sql) => this.#insertNodes(sql, nodes));
    } catch (e) {
      throw pgError('cannot store log nodes', e);
    }
  }

  async #insertNodes(sql: Sql, nodes: readonly LogNodeRecord[]): Promise<void> {
    // A node hash never changes, so one handed in twice (a repeated fill) keeps the first.
    for (const part of chunks(nodes)) {
      const rows = part.map((n) => ({ level: n.level, idx: n.index, hash: n.hash }));
      await sql`INSERT INTO ${sql(this.#t.nodes)} ${this.#values(sql, rows, 'level', 'idx', 'hash')} ON CONFLICT DO NOTHING`;
    }
  }

  async nodeCount(): Promise<number> {
    const [r] = await this.query(
      'cannot count log nodes',
      (sql) => sql`SELECT COUNT(*)::bigint AS n FROM ${sql(this.#t.nodes)} WHERE ${this.#mine(sql)}`,
    );
    return Number(r?.n);
  }

  async subtreeHashes(refs: readonly { level: number; index: number }[]): Promise<Uint8Array[]> {
    const leaves = refs.filter((r) => r.level === 0).map((r) => r.index);
    const inner = refs.filter((r) => r.level > 0);
    const found = new Map<string, Uint8Array>();
    await this.query('cannot read log subtrees', async (sql) => {
      if (leaves.length > 0) {
        const rows = await sql`
          SELECT idx, leaf_hash AS h FROM ${sql(this.#t.entries)}
          WHERE ${this.#mine(sql)} AND idx = ANY(${sql.array(leaves.map(String))}::bigint[])`;
        for (const r of rows) found.set(`0/${String(r.idx)}`, bytes(r.h));
      }
      if (inner.length > 0) {
        const rows = await sql`
          SELECT n.level, n.idx, n.hash AS h FROM (SELECT * FROM ${sql(this.#t.nodes)} WHERE ${this.#mine(sql)}) n
          JOIN unnest(${sql.array(inner.map((r) => String(r.level)))}::int[],
                      ${sql.array(inner.map((r) => String(r.index)))}::bigint[]) AS want(level, idx)
            ON n.level = want.level AND n.idx = want.idx`;
        for (const r of rows) found.set(`${String(r.level)}/${String(r.idx)}`, bytes(r.h));
      }
    });
    return refs.map((r) => {
      const h = found.get(`${r.level}/${r.index}`);
      if (h === undefined)
        throw new GatehouseError('NOT_FOUND', `log subtree ${r.level}/${r.index} is not complete`);
      return h;
    });
  }

  async #size(sql: Sql): Promise<number> {
    // MAX of the primary key is an index lookup; COUNT(*) would read every row.
    const [r] =
      await sql`SELECT COALESCE(MAX(idx) + 1, 0)::bigint AS n FROM ${sql(this.#t.entries)} WHERE ${this.#mine(sql)}`;
    return Number(r?.n);
  }

  async size(): Promise<number> {
    return this.query('cannot read the log size', (sql) => this.#size(sql));
  }

  async get(index: number): Promise<LogEntryRecord | undefined> {
    if (!Number.isSafeInteger(index) || index < 0) return undefined;
    const [r] = await this.query(
      `cannot read log entry ${index}`,
      (sql) => sql`SELECT * FROM ${sql(this.#t.entries)} WHERE ${this.#mine(sql)} AND idx = ${index}`,
    );
    if (r === undefined) return undefined;
    return {
      index: Number(r.idx),
      body: bytes(r.body),
      leafHash: bytes(r.leaf_hash),
      integratedTime: Number(r.integrated_time),
    };
  }

  async leafHashes(start: number, end: number): Promise<Uint8Array[]> {
    const rows = await this.query(
      'cannot read log leaf hashes',
      (sql) =>
        sql`SELECT leaf_hash FROM ${sql(this.#t.entries)} WHERE ${this.#mine(sql)} AND idx >= ${start} AND idx < ${end} ORDER BY idx`,
    );
    return rows.map((r) => bytes(r.leaf_hash));
  }
}
