/**
 * The PostgreSQL schema, as migrations that mirror the SQLite ones (src/store/migrations.ts)
 * version for version and name for name: a database of either kind at version N holds the same
 * tables. A new SQLite migration needs its twin here; the store contract suite checks that both
 * lists name the same versions.
 *
 * Differences from SQLite, on purpose: text columns use the "C" collation, so that ordering and
 * comparison are byte-wise as in SQLite whatever the database's locale; integers that grow (log
 * indices, times) are BIGINT; blobs are BYTEA; append-only tables refuse UPDATE, DELETE and
 * TRUNCATE through triggers.
 */
import type { Migration } from './migrations.ts';

/** Text compared byte by byte, as SQLite does. */
const T = 'TEXT COLLATE "C"';

/** Triggers that make a table append-only: any update, delete or truncate aborts with `message`. */
function appendOnly(table: string, message: string): string {
  const quoted = `'${message.replaceAll("'", "''")}'`;
  return `
      CREATE TRIGGER ${table}_immutable BEFORE UPDATE OR DELETE ON ${table}
        FOR EACH ROW EXECUTE FUNCTION gatehouse_refuse_change(${quoted});
      CREATE TRIGGER ${table}_no_truncate BEFORE TRUNCATE ON ${table}
        FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_refuse_change(${quoted});`;
}

export const postgresMigrations: readonly Migration[] = [
  {
    version: 1,
    name: 'initial',
    sql: `
      CREATE FUNCTION gatehouse_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'restrict_violation'; END
      $$;
      CREATE TABLE jobs (
        id ${T} PRIMARY KEY,
        project ${T} NOT NULL,
        state ${T} NOT NULL,
        nonce ${T} NOT NULL,
        created_at ${T} NOT NULL,
        updated_at ${T} NOT NULL,
        steps ${T} NOT NULL,
        result ${T}
      );
      CREATE INDEX jobs_project ON jobs (project, created_at);
      CREATE INDEX jobs_unfinished ON jobs (updated_at, id) WHERE state IN ('queued', 'running', 'submitted');
      CREATE TABLE decisions (
        id ${T} PRIMARY KEY,
        job_id ${T} NOT NULL,
        project ${T} NOT NULL,
        outcome ${T} NOT NULL CHECK (outcome IN ('allow', 'deny', 'quarantine')),
        policy_digest ${T} NOT NULL,
        subjects ${T} NOT NULL,
        reasons ${T} NOT NULL,
        created_at ${T} NOT NULL,
        log_index BIGINT NOT NULL
      );
      CREATE INDEX decisions_job ON decisions (job_id);
      CREATE INDEX decisions_created ON decisions (created_at DESC, id);
      CREATE TABLE log_entries (
        idx BIGINT PRIMARY KEY CHECK (idx >= 0),
        body BYTEA NOT NULL,
        leaf_hash BYTEA NOT NULL,
        integrated_time BIGINT NOT NULL
      );
      -- The log is append-only: refuse changes and deletions at the database itself.
      ${appendOnly('log_entries', 'transparency log entries are immutable')}
      CREATE TABLE vulns (
        id ${T} PRIMARY KEY,
        modified ${T} NOT NULL,
        withdrawn ${T},
        aliases ${T} NOT NULL,
        json ${T} NOT NULL
      );
      CREATE TABLE vuln_packages (
        vuln_id ${T} NOT NULL REFERENCES vulns (id) ON DELETE CASCADE,
        ecosystem ${T} NOT NULL,
        name ${T} NOT NULL,
        PRIMARY KEY (ecosystem, name, vuln_id)
      );
      CREATE INDEX vuln_packages_vuln ON vuln_packages (vuln_id);
      CREATE TABLE revoked_tokens (
        jti ${T} PRIMARY KEY,
        expires_at BIGINT NOT NULL
      );
      CREATE INDEX revoked_tokens_expiry ON revoked_tokens (expires_at);
    `,
  },
  {
    version: 4,
    name: 'policies-triage-reevaluation',
    sql: `
      CREATE TABLE policy_versions (
        name ${T} NOT NULL,
        version INTEGER NOT NULL,
        digest ${T} NOT NULL,
        text ${T} NOT NULL,
        signature ${T} NOT NULL,
        key_id ${T} NOT NULL,
        published_at ${T} NOT NULL,
        PRIMARY KEY (name, version)
      );
      ${appendOnly('policy_versions', 'published policy versions are immutable')}
      CREATE TABLE project_policies (
        project ${T} PRIMARY KEY,
        policy_name ${T} NOT NULL
      );
      CREATE TABLE triage (
        id ${T} PRIMARY KEY,
        decision_id ${T} NOT NULL UNIQUE,
        project ${T} NOT NULL,
        action ${T} NOT NULL CHECK (action IN ('release', 'reject')),
        reason ${T} NOT NULL,
        actor ${T} NOT NULL,
        created_at ${T} NOT NULL,
        log_index BIGINT NOT NULL
      );
      CREATE TABLE reevaluations (
        id ${T} PRIMARY KEY,
        decision_id ${T} NOT NULL,
        project ${T} NOT NULL,
        outcome ${T} NOT NULL,
        policy_digest ${T} NOT NULL,
        reasons ${T} NOT NULL,
        revoked BOOLEAN NOT NULL,
        created_at ${T} NOT NULL,
        detection_ms DOUBLE PRECISION NOT NULL
      );
      CREATE INDEX reevaluations_decision ON reevaluations (decision_id);
      CREATE TABLE artifact_sboms (
        decision_id ${T} PRIMARY KEY,
        project ${T} NOT NULL,
        components ${T} NOT NULL,
        subjects ${T} NOT NULL,
        created_at ${T} NOT NULL
      );
      CREATE TABLE vex_documents (
        id ${T} PRIMARY KEY,
        json ${T} NOT NULL,
        created_at ${T} NOT NULL
      );
    `,
  },
  {
    version: 5,
    name: 'log-interior-nodes',
    sql: `
      CREATE TABLE log_nodes (
        level INTEGER NOT NULL CHECK (level >= 1),
        idx BIGINT NOT NULL CHECK (idx >= 0),
        hash BYTEA NOT NULL,
        PRIMARY KEY (level, idx)
      );
      ${appendOnly('log_nodes', 'transparency log nodes are immutable')}
    `,
  },
  {
    version: 7,
    name: 'source-origin',
    sql: `
      CREATE TABLE source_protection (
        repository ${T} NOT NULL,
        ref_pattern ${T} NOT NULL,
        rule ${T} NOT NULL,
        created_at ${T} NOT NULL,
        PRIMARY KEY (repository, ref_pattern)
      );
      CREATE TABLE source_reviews (
        id ${T} PRIMARY KEY,
        repository ${T} NOT NULL,
        commit_id ${T} NOT NULL,
        reviewer ${T} NOT NULL,
        record ${T} NOT NULL,
        signature ${T} NOT NULL,
        created_at ${T} NOT NULL
      );
      CREATE INDEX source_reviews_repository ON source_reviews (repository, commit_id);
      CREATE TABLE source_signers (
        id ${T} NOT NULL,
        scope ${T} NOT NULL,
        principal ${T} NOT NULL,
        format ${T} NOT NULL CHECK (format IN ('ssh', 'gpg')),
        public_key ${T} NOT NULL,
        created_at ${T} NOT NULL,
        PRIMARY KEY (id, scope)
      );
      CREATE TABLE source_ref_heads (
        repository ${T} NOT NULL,
        ref ${T} NOT NULL,
        head ${T} NOT NULL,
        seen_at ${T} NOT NULL,
        rewritten_to ${T},
        rewritten_at ${T},
        PRIMARY KEY (repository, ref)
      );
    `,
  },
  {
    version: 8,
    name: 'attestation-reference-values-refusals',
    sql: `
      CREATE TABLE reference_value_bundles (
        version INTEGER PRIMARY KEY CHECK (version >= 1),
        digest ${T} NOT NULL,
        payload ${T} NOT NULL,
        signature ${T} NOT NULL,
        key_id ${T} NOT NULL,
        published_at ${T} NOT NULL
      );
      ${appendOnly('reference_value_bundles', 'published reference values are immutable')}
      -- seq orders refusals recorded in the same millisecond, as SQLite's rowid does.
      CREATE TABLE attestation_refusals (
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        id ${T} PRIMARY KEY,
        stage ${T} NOT NULL CHECK (stage IN ('challenge', 'evidence', 'software')),
        job_id ${T},
        failed_checks ${T} NOT NULL,
        created_at ${T} NOT NULL
      );
      CREATE INDEX attestation_refusals_created ON attestation_refusals (created_at);
      ${appendOnly('attestation_refusals', 'attestation refusals are immutable')}
    `,
  },
  {
    version: 9,
    name: 'release-and-revocation',
    sql: `
      CREATE TABLE held_builds (
        decision_id ${T} PRIMARY KEY,
        project ${T} NOT NULL,
        facts ${T} NOT NULL,
        created_at ${T} NOT NULL
      );
      CREATE TABLE revocations (
        digest ${T} PRIMARY KEY,
        reason ${T} NOT NULL,
        actor ${T} NOT NULL,
        revoked_at ${T} NOT NULL,
        log_index BIGINT NOT NULL
      );
      ${appendOnly('revocations', 'revocations are permanent')}
    `,
  },
  {
    version: 11,
    name: 'vuln-generation',
    sql: `
      -- Moved by every statement that writes vulnerability records, in the writer's transaction:
      -- a reader that sees the new generation sees the records it counts (never ahead of them).
      CREATE TABLE vuln_generation (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        generation BIGINT NOT NULL
      );
      INSERT INTO vuln_generation (id, generation) VALUES (1, 1);
      CREATE FUNCTION gatehouse_vuln_generation() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN UPDATE vuln_generation SET generation = generation + 1 WHERE id = 1; RETURN NULL; END
      $$;
      CREATE TRIGGER vulns_generation AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON vulns
        FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_vuln_generation();
    `,
  },
  {
    version: 12,
    name: 'zero-trust',
    sql: `
      ALTER TABLE jobs ADD COLUMN host ${T};
      ALTER TABLE jobs ADD COLUMN runner_key ${T};
      CREATE TABLE security_acts (
        kind ${T} NOT NULL,
        name ${T} NOT NULL,
        version INTEGER NOT NULL CHECK (version >= 1),
        content ${T} NOT NULL,
        signature ${T} NOT NULL,
        key_id ${T} NOT NULL,
        created_at ${T} NOT NULL,
        PRIMARY KEY (kind, name, version)
      );
      ${appendOnly('security_acts', 'security acts are permanent')}
    `,
  },
  {
    version: 13,
    name: 'environment-sboms',
    sql: `
      CREATE TABLE environment_sboms (
        digest ${T} PRIMARY KEY,
        document ${T} NOT NULL,
        created_at ${T} NOT NULL
      );
      CREATE TRIGGER environment_sboms_immutable BEFORE UPDATE ON environment_sboms
        FOR EACH ROW EXECUTE FUNCTION gatehouse_refuse_change('an environment SBOM is kept under its digest and never changes');
      ALTER TABLE artifact_sboms ADD COLUMN environment ${T};
    `,
  },
  {
    version: 14,
    name: 'ct-log-and-witnesses',
    sql: `
      CREATE TABLE ct_entries (
        shard ${T} NOT NULL,
        idx BIGINT NOT NULL CHECK (idx >= 0),
        body BYTEA NOT NULL,
        leaf_hash BYTEA NOT NULL,
        integrated_time BIGINT NOT NULL,
        PRIMARY KEY (shard, idx)
      );
      ${appendOnly('ct_entries', 'certificate transparency entries are immutable')}
      CREATE TABLE ct_nodes (
        shard ${T} NOT NULL,
        level INTEGER NOT NULL,
        idx BIGINT NOT NULL,
        hash BYTEA NOT NULL,
        PRIMARY KEY (shard, level, idx)
      );
      ${appendOnly('ct_nodes', 'certificate transparency nodes are immutable')}
      CREATE TABLE ct_issuers (
        fingerprint ${T} PRIMARY KEY,
        der BYTEA NOT NULL
      );
      CREATE TABLE log_cosignatures (
        tree_size BIGINT NOT NULL,
        root_hash BYTEA NOT NULL,
        key_name ${T} NOT NULL,
        key_id BYTEA NOT NULL,
        timestamp BIGINT NOT NULL,
        line ${T} NOT NULL,
        PRIMARY KEY (tree_size, key_name, key_id)
      );
      ${appendOnly('log_cosignatures', 'witness cosignatures are immutable')}
      CREATE TABLE witness_state (
        origin ${T} PRIMARY KEY,
        tree_size BIGINT NOT NULL,
        root_hash BYTEA NOT NULL,
        checkpoint ${T} NOT NULL,
        updated_at ${T} NOT NULL
      );
    `,
  },
  {
    version: 15,
    name: 'shared-attestation-state',
    sql: `
      CREATE TABLE attestation_sessions (
        id ${T} PRIMARY KEY,
        job_id ${T},
        state ${T} NOT NULL,
        expires_at BIGINT NOT NULL,
        created_at ${T} NOT NULL,
        spent_at ${T}
      );
      CREATE INDEX attestation_sessions_expiry ON attestation_sessions (expires_at);
      CREATE TABLE ak_counters (
        ak_name ${T} PRIMARY KEY,
        reset_count BIGINT NOT NULL,
        restart_count BIGINT NOT NULL,
        updated_at ${T} NOT NULL
      );
    `,
  },
  {
    version: 16,
    name: 'build-logs',
    sql: `
      CREATE TABLE build_logs (
        job_id ${T} PRIMARY KEY,
        content BYTEA NOT NULL,
        sha256 ${T} NOT NULL,
        size BIGINT NOT NULL CHECK (size >= 0),
        truncated BOOLEAN NOT NULL,
        created_at ${T} NOT NULL
      );
      ${appendOnly('build_logs', 'a build log is kept as it was received and never changes')}
    `,
  },
  {
    version: 17,
    name: 'alert-deliveries',
    sql: `
      CREATE TABLE alert_deliveries (
        id ${T} PRIMARY KEY,
        event_id ${T} NOT NULL,
        endpoint ${T} NOT NULL,
        type ${T} NOT NULL,
        event ${T} NOT NULL,
        state ${T} NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
        attempts INTEGER NOT NULL,
        next_attempt_at ${T} NOT NULL,
        last_error ${T},
        created_at ${T} NOT NULL,
        updated_at ${T} NOT NULL,
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
      CREATE TABLE host_attestations (
        host ${T} PRIMARY KEY,
        enrollment_version BIGINT NOT NULL,
        status ${T} NOT NULL CHECK (status IN ('trusted', 'quarantined')),
        quoted_at BIGINT NOT NULL,
        reason ${T},
        pcrs ${T} NOT NULL,
        updated_at ${T} NOT NULL
      );
    `,
  },
];
