import type { DatabaseSync } from 'node:sqlite';
import { GatehouseError } from '../common/errors.ts';
import { isUniqueViolation, type Row, storeError } from './sqlite-support.ts';
import type { DecisionRecord, DecisionStore } from './store.ts';

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

/** The decisions table of the embedded store. */
export class SqliteDecisionStore implements DecisionStore {
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
      if (isUniqueViolation(e)) throw new GatehouseError('CONFLICT', `decision ${d.id} already exists`);
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
