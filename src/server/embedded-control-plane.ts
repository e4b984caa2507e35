import type { AttestationAuthority } from '../attestation/authority.ts';
import { toBase64 } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import type { Gate } from '../gate/gate.ts';
import type { Orchestrator } from '../orchestrator/orchestrator.ts';
import type { DecisionRecord, JobRecord, JobStep, Store } from '../store/store.ts';
import type { TransparencyLog } from '../tlog/transparency-log.ts';
import type {
  AttestRequest,
  AttestResult,
  ControlPlane,
  GateResult,
  JobTicket,
  SubmitRequest,
} from './control-plane.ts';
import { Metrics } from './metrics.ts';

export interface EmbeddedControlPlaneOptions {
  store: Store;
  orchestrator: Orchestrator;
  authority: AttestationAuthority;
  gate: Gate;
  log: TransparencyLog;
  trustedRoot: () => Promise<Record<string, unknown>>;
  /** Revokes the token of a job that ended, if it is still live. */
  revokeToken: (token: string) => Promise<void>;
  /** Toolchain binaries every runner measures. */
  toolchain: readonly string[];
}

/**
 * The control plane in-process: jobs, attestation, the gate, and the read side (decisions, log
 * proofs, metrics) that the HTTP API serves.
 */
export class EmbeddedControlPlane implements ControlPlane {
  readonly #o: EmbeddedControlPlaneOptions;
  readonly metrics: Metrics;

  constructor(options: EmbeddedControlPlaneOptions) {
    this.#o = options;
    this.metrics = new Metrics();
  }

  async createJob(request: { project: string }): Promise<JobTicket> {
    const job = await this.#o.orchestrator.createJob(request.project);
    return { jobId: job.id, project: job.project, nonce: job.nonce, toolchain: [...this.#o.toolchain] };
  }

  async attest(request: AttestRequest): Promise<AttestResult> {
    const job = await this.#o.orchestrator.get(request.jobId);
    if (job.state !== 'queued') {
      throw new GatehouseError(
        'CONFLICT',
        `job ${job.id} is ${job.state}; a runner attests once, before it builds`,
      );
    }
    const t0 = performance.now();
    try {
      const issued = await this.#o.authority.attest({
        jobId: job.id,
        nonce: job.nonce,
        runnerKey: request.runnerKey,
        evidence: request.evidence,
      });
      this.metrics.attestation(true, performance.now() - t0);
      await this.#o.orchestrator.transition(job.id, 'running');
      return issued;
    } catch (e) {
      this.metrics.attestation(false, performance.now() - t0);
      throw e;
    }
  }

  async submit(request: SubmitRequest): Promise<GateResult> {
    const result = await this.#o.gate.decide(request);
    this.metrics.decision(result.outcome);
    return result;
  }

  async fail(request: { jobId: string; reason: string; steps: JobStep[]; token?: string }): Promise<void> {
    const job = await this.#o.orchestrator.get(request.jobId);
    if (request.token !== undefined) await this.#o.revokeToken(request.token);
    if (job.state === 'queued' || job.state === 'running' || job.state === 'submitted') {
      await this.#o.orchestrator.transition(job.id, 'failed', {
        steps: request.steps,
        result: { error: request.reason },
      });
    } else {
      await this.#o.orchestrator.recordSteps(job.id, request.steps);
    }
  }

  async finish(request: { jobId: string; steps: JobStep[]; token?: string }): Promise<void> {
    if (request.token !== undefined) await this.#o.revokeToken(request.token);
    await this.#o.orchestrator.recordSteps(request.jobId, request.steps);
  }

  getJob(jobId: string): Promise<JobRecord> {
    return this.#o.orchestrator.get(jobId);
  }

  listJobs(options: { limit: number }): Promise<JobRecord[]> {
    return this.#o.store.jobs.list({ limit: Math.min(options.limit, 1000) });
  }

  listDecisions(options: { limit: number }): Promise<DecisionRecord[]> {
    return this.#o.store.decisions.list({ limit: Math.min(options.limit, 1000) });
  }

  async getDecision(id: string): Promise<DecisionRecord> {
    const d = await this.#o.store.decisions.get(id);
    if (d === undefined) throw new GatehouseError('NOT_FOUND', `no decision ${id}`);
    return d;
  }

  checkpoint(): Promise<string> {
    return this.#o.log.checkpoint();
  }

  /** An entry with its inclusion proof in the tree of `treeSize` (default: current). */
  async logEntry(index: number, treeSize?: number): Promise<Record<string, unknown>> {
    const entry = await this.#o.store.log.get(index);
    if (entry === undefined) throw new GatehouseError('NOT_FOUND', `no log entry ${index}`);
    const proof = await this.#o.log.inclusionProof(index, treeSize);
    return {
      logIndex: index,
      body: toBase64(entry.body),
      integratedTime: entry.integratedTime,
      inclusionProof: {
        treeSize: proof.treeSize,
        rootHash: Buffer.from(proof.rootHash).toString('hex'),
        hashes: proof.hashes.map((h) => Buffer.from(h).toString('hex')),
        checkpoint: proof.checkpoint,
      },
    };
  }

  async consistencyProof(first: number, second: number): Promise<Record<string, unknown>> {
    const p = await this.#o.log.consistencyProof(first, second);
    return {
      first: p.first,
      second: p.second,
      firstRoot: Buffer.from(p.firstRoot).toString('hex'),
      secondRoot: Buffer.from(p.secondRoot).toString('hex'),
      hashes: p.hashes.map((h) => Buffer.from(h).toString('hex')),
    };
  }

  jwks(): Promise<unknown> {
    return Promise.resolve(this.#o.authority.jwks());
  }

  trustedRoot(): Promise<Record<string, unknown>> {
    return this.#o.trustedRoot();
  }

  async metricsText(): Promise<string> {
    return this.metrics.render({
      jobsByState: await this.#o.store.jobs.countByState(),
      decisionsByOutcome: await this.#o.store.decisions.countByOutcome(),
      logSize: await this.#o.log.size(),
      vulnerabilityRecords: await this.#o.store.vulns.count(),
    });
  }
}
