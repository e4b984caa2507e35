import { DatabaseSync, type SQLInputValue, type StatementSync } from 'node:sqlite';
import { GatehouseError } from '../common/errors.ts';
import { nodeHash } from '../tlog/merkle.ts';
import { type Migration, sqliteMigrations } from './migrations.ts';
import { SqliteAttestationStore } from './sqlite-attestation-store.ts';
import { SqlitePolicyStore } from './sqlite-policy-store.ts';
import { SqliteSourceStore } from './sqlite-source-store.ts';
import type {
  DecisionRecord,
  DecisionStore,
  JobRecord,
  JobStore,
  LogEntryRecord,
  LogStore,
  Store,
  TokenStore,
  VulnRecord,
  VulnStore,
} from './store.ts';

type Row = Record<string, SQLInputValue>;

function storeError(what: string, cause: unknown): GatehouseError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new GatehouseError('STORE_ERROR', `${what}: ${detail}`, { cause });
}

/** The embedded store: one SQLite file in the home (or `:memory:` for tests). */
export class SqliteStore implements Store {
  readonly kind = 'sqlite' as const;
  readonly jobs: JobStore;
  readonly decisions: DecisionStore;
  readonly log: LogStore;
  readonly vulns: VulnStore;
  readonly tokens: TokenStore;
  readonly source: SqliteSourceStore;
  readonly policies: SqlitePolicyStore;
  readonly attestation: SqliteAttestationStore;
  readonly #db: DatabaseSync;
  #txDepth = 0;
  #txQueue: Promise<unknown> = Promise.resolve();

  private constructor(db: DatabaseSync) {
    this.#db = db;
    this.jobs = new SqliteJobs(db);
    this.decisions = new SqliteDecisions(db);
    this.log = new SqliteLog(db, (fn) => this.#immediate(fn));
    this.vulns = new SqliteVulns(db, (fn) => this.#immediate(fn));
    this.tokens = new SqliteTokens(db);
    this.source = new SqliteSourceStore(db);
    this.policies = new SqlitePolicyStore(db);
    this.attestation = new SqliteAttestationStore(db);
  }

  /**
   * Open (creating if needed) and migrate the database at `path`.
   * @throws GatehouseError STORE_ERROR, MIGRATION_FAILED
   */
  static open(path: string, migrations: readonly Migration[] = sqliteMigrations): SqliteStore {
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(path, { timeout: 5000 });
      db.exec('PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;');
    } catch (e) {
      throw storeError(`cannot open the database ${path}`, e);
    }
    migrate(db, migrations);
    return new SqliteStore(db);
  }

  /** Run a synchronous body inside BEGIN IMMEDIATE unless a transaction is already open. */
  #immediate<T>(fn: () => T): T {
    if (this.#txDepth > 0) return fn();
    this.#db.exec('BEGIN IMMEDIATE');
    try {
      const result = fn();
      this.#db.exec('COMMIT');
      return result;
    } catch (e) {
      this.#db.exec('ROLLBACK');
      throw e;
    }
  }

  async transaction<T>(fn: () => Promise<T>): Promise<T> {
    // Transactions on one connection must not interleave: queue them.
    const run = async (): Promise<T> => {
      this.#db.exec('BEGIN IMMEDIATE');
      this.#txDepth++;
      try {
        const result = await fn();
        this.#txDepth--;
        this.#db.exec('COMMIT');
        return result;
      } catch (e) {
        this.#txDepth--;
        this.#db.exec('ROLLBACK');
        throw e;
      }
    };
    const next = this.#txQueue.then(run, run);
    this.#txQueue = next.catch(() => undefined);
    return next;
  }

  async schemaVersion(): Promise<number> {
    const row = this.#db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as Row | undefined;
    return Number(row?.v ?? 0);
  }

  async close(): Promise<void> {
    if (this.#db.isOpen) this.#db.close();
  }
}

function migrate(db: DatabaseSync, migrations: readonly Migration[]): void {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`);
  const row = db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as Row | undefined;
  const current = Number(row?.v ?? 0);
  const known = migrations.reduce((m, x) => Math.max(m, x.version), 0);
  if (current > known) {
    throw new GatehouseError(
      'MIGRATION_FAILED',
      `the database is at schema version ${current}, newer than this gatehouse knows (${known})`,
    );
  }
  // Apply every migration not yet recorded, in version order: a version numbered below the newest
  // applied one (migrations of parallel work landing in any order) is still applied once.
  const applied = new Set(
    (db.prepare('SELECT version FROM schema_migrations').all() as Row[]).map((r) => Number(r.version)),
  );
  for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
    if (applied.has(m.version)) continue;
    try {
      db.exec('BEGIN IMMEDIATE');
      db.exec(m.sql);
      db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(
        m.version,
        m.name,
        new Date().toISOString(),
      );
      db.exec('COMMIT');
    } catch (e) {
      if (db.isTransaction) db.exec('ROLLBACK');
      throw new GatehouseError('MIGRATION_FAILED', `migration ${m.version} (${m.name}) failed`, { cause: e });
    }
  }
}

function parseJob(r: Row): JobRecord {
  const job: JobRecord = {
    id: String(r.id),
    project: String(r.project),
    state: String(r.state) as JobRecord['state'],
    nonce: String(r.nonce),
    createdAt: String(r.created_at),
    updatedAt: String(r.updated_at),
    steps: JSON.parse(String(r.steps)) as JobRecord['steps'],
  };
  if (r.result !== null && r.result !== undefined)
    job.result = JSON.parse(String(r.result)) as JobRecord['result'] & {};
  return job;
}

class SqliteJobs implements JobStore {
  readonly #db: DatabaseSync;
  constructor(db: DatabaseSync) {
    this.#db = db;
  }

  async create(job: JobRecord): Promise<void> {
    try {
      this.#db
        .prepare(
          'INSERT INTO jobs (id, project, state, nonce, created_at, updated_at, steps, result) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
        )
        .run(
          job.id,
          job.project,
          job.state,
          job.nonce,
          job.createdAt,
          job.updatedAt,
          JSON.stringify(job.steps),
          job.result === undefined ? null : JSON.stringify(job.result),
        );
    } catch (e) {
      if (String(e).includes('UNIQUE')) throw new GatehouseError('CONFLICT', `job ${job.id} already exists`);
      throw storeError(`cannot create job ${job.id}`, e);
    }
  }

  async get(id: string): Promise<JobRecord | undefined> {
    const r = this.#db.prepare('SELECT * FROM jobs WHERE id = ?').get(id) as Row | undefined;
    return r === undefined ? undefined : parseJob(r);
  }

  async update(
    id: string,
    change: Partial<Pick<JobRecord, 'state' | 'steps' | 'result'>>,
  ): Promise<JobRecord> {
    const existing = await this.get(id);
    if (existing === undefined) throw new GatehouseError('NOT_FOUND', `no job ${id}`);
    const next: JobRecord = { ...existing, ...change, updatedAt: new Date().toISOString() };
    this.#db
      .prepare('UPDATE jobs SET state = ?, steps = ?, result = ?, updated_at = ? WHERE id = ?')
      .run(
        next.state,
        JSON.stringify(next.steps),
        next.result === undefined ? null : JSON.stringify(next.result),
        next.updatedAt,
        id,
      );
    return next;
  }

  async list(options: { limit?: number; project?: string } = {}): Promise<JobRecord[]> {
    const limit = options.limit ?? 100;
    const rows = (
      options.project === undefined
        ? this.#db.prepare('SELECT * FROM jobs ORDER BY created_at DESC, id LIMIT ?').all(limit)
        : this.#db
            .prepare('SELECT * FROM jobs WHERE project = ? ORDER BY created_at DESC, id LIMIT ?')
            .all(options.project, limit)
    ) as Row[];
    return rows.map(parseJob);
  }

  async countByState(): Promise<Record<string, number>> {
    const rows = this.#db.prepare('SELECT state, COUNT(*) AS n FROM jobs GROUP BY state').all() as Row[];
    return Object.fromEntries(rows.map((r) => [String(r.state), Number(r.n)]));
  }
}

function parseDecision(r: Row): DecisionRecord {
  return {
    id: String(r.id),
    jobId: String(r.job_id),
    project: String(r.project),
    outcome: String(r.outcome) as DecisionRecord['outcome'],
    policyDigest: String(r.policy_digest),
    subjects: JSON.parse(String(r.subjects)) as DecisionRecord['subjects'],
    reasons: JSON.parse(String(r.reasons)) as DecisionRecord['reasons'],
    createdAt: String(r.created_at),
    logIndex: Number(r.log_index),
  };
}

class SqliteDecisions implements DecisionStore {
  readonly #db: DatabaseSync;
  constructor(db: DatabaseSync) {
    this.#db = db;
  }

  async create(d: DecisionRecord): Promise<void> {
    try {
      this.#db
        .prepare(
          `INSERT INTO decisions (id, job_id, project, outcome, policy_digest, subjects, reasons, created_at, log_index)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          d.id,
          d.jobId,
          d.project,
          d.outcome,
          d.policyDigest,
          JSON.stringify(d.subjects),
          JSON.stringify(d.reasons),
          d.createdAt,
          d.logIndex,
        );
    } catch (e) {
      if (String(e).includes('UNIQUE'))
        throw new GatehouseError('CONFLICT', `decision ${d.id} already exists`);
      throw storeError(`cannot record decision ${d.id}`, e);
    }
  }

  async get(id: string): Promise<DecisionRecord | undefined> {
    const r = this.#db.prepare('SELECT * FROM decisions WHERE id = ?').get(id) as Row | undefined;
    return r === undefined ? undefined : parseDecision(r);
  }

  async list(options: { limit?: number; jobId?: string } = {}): Promise<DecisionRecord[]> {
    const limit = options.limit ?? 100;
    const rows = (
      options.jobId === undefined
        ? this.#db.prepare('SELECT * FROM decisions ORDER BY created_at DESC, id LIMIT ?').all(limit)
        : this.#db
            .prepare('SELECT * FROM decisions WHERE job_id = ? ORDER BY created_at DESC, id LIMIT ?')
            .all(options.jobId, limit)
    ) as Row[];
    return rows.map(parseDecision);
  }

  async countByOutcome(): Promise<Record<string, number>> {
    const rows = this.#db
      .prepare('SELECT outcome, COUNT(*) AS n FROM decisions GROUP BY outcome')
      .all() as Row[];
    return Object.fromEntries(rows.map((r) => [String(r.outcome), Number(r.n)]));
  }
}

class SqliteLog implements LogStore {
  readonly #db: DatabaseSync;
  readonly #immediate: <T>(fn: () => T) => T;
  // Prepared once: appends and proofs run these on every approval.
  readonly #q: Record<'insert' | 'leaf' | 'node' | 'insertNode' | 'size', StatementSync>;

  constructor(db: DatabaseSync, immediate: <T>(fn: () => T) => T) {
    this.#db = db;
    this.#immediate = immediate;
    this.#q = {
      insert: db.prepare(
        'INSERT INTO log_entries (idx, body, leaf_hash, integrated_time) VALUES (?, ?, ?, ?)',
      ),
      leaf: db.prepare('SELECT leaf_hash AS h FROM log_entries WHERE idx = ?'),
      node: db.prepare('SELECT hash AS h FROM log_nodes WHERE level = ? AND idx = ?'),
      insertNode: db.prepare('INSERT OR IGNORE INTO log_nodes (level, idx, hash) VALUES (?, ?, ?)'),
      // MAX of the integer primary key is a b-tree lookup; COUNT(*) would read every row.
      size: db.prepare('SELECT COALESCE(MAX(idx) + 1, 0) AS n FROM log_entries'),
    };
    this.#backfillNodes();
  }

  async append(
    entries: { body: Uint8Array; leafHash: Uint8Array; integratedTime: number }[],
  ): Promise<number[]> {
    // Size and inserts in one write transaction: two writers can never take the same index.
    return this.#immediate(() => {
      const start = this.#sizeSync();
      return entries.map((e, i) => {
        this.#q.insert.run(start + i, e.body, e.leafHash, e.integratedTime);
        this.#completeNodes(start + i, e.leafHash);
        return start + i;
      });
    });
  }

  /** Store every perfect subtree that leaf `index` completes (at most log2 n, one on average). */
  #completeNodes(index: number, leaf: Uint8Array): void {
    const insert = this.#q.insertNode;
    let hash = leaf;
    let level = 0;
    let i = index;
    while (i % 2 === 1) {
      const [left] = this.#subtreesSync([{ level, index: i - 1 }]);
      hash = nodeHash(left as Uint8Array, hash);
      level++;
      i = (i - 1) / 2;
      insert.run(level, i, hash);
    }
  }

  /** A log written before interior nodes were stored gets them once, when it is opened. */
  #backfillNodes(): void {
    const n = this.#sizeSync();
    let expected = n;
    for (let x = n; x > 0; x = Math.floor(x / 2)) expected -= x % 2;
    const have = Number((this.#db.prepare('SELECT COUNT(*) AS n FROM log_nodes').get() as Row).n);
    if (have === expected) return;
    this.#immediate(() => {
      const rows = this.#db
        .prepare('SELECT idx, leaf_hash FROM log_entries ORDER BY idx')
        .iterate() as Iterable<Row>;
      for (const r of rows) this.#completeNodes(Number(r.idx), new Uint8Array(r.leaf_hash as Uint8Array));
    });
  }

  #subtreesSync(refs: readonly { level: number; index: number }[]): Uint8Array[] {
    const { leaf, node } = this.#q;
    return refs.map((r) => {
      const row = (r.level === 0 ? leaf.get(r.index) : node.get(r.level, r.index)) as Row | undefined;
      if (row === undefined) {
        throw new GatehouseError('NOT_FOUND', `log subtree ${r.level}/${r.index} is not complete`);
      }
      return new Uint8Array(row.h as Uint8Array);
    });
  }

  async subtreeHashes(refs: readonly { level: number; index: number }[]): Promise<Uint8Array[]> {
    return this.#subtreesSync(refs);
  }

  #sizeSync(): number {
    const r = this.#q.size.get() as Row;
    return Number(r.n);
  }

  async size(): Promise<number> {
    return this.#sizeSync();
  }

  async get(index: number): Promise<LogEntryRecord | undefined> {
    const r = this.#db.prepare('SELECT * FROM log_entries WHERE idx = ?').get(index) as Row | undefined;
    if (r === undefined) return undefined;
    return {
      index: Number(r.idx),
      body: new Uint8Array(r.body as Uint8Array),
      leafHash: new Uint8Array(r.leaf_hash as Uint8Array),
      integratedTime: Number(r.integrated_time),
    };
  }

  async leafHashes(start: number, end: number): Promise<Uint8Array[]> {
    const rows = this.#db
      .prepare('SELECT leaf_hash FROM log_entries WHERE idx >= ? AND idx < ? ORDER BY idx')
      .all(start, end) as Row[];
    return rows.map((r) => new Uint8Array(r.leaf_hash as Uint8Array));
  }
}

class SqliteVulns implements VulnStore {
  readonly #db: DatabaseSync;
  readonly #immediate: <T>(fn: () => T) => T;
  constructor(db: DatabaseSync, immediate: <T>(fn: () => T) => T) {
    this.#db = db;
    this.#immediate = immediate;
  }

  async upsert(records: VulnRecord[]): Promise<void> {
    this.#immediate(() => {
      const del = this.#db.prepare('DELETE FROM vuln_packages WHERE vuln_id = ?');
      const put = this.#db.prepare(
        `INSERT INTO vulns (id, modified, withdrawn, aliases, json) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET modified = excluded.modified, withdrawn = excluded.withdrawn,
           aliases = excluded.aliases, json = excluded.json`,
      );
      const pkg = this.#db.prepare(
        'INSERT OR IGNORE INTO vuln_packages (vuln_id, ecosystem, name) VALUES (?, ?, ?)',
      );
      for (const r of records) {
        put.run(r.id, r.modified, r.withdrawn, JSON.stringify(r.aliases), r.json);
        del.run(r.id);
        for (const p of r.packages) pkg.run(r.id, p.ecosystem, p.name);
      }
    });
  }

  #parse(r: Row): VulnRecord {
    const packages = this.#db
      .prepare('SELECT ecosystem, name FROM vuln_packages WHERE vuln_id = ? ORDER BY ecosystem, name')
      .all(String(r.id)) as Row[];
    return {
      id: String(r.id),
      modified: String(r.modified),
      withdrawn: r.withdrawn === null ? null : String(r.withdrawn),
      aliases: JSON.parse(String(r.aliases)) as string[],
      json: String(r.json),
      packages: packages.map((p) => ({ ecosystem: String(p.ecosystem), name: String(p.name) })),
    };
  }

  async get(id: string): Promise<VulnRecord | undefined> {
    const r = this.#db.prepare('SELECT * FROM vulns WHERE id = ?').get(id) as Row | undefined;
    return r === undefined ? undefined : this.#parse(r);
  }

  async findByPackage(ecosystem: string, name: string): Promise<VulnRecord[]> {
    const rows = this.#db
      .prepare(
        `SELECT v.* FROM vulns v JOIN vuln_packages p ON p.vuln_id = v.id
         WHERE p.ecosystem = ? AND p.name = ? AND v.withdrawn IS NULL ORDER BY v.id`,
      )
      .all(ecosystem, name) as Row[];
    return rows.map((r) => this.#parse(r));
  }

  async modifiedIndex(): Promise<Map<string, string>> {
    const rows = this.#db.prepare('SELECT id, modified FROM vulns').all() as Row[];
    return new Map(rows.map((r) => [String(r.id), String(r.modified)]));
  }

  async all(): Promise<VulnRecord[]> {
    // Packages are not needed by callers loading the whole database (they parse the JSON).
    const rows = this.#db.prepare('SELECT * FROM vulns ORDER BY id').all() as Row[];
    return rows.map((r) => ({
      id: String(r.id),
      modified: String(r.modified),
      withdrawn: r.withdrawn === null ? null : String(r.withdrawn),
      aliases: JSON.parse(String(r.aliases)) as string[],
      json: String(r.json),
      packages: [],
    }));
  }

  async count(): Promise<number> {
    const r = this.#db.prepare('SELECT COUNT(*) AS n FROM vulns').get() as Row;
    return Number(r.n);
  }

  async generation(): Promise<number> {
    // Moved by triggers on every write to `vulns` (migration 11), in whichever process.
    let r: Row | undefined;
    try {
      r = this.#db.prepare('SELECT generation FROM vuln_generation WHERE id = 1').get() as Row | undefined;
    } catch (e) {
      throw storeError('reading the vulnerability database generation', e);
    }
    if (r === undefined) throw storeError('reading the vulnerability database generation', 'no row');
    return Number(r.generation);
  }
}

class SqliteTokens implements TokenStore {
  readonly #db: DatabaseSync;
  constructor(db: DatabaseSync) {
    this.#db = db;
  }

  async revoke(jti: string, expiresAt: number): Promise<void> {
    this.#db
      .prepare('INSERT INTO revoked_tokens (jti, expires_at) VALUES (?, ?) ON CONFLICT (jti) DO NOTHING')
      .run(jti, expiresAt);
    // Revocations of tokens that have expired on their own are no longer needed.
    this.#db
      .prepare('DELETE FROM revoked_tokens WHERE expires_at < ?')
      .run(Math.floor(Date.now() / 1000) - 3600);
  }

  async isRevoked(jti: string): Promise<boolean> {
    return this.#db.prepare('SELECT 1 FROM revoked_tokens WHERE jti = ?').get(jti) !== undefined;
  }
}
