import type { DatabaseSync, SQLInputValue, StatementSync } from 'node:sqlite';
import { GatehouseError } from '../common/errors.ts';
import { blob, type Immediate, type Row, SqliteTables } from './sqlite-support.ts';
import type { LogEntryRecord, LogNodeRecord, LogStore, NewLogEntryRecord } from './store.ts';

/**
 * Which tables a log lives in: the transparency log's own (`log_entries`, `log_nodes`), or one
 * shard of a table pair that holds several logs side by side (the CT log's key generations,
 * migration 13), told apart by a `shard` column.
 */
export interface LogTables {
  entries: string;
  nodes: string;
  /** The shard's value of the `shard` column; absent for tables holding one log. */
  shard?: string;
}

const TRANSPARENCY_LOG: LogTables = { entries: 'log_entries', nodes: 'log_nodes' };

/** Hashes looked up by one statement (well under SQLite's bound on parameters). */
const LOOKUP_CHUNK = 200;

/**
 * Transparency log tables of the embedded store: entries and the interior node hashes the log
 * hands in with them (migration 5). No hash is computed here.
 */
export class SqliteLogStore extends SqliteTables implements LogStore {
  readonly #immediate: Immediate;
  readonly #tables: LogTables;
  #sequencing: Promise<unknown> = Promise.resolve();
  // Prepared once: appends and proofs run these on every approval.
  readonly #q: Record<'insert' | 'insertNode' | 'size', StatementSync>;
  /** Lookups of several hashes at once, by kind and count (see {@link SqliteLogStore.subtreeHashes}). */
  readonly #lookups = new Map<string, StatementSync>();

  constructor(db: DatabaseSync, immediate: Immediate, tables: LogTables = TRANSPARENCY_LOG) {
    super(db);
    this.#immediate = immediate;
    this.#tables = tables;
    const { entries, nodes } = tables;
    // A sharded table pair carries the shard as the first column of every key.
    const col = tables.shard === undefined ? '' : 'shard, ';
    const val = tables.shard === undefined ? '' : '?, ';
    this.#q = {
      insert: db.prepare(
        `INSERT INTO ${entries} (${col}idx, body, leaf_hash, integrated_time) VALUES (${val}?, ?, ?, ?)`,
      ),
      // A node hash never changes, so one handed in twice (a repeated fill) keeps the first.
      insertNode: db.prepare(
        `INSERT OR IGNORE INTO ${nodes} (${col}level, idx, hash) VALUES (${val}?, ?, ?)`,
      ),
      // MAX of the integer primary key is a b-tree lookup; COUNT(*) would read every row.
      size: db.prepare(
        `SELECT COALESCE(MAX(idx) + 1, 0) AS n FROM ${entries}${tables.shard === undefined ? '' : ' WHERE shard = ?'}`,
      ),
    };
  }

  /** The statement parameters, after the shard when the tables are sharded. */
  #p(...params: SQLInputValue[]): SQLInputValue[] {
    return this.#tables.shard === undefined ? params : [this.#tables.shard, ...params];
  }

  /** The condition selecting this log's rows, and its parameters. */
  #scope(): { where: string; params: SQLInputValue[] } {
    return this.#tables.shard === undefined
      ? { where: '1 = 1', params: [] }
      : { where: 'shard = ?', params: [this.#tables.shard] };
  }

  async append(
    start: number,
    entries: readonly NewLogEntryRecord[],
    nodes: readonly LogNodeRecord[],
  ): Promise<number[]> {
    // Size check and inserts in one write transaction: two writers can never take the same index.
    return this.#immediate(() => {
      const size = this.#sizeSync();
      if (start !== size) {
        throw new GatehouseError(
          'CONFLICT',
          `the log has ${size} entries, not ${start}: appended concurrently`,
        );
      }
      const indices = entries.map((e, i) => {
        this.#q.insert.run(...this.#p(start + i, e.body, e.leafHash, e.integratedTime));
        return start + i;
      });
      this.#insertNodes(nodes);
      return indices;
    });
  }

  async sequence<T>(fn: () => Promise<T>): Promise<T> {
    // One sequencer per process; another process writing the same file meets append's size check.
    const next = this.#sequencing.then(fn, fn);
    this.#sequencing = next.catch(() => undefined);
    return next;
  }

  async addNodes(nodes: readonly LogNodeRecord[]): Promise<void> {
    this.#immediate(() => this.#insertNodes(nodes));
  }

  #insertNodes(nodes: readonly LogNodeRecord[]): void {
    for (const n of nodes) this.#q.insertNode.run(...this.#p(n.level, n.index, n.hash));
  }

  async nodeCount(): Promise<number> {
    const { where, params } = this.#scope();
    return Number(this.row(`SELECT COUNT(*) AS n FROM ${this.#tables.nodes} WHERE ${where}`, ...params)?.n);
  }

  async subtreeHashes(refs: readonly { level: number; index: number }[]): Promise<Uint8Array[]> {
    // One statement per kind and chunk rather than one per hash: a proof reads some forty hashes,
    // and every approval reads three proofs.
    const found = new Map<string, Uint8Array>();
    const leaves = refs.filter((r) => r.level === 0).map((r) => r.index);
    const nodes = refs.filter((r) => r.level > 0);
    for (let i = 0; i < leaves.length; i += LOOKUP_CHUNK) {
      const part = leaves.slice(i, i + LOOKUP_CHUNK);
      for (const row of this.#lookup('leaf', part.length).all(...this.#p(...part)) as Row[])
        found.set(`0/${Number(row.idx)}`, blob(row.h));
    }
    for (let i = 0; i < nodes.length; i += LOOKUP_CHUNK) {
      const part = nodes.slice(i, i + LOOKUP_CHUNK);
      const params = part.flatMap((r) => [r.level, r.index]);
      for (const row of this.#lookup('node', part.length).all(...this.#p(...params)) as Row[])
        found.set(`${Number(row.level)}/${Number(row.idx)}`, blob(row.h));
    }
    return refs.map((r) => {
      const h = found.get(`${r.level}/${r.index}`);
      if (h === undefined) {
        throw new GatehouseError('NOT_FOUND', `log subtree ${r.level}/${r.index} is not complete`);
      }
      return h;
    });
  }

  /** The prepared lookup of `n` leaves or nodes by coordinates, made once per kind and size. */
  #lookup(kind: 'leaf' | 'node', n: number): StatementSync {
    const key = `${kind}/${n}`;
    let q = this.#lookups.get(key);
    if (q === undefined) {
      const where = this.#tables.shard === undefined ? '' : 'shard = ? AND ';
      q =
        kind === 'leaf'
          ? this.db.prepare(
              `SELECT idx, leaf_hash AS h FROM ${this.#tables.entries} WHERE ${where}idx IN (${Array(n).fill('?').join(', ')})`,
            )
          : this.db.prepare(
              `SELECT level, idx, hash AS h FROM ${this.#tables.nodes} WHERE ${where}(level, idx) IN (VALUES ${Array(n).fill('(?, ?)').join(', ')})`,
            );
      this.#lookups.set(key, q);
    }
    return q;
  }

  #sizeSync(): number {
    const r = this.#q.size.get(...this.#p()) as Row;
    return Number(r.n);
  }

  async size(): Promise<number> {
    return this.#sizeSync();
  }

  async get(index: number): Promise<LogEntryRecord | undefined> {
    const { where, params } = this.#scope();
    const r = this.row(`SELECT * FROM ${this.#tables.entries} WHERE ${where} AND idx = ?`, ...params, index);
    if (r === undefined) return undefined;
    return {
      index: Number(r.idx),
      body: blob(r.body),
      leafHash: blob(r.leaf_hash),
      integratedTime: Number(r.integrated_time),
    };
  }

  async leafHashes(start: number, end: number): Promise<Uint8Array[]> {
    const { where, params } = this.#scope();
    const rows = this.rows(
      `SELECT leaf_hash FROM ${this.#tables.entries} WHERE ${where} AND idx >= ? AND idx < ? ORDER BY idx`,
      ...params,
      start,
      end,
    );
    return rows.map((r) => blob(r.leaf_hash));
  }
}
