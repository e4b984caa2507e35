import type { DatabaseSync } from 'node:sqlite';
import { GatehouseError } from '../common/errors.ts';
import type { Row } from './sqlite-support.ts';
import type {
  ArtifactSbomRecord,
  HeldBuildRecord,
  PolicyStore,
  PolicyVersionRecord,
  ReevaluationRecord,
  RevocationRecord,
  TriageRecord,
} from './store.ts';

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
export class SqlitePolicyStore implements PolicyStore {
  readonly #db: DatabaseSync;
  constructor(db: DatabaseSync) {
    this.#db = db;
  }

  async publish(r: PolicyVersionRecord): Promise<void> {
    const row = this.#db
      .prepare('SELECT MAX(version) AS v FROM policy_versions WHERE name = ?')
      .get(r.name) as Row | undefined;
    const next = Number(row?.v ?? 0) + 1;
    if (r.version !== next)
      throw new GatehouseError(
        'CONFLICT',
        `policy ${r.name} is at version ${next - 1}; cannot publish version ${r.version}`,
      );
    this.#db
      .prepare(
        `INSERT INTO policy_versions (name, version, digest, text, signature, key_id, published_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(r.name, r.version, r.digest, r.text, r.signature, r.keyId, r.publishedAt);
  }

  async latest(name: string): Promise<PolicyVersionRecord | undefined> {
    const r = this.#db
      .prepare('SELECT * FROM policy_versions WHERE name = ? ORDER BY version DESC LIMIT 1')
      .get(name) as Row | undefined;
    return r === undefined ? undefined : policyRow(r);
  }

  async get(name: string, version: number): Promise<PolicyVersionRecord | undefined> {
    const r = this.#db
      .prepare('SELECT * FROM policy_versions WHERE name = ? AND version = ?')
      .get(name, version) as Row | undefined;
    return r === undefined ? undefined : policyRow(r);
  }

  async history(name: string): Promise<PolicyVersionRecord[]> {
    const rows = this.#db
      .prepare('SELECT * FROM policy_versions WHERE name = ? ORDER BY version DESC')
      .all(name) as Row[];
    return rows.map(policyRow);
  }

  async names(): Promise<string[]> {
    const rows = this.#db.prepare('SELECT DISTINCT name FROM policy_versions ORDER BY name').all() as Row[];
    return rows.map((r) => String(r.name));
  }

  async bindProject(project: string, policyName: string): Promise<void> {
    this.#db
      .prepare(
        `INSERT INTO project_policies (project, policy_name) VALUES (?, ?)
         ON CONFLICT (project) DO UPDATE SET policy_name = excluded.policy_name`,
      )
      .run(project, policyName);
  }

  async projectPolicy(project: string): Promise<string | undefined> {
    const r = this.#db.prepare('SELECT policy_name FROM project_policies WHERE project = ?').get(project) as
      | Row
      | undefined;
    return r === undefined ? undefined : String(r.policy_name);
  }

  async addTriage(r: TriageRecord): Promise<void> {
    try {
      this.#db
        .prepare(
          `INSERT INTO triage (id, decision_id, project, action, reason, actor, created_at, log_index)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(r.id, r.decisionId, r.project, r.action, r.reason, r.actor, r.createdAt, r.logIndex);
    } catch (e) {
      if (e instanceof Error && /UNIQUE/.test(e.message))
        throw new GatehouseError('CONFLICT', `decision ${r.decisionId} has already been triaged`, {
          cause: e,
        });
      throw e;
    }
  }

  async triageOf(decisionId: string): Promise<TriageRecord | undefined> {
    const r = this.#db.prepare('SELECT * FROM triage WHERE decision_id = ?').get(decisionId) as
      | Row
      | undefined;
    return r === undefined ? undefined : triageRow(r);
  }

  async listTriage(options: { limit?: number } = {}): Promise<TriageRecord[]> {
    const rows = this.#db
      .prepare('SELECT * FROM triage ORDER BY created_at DESC, id LIMIT ?')
      .all(options.limit ?? 1000) as Row[];
    return rows.map(triageRow);
  }

  async addReevaluation(r: ReevaluationRecord): Promise<void> {
    this.#db
      .prepare(
        `INSERT INTO reevaluations (id, decision_id, project, outcome, policy_digest, reasons, revoked, created_at, detection_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
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
    const rows = this.#db
      .prepare('SELECT * FROM reevaluations ORDER BY created_at DESC, id LIMIT ?')
      .all(options.limit ?? 1000) as Row[];
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
    this.#db
      .prepare(
        `INSERT INTO artifact_sboms (decision_id, project, components, subjects, created_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (decision_id) DO NOTHING`,
      )
      .run(r.decisionId, r.project, r.components, JSON.stringify(r.subjects), r.createdAt);
  }

  async artifactSboms(): Promise<ArtifactSbomRecord[]> {
    const rows = this.#db
      .prepare('SELECT * FROM artifact_sboms ORDER BY created_at, decision_id')
      .all() as Row[];
    return rows.map((r) => ({
      decisionId: String(r.decision_id),
      project: String(r.project),
      components: String(r.components),
      subjects: JSON.parse(String(r.subjects)) as ArtifactSbomRecord['subjects'],
      createdAt: String(r.created_at),
    }));
  }

  async addVex(r: { id: string; json: string; createdAt: string }): Promise<void> {
    this.#db
      .prepare(
        `INSERT INTO vex_documents (id, json, created_at) VALUES (?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET json = excluded.json, created_at = excluded.created_at`,
      )
      .run(r.id, r.json, r.createdAt);
  }

  async vexDocuments(): Promise<{ id: string; json: string; createdAt: string }[]> {
    const rows = this.#db.prepare('SELECT * FROM vex_documents ORDER BY id').all() as Row[];
    return rows.map((r) => ({ id: String(r.id), json: String(r.json), createdAt: String(r.created_at) }));
  }

  async holdBuild(r: HeldBuildRecord): Promise<void> {
    this.#db
      .prepare(
        `INSERT INTO held_builds (decision_id, project, facts, created_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (decision_id) DO NOTHING`,
      )
      .run(r.decisionId, r.project, r.facts, r.createdAt);
  }

  async heldBuild(decisionId: string): Promise<HeldBuildRecord | undefined> {
    const r = this.#db.prepare('SELECT * FROM held_builds WHERE decision_id = ?').get(decisionId) as
      | Row
      | undefined;
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
    try {
      this.#db
        .prepare(
          'INSERT INTO revocations (digest, reason, actor, revoked_at, log_index) VALUES (?, ?, ?, ?, ?)',
        )
        .run(r.digest, r.reason, r.actor, r.revokedAt, r.logIndex);
    } catch (e) {
      if (e instanceof Error && /UNIQUE|PRIMARY KEY/.test(e.message))
        throw new GatehouseError('CONFLICT', `${r.digest} is already revoked`, { cause: e });
      throw e;
    }
  }

  async revocations(): Promise<RevocationRecord[]> {
    const rows = this.#db.prepare('SELECT * FROM revocations ORDER BY revoked_at, digest').all() as Row[];
    return rows.map((r) => ({
      digest: String(r.digest),
      reason: String(r.reason),
      actor: String(r.actor),
      revokedAt: String(r.revoked_at),
      logIndex: Number(r.log_index),
    }));
  }
}
