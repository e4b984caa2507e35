import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { GatehouseError } from '../common/errors.ts';
import { blob, type Immediate, type Row, SqliteTables } from './sqlite-support.ts';
import type { LogEntryRecord, LogNodeRecord, LogStore, NewLogEntryRecord } from './store.ts';

/**
 * Transparency log tables of the embedded store: entries and the interior node hashes the log
 * hands in with them (migration 5). No hash is computed here.
 */
export class SqliteLogStore extends SqliteTables implements LogStore {
  readonly #immediate: Immediate;
  #sequencing: Promise<unknown> = Promise.resolve();
  // Prepared once: appends and proofs run these on every approval.
  readonly #q: Record<'insert' | 'leaf' | 'node' | 'insertNode' | 'size', StatementSync>;

  constructor(db: DatabaseSync, immediate: Immediate) {
    super(db);
    this.#immediate = immediate;
    this.#q = {
      insert: db.prepare(
        'INSERT INTO log_entries (idx, body, leaf_hash, integrated_time) VALUES (?, ?, ?, ?)',
      ),
      leaf: db.prepare('SELECT leaf_hash AS h FROM log_entries WHERE idx = ?'),
      node: db.prepare('SELECT hash AS h FROM log_nodes WHERE level = ? AND idx = ?'),
      // A node hash never changes, so one handed in twice (a repeated fill) keeps the first.
      insertNode: db.prepare('INSERT OR IGNORE INTO log_nodes (level, idx, hash) VALUES (?, ?, ?)'),
      // MAX of the integer primary key is a b-tree lookup; COUNT(*) would read every row.
      size: db.prepare('SELECT COALESCE(MAX(idx) + 1, 0) AS n FROM log_entries'),
    };
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
        this.#q.insert.run(start + i, e.body, e.leafHash, e.integratedTime);
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
    for (const n of nodes) this.#q.insertNode.run(n.level, n.index, n.hash);
  }

  async nodeCount(): Promise<number> {
    return Number(this.row('SELECT COUNT(*) AS n FROM log_nodes')?.n);
  }

  async subtreeHashes(refs: readonly { level: number; index: number }[]): Promise<Uint8Array[]> {
    const { leaf, node } = this.#q;
    return refs.map((r) => {
      const row = (r.level === 0 ? leaf.get(r.index) : node.get(r.level, r.index)) as Row | undefined;
      if (row === undefined) {
        throw new GatehouseError('NOT_FOUND', `log subtree ${r.level}/${r.index} is not complete`);
      }
      return blob(row.h);
    });
  }

  #sizeSync(): number {
    const r = this.#q.size.get() as Row;
    return Number(r.n);
  }

  async size(): Promise<number> {
    return this.#sizeSync();
  }

  async get(index: number): Promise<LogEntryRecord | undefined> {
    const r = this.row('SELECT * FROM log_entries WHERE idx = ?', index);
    if (r === undefined) return undefined;
    return {
      index: Number(r.idx),
      body: blob(r.body),
      leafHash: blob(r.leaf_hash),
      integratedTime: Number(r.integrated_time),
    };
  }

  async leafHashes(start: number, end: number): Promise<Uint8Array[]> {
    const rows = this.rows(
      'SELECT leaf_hash FROM log_entries WHERE idx >= ? AND idx < ? ORDER BY idx',
      start,
      end,
    );
    return rows.map((r) => blob(r.leaf_hash));
  }
}
