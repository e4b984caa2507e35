/**
 * Schema migrations, in order. A migration is applied once, inside a transaction, and recorded
 * in `schema_migrations`; a store refuses to open a database newer than it knows.
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/**
 * The two triggers that make a table append-only: any update or delete of its rows aborts with
 * `message`. The text is the one the migrations wrote out by hand before.
 */
function appendOnly(table: string, message: string, options: { ifNotExists?: boolean } = {}): string {
  const create = options.ifNotExists === true ? 'CREATE TRIGGER IF NOT EXISTS' : 'CREATE TRIGGER';
  const abort = `BEGIN SELECT RAISE(ABORT, '${message}'); END;`;
  return [
    `${create} ${table}_no_update BEFORE UPDATE ON ${table}`,
    `        ${abort}`,
    `      ${create} ${table}_no_delete BEFORE DELETE ON ${table}`,
    `        ${abort}`,
  ].join('\n');
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
      ${appendOnly('log_entries', 'transparency log entries are immutable')}
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
  {
    version: 4,
    name: 'policies-triage-reevaluation',
    sql: `
      -- Every published version of every central policy, with its security-key signature.
      CREATE TABLE policy_versions (
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        digest TEXT NOT NULL,
        text TEXT NOT NULL,
        signature TEXT NOT NULL,
        key_id TEXT NOT NULL,
        published_at TEXT NOT NULL,
        PRIMARY KEY (name, version)
      );
      -- Published versions are history: they are never changed or removed.
      ${appendOnly('policy_versions', 'published policy versions are immutable')}
      -- Which policy a project is held to (set centrally; a project cannot choose).
      CREATE TABLE project_policies (
        project TEXT PRIMARY KEY,
        policy_name TEXT NOT NULL
      );
      CREATE TABLE triage (
        id TEXT PRIMARY KEY,
        decision_id TEXT NOT NULL UNIQUE,
        project TEXT NOT NULL,
        action TEXT NOT NULL CHECK (action IN ('release', 'reject')),
        reason TEXT NOT NULL,
        actor TEXT NOT NULL,
        created_at TEXT NOT NULL,
        log_index INTEGER NOT NULL
      );
      CREATE TABLE reevaluations (
        id TEXT PRIMARY KEY,
        decision_id TEXT NOT NULL,
        project TEXT NOT NULL,
        outcome TEXT NOT NULL,
        policy_digest TEXT NOT NULL,
        reasons TEXT NOT NULL,
        revoked INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        detection_ms REAL NOT NULL
      );
      CREATE INDEX reevaluations_decision ON reevaluations (decision_id);
      -- The components of every promoted artifact, evaluated again when advisories change.
      CREATE TABLE artifact_sboms (
        decision_id TEXT PRIMARY KEY,
        project TEXT NOT NULL,
        components TEXT NOT NULL,
        subjects TEXT NOT NULL,
        created_at TEXT NOT NULL
      );
      -- VEX documents the security team imported (OpenVEX or CycloneDX), as given.
      CREATE TABLE vex_documents (
        id TEXT PRIMARY KEY,
        json TEXT NOT NULL,
        created_at TEXT NOT NULL
      );
    `,
  },
  {
    version: 5,
    name: 'log-interior-nodes',
    sql: `
      -- Hashes of the log's complete perfect subtrees above the leaves (level >= 1), written as
      -- appends complete them, so proofs read O(log n) rows instead of every leaf hash.
      CREATE TABLE IF NOT EXISTS log_nodes (
        level INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        hash BLOB NOT NULL,
        PRIMARY KEY (level, idx)
      ) WITHOUT ROWID;
      ${appendOnly('log_nodes', 'transparency log nodes are immutable', { ifNotExists: true })}
    `,
  },
  {
    version: 7,
    name: 'source-origin',
    sql: `
      -- Protected refs and what they demand, configured centrally (never in the repository).
      CREATE TABLE source_protection (
        repository TEXT NOT NULL,
        ref_pattern TEXT NOT NULL,
        rule TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (repository, ref_pattern)
      );
      -- Reviewers' signed approvals, each bound to one exact commit.
      CREATE TABLE source_reviews (
        id TEXT PRIMARY KEY,
        repository TEXT NOT NULL,
        commit_id TEXT NOT NULL,
        reviewer TEXT NOT NULL,
        record TEXT NOT NULL,
        signature TEXT NOT NULL,
        created_at TEXT NOT NULL
      );
      CREATE INDEX source_reviews_repository ON source_reviews (repository, commit_id);
      -- Keys trusted to sign commits and reviews (SSH allowed signers, GPG public keys).
      CREATE TABLE source_signers (
        id TEXT NOT NULL,
        scope TEXT NOT NULL,
        principal TEXT NOT NULL,
        format TEXT NOT NULL CHECK (format IN ('ssh', 'gpg')),
        public_key TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (id, scope)
      );
      -- The last head gatehouse accepted per protected ref, to detect history rewrites.
      CREATE TABLE source_ref_heads (
        repository TEXT NOT NULL,
        ref TEXT NOT NULL,
        head TEXT NOT NULL,
        seen_at TEXT NOT NULL,
        rewritten_to TEXT,
        rewritten_at TEXT,
        PRIMARY KEY (repository, ref)
      );
    `,
  },
  {
    version: 8,
    name: 'attestation-reference-values-refusals',
    sql: `
      -- Every signed version of the attestation reference values; the newest one is in force.
      CREATE TABLE reference_value_bundles (
        version INTEGER PRIMARY KEY,
        digest TEXT NOT NULL,
        payload TEXT NOT NULL,
        signature TEXT NOT NULL,
        key_id TEXT NOT NULL,
        published_at TEXT NOT NULL
      );
      -- Published bundles are history: they are never changed or removed.
      ${appendOnly('reference_value_bundles', 'published reference values are immutable')}
      -- Every refused attestation with its failed checks (audit), append-only.
      CREATE TABLE attestation_refusals (
        id TEXT PRIMARY KEY,
        stage TEXT NOT NULL CHECK (stage IN ('challenge', 'evidence', 'software')),
        job_id TEXT,
        failed_checks TEXT NOT NULL,
        created_at TEXT NOT NULL
      );
      CREATE INDEX attestation_refusals_created ON attestation_refusals (created_at);
      ${appendOnly('attestation_refusals', 'attestation refusals are immutable')}
    `,
  },
  {
    version: 9,
    name: 'release-and-revocation',
    sql: `
      -- The verified build facts of refused artifacts, which a triage release signs.
      CREATE TABLE held_builds (
        decision_id TEXT PRIMARY KEY,
        project TEXT NOT NULL,
        facts TEXT NOT NULL,
        created_at TEXT NOT NULL
      );
      -- Revoked artifact digests; each revocation is also a transparency-log entry.
      CREATE TABLE revocations (
        digest TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        actor TEXT NOT NULL,
        revoked_at TEXT NOT NULL,
        log_index INTEGER NOT NULL
      );
      ${appendOnly('revocations', 'revocations are permanent')}
    `,
  },
  {
    version: 11,
    name: 'vuln-generation',
    sql: `
      -- A counter that every change to the vulnerability records moves, whichever connection or
      -- process writes: long-lived in-memory indexes compare it to know when to reload.
      CREATE TABLE vuln_generation (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        generation INTEGER NOT NULL
      );
      INSERT INTO vuln_generation (id, generation) VALUES (1, 1);
      CREATE TRIGGER vulns_generation_insert AFTER INSERT ON vulns
        BEGIN UPDATE vuln_generation SET generation = generation + 1 WHERE id = 1; END;
      CREATE TRIGGER vulns_generation_update AFTER UPDATE ON vulns
        BEGIN UPDATE vuln_generation SET generation = generation + 1 WHERE id = 1; END;
      CREATE TRIGGER vulns_generation_delete AFTER DELETE ON vulns
        BEGIN UPDATE vuln_generation SET generation = generation + 1 WHERE id = 1; END;
    `,
  },
  {
    version: 12,
    name: 'zero-trust',
    sql: `
      -- Who claimed a job (an enrolled runner host) and the job key its first attestation bound.
      ALTER TABLE jobs ADD COLUMN host TEXT;
      ALTER TABLE jobs ADD COLUMN runner_key TEXT;
      -- The security role's versioned acts; a version is written once and never changes.
      CREATE TABLE security_acts (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        version INTEGER NOT NULL CHECK (version >= 1),
        content TEXT NOT NULL,
        signature TEXT NOT NULL,
        key_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (kind, name, version)
      );
      CREATE TRIGGER security_acts_no_update BEFORE UPDATE ON security_acts
        BEGIN SELECT RAISE(ABORT, 'security acts are permanent'); END;
      CREATE TRIGGER security_acts_no_delete BEFORE DELETE ON security_acts
        BEGIN SELECT RAISE(ABORT, 'security acts are permanent'); END;
    `,
  },
  {
    version: 13,
    name: 'environment-sboms',
    sql: `
      -- The build environment's packages, kept once per runner image SBOM and referenced by digest.
      CREATE TABLE environment_sboms (
        digest TEXT PRIMARY KEY,
        document TEXT NOT NULL,
        created_at TEXT NOT NULL
      );
      CREATE TRIGGER environment_sboms_no_update BEFORE UPDATE ON environment_sboms
        BEGIN SELECT RAISE(ABORT, 'an environment SBOM is kept under its digest and never changes'); END;
      ALTER TABLE artifact_sboms ADD COLUMN environment TEXT;
    `,
  },
  {
    version: 14,
    name: 'ct-log-and-witnesses',
    sql: `
      -- The certificate transparency log: one shard per CT key generation, each its own tree.
      CREATE TABLE ct_entries (
        shard TEXT NOT NULL,
        idx INTEGER NOT NULL,
        body BLOB NOT NULL,
        leaf_hash BLOB NOT NULL,
        integrated_time INTEGER NOT NULL,
        PRIMARY KEY (shard, idx)
      ) WITHOUT ROWID;
      ${appendOnly('ct_entries', 'certificate transparency entries are immutable')}
      CREATE TABLE ct_nodes (
        shard TEXT NOT NULL,
        level INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        hash BLOB NOT NULL,
        PRIMARY KEY (shard, level, idx)
      ) WITHOUT ROWID;
      ${appendOnly('ct_nodes', 'certificate transparency nodes are immutable')}
      -- The issuer certificates CT entries name by fingerprint (served at issuer/<fingerprint>).
      CREATE TABLE ct_issuers (
        fingerprint TEXT PRIMARY KEY,
        der BLOB NOT NULL
      );
      -- Witness cosignatures of the transparency log's checkpoints, beside the tree they sign.
      CREATE TABLE log_cosignatures (
        tree_size INTEGER NOT NULL,
        root_hash BLOB NOT NULL,
        key_name TEXT NOT NULL,
        key_id BLOB NOT NULL,
        timestamp INTEGER NOT NULL,
        line TEXT NOT NULL,
        PRIMARY KEY (tree_size, key_name, key_id)
      );
      ${appendOnly('log_cosignatures', 'witness cosignatures are immutable')}
      -- A witness's record of the latest checkpoint it cosigned, per log origin.
      CREATE TABLE witness_state (
        origin TEXT PRIMARY KEY,
        tree_size INTEGER NOT NULL,
        root_hash BLOB NOT NULL,
        checkpoint TEXT NOT NULL,
        updated_at TEXT NOT NULL
      );
    `,
  },
  {
    version: 15,
    name: 'shared-attestation-state',
    sql: `
      -- Challenges of the TPM path, answered once, by whichever instance receives the answer.
      CREATE TABLE attestation_sessions (
        id TEXT PRIMARY KEY,
        job_id TEXT,
        state TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        spent_at TEXT
      );
      CREATE INDEX attestation_sessions_expiry ON attestation_sessions (expires_at);
      -- The highest TPM reset and restart counts accepted per AK: they never go back.
      CREATE TABLE ak_counters (
        ak_name TEXT PRIMARY KEY,
        reset_count INTEGER NOT NULL,
        restart_count INTEGER NOT NULL,
        updated_at TEXT NOT NULL
      );
    `,
  },
  {
    version: 16,
    name: 'build-logs',
    sql: `
      -- A job's build output, masked and bounded by the runner agent, masked again and digested by
      -- the control plane; the digest is in the provenance, so a log never changes or goes.
      CREATE TABLE build_logs (
        job_id TEXT PRIMARY KEY,
        content BLOB NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        truncated INTEGER NOT NULL,
        created_at TEXT NOT NULL
      );
      ${appendOnly('build_logs', 'a build log is kept as it was received and never changes')}
    `,
  },
  {
    version: 17,
    name: 'alert-deliveries',
    sql: `
      -- Webhook alerts, one row per event and endpoint: pending (the outbox), delivered, or dead
      -- (the dead letter, kept to list and replay).
      CREATE TABLE alert_deliveries (
        id TEXT PRIMARY KEY,
        event_id TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        type TEXT NOT NULL,
        event TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
        attempts INTEGER NOT NULL,
        next_attempt_at TEXT NOT NULL,
        last_error TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (event_id, endpoint)
      );
      CREATE INDEX alert_deliveries_due ON alert_deliveries (state, next_attempt_at);
      CREATE INDEX alert_deliveries_created ON alert_deliveries (created_at);
    `,
  },
  {
    version: 18,
    name: 'host-attestation',
    sql: `
      -- The last appraisal of each runner host's own TPM quote (boot PCRs 0-7): when it was quoted,
      -- whether it matched the host's reference values, and, when not, why (quarantined).
      CREATE TABLE host_attestations (
        host TEXT PRIMARY KEY,
        enrollment_version INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('trusted', 'quarantined')),
        quoted_at INTEGER NOT NULL,
        reason TEXT,
        pcrs TEXT NOT NULL,
        updated_at TEXT NOT NULL
      );
    `,
  },
];
