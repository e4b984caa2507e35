import { AsyncLocalStorage } from 'node:async_hooks';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { type ConnectionOptions, checkServerIdentity } from 'node:tls';
import postgres from 'postgres';
import { GatehouseError } from '../common/errors.ts';
import type { Migration } from './migrations.ts';
import { PostgresActStore } from './postgres-act-store.ts';
import { PostgresAlertStore } from './postgres-alert-store.ts';
import { PostgresAttestationStore } from './postgres-attestation-store.ts';
import { PostgresDecisionStore } from './postgres-decision-store.ts';
import { PostgresJobStore } from './postgres-job-store.ts';
import { PostgresLogStore } from './postgres-log-store.ts';
import { postgresMigrations } from './postgres-migrations.ts';
import { PostgresPolicyStore } from './postgres-policy-store.ts';
import { PostgresSourceStore } from './postgres-source-store.ts';
import { type PgConnection, pgError, type Sql } from './postgres-support.ts';
import { PostgresTokenStore } from './postgres-token-store.ts';
import { PostgresVulnStore } from './postgres-vuln-store.ts';
import {
  PostgresCosignatureStore,
  PostgresCtLogStore,
  PostgresWitnessStore,
} from './postgres-witness-store.ts';
import type { Store } from './store.ts';

/** How the store connects: the URL (never with a password in it) and the password, if any. */
export interface PostgresStoreOptions {
  /**
   * `postgres://USER@HOST[:PORT]/DATABASE[?sslmode=disable|require|verify-full][&sslrootcert=/abs/ca.pem]`.
   * TLS: `verify-full` (the default off loopback) checks the server's certificate and name
   * against `sslrootcert` or the system's roots; `require` encrypts without checking who answers;
   * `disable` (the default on loopback) is refused for any host but a loopback one.
   */
  url: string;
  /** The role's password (from `store.passwordFile`), else none (or PGPASSWORD). */
  password?: string;
  /** Connections in the pool (default 10). */
  maxConnections?: number;
  migrations?: readonly Migration[];
}

/** The connection settings a URL names, checked. */
export interface PostgresTarget {
  host: string;
  port: number;
  database: string;
  username: string;
  ssl: false | 'require' | ConnectionOptions;
  /** What to show in messages: the URL as given (it holds no password). */
  shown: string;
}

/** The migration lock (an arbitrary constant): two instances starting together migrate once. */
const MIGRATION_LOCK = 0x6761_7465_6d69_67n;

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/**
 * Parse and check a store URL: the driver is handed only what was checked here.
 * @throws GatehouseError BAD_CONFIG naming the part that is wrong
 */
export function parsePostgresUrl(url: string, where = 'store.url'): PostgresTarget {
  const bad = (message: string) => new GatehouseError('BAD_CONFIG', message, { where });
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw bad('not a URL (postgres://USER@HOST:PORT/DATABASE)');
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:')
    throw bad('the URL must start with postgres://');
  if (u.password !== '')
    throw bad(
      'the URL must not carry a password: put it in the file store.passwordFile names (or PGPASSWORD)',
    );
  const host = u.hostname.replace(/^\[|\]$/g, '');
  if (host === '') throw bad('the URL names no host');
  const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (database === '' || database.includes('/')) throw bad('the URL names no database (…/DATABASE)');
  const username = decodeURIComponent(u.username);
  if (username === '') throw bad('the URL names no user (postgres://USER@HOST/…)');
  for (const key of u.searchParams.keys())
    if (key !== 'sslmode' && key !== 'sslrootcert')
      throw bad(`unknown URL parameter '${key}' (only sslmode and sslrootcert)`);
  const mode = u.searchParams.get('sslmode') ?? (isLoopback(host) ? 'disable' : 'verify-full');
  const rootcert = u.searchParams.get('sslrootcert');
  let ssl: PostgresTarget['ssl'];
  switch (mode) {
    case 'disable':
      // Fail closed: decisions, tokens and keys' metadata never cross a network in clear.
      if (!isLoopback(host))
        throw bad(`sslmode=disable is refused for ${host}: only a loopback host may go without TLS`);
      ssl = false;
      break;
    case 'require':
      ssl = 'require';
      break;
    case 'verify-full': {
      let ca: Buffer | undefined;
      if (rootcert !== null) {
        if (!rootcert.startsWith('/')) throw bad('sslrootcert must be an absolute path');
        try {
          ca = readFileSync(rootcert);
        } catch (e) {
          throw new GatehouseError(
            'BAD_CONFIG',
            `cannot read sslrootcert ${rootcert}: ${(e as Error).message}`,
            {
              where,
              cause: e,
            },
          );
        }
      }
      ssl = {
        rejectUnauthorized: true,
        ...(ca === undefined ? {} : { ca }),
        ...(isIP(host) === 0 ? { servername: host } : {}),
        // The name checked is the host the URL names, also for an IP address (no SNI there).
        checkServerIdentity: (_name, cert) => checkServerIdentity(host, cert),
      };
      break;
    }
    default:
      throw bad(`sslmode '${mode}' is not one of disable, require, verify-full`);
  }
  if (rootcert !== null && mode !== 'verify-full') throw bad('sslrootcert needs sslmode=verify-full');
  const port = u.port === '' ? 5432 : Number(u.port);
  return { host, port, database, username, ssl, shown: url };
}

/**
 * The store of several control-plane instances: one PostgreSQL database they all share, through a
 * pool of connections each. Every statement is parameterised; a transaction's statements run on
 * its connection (found through AsyncLocalStorage), everything else on the pool.
 */
export class PostgresStore implements Store {
  readonly kind = 'postgres' as const;
  readonly jobs: PostgresJobStore;
  readonly decisions: PostgresDecisionStore;
  readonly log: PostgresLogStore;
  readonly vulns: PostgresVulnStore;
  readonly tokens: PostgresTokenStore;
  readonly source: PostgresSourceStore;
  readonly policies: PostgresPolicyStore;
  readonly attestation: PostgresAttestationStore;
  readonly acts: PostgresActStore;
  readonly alerts: PostgresAlertStore;
  readonly ct: PostgresCtLogStore;
  readonly cosignatures: PostgresCosignatureStore;
  readonly witness: PostgresWitnessStore;
  readonly #connection: PgConnection;
  readonly #target: PostgresTarget;

  private constructor(pool: Sql, target: PostgresTarget) {
    this.#connection = { pool, transaction: new AsyncLocalStorage<Sql>() };
    this.#target = target;
    const c = this.#connection;
    this.jobs = new PostgresJobStore(c);
    this.decisions = new PostgresDecisionStore(c);
    this.log = new PostgresLogStore(c);
    this.vulns = new PostgresVulnStore(c);
    this.tokens = new PostgresTokenStore(c);
    this.source = new PostgresSourceStore(c);
    this.policies = new PostgresPolicyStore(c);
    this.attestation = new PostgresAttestationStore(c);
    this.acts = new PostgresActStore(c);
    this.alerts = new PostgresAlertStore(c);
    this.ct = new PostgresCtLogStore(c);
    this.cosignatures = new PostgresCosignatureStore(c);
    this.witness = new PostgresWitnessStore(c);
  }

  /**
   * Connect (a pool) and migrate. Nothing of the password reaches a message.
   * @throws GatehouseError BAD_CONFIG (the URL), STORE_ERROR (cannot connect), MIGRATION_FAILED
   */
  static async open(options: PostgresStoreOptions): Promise<PostgresStore> {
    const target = parsePostgresUrl(options.url);
    const pool = postgres({
      host: target.host,
      port: target.port,
      database: target.database,
      username: target.username,
      ...(options.password === undefined ? {} : { password: options.password }),
      ssl: target.ssl,
      max: options.maxConnections ?? 10,
      idle_timeout: 60,
      connect_timeout: 10,
      // Notices (e.g. "relation already exists, skipping") are not errors; nothing to print.
      onnotice: () => undefined,
      connection: { application_name: 'gatehouse' },
    }) as unknown as Sql;
    const store = new PostgresStore(pool, target);
    try {
      await pool`SELECT 1`;
    } catch (e) {
      await pool.end({ timeout: 1 }).catch(() => undefined);
      throw pgError(
        `cannot connect to the database ${target.username}@${target.host}:${target.port}/${target.database}`,
        e,
      );
    }
    try {
      await migrate(pool, options.migrations ?? postgresMigrations);
    } catch (e) {
      await pool.end({ timeout: 1 }).catch(() => undefined);
      throw e;
    }
    return store;
  }

  /** Where the store is, for messages (no password). */
  get where(): string {
    return `${this.#target.username}@${this.#target.host}:${this.#target.port}/${this.#target.database}`;
  }

  async transaction<T>(fn: () => Promise<T>): Promise<T> {
    const { pool, transaction } = this.#connection;
    // Inside a transaction already: join it (its writes land with the outer ones).
    if (transaction.getStore() !== undefined) return fn();
    return (await pool.begin((tx) => transaction.run(tx as unknown as Sql, fn))) as T;
  }

  async schemaVersion(): Promise<number> {
    const [r] = await this.#connection.pool`SELECT MAX(version) AS v FROM schema_migrations`;
    return Number(r?.v ?? 0);
  }

  async integrityCheck(): Promise<string[]> {
    const problems: string[] = [];
    try {
      const [r] = await this.#connection.pool`
        SELECT COUNT(*)::bigint AS n, COALESCE(MAX(idx) + 1, 0)::bigint AS size FROM log_entries`;
      if (String(r?.n) !== String(r?.size))
        problems.push(
          `the log has ${String(r?.n)} entries but indices up to ${Number(r?.size) - 1}: entries are missing`,
        );
    } catch (e) {
      problems.push(pgError('cannot read the log', e).message);
    }
    return problems;
  }

  async backupTo(_path: string): Promise<void> {
    throw new GatehouseError(
      'BAD_INPUT',
      `a PostgreSQL store is backed up with PostgreSQL's own tools (pg_dump, or base backups with WAL archiving), not by gatehouse: ${this.where}`,
    );
  }

  async close(): Promise<void> {
    await this.#connection.pool.end({ timeout: 5 });
  }
}

async function migrate(pool: Sql, migrations: readonly Migration[]): Promise<void> {
  const known = migrations.reduce((m, x) => Math.max(m, x.version), 0);
  try {
    await pool`CREATE TABLE IF NOT EXISTS schema_migrations (
      version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`;
  } catch (e) {
    // Two instances creating it at once: the loser sees the winner's table (or a unique error).
    const [exists] = await pool`SELECT to_regclass('schema_migrations') AS t`.catch(() => [undefined]);
    if (exists?.t === null || exists === undefined)
      throw new GatehouseError('MIGRATION_FAILED', 'cannot create schema_migrations', { cause: e });
  }
  for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
    try {
      await pool.begin(async (tx) => {
        // One migrating instance at a time; the others find the version applied and skip it.
        await tx`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK.toString()}::bigint)`;
        const [newest] = await tx`SELECT MAX(version) AS v FROM schema_migrations`;
        if (Number(newest?.v ?? 0) > known)
          throw new GatehouseError(
            'MIGRATION_FAILED',
            `the database is at schema version ${Number(newest?.v)}, newer than this gatehouse knows (${known})`,
          );
        const [applied] = await tx`SELECT 1 FROM schema_migrations WHERE version = ${m.version}`;
        if (applied !== undefined) return;
        // The migration's DDL is a constant of this file's sibling, never built from input.
        await tx.unsafe(m.sql).simple();
        await tx`INSERT INTO schema_migrations (version, name, applied_at)
                 VALUES (${m.version}, ${m.name}, ${new Date().toISOString()})`;
      });
    } catch (e) {
      if (e instanceof GatehouseError) throw e;
      throw new GatehouseError(
        'MIGRATION_FAILED',
        `migration ${m.version} (${m.name}) failed: ${(e as Error).message}`,
        {
          cause: e,
        },
      );
    }
  }
}
