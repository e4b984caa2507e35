import type { DatabaseSync } from 'node:sqlite';
import { GatehouseError } from '../common/errors.ts';
import { SqliteLogStore } from './sqlite-log-store.ts';
import { blob, type Immediate, SqliteTables } from './sqlite-support.ts';
import type {
  CosignatureRecord,
  CosignatureStore,
  CtLogStore,
  LogStore,
  WitnessStateRecord,
  WitnessStore,
} from './store.ts';

/** The CT log's shards and issuers (migration 13). */
export class SqliteCtLogStore extends SqliteTables implements CtLogStore {
  readonly #immediate: Immediate;
  readonly #shards = new Map<string, LogStore>();

  constructor(db: DatabaseSync, immediate: Immediate) {
    super(db);
    this.#immediate = immediate;
  }

  shard(shard: string): LogStore {
    let s = this.#shards.get(shard);
    if (s === undefined) {
      s = new SqliteLogStore(this.db, this.#immediate, { entries: 'ct_entries', nodes: 'ct_nodes', shard });
      this.#shards.set(shard, s);
    }
    return s;
  }

  async addIssuer(fingerprint: string, der: Uint8Array): Promise<void> {
    this.run('INSERT OR IGNORE INTO ct_issuers (fingerprint, der) VALUES (?, ?)', fingerprint, der);
  }

  async issuer(fingerprint: string): Promise<Uint8Array | undefined> {
    const r = this.row('SELECT der FROM ct_issuers WHERE fingerprint = ?', fingerprint);
    return r === undefined ? undefined : blob(r.der);
  }
}

/** Witness cosignatures of the log's checkpoints (migration 13). */
export class SqliteCosignatureStore extends SqliteTables implements CosignatureStore {
  async add(r: CosignatureRecord): Promise<void> {
    this.run(
      `INSERT OR IGNORE INTO log_cosignatures (tree_size, root_hash, key_name, key_id, timestamp, line)
       VALUES (?, ?, ?, ?, ?, ?)`,
      r.treeSize,
      r.rootHash,
      r.keyName,
      r.keyId,
      r.timestamp,
      r.line,
    );
  }

  async forTreeSize(treeSize: number): Promise<CosignatureRecord[]> {
    return this.rows('SELECT * FROM log_cosignatures WHERE tree_size = ? ORDER BY key_name', treeSize).map(
      (r) => ({
        treeSize: Number(r.tree_size),
        rootHash: blob(r.root_hash),
        keyName: String(r.key_name),
        keyId: blob(r.key_id),
        timestamp: Number(r.timestamp),
        line: String(r.line),
      }),
    );
  }

  async latestByKey(): Promise<Map<string, number>> {
    const rows = this.rows(
      'SELECT key_name, key_id, MAX(tree_size) AS n FROM log_cosignatures GROUP BY key_name, key_id',
    );
    return new Map(
      rows.map((r) => [`${String(r.key_name)}+${Buffer.from(blob(r.key_id)).toString('hex')}`, Number(r.n)]),
    );
  }
}

/** A witness's latest cosigned checkpoint per log (migration 13). */
export class SqliteWitnessStore extends SqliteTables implements WitnessStore {
  readonly #immediate: Immediate;

  constructor(db: DatabaseSync, immediate: Immediate) {
    super(db);
    this.#immediate = immediate;
  }

  async get(origin: string): Promise<WitnessStateRecord | undefined> {
    const r = this.row('SELECT * FROM witness_state WHERE origin = ?', origin);
    if (r === undefined) return undefined;
    return {
      origin: String(r.origin),
      treeSize: Number(r.tree_size),
      rootHash: blob(r.root_hash),
      checkpoint: String(r.checkpoint),
      updatedAt: String(r.updated_at),
    };
  }

  async advance(oldSize: number, next: WitnessStateRecord): Promise<void> {
    // Check and write in one write transaction: two requests can never both move from one size
    // (the rollback race of c2sp.org/tlog-witness).
    this.#immediate(() => {
      const r = this.row('SELECT tree_size FROM witness_state WHERE origin = ?', next.origin);
      const current = r === undefined ? 0 : Number(r.tree_size);
      if (current !== oldSize) {
        throw new GatehouseError(
          'CONFLICT',
          `the witness holds tree size ${current} for ${next.origin}, not ${oldSize}`,
        );
      }
      this.run(
        `INSERT INTO witness_state (origin, tree_size, root_hash, checkpoint, updated_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (origin) DO UPDATE SET tree_size = excluded.tree_size, root_hash = excluded.root_hash,
           checkpoint = excluded.checkpoint, updated_at = excluded.updated_at`,
        next.origin,
        next.treeSize,
        next.rootHash,
        next.checkpoint,
        next.updatedAt,
      );
    });
  }
}
