import { GatehouseError } from '../common/errors.ts';
import { optional, type PgRow, PgTables, type Sql } from './postgres-support.ts';
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
export function insertArtifactSbom(sql: Sql, r: ArtifactSbomRecord): Promise<unknown> {
  return sql`
    INSERT INTO artifact_sboms (decision_id, project, components, subjects, created_at, environment)
    VALUES (${r.decisionId}, ${r.project}, ${r.components}, ${JSON.stringify(r.subjects)}, ${r.createdAt},
            ${r.environment ?? null})
    ON CONFLICT (decision_id) DO NOTHING`;
}

function policyRow(r: PgRow): PolicyVersionRecord {
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

function triageRow(r: PgRow): TriageRecord {
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

/** Policy, triage, re-evaluation, held-build and revocation tables of the PostgreSQL store. */
export class PostgresPolicyStore extends PgTables implements PolicyStore {
  async publish(r: PolicyVersionRecord): Promise<void> {
    const conflict = `policy ${r.name} version ${r.version} was published concurrently`;
    // Check and insert in one statement; two publishers of the same version meet the primary key.
    const rows = await this.query(
      `cannot publish policy ${r.name}`,
      (sql) => sql`
        INSERT INTO policy_versions (name, version, digest, text, signature, key_id, published_at)
        SELECT ${r.name}, ${r.version}, ${r.digest}, ${r.text}, ${r.signature}, ${r.keyId}, ${r.publishedAt}
        WHERE ${r.version}::int = (SELECT COALESCE(MAX(version), 0) + 1 FROM policy_versions WHERE name = ${r.name})
        RETURNING version`,
      conflict,
    );
    if (rows.length === 1) return;
    const latest = await this.latest(r.name);
    throw new GatehouseError(
      'CONFLICT',
      `policy ${r.name} is at version ${latest?.version ?? 0}; cannot publish version ${r.version}`,
    );
  }

  async latest(name: string): Promise<PolicyVersionRecord | undefined> {
    const [r] = await this.query(
      `cannot read policy ${name}`,
      (sql) => sql`SELECT * FROM policy_versions WHERE name = ${name} ORDER BY version DESC LIMIT 1`,
    );
    return r === undefined ? undefined : policyRow(r);
  }

  async get(name: string, version: number): Promise<PolicyVersionRecord | undefined> {
    if (!Number.isSafeInteger(version)) return undefined;
    const [r] = await this.query(
      `cannot read policy ${name}`,
      (sql) => sql`SELECT * FROM policy_versions WHERE name = ${name} AND version = ${version}`,
    );
    return r === undefined ? undefined : policyRow(r);
  }

  async history(name: string): Promise<PolicyVersionRecord[]> {
    const rows = await this.query(
      `cannot read policy ${name}`,
      (sql) => sql`SELECT * FROM policy_versions WHERE name = ${name} ORDER BY version DESC`,
    );
    return rows.map(policyRow);
  }

  async names(): Promise<string[]> {
    const rows = await this.query(
      'cannot list policies',
      (sql) => sql`SELECT DISTINCT name FROM policy_versions ORDER BY name`,
    );
    return rows.map((r) => String(r.name));
  }

  async bindProject(project: string, policyName: string): Promise<void> {
    await this.query(
      `cannot bind project ${project}`,
      (sql) => sql`
        INSERT INTO project_policies (project, policy_name) VALUES (${project}, ${policyName})
        ON CONFLICT (project) DO UPDATE SET policy_name = excluded.policy_name`,
    );
  }

  async projectPolicy(project: string): Promise<string | undefined> {
    const [r] = await this.query(
      `cannot read the policy of project ${project}`,
      (sql) => sql`SELECT policy_name FROM project_policies WHERE project = ${project}`,
    );
    return r === undefined ? undefined : String(r.policy_name);
  }

  async addTriage(r: TriageRecord): Promise<void> {
    await this.query(
      `cannot record triage of ${r.decisionId}`,
      (sql) => sql`
        INSERT INTO triage (id, decision_id, project, action, reason, actor, created_at, log_index)
        VALUES (${r.id}, ${r.decisionId}, ${r.project}, ${r.action}, ${r.reason}, ${r.actor}, ${r.createdAt}, ${r.logIndex})`,
      `decision ${r.decisionId} has already been triaged`,
    );
  }

  async triageOf(decisionId: string): Promise<TriageRecord | undefined> {
    const [r] = await this.query(
      `cannot read triage of ${decisionId}`,
      (sql) => sql`SELECT * FROM triage WHERE decision_id = ${decisionId}`,
    );
    return r === undefined ? undefined : triageRow(r);
  }

  async listTriage(options: { limit?: number } = {}): Promise<TriageRecord[]> {
    const limit = options.limit ?? 1000;
    const rows = await this.query(
      'cannot list triage',
      (sql) => sql`SELECT * FROM triage ORDER BY created_at DESC, id LIMIT ${limit}`,
    );
    return rows.map(triageRow);
  }

  async addReevaluation(r: ReevaluationRecord): Promise<void> {
    await this.query(
      `cannot record re-evaluation ${r.id}`,
      (sql) => sql`
        INSERT INTO reevaluations (id, decision_id, project, outcome, policy_digest, reasons, revoked, created_at, detection_ms)
        VALUES (${r.id}, ${r.decisionId}, ${r.project}, ${r.outcome}, ${r.policyDigest}, ${JSON.stringify(r.reasons)},
                ${r.revoked}, ${r.createdAt}, ${r.detectionMs})`,
    );
  }

  async listReevaluations(options: { limit?: number } = {}): Promise<ReevaluationRecord[]> {
    const limit = options.limit ?? 1000;
    const rows = await this.query(
      'cannot list re-evaluations',
      (sql) => sql`SELECT * FROM reevaluations ORDER BY created_at DESC, id LIMIT ${limit}`,
    );
    return rows.map((r) => ({
      id: String(r.id),
      decisionId: String(r.decision_id),
      project: String(r.project),
      outcome: String(r.outcome) as ReevaluationRecord['outcome'],
      policyDigest: String(r.policy_digest),
      reasons: JSON.parse(String(r.reasons)) as ReevaluationRecord['reasons'],
      revoked: r.revoked === true,
      createdAt: String(r.created_at),
      detectionMs: Number(r.detection_ms),
    }));
  }

  async keepArtifactSbom(r: ArtifactSbomRecord): Promise<void> {
    await this.query(`cannot keep the SBOM of ${r.decisionId}`, (sql) => insertArtifactSbom(sql, r));
  }

  async putEnvironmentSbom(r: EnvironmentSbomRecord): Promise<void> {
    await this.query(
      `cannot keep the environment SBOM ${r.digest}`,
      (sql) => sql`
        INSERT INTO environment_sboms (digest, document, created_at) VALUES (${r.digest}, ${r.document}, ${r.createdAt})
        ON CONFLICT (digest) DO NOTHING`,
    );
  }

  async environmentSbom(digest: string): Promise<EnvironmentSbomRecord | undefined> {
    const [r] = await this.query(
      `cannot read the environment SBOM ${digest}`,
      (sql) => sql`SELECT * FROM environment_sboms WHERE digest = ${digest}`,
    );
    return r === undefined
      ? undefined
      : { digest: String(r.digest), document: String(r.document), createdAt: String(r.created_at) };
  }

  async artifactSboms(): Promise<ArtifactSbomRecord[]> {
    const rows = await this.query(
      'cannot read promoted SBOMs',
      (sql) => sql`SELECT * FROM artifact_sboms ORDER BY created_at, decision_id`,
    );
    return rows.map((r) => ({
      decisionId: String(r.decision_id),
      project: String(r.project),
      components: String(r.components),
      subjects: JSON.parse(String(r.subjects)) as ArtifactSbomRecord['subjects'],
      createdAt: String(r.created_at),
      ...(optional(r.environment) === undefined ? {} : { environment: String(r.environment) }),
    }));
  }

  async addVex(r: { id: string; json: string; createdAt: string }): Promise<void> {
    await this.query(
      `cannot keep VEX document ${r.id}`,
      (sql) => sql`
        INSERT INTO vex_documents (id, json, created_at) VALUES (${r.id}, ${r.json}, ${r.createdAt})
        ON CONFLICT (id) DO UPDATE SET json = excluded.json, created_at = excluded.created_at`,
    );
  }

  async vexDocuments(): Promise<{ id: string; json: string; createdAt: string }[]> {
    const rows = await this.query(
      'cannot read VEX documents',
      (sql) => sql`SELECT * FROM vex_documents ORDER BY id`,
    );
    return rows.map((r) => ({ id: String(r.id), json: String(r.json), createdAt: String(r.created_at) }));
  }

  async holdBuild(r: HeldBuildRecord): Promise<void> {
    await this.query(
      `cannot hold the build of ${r.decisionId}`,
      (sql) => sql`
        INSERT INTO held_builds (decision_id, project, facts, created_at)
        VALUES (${r.decisionId}, ${r.project}, ${r.facts}, ${r.createdAt})
        ON CONFLICT (decision_id) DO NOTHING`,
    );
  }

  async heldBuild(decisionId: string): Promise<HeldBuildRecord | undefined> {
    const [r] = await this.query(
      `cannot read the held build of ${decisionId}`,
      (sql) => sql`SELECT * FROM held_builds WHERE decision_id = ${decisionId}`,
    );
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
    await this.query(
      `cannot record the revocation of ${r.digest}`,
      (sql) => sql`
        INSERT INTO revocations (digest, reason, actor, revoked_at, log_index)
        VALUES (${r.digest}, ${r.reason}, ${r.actor}, ${r.revokedAt}, ${r.logIndex})`,
      `${r.digest} is already revoked`,
    );
  }

  async revocations(): Promise<RevocationRecord[]> {
    const rows = await this.query(
      'cannot read revocations',
      (sql) => sql`SELECT * FROM revocations ORDER BY revoked_at, digest`,
    );
    return rows.map((r) => ({
      digest: String(r.digest),
      reason: String(r.reason),
      actor: String(r.actor),
      revokedAt: String(r.revoked_at),
      logIndex: Number(r.log_index),
    }));
  }
}
