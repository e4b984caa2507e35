import { GatehouseError } from '../common/errors.ts';
import { blob, type Row, SqliteTables } from './sqlite-support.ts';
import {
  type BuildLogRecord,
  type BuildLogSummary,
  type JobRecord,
  type JobStore,
  nextUpdatedAt,
} from './store.ts';

function parseLogSummary(r: Row): BuildLogSummary {
  return {
    jobId: String(r.job_id),
    sha256: String(r.sha256),
    size: Number(r.size),
    truncated: Number(r.truncated) === 1,
    createdAt: String(r.created_at),
  };
}

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
export class SqliteJobStore extends SqliteTables implements JobStore {
  async create(job: JobRecord): Promise<void> {
    this.insertNew(
      'INSERT INTO jobs (id, project, state, nonce, created_at, updated_at, steps, result, host) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
      [
        job.id,
        job.project,
        job.state,
        job.nonce,
        job.createdAt,
        job.updatedAt,
        JSON.stringify(job.steps),
        job.result === undefined ? null : JSON.stringify(job.result),
        job.host ?? null,
      ],
      { conflict: `job ${job.id} already exists`, failure: `cannot create job ${job.id}` },
    );
  }

  async get(id: string): Promise<JobRecord | undefined> {
    const r = this.row('SELECT * FROM jobs WHERE id = ?', id);
    return r === undefined ? undefined : parseJob(r);
  }

  async update(
    id: string,
    change: Partial<Pick<JobRecord, 'state' | 'steps' | 'result' | 'runnerKey'>>,
    options: { expect?: Pick<JobRecord, 'state' | 'updatedAt'> } = {},
  ): Promise<JobRecord> {
    // Read and write with no await between them: nothing in this process interleaves.
    const r = this.row('SELECT * FROM jobs WHERE id = ?', id);
    if (r === undefined) throw new GatehouseError('NOT_FOUND', `no job ${id}`);
    const existing = parseJob(r);
    const { expect } = options;
    if (expect !== undefined && (existing.state !== expect.state || existing.updatedAt !== expect.updatedAt))
      throw new GatehouseError(
        'CONFLICT',
        `job ${id} changed meanwhile (now ${existing.state}, updated ${existing.updatedAt})`,
      );
    const next: JobRecord = { ...existing, ...change, updatedAt: nextUpdatedAt(existing.updatedAt) };
    // The write names the version read: one another process wrote meanwhile makes it change nothing.
    const changed = this.run(
      'UPDATE jobs SET state = ?, steps = ?, result = ?, runner_key = ?, updated_at = ? WHERE id = ? AND updated_at = ?',
      next.state,
      JSON.stringify(next.steps),
      next.result === undefined ? null : JSON.stringify(next.result),
      next.runnerKey ?? null,
      next.updatedAt,
      id,
      existing.updatedAt,
    );
    if (changed !== 1)
      throw new GatehouseError('CONFLICT', `job ${id} was changed by another process meanwhile`);
    return next;
  }

  async claim(id: string, host: string): Promise<JobRecord> {
    const now = new Date().toISOString();
    // One statement: two hosts racing for the job cannot both see it unclaimed.
    const r = this.db
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

  async listUnfinished(limit = 1000): Promise<JobRecord[]> {
    return this.rows(
      "SELECT * FROM jobs WHERE state IN ('queued', 'running', 'submitted') ORDER BY updated_at, id LIMIT ?",
      limit,
    ).map(parseJob);
  }

  async list(options: { limit?: number; project?: string } = {}): Promise<JobRecord[]> {
    return this.listed('jobs', 'created_at DESC, id', options.limit ?? 100, {
      column: 'project',
      value: options.project,
    }).map(parseJob);
  }

  async countByState(): Promise<Record<string, number>> {
    return this.countBy('jobs', 'state');
  }

  async putLog(log: BuildLogRecord): Promise<void> {
    this.insertNew(
      'INSERT INTO build_logs (job_id, content, sha256, size, truncated, created_at) VALUES (?, ?, ?, ?, ?, ?)',
      [log.jobId, log.content, log.sha256, log.size, log.truncated ? 1 : 0, log.createdAt],
      {
        conflict: `job ${log.jobId} has a build log already`,
        failure: `cannot keep the build log of job ${log.jobId}`,
      },
    );
  }

  async getLog(jobId: string): Promise<BuildLogRecord | undefined> {
    const r = this.row('SELECT * FROM build_logs WHERE job_id = ?', jobId);
    return r === undefined ? undefined : { ...parseLogSummary(r), content: blob(r.content) };
  }

  async logSummary(jobId: string): Promise<BuildLogSummary | undefined> {
    const r = this.row(
      'SELECT job_id, sha256, size, truncated, created_at FROM build_logs WHERE job_id = ?',
      jobId,
    );
    return r === undefined ? undefined : parseLogSummary(r);
  }
}
