import { GatehouseError } from '../common/errors.ts';
import { PostgresLogStore } from './postgres-log-store.ts';
import { bytes, type PgConnection, PgTables } from './postgres-support.ts';
import type {
  CosignatureRecord,
  CosignatureStore,
  CtLogStore,
  LogStore,
  WitnessStateRecord,
  WitnessStore,
} from './store.ts';

/** The CT log's shards and issuers in PostgreSQL (migration 14). */
export class PostgresCtLogStore extends PgTables implements CtLogStore {
  readonly #connection: PgConnection;
  readonly #shards = new Map<string, LogStore>();

  constructor(connection: PgConnection) {
    super(connection);
    this.#connection = connection;
  }

  shard(shard: string): LogStore {
    let s = this.#shards.get(shard);
    if (s === undefined) {
      s = new PostgresLogStore(this.#connection, { entries: 'ct_entries', nodes: 'ct_nodes', shard });
      this.#shards.set(shard, s);
    }
    return s;
  }

  async addIssuer(fingerprint: string, der: Uint8Array): Promise<void> {
    await this.query(
      'cannot keep a CT issuer',
      (sql) =>
        sql`INSERT INTO ct_issuers (fingerprint, der) VALUES (${fingerprint}, ${der}) ON CONFLICT DO NOTHING`,
    );
  }

  async issuer(fingerprint: string): Promise<Uint8Array | undefined> {
    const [r] = await this.query(
      'cannot read a CT issuer',
      (sql) => sql`SELECT der FROM ct_issuers WHERE fingerprint = ${fingerprint}`,
    );
    return r === undefined ? undefined : bytes(r.der);
  }
}

/** Witness cosignatures of the log's checkpoints in PostgreSQL (migration 14). */
export class PostgresCosignatureStore extends PgTables implements CosignatureStore {
  async add(r: CosignatureRecord): Promise<void> {
    await this.query(
      'cannot keep a cosignature',
      (sql) => sql`
        INSERT INTO log_cosignatures (tree_size, root_hash, key_name, key_id, timestamp, line)
        VALUES (${r.treeSize}, ${r.rootHash}, ${r.keyName}, ${r.keyId}, ${r.timestamp}, ${r.line})
        ON CONFLICT DO NOTHING`,
    );
  }

  async forTreeSize(treeSize: number): Promise<CosignatureRecord[]> {
    const rows = await this.query(
      'cannot read cosignatures',
      (sql) => sql`SELECT * FROM log_cosignatures WHERE tree_size = ${treeSize} ORDER BY key_name`,
    );
    return rows.map((r) => ({
      treeSize: Number(r.tree_size),
      rootHash: bytes(r.root_hash),
      keyName: String(r.key_name),
      keyId: bytes(r.key_id),
      timestamp: Number(r.timestamp),
      line: String(r.line),
    }));
  }

  async latestByKey(): Promise<Map<string, number>> {
    const rows = await this.query(
      'cannot read cosignatures',
      (sql) =>
        sql`SELECT key_name, key_id, MAX(tree_size) AS n FROM log_cosignatures GROUP BY key_name, key_id`,
    );
    return new Map(
      rows.map((r) => [`${String(r.key_name)}+${Buffer.from(bytes(r.key_id)).toString('hex')}`, Number(r.n)]),
    );
  }
}

/** A witness's latest cosigned checkpoint per log, in PostgreSQL (migration 14). */
export class PostgresWitnessStore extends PgTables implements WitnessStore {
  async get(origin: string): Promise<WitnessStateRecord | undefined> {
    const [r] = await this.query(
      'cannot read the witness state',
      (sql) => sql`SELECT * FROM witness_state WHERE origin = ${origin}`,
    );
    if (r === undefined) return undefined;
    return {
      origin: String(r.origin),
      treeSize: Number(r.tree_size),
      rootHash: bytes(r.root_hash),
      checkpoint: String(r.checkpoint),
      updatedAt: String(r.updated_at),
    };
  }

  async advance(oldSize: number, next: WitnessStateRecord): Promise<void> {
    // Check and write under the row's lock (or the key, for a first record): two requests, through
    // two instances, can never both move from one size (the rollback race of c2sp.org/tlog-witness).
    await this.atomically(async (sql) => {
      await sql`SELECT pg_advisory_xact_lock(hashtext(${`witness/${next.origin}`}))`;
      const [r] = await sql`SELECT tree_size FROM witness_state WHERE origin = ${next.origin} FOR UPDATE`;
      const current = r === undefined ? 0 : Number(r.tree_size);
      if (current !== oldSize)
        throw new GatehouseError(
          'CONFLICT',
          `the witness holds tree size ${current} for ${next.origin}, not ${oldSize}`,
        );
      await sql`
        INSERT INTO witness_state (origin, tree_size, root_hash, checkpoint, updated_at)
        VALUES (${next.origin}, ${next.treeSize}, ${next.rootHash}, ${next.checkpoint}, ${next.updatedAt})
        ON CONFLICT (origin) DO UPDATE SET tree_size = excluded.tree_size, root_hash = excluded.root_hash,
          checkpoint = excluded.checkpoint, updated_at = excluded.updated_at`;
    });
  }
}
