import type { DatabaseSync } from 'node:sqlite';
import { GatehouseError } from '../common/errors.ts';
import { type Row, SqliteTables } from './sqlite-support.ts';
import type {
  ArtifactSbomRecord,
  EnvironmentSbomRecord,
  HeldBuildRecord,
  PolicyStore,
  PolicyVersionRecord,
  ReevaluationRecord,
  RevocationRecord,
  TriageRecord,
} from './store.ts';

/** Keep an allowed artifact's SBOM (idempotent per decision); shared with the decisions table's writer. */
export function insertArtifactSbom(db: DatabaseSync, r: ArtifactSbomRecord): void {
  db.prepare(
    `INSERT INTO artifact_sboms (decision_id, project, components, subjects, created_at, environment)
     VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (decision_id) DO NOTHING`,
  ).run(
    r.decisionId,
    r.project,
    r.components,
    JSON.stringify(r.subjects),
    r.createdAt,
    r.environment ?? null,
  );
}

function policyRow(r: Row): PolicyVersionRecord {
  return {
    name: String(r.name),
    version: Number(r.version),
    digest: String(r.digest),
    text: String(r.text),
    signature: String(r.signature),
    keyId: String(r.key_id),
    publishedAt: String(r.published_at),
  };
}

function triageRow(r: Row): TriageRecord {
  return {
    id: String(r.id),
    decisionId: String(r.decision_id),
    project: String(r.project),
    action: String(r.action) as TriageRecord['action'],
    reason: String(r.reason),
    actor: String(r.actor),
    createdAt: String(r.created_at),
    logIndex: Number(r.log_index),
  };
}

/** Policy, triage and re-evaluation tables of the embedded store (migration 4). */
export class SqlitePolicyStore extends SqliteTables implements PolicyStore {
  async publish(r: PolicyVersionRecord): Promise<void> {
    const row = this.row('SELECT MAX(version) AS v FROM policy_versions WHERE name = ?', r.name);
    const next = Number(row?.v ?? 0) + 1;
    if (r.version !== next)
      throw new GatehouseError(
        'CONFLICT',
        `policy ${r.name} is at version ${next - 1}; cannot publish version ${r.version}`,
      );
    this.run(
      `INSERT INTO policy_versions (name, version, digest, text, signature, key_id, published_at)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
      r.name,
      r.version,
      r.digest,
      r.text,
      r.signature,
      r.keyId,
      r.publishedAt,
    );
  }

  async latest(name: string): Promise<PolicyVersionRecord | undefined> {
    const r = this.row('SELECT * FROM policy_versions WHERE name = ? ORDER BY version DESC LIMIT 1', name);
    return r === undefined ? undefined : policyRow(r);
  }

  async get(name: string, version: number): Promise<PolicyVersionRecord | undefined> {
    const r = this.row('SELECT * FROM policy_versions WHERE name = ? AND version = ?', name, version);
    return r === undefined ? undefined : policyRow(r);
  }

  async history(name: string): Promise<PolicyVersionRecord[]> {
    return this.rows('SELECT * FROM policy_versions WHERE name = ? ORDER BY version DESC', name).map(
      policyRow,
    );
  }

  async names(): Promise<string[]> {
    return this.rows('SELECT DISTINCT name FROM policy_versions ORDER BY name').map((r) => String(r.name));
  }

  async bindProject(project: string, policyName: string): Promise<void> {
    this.run(
      `INSERT INTO project_policies (project, policy_name) VALUES (?, ?)
       ON CONFLICT (project) DO UPDATE SET policy_name = excluded.policy_name`,
      project,
      policyName,
    );
  }

  async projectPolicy(project: string): Promise<string | undefined> {
    const r = this.row('SELECT policy_name FROM project_policies WHERE project = ?', project);
    return r === undefined ? undefined : String(r.policy_name);
  }

  async addTriage(r: TriageRecord): Promise<void> {
    this.insertNew(
      `INSERT INTO triage (id, decision_id, project, action, reason, actor, created_at, log_index)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      [r.id, r.decisionId, r.project, r.action, r.reason, r.actor, r.createdAt, r.logIndex],
      { conflict: `decision ${r.decisionId} has already been triaged` },
    );
  }

  async triageOf(decisionId: string): Promise<TriageRecord | undefined> {
    const r = this.row('SELECT * FROM triage WHERE decision_id = ?', decisionId);
    return r === undefined ? undefined : triageRow(r);
  }

  async listTriage(options: { limit?: number } = {}): Promise<TriageRecord[]> {
    return this.rows('SELECT * FROM triage ORDER BY created_at DESC, id LIMIT ?', options.limit ?? 1000).map(
      triageRow,
    );
  }

  async addReevaluation(r: ReevaluationRecord): Promise<void> {
    this.run(
      `INSERT INTO reevaluations (id, decision_id, project, outcome, policy_digest, reasons, revoked, created_at, detection_ms)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      r.id,
      r.decisionId,
      r.project,
      r.outcome,
      r.policyDigest,
      JSON.stringify(r.reasons),
      r.revoked ? 1 : 0,
      r.createdAt,
      r.detectionMs,
    );
  }

  async listReevaluations(options: { limit?: number } = {}): Promise<ReevaluationRecord[]> {
    const rows = this.rows(
      'SELECT * FROM reevaluations ORDER BY created_at DESC, id LIMIT ?',
      options.limit ?? 1000,
    );
    return rows.map((r) => ({
      id: String(r.id),
      decisionId: String(r.decision_id),
      project: String(r.project),
      outcome: String(r.outcome) as ReevaluationRecord['outcome'],
      policyDigest: String(r.policy_digest),
      reasons: JSON.parse(String(r.reasons)) as ReevaluationRecord['reasons'],
      revoked: Number(r.revoked) === 1,
      createdAt: String(r.created_at),
      detectionMs: Number(r.detection_ms),
    }));
  }

  async keepArtifactSbom(r: ArtifactSbomRecord): Promise<void> {
    insertArtifactSbom(this.db, r);
  }

  async putEnvironmentSbom(r: EnvironmentSbomRecord): Promise<void> {
    this.run(
      `INSERT INTO environment_sboms (digest, document, created_at) VALUES (?, ?, ?)
       ON CONFLICT (digest) DO NOTHING`,
      r.digest,
      r.document,
      r.createdAt,
    );
  }

  async environmentSbom(digest: string): Promise<EnvironmentSbomRecord | undefined> {
    const r = this.row('SELECT * FROM environment_sboms WHERE digest = ?', digest);
    return r === undefined
      ? undefined
      : { digest: String(r.digest), document: String(r.document), createdAt: String(r.created_at) };
  }

  async artifactSboms(): Promise<ArtifactSbomRecord[]> {
    const rows = this.rows('SELECT * FROM artifact_sboms ORDER BY created_at, decision_id');
    return rows.map((r) => ({
      decisionId: String(r.decision_id),
      project: String(r.project),
      components: String(r.components),
      subjects: JSON.parse(String(r.subjects)) as ArtifactSbomRecord['subjects'],
      createdAt: String(r.created_at),
      ...(r.environment === null || r.environment === undefined
        ? {}
        : { environment: String(r.environment) }),
    }));
  }

  async addVex(r: { id: string; json: string; createdAt: string }): Promise<void> {
    this.run(
      `INSERT INTO vex_documents (id, json, created_at) VALUES (?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET json = excluded.json, created_at = excluded.created_at`,
      r.id,
      r.json,
      r.createdAt,
    );
  }

  async vexDocuments(): Promise<{ id: string; json: string; createdAt: string }[]> {
    const rows = this.rows('SELECT * FROM vex_documents ORDER BY id');
    return rows.map((r) => ({ id: String(r.id), json: String(r.json), createdAt: String(r.created_at) }));
  }

  async holdBuild(r: HeldBuildRecord): Promise<void> {
    this.run(
      `INSERT INTO held_builds (decision_id, project, facts, created_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (decision_id) DO NOTHING`,
      r.decisionId,
      r.project,
      r.facts,
      r.createdAt,
    );
  }

  async heldBuild(decisionId: string): Promise<HeldBuildRecord | undefined> {
    const r = this.row('SELECT * FROM held_builds WHERE decision_id = ?', decisionId);
    return r === undefined
      ? undefined
      : {
          decisionId: String(r.decision_id),
          project: String(r.project),
          facts: String(r.facts),
          createdAt: String(r.created_at),
        };
  }

  async addRevocation(r: RevocationRecord): Promise<void> {
    this.insertNew(
      'INSERT INTO revocations (digest, reason, actor, revoked_at, log_index) VALUES (?, ?, ?, ?, ?)',
      [r.digest, r.reason, r.actor, r.revokedAt, r.logIndex],
      { conflict: `${r.digest} is already revoked` },
    );
  }

  async revocations(): Promise<RevocationRecord[]> {
    const rows = this.rows('SELECT * FROM revocations ORDER BY revoked_at, digest');
    return rows.map((r) => ({
      digest: String(r.digest),
      reason: String(r.reason),
      actor: String(r.actor),
      revokedAt: String(r.revoked_at),
      logIndex: Number(r.log_index),
    }));
  }
}
