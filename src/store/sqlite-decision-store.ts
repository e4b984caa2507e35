import type { DatabaseSync } from 'node:sqlite';
import { insertArtifactSbom } from './sqlite-policy-store.ts';
import { type Immediate, type Row, SqliteTables } from './sqlite-support.ts';
import type { ArtifactSbomRecord, DecisionRecord, DecisionStore } from './store.ts';

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
export class SqliteDecisionStore extends SqliteTables implements DecisionStore {
  readonly #immediate: Immediate;

  constructor(db: DatabaseSync, immediate: Immediate) {
    super(db);
    this.#immediate = immediate;
  }

  async create(d: DecisionRecord, kept: { artifactSbom?: ArtifactSbomRecord } = {}): Promise<void> {
    // One write transaction, run synchronously: no other write can slip in between the two.
    this.#immediate(() => {
      this.#insert(d);
      if (kept.artifactSbom !== undefined) insertArtifactSbom(this.db, kept.artifactSbom);
    });
  }

  #insert(d: DecisionRecord): void {
    this.insertNew(
      `INSERT INTO decisions (id, job_id, project, outcome, policy_digest, subjects, reasons, created_at, log_index)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [
        d.id,
        d.jobId,
        d.project,
        d.outcome,
        d.policyDigest,
        JSON.stringify(d.subjects),
        JSON.stringify(d.reasons),
        d.createdAt,
        d.logIndex,
      ],
      { conflict: `decision ${d.id} already exists`, failure: `cannot record decision ${d.id}` },
    );
  }

  async get(id: string): Promise<DecisionRecord | undefined> {
    const r = this.row('SELECT * FROM decisions WHERE id = ?', id);
    return r === undefined ? undefined : parseDecision(r);
  }

  async list(options: { limit?: number; jobId?: string } = {}): Promise<DecisionRecord[]> {
    return this.listed('decisions', 'created_at DESC, id', options.limit ?? 100, {
      column: 'job_id',
      value: options.jobId,
    }).map(parseDecision);
  }

  async countByOutcome(): Promise<Record<string, number>> {
    return this.countBy('decisions', 'outcome');
  }
}
