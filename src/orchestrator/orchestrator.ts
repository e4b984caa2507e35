import { randomBytes, randomUUID } from 'node:crypto';
import { GatehouseError, isGatehouseError } from '../common/errors.ts';
import type { JobRecord, JobState, JobStep, Store } from '../store/store.ts';
import { assertTransition } from './job-state.ts';

const PROJECT_RE = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/**
 * Creates jobs and moves them through the state machine, recording each lifecycle step. The
 * nonce a job is created with binds its runner's evidence to this job and no other.
 */
export class Orchestrator {
  readonly #store: Store;

  constructor(options: { store: Store }) {
    this.#store = options.store;
  }

  /**
   * Open a job, claimed by `host` when given (else it waits for a host to claim it).
   * @throws GatehouseError BAD_INPUT for an invalid project name
   */
  async createJob(project: string, host?: string): Promise<JobRecord> {
    if (!PROJECT_RE.test(project)) {
      throw new GatehouseError('BAD_INPUT', `project name '${project}' must match ${PROJECT_RE.source}`);
    }
    const now = new Date().toISOString();
    const job: JobRecord = {
      id: `job-${randomUUID()}`,
      project,
      state: 'queued',
      nonce: randomBytes(32).toString('base64'),
      createdAt: now,
      updatedAt: now,
      steps: [],
      ...(host === undefined ? {} : { host }),
    };
    await this.#store.jobs.create(job);
    return job;
  }

  /** Claim a queued, unclaimed job for a host: once. @throws GatehouseError NOT_FOUND, CONFLICT */
  claim(jobId: string, host: string): Promise<JobRecord> {
    return this.#store.jobs.claim(jobId, host);
  }

  /**
   * Bind the job key its first attestation presented (thumbprint); from then on only that key
   * speaks for the job. @throws GatehouseError CONFLICT when another key is bound already
   */
  async bindRunnerKey(jobId: string, thumbprint: string): Promise<JobRecord> {
    const job = await this.get(jobId);
    if (job.runnerKey === thumbprint) return job;
    if (job.runnerKey !== undefined)
      throw new GatehouseError('CONFLICT', `job ${jobId} is bound to another runner key`);
    // From the version read: of two attestations binding different keys at once, one wins.
    return this.#store.jobs.update(jobId, { runnerKey: thumbprint }, { expect: job });
  }

  /** @throws GatehouseError NOT_FOUND */
  async get(jobId: string): Promise<JobRecord> {
    const job = await this.#store.jobs.get(jobId);
    if (job === undefined) throw new GatehouseError('NOT_FOUND', `no job ${jobId}`);
    return job;
  }

  /**
   * Move a job to `to`, adding steps and a result.
   * @throws GatehouseError NOT_FOUND, CONFLICT (not a transition of the machine)
   */
  async transition(
    jobId: string,
    to: JobState,
    change: { steps?: JobStep[]; result?: Record<string, unknown> } = {},
  ): Promise<JobRecord> {
    return this.#change(jobId, (job) => {
      assertTransition(jobId, job.state, to);
      const update: Partial<Pick<JobRecord, 'state' | 'steps' | 'result'>> = {
        state: to,
        steps: mergeSteps(job.steps, change.steps ?? []),
      };
      if (change.result !== undefined) update.result = { ...job.result, ...change.result };
      return update;
    });
  }

  /** Record steps without changing state (e.g. destroy and revoke, after the decision). */
  async recordSteps(jobId: string, steps: JobStep[]): Promise<JobRecord> {
    return this.#change(jobId, (job) => ({ steps: mergeSteps(job.steps, steps) }));
  }

  /**
   * Change a job from the version read: when another writer (another instance, the reconciler)
   * changed it meanwhile, read it again and decide again, so that no change is lost and no
   * transition is made from a state the job has left.
   */
  async #change(
    jobId: string,
    decide: (job: JobRecord) => Partial<Pick<JobRecord, 'state' | 'steps' | 'result'>>,
  ): Promise<JobRecord> {
    for (let attempt = 1; ; attempt++) {
      const job = await this.get(jobId);
      const update = decide(job);
      try {
        return await this.#store.jobs.update(jobId, update, { expect: job });
      } catch (e) {
        if (!isGatehouseError(e, 'CONFLICT') || attempt >= CHANGE_ATTEMPTS) throw e;
      }
    }
  }
}

/** How often a job change is decided again after losing a race with another writer. */
const CHANGE_ATTEMPTS = 5;

/** Steps are keyed by name: a step reported again replaces the earlier report. */
function mergeSteps(existing: JobStep[], added: JobStep[]): JobStep[] {
  const byName = new Map(existing.map((s) => [s.name, s]));
  for (const s of added) byName.set(s.name, s);
  return [...byName.values()];
}
