import { insertArtifactSbom } from './postgres-policy-store.ts';
import { type PgRow, PgTables } from './postgres-support.ts';
import type { ArtifactSbomRecord, DecisionRecord, DecisionStore } from './store.ts';

function parseDecision(r: PgRow): DecisionRecord {
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

/** The decisions table of the PostgreSQL store. */
export class PostgresDecisionStore extends PgTables implements DecisionStore {
  async create(d: DecisionRecord, kept: { artifactSbom?: ArtifactSbomRecord } = {}): Promise<void> {
    const sbom = kept.artifactSbom;
    if (sbom === undefined) return this.#insert(d);
    // Both in one transaction (or in the caller's open one): a decision is never kept without
    // the SBOM its re-evaluation needs.
    await this.atomically(async () => {
      await this.#insert(d);
      await this.query(`cannot keep the SBOM of ${sbom.decisionId}`, (sql) => insertArtifactSbom(sql, sbom));
    });
  }

  async #insert(d: DecisionRecord): Promise<void> {
    await this.query(
      `cannot record decision ${d.id}`,
      (sql) => sql`
        INSERT INTO decisions (id, job_id, project, outcome, policy_digest, subjects, reasons, created_at, log_index)
        VALUES (${d.id}, ${d.jobId}, ${d.project}, ${d.outcome}, ${d.policyDigest}, ${JSON.stringify(d.subjects)},
                ${JSON.stringify(d.reasons)}, ${d.createdAt}, ${d.logIndex})`,
      `decision ${d.id} already exists`,
    );
  }

  async get(id: string): Promise<DecisionRecord | undefined> {
    const [r] = await this.query(
      `cannot read decision ${id}`,
      (sql) => sql`SELECT * FROM decisions WHERE id = ${id}`,
    );
    return r === undefined ? undefined : parseDecision(r);
  }

  async list(options: { limit?: number; jobId?: string } = {}): Promise<DecisionRecord[]> {
    const limit = options.limit ?? 100;
    const { jobId } = options;
    const rows = await this.query('cannot list decisions', (sql) =>
      jobId === undefined
        ? sql`SELECT * FROM decisions ORDER BY created_at DESC, id LIMIT ${limit}`
        : sql`SELECT * FROM decisions WHERE job_id = ${jobId} ORDER BY created_at DESC, id LIMIT ${limit}`,
    );
    return rows.map(parseDecision);
  }

  async countByOutcome(): Promise<Record<string, number>> {
    const rows = await this.query(
      'cannot count decisions',
      (sql) => sql`SELECT outcome, COUNT(*)::int AS n FROM decisions GROUP BY outcome`,
    );
    return Object.fromEntries(rows.map((r) => [String(r.outcome), Number(r.n)]));
  }
}
