import type { DatabaseSync } from 'node:sqlite';
import { GatehouseError } from '../common/errors.ts';
import { isUniqueViolation, type Row, storeError } from './sqlite-support.ts';
import type { JobRecord, JobStore } from './store.ts';

function parseJob(r: Row): JobRecord {
  const job: JobRecord = {
    id: String(r.id),
    project: String(r.project),
    state: String(r.state) as JobRecord['state'],
    nonce: String(r.nonce),
    createdAt: String(r.created_at),
    updatedAt: String(r.updated_at),
    steps: JSON.parse(String(r.steps)) as JobRecord['steps'],
  };
  if (r.result !== null && r.result !== undefined)
    job.result = JSON.parse(String(r.result)) as JobRecord['result'] & {};
  if (r.host !== null && r.host !== undefined) job.host = String(r.host);
  if (r.runner_key !== null && r.runner_key !== undefined) job.runnerKey = String(r.runner_key);
  return job;
}

/** The jobs table of the embedded store. */
export class SqliteJobStore implements JobStore {
  readonly #db: DatabaseSync;
  constructor(db: DatabaseSync) {
    this.#db = db;
  }

  async create(job: JobRecord): Promise<void> {
    try {
      this.#db
        .prepare(
          'INSERT INTO jobs (id, project, state, nonce, created_at, updated_at, steps, result, host) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
        )
        .run(
          job.id,
          job.project,
          job.state,
          job.nonce,
          job.createdAt,
          job.updatedAt,
          JSON.stringify(job.steps),
          job.result === undefined ? null : JSON.stringify(job.result),
          job.host ?? null,
        );
    } catch (e) {
      if (isUniqueViolation(e)) throw new GatehouseError('CONFLICT', `job ${job.id} already exists`);
      throw storeError(`cannot create job ${job.id}`, e);
    }
  }

  async get(id: string): Promise<JobRecord | undefined> {
    const r = this.#db.prepare('SELECT * FROM jobs WHERE id = ?').get(id) as Row | undefined;
    return r === undefined ? undefined : parseJob(r);
  }

  async update(
    id: string,
    change: Partial<Pick<JobRecord, 'state' | 'steps' | 'result' | 'runnerKey'>>,
  ): Promise<JobRecord> {
    const existing = await this.get(id);
    if (existing === undefined) throw new GatehouseError('NOT_FOUND', `no job ${id}`);
    const next: JobRecord = { ...existing, ...change, updatedAt: new Date().toISOString() };
    this.#db
      .prepare(
        'UPDATE jobs SET state = ?, steps = ?, result = ?, runner_key = ?, updated_at = ? WHERE id = ?',
      )
      .run(
        next.state,
        JSON.stringify(next.steps),
        next.result === undefined ? null : JSON.stringify(next.result),
        next.runnerKey ?? null,
        next.updatedAt,
        id,
      );
    return next;
  }

  async claim(id: string, host: string): Promise<JobRecord> {
    const now = new Date().toISOString();
    // One statement: two hosts racing for the job cannot both see it unclaimed.
    const r = this.#db
      .prepare("UPDATE jobs SET host = ?, updated_at = ? WHERE id = ? AND host IS NULL AND state = 'queued'")
      .run(host, now, id);
    const job = await this.get(id);
    if (job === undefined) throw new GatehouseError('NOT_FOUND', `no job ${id}`);
    if (Number(r.changes) !== 1)
      throw new GatehouseError(
        'CONFLICT',
        job.host === undefined
          ? `job ${id} is ${job.state} and can no longer be claimed`
          : `job ${id} is already claimed by a runner host`,
      );
    return job;
  }

  async list(options: { limit?: number; project?: string } = {}): Promise<JobRecord[]> {
    const limit = options.limit ?? 100;
    const rows = (
      options.project === undefined
        ? this.#db.prepare('SELECT * FROM jobs ORDER BY created_at DESC, id LIMIT ?').all(limit)
        : this.#db
            .prepare('SELECT * FROM jobs WHERE project = ? ORDER BY created_at DESC, id LIMIT ?')
            .all(options.project, limit)
    ) as Row[];
    return rows.map(parseJob);
  }

  async countByState(): Promise<Record<string, number>> {
    const rows = this.#db.prepare('SELECT state, COUNT(*) AS n FROM jobs GROUP BY state').all() as Row[];
    return Object.fromEntries(rows.map((r) => [String(r.state), Number(r.n)]));
  }
}
