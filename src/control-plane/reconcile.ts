/**
 * Reconciliation: what the control plane does, at start-up and then periodically, with jobs that
 * a crash (of the control plane, or of their runner) left unfinished. A decided job whose artifact
 * was placed reaches the state its decision names; a decided job whose placement never happened,
 * and a submitted job that never got a decision, are failed, and the log records why; a job whose
 * runner vanished expires after its deadline. Nothing is signed or placed here: the registry is
 * consulted, never written, so a decision is promoted at most once.
 */

import { isGatehouseError } from '../common/errors.ts';
import type { OutputStaging } from '../gate/staging.ts';
import type { Orchestrator } from '../orchestrator/orchestrator.ts';
import type { ArtifactRegistry } from '../registry/registry.ts';
import type { DecisionRecord, JobRecord, JobState, Store } from '../store/store.ts';
import { decisionEntryBody, type TransparencyLog } from '../tlog/transparency-log.ts';

export interface ReconcileOptions {
  store: Store;
  orchestrator: Orchestrator;
  registry: ArtifactRegistry;
  staging: OutputStaging;
  log: TransparencyLog;
  /** A submitted job untouched this long is no longer being decided by anyone (seconds). */
  submittedGraceSeconds: number;
  /** A queued or running job untouched this long has lost its runner (seconds). */
  jobDeadlineSeconds: number;
}

/** What one pass did, by job id. */
export interface ReconcileReport {
  /** Jobs moved to the final state their placed decision names. */
  completed: string[];
  /** Decided or submitted jobs that could not be completed, failed and logged. */
  failed: string[];
  /** Queued or running jobs past their deadline. */
  expired: string[];
}

const FINAL_OF = { allow: 'allowed', deny: 'denied', quarantine: 'quarantined' } as const;

/** How long a pass's hold on a job it took keeps other instances' passes off it. */
const RECONCILE_LEASE_MS = 120_000;

/** Finishes what a crash left unfinished; see the module comment. */
export class Reconciler {
  readonly #o: ReconcileOptions;
  #running: Promise<ReconcileReport> | undefined;

  constructor(options: ReconcileOptions) {
    this.#o = options;
  }

  /** One pass over the unfinished jobs (a pass already running is joined, not doubled). */
  run(now = new Date()): Promise<ReconcileReport> {
    this.#running ??= this.#pass(now).finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #pass(now: Date): Promise<ReconcileReport> {
    const report: ReconcileReport = { completed: [], failed: [], expired: [] };
    for (const job of await this.#o.store.jobs.listUnfinished()) {
      const idle = (now.getTime() - Date.parse(job.updatedAt)) / 1000;
      const due =
        job.state === 'submitted'
          ? idle >= this.#o.submittedGraceSeconds
          : idle >= this.#o.jobDeadlineSeconds;
      if (!due) continue;
      // Another instance's pass has it (a lease it wrote when it took the job): leave it alone.
      const lease = job.result?.reconciling;
      if (typeof lease === 'string' && Math.abs(now.getTime() - Date.parse(lease)) < RECONCILE_LEASE_MS)
        continue;
      try {
        // Take the job first, from the version listed, writing a lease: of several instances
        // reconciling at once (or the job's own runner coming back), one goes on; the others leave
        // it, whether they listed it before the take (their version is stale) or after (the lease).
        const taken = await this.#take(job, now);
        if (taken === undefined) continue;
        if (taken.state === 'submitted') await this.#settle(taken, report);
        else
          await this.#end(
            taken,
            `expired: no word from its runner for ${Math.round(idle)} s`,
            report.expired,
          );
      } catch (e) {
        // The job moved on meanwhile (its runner or another pass finished it), or the store
        // failed: the next pass looks again.
        process.stderr.write(`gatehouse: reconciling job ${job.id}: ${String(e)}\n`);
      }
    }
    return report;
  }

  /** The job, taken for this pass; undefined when another writer changed it since it was listed. */
  async #take(job: JobRecord, now: Date): Promise<JobRecord | undefined> {
    try {
      return await this.#o.store.jobs.update(
        job.id,
        { result: { ...(job.result ?? {}), reconciling: now.toISOString() } },
        { expect: job },
      );
    } catch (e) {
      if (isGatehouseError(e, 'CONFLICT')) return undefined;
      throw e;
    }
  }

  /** A submitted job: its placed decision is completed; anything short of that fails, logged. */
  async #settle(job: JobRecord, report: ReconcileReport): Promise<void> {
    const [decision] = await this.#o.store.decisions.list({ jobId: job.id, limit: 1 });
    if (decision === undefined) {
      await this.#end(job, 'the control plane stopped before the gate decided', report.failed, true);
      return;
    }
    const area = decision.outcome === 'allow' ? 'promoted' : 'quarantine';
    const placed = await this.#o.registry.inspect(area, job.project, job.id);
    if (placed === undefined) {
      await this.#end(
        job,
        `the control plane stopped after decision ${decision.id} (${decision.outcome}, log #${decision.logIndex}) and before the artifact was placed; nothing was promoted`,
        report.failed,
        true,
        decision,
      );
      return;
    }
    await this.#finalise(job, FINAL_OF[decision.outcome], {
      decisionId: decision.id,
      outcome: decision.outcome,
      placement: placed.manifestDigest,
      reconciled: true,
    });
    report.completed.push(job.id);
  }

  /** Fail a job with its reason (and, for one the gate had taken, a log entry saying so). */
  async #end(
    job: JobRecord,
    reason: string,
    into: string[],
    logged = false,
    decision?: DecisionRecord,
  ): Promise<void> {
    let logIndex: number | undefined;
    if (logged) {
      const entry = await this.#o.log.append(
        decisionEntryBody({
          kind: 'job-failed',
          jobId: job.id,
          project: job.project,
          reason,
          ...(decision === undefined ? {} : { decisionId: decision.id }),
          timestamp: new Date().toISOString(),
        }),
      );
      logIndex = entry.index;
    }
    await this.#finalise(job, 'failed', {
      error: reason,
      reconciled: true,
      ...(logIndex === undefined ? {} : { logIndex }),
    });
    into.push(job.id);
  }

  async #finalise(job: JobRecord, to: JobState, result: Record<string, unknown>): Promise<void> {
    try {
      await this.#o.orchestrator.transition(job.id, to, { result });
    } finally {
      await this.#o.staging.remove(job.id);
    }
  }
}
