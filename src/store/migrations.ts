/**
 * Schema migrations, in order. A migration is applied once, inside a transaction, and recorded
 * in `schema_migrations`; a store refuses to open a database newer than it knows.
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const sqliteMigrations: readonly Migration[] = [
  {
    version: 1,
    name: 'initial',
    sql: `
      CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        project TEXT NOT NULL,
        state TEXT NOT NULL,
        nonce TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        steps TEXT NOT NULL,
        result TEXT
      );
      CREATE INDEX jobs_project ON jobs (project, created_at);
      CREATE TABLE decisions (
        id TEXT PRIMARY KEY,
        job_id TEXT NOT NULL,
        project TEXT NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('allow', 'deny', 'quarantine')),
        policy_digest TEXT NOT NULL,
        subjects TEXT NOT NULL,
        reasons TEXT NOT NULL,
        created_at TEXT NOT NULL,
        log_index INTEGER NOT NULL
      );
      CREATE INDEX decisions_job ON decisions (job_id);
      CREATE TABLE log_entries (
        idx INTEGER PRIMARY KEY,
        body BLOB NOT NULL,
        leaf_hash BLOB NOT NULL,
        integrated_time INTEGER NOT NULL
      );
      -- The log is append-only: refuse changes and deletions at the database itself.
      CREATE TRIGGER log_entries_no_update BEFORE UPDATE ON log_entries
        BEGIN SELECT RAISE(ABORT, 'transparency log entries are immutable'); END;
      CREATE TRIGGER log_entries_no_delete BEFORE DELETE ON log_entries
        BEGIN SELECT RAISE(ABORT, 'transparency log entries are immutable'); END;
      CREATE TABLE vulns (
        id TEXT PRIMARY KEY,
        modified TEXT NOT NULL,
        withdrawn TEXT,
        aliases TEXT NOT NULL,
        json TEXT NOT NULL
      );
      CREATE TABLE vuln_packages (
        vuln_id TEXT NOT NULL REFERENCES vulns (id) ON DELETE CASCADE,
        ecosystem TEXT NOT NULL,
        name TEXT NOT NULL,
        PRIMARY KEY (ecosystem, name, vuln_id)
      );
      CREATE INDEX vuln_packages_vuln ON vuln_packages (vuln_id);
      CREATE TABLE revoked_tokens (
        jti TEXT PRIMARY KEY,
        expires_at INTEGER NOT NULL
      );
    `,
  },
];
