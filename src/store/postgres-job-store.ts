import { GatehouseError } from '../common/errors.ts';
import { bytea, bytes, optional, type PgRow, PgTables } from './postgres-support.ts';
import {
  type BuildLogRecord,
  type BuildLogSummary,
  type JobRecord,
  type JobStore,
  nextUpdatedAt,
} from './store.ts';

function parseLogSummary(r: PgRow): BuildLogSummary {
  return {
    jobId: String(r.job_id),
    sha256: String(r.sha256),
    size: Number(r.size),
    truncated: r.truncated === true,
    createdAt: String(r.created_at),
  };
}

function parseJob(r: PgRow): JobRecord {
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
  const host = optional(r.host);
  if (host !== undefined) job.host = host;
  const runnerKey = optional(r.runner_key);
  if (runnerKey !== undefined) job.runnerKey = runnerKey;
  return job;
}

const json = (v: unknown): string | null => (v === undefined ? null : JSON.stringify(v));

/** The jobs table of the PostgreSQL store. */
export class PostgresJobStore extends PgTables implements JobStore {
  async create(job: JobRecord): Promise<void> {
    await this.query(
      `cannot create job ${job.id}`,
      (sql) => sql`
        INSERT INTO jobs (id, project, state, nonce, created_at, updated_at, steps, result, host)
        VALUES (${job.id}, ${job.project}, ${job.state}, ${job.nonce}, ${job.createdAt}, ${job.updatedAt},
                ${JSON.stringify(job.steps)}, ${json(job.result)}, ${job.host ?? null})`,
      `job ${job.id} already exists`,
    );
  }

  async get(id: string): Promise<JobRecord | undefined> {
    const [r] = await this.query(`cannot read job ${id}`, (sql) => sql`SELECT * FROM jobs WHERE id = ${id}`);
    return r === undefined ? undefined : parseJob(r);
  }

  async update(
    id: string,
    change: Partial<Pick<JobRecord, 'state' | 'steps' | 'result' | 'runnerKey'>>,
    options: { expect?: Pick<JobRecord, 'state' | 'updatedAt'> } = {},
  ): Promise<JobRecord> {
    // Read and write under the row's lock: two instances changing one job never interleave.
    return this.atomically(async (sql) => {
      const [r] = await sql`SELECT * FROM jobs WHERE id = ${id} FOR UPDATE`.catch((e: unknown) => {
        throw new GatehouseError('STORE_ERROR', `cannot read job ${id}`, { cause: e });
      });
      if (r === undefined) throw new GatehouseError('NOT_FOUND', `no job ${id}`);
      const existing = parseJob(r);
      const { expect } = options;
      if (
        expect !== undefined &&
        (existing.state !== expect.state || existing.updatedAt !== expect.updatedAt)
      )
        throw new GatehouseError(
          'CONFLICT',
          `job ${id} changed meanwhile (now ${existing.state}, updated ${existing.updatedAt})`,
        );
      const next: JobRecord = { ...existing, ...change, updatedAt: nextUpdatedAt(existing.updatedAt) };
      await sql`
        UPDATE jobs SET state = ${next.state}, steps = ${JSON.stringify(next.steps)}, result = ${json(next.result)},
          runner_key = ${next.runnerKey ?? null}, updated_at = ${next.updatedAt}
        WHERE id = ${id}`;
      return next;
    });
  }

  async claim(id: string, host: string): Promise<JobRecord> {
    const now = new Date().toISOString();
    // One statement: two hosts (through two instances) racing for the job cannot both see it unclaimed.
    const [claimed] = await this.query(
      `cannot claim job ${id}`,
      (sql) => sql`
        UPDATE jobs SET host = ${host}, updated_at = ${now}
        WHERE id = ${id} AND host IS NULL AND state = 'queued' RETURNING *`,
    );
    if (claimed !== undefined) return parseJob(claimed);
    const job = await this.get(id);
    if (job === undefined) throw new GatehouseError('NOT_FOUND', `no job ${id}`);
    throw new GatehouseError(
      'CONFLICT',
      job.host === undefined
        ? `job ${id} is ${job.state} and can no longer be claimed`
        : `job ${id} is already claimed by a runner host`,
    );
  }

  async listUnfinished(limit = 1000): Promise<JobRecord[]> {
    const rows = await this.query(
      'cannot list unfinished jobs',
      (sql) => sql`
        SELECT * FROM jobs WHERE state IN ('queued', 'running', 'submitted')
        ORDER BY updated_at, id LIMIT ${limit}`,
    );
    return rows.map(parseJob);
  }

  async list(options: { limit?: number; project?: string } = {}): Promise<JobRecord[]> {
    const limit = options.limit ?? 100;
    const { project } = options;
    const rows = await this.query('cannot list jobs', (sql) =>
      project === undefined
        ? sql`SELECT * FROM jobs ORDER BY created_at DESC, id LIMIT ${limit}`
        : sql`SELECT * FROM jobs WHERE project = ${project} ORDER BY created_at DESC, id LIMIT ${limit}`,
    );
    return rows.map(parseJob);
  }

  async countByState(): Promise<Record<string, number>> {
    const rows = await this.query(
      'cannot count jobs',
      (sql) => sql`SELECT state, COUNT(*)::int AS n FROM jobs GROUP BY state`,
    );
    return Object.fromEntries(rows.map((r) => [String(r.state), Number(r.n)]));
  }

  async putLog(log: BuildLogRecord): Promise<void> {
    await this.query(
      `cannot keep the build log of job ${log.jobId}`,
      (sql) => sql`
        INSERT INTO build_logs (job_id, content, sha256, size, truncated, created_at)
        VALUES (${log.jobId}, ${bytea(log.content)}, ${log.sha256}, ${log.size}, ${log.truncated}, ${log.createdAt})`,
      `job ${log.jobId} has a build log already`,
    );
  }

  async getLog(jobId: string): Promise<BuildLogRecord | undefined> {
    const [r] = await this.query(
      `cannot read the build log of job ${jobId}`,
      (sql) => sql`SELECT * FROM build_logs WHERE job_id = ${jobId}`,
    );
    return r === undefined ? undefined : { ...parseLogSummary(r), content: bytes(r.content) };
  }

  async logSummary(jobId: string): Promise<BuildLogSummary | undefined> {
    const [r] = await this.query(
      `cannot read the build log of job ${jobId}`,
      (sql) =>
        sql`SELECT job_id, sha256, size, truncated, created_at FROM build_logs WHERE job_id = ${jobId}`,
    );
    return r === undefined ? undefined : parseLogSummary(r);
  }
}
