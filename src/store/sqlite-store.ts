import { statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { GatehouseError } from '../common/errors.ts';
import { type Migration, sqliteMigrations } from './migrations.ts';
import { SqliteActStore } from './sqlite-act-store.ts';
import { SqliteAlertStore } from './sqlite-alert-store.ts';
import { SqliteAttestationStore } from './sqlite-attestation-store.ts';
import { SqliteDecisionStore } from './sqlite-decision-store.ts';
import { SqliteJobStore } from './sqlite-job-store.ts';
import { SqliteLogStore } from './sqlite-log-store.ts';
import { SqlitePolicyStore } from './sqlite-policy-store.ts';
import { SqliteSourceStore } from './sqlite-source-store.ts';
import { type Row, storeError } from './sqlite-support.ts';
import { SqliteTokenStore } from './sqlite-token-store.ts';
import { SqliteVulnStore } from './sqlite-vuln-store.ts';
import { SqliteCosignatureStore, SqliteCtLogStore, SqliteWitnessStore } from './sqlite-witness-store.ts';
import type {
  CosignatureStore,
  CtLogStore,
  DecisionStore,
  JobStore,
  LogStore,
  Store,
  TokenStore,
  VulnStore,
  WitnessStore,
} from './store.ts';

/** The embedded store: one SQLite file in the home (or `:memory:` for tests). */
/** `; its file system has 12 KiB free` when the disk under `path` is (nearly) full, else nothing. */
function spaceNote(path: string): string {
  try {
    const { bavail, bsize } = statfsSync(dirname(path));
    const free = bavail * bsize;
    return free < 1024 * 1024
      ? ` (its file system has ${Math.floor(free / 1024)} KiB free: make room and retry)`
      : '';
  } catch {
    return '';
  }
}

export class SqliteStore implements Store {
  readonly kind = 'sqlite' as const;
  readonly jobs: JobStore;
  readonly decisions: DecisionStore;
  readonly log: LogStore;
  readonly ct: CtLogStore;
  readonly cosignatures: CosignatureStore;
  readonly witness: WitnessStore;
  readonly vulns: VulnStore;
  readonly tokens: TokenStore;
  readonly source: SqliteSourceStore;
  readonly policies: SqlitePolicyStore;
  readonly attestation: SqliteAttestationStore;
  readonly acts: SqliteActStore;
  readonly alerts: SqliteAlertStore;
  readonly #db: DatabaseSync;
  #txDepth = 0;
  #txQueue: Promise<unknown> = Promise.resolve();

  private constructor(db: DatabaseSync) {
    this.#db = db;
    this.jobs = new SqliteJobStore(db);
    this.decisions = new SqliteDecisionStore(db, (fn) => this.#immediate(fn));
    this.log = new SqliteLogStore(db, (fn) => this.#immediate(fn));
    this.ct = new SqliteCtLogStore(db, (fn) => this.#immediate(fn));
    this.cosignatures = new SqliteCosignatureStore(db);
    this.witness = new SqliteWitnessStore(db, (fn) => this.#immediate(fn));
    this.vulns = new SqliteVulnStore(db, (fn) => this.#immediate(fn));
    this.tokens = new SqliteTokenStore(db);
    this.source = new SqliteSourceStore(db);
    this.policies = new SqlitePolicyStore(db);
    this.attestation = new SqliteAttestationStore(db);
    this.acts = new SqliteActStore(db, (fn) => this.#immediate(fn));
    this.alerts = new SqliteAlertStore(db);
  }

  /**
   * Open (creating if needed) and migrate the database at `path`.
   * @throws GatehouseError STORE_ERROR, MIGRATION_FAILED
   */
  static open(path: string, migrations: readonly Migration[] = sqliteMigrations): SqliteStore {
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(path, { timeout: 5000 });
      // FULL: a decision or log entry the control plane acknowledged survives a power cut (WAL with
      // NORMAL may lose the last transactions); measured in bench/signing.ts.
      db.exec('PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;');
    } catch (e) {
      throw storeError(`cannot open the database ${path}${spaceNote(path)}`, e);
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

  async integrityCheck(): Promise<string[]> {
    const rows = this.#db.prepare('PRAGMA quick_check').all() as Row[];
    const found = rows.map((r) => String(Object.values(r)[0]));
    return found.length === 1 && found[0] === 'ok' ? [] : found;
  }

  /** Copy the whole database, consistently, to `path` while it stays in use (VACUUM INTO). */
  async backupTo(path: string): Promise<void> {
    this.#db.prepare('VACUUM INTO ?').run(path);
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
