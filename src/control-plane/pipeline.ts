/**
 * The one pipeline a job goes through on the control plane, top to bottom:
 *
 *   create → attest → submit → verify token, proof and outputs → source → policy → decide → log
 *          → sign → promote (or quarantine) → finish
 *
 * This is the only place that moves a job through its state machine (src/orchestrator). The gate
 * (src/gate) does each check and each effect; the attestation authority (src/attestation)
 * appraises evidence and issues, verifies and revokes tokens.
 */
import { randomUUID } from 'node:crypto';
import type { AttestationAuthority } from '../attestation/authority.ts';
import { CHECKS, EvidenceRejectedError, failedChecksOf, refusedJobOf } from '../attestation/checks.ts';
import type { Challenge } from '../attestation/tpm-verifier.ts';
import { describeError, GatehouseError } from '../common/errors.ts';
import type { CheckedSubmission, Gate, LoggedDecision } from '../gate/gate.ts';
import type { GateResult, SubmitRequest } from '../gate/submission.ts';
import type { Orchestrator } from '../orchestrator/orchestrator.ts';
import type { AttestationRefusalRecord, JobRecord, JobStep, Store } from '../store/store.ts';
import type { AttestRequest, AttestResult, ControlPlane, JobTicket } from './control-plane.ts';
import type { Metrics } from './metrics.ts';

export interface JobPipelineOptions {
  store: Store;
  orchestrator: Orchestrator;
  authority: AttestationAuthority;
  gate: Gate;
  metrics: Metrics;
  /** Toolchain binaries every runner measures. */
  toolchain: readonly string[];
  /** Origins the fetch phase's egress proxy may reach. */
  egressAllow: readonly string[];
  /**
   * The attestation the control plane accepts (its configuration, never the runner's say): `tpm`
   * refuses software evidence at every entry point.
   */
  attestation: 'tpm' | 'software';
}

/** The control plane's side of a job, as the runner agent's port (`ControlPlane`) sees it. */
export class JobPipeline implements ControlPlane {
  readonly #o: JobPipelineOptions;

  constructor(options: JobPipelineOptions) {
    this.#o = options;
  }

  /** Open a job; its nonce binds the runner's evidence to this job and no other. */
  async createJob(request: { project: string }): Promise<JobTicket> {
    const job = await this.#o.orchestrator.createJob(request.project);
    return {
      jobId: job.id,
      project: job.project,
      nonce: job.nonce,
      toolchain: [...this.#o.toolchain],
      egressAllow: [...this.#o.egressAllow],
    };
  }

  /** Software-measurement evidence for a queued job: appraised, then the job runs. */
  async attest(request: AttestRequest): Promise<AttestResult> {
    const job = await this.getJob(request.jobId);
    if (job.state !== 'queued') {
      throw new GatehouseError(
        'CONFLICT',
        `job ${job.id} is ${job.state}; a runner attests once, before it builds`,
      );
    }
    const issued = await this.#appraise('software', job.id, async () => {
      // The mode belongs to the control plane: on a TPM control plane a self-reported baseline
      // is refused before it is even read, whoever sends it.
      if (this.#o.attestation === 'tpm')
        throw new EvidenceRejectedError(
          [
            {
              check: CHECKS.attestationMode,
              message: 'this control plane requires TPM attestation; software evidence is refused',
            },
          ],
          `job ${job.id}`,
          job.id,
        );
      return this.#o.authority.attest({
        jobId: job.id,
        nonce: job.nonce,
        runnerKey: request.runnerKey,
        evidence: request.evidence,
      });
    });
    await this.#o.orchestrator.transition(job.id, 'running');
    return issued;
  }

  /** TPM path, step 1: check the EK certificate and AK, return a nonce and a credential. */
  attestationChallenge(body: unknown): Promise<Challenge> {
    // A challenge is half an attestation: only its refusals count; the evidence that follows is
    // the attempt that succeeds or fails.
    return this.#appraise('challenge', undefined, () => this.#o.authority.challenge(body), {
      countSuccess: false,
    });
  }

  /**
   * TPM path, step 2: verify a quote and its event log for a queued job (or a running one
   * re-attesting before its token expires) and issue a token; a queued job then runs.
   */
  async attestationEvidence(body: unknown): Promise<AttestResult & { jobId: string }> {
    const issued = await this.#appraise('evidence', undefined, () =>
      this.#o.authority.evidence(body, async (jobId) => {
        const job = await this.getJob(jobId);
        if (job.state !== 'queued' && job.state !== 'running') {
          throw new GatehouseError('CONFLICT', `job ${job.id} is ${job.state}`);
        }
        return { nonce: job.nonce };
      }),
    );
    const job = await this.getJob(issued.jobId);
    if (job.state === 'queued') await this.#o.orchestrator.transition(job.id, 'running');
    return issued;
  }

  /**
   * The gate, step by step. Every submission that reaches it is decided and logged, refusals
   * included; only an allowed one is signed and promoted.
   * @throws GatehouseError NOT_FOUND (no such job), CONFLICT (the job is not waiting for the gate)
   */
  async submit(request: SubmitRequest): Promise<GateResult> {
    const { gate } = this.#o;
    const job = await this.#enterGate(request);
    const checked = await gate.verify(request, job);
    await gate.verifySource(checked, job);
    const verdict = await gate.judge(job, checked);
    const decision = await gate.record(job, checked, verdict);
    await gate.retireToken(checked);
    try {
      const result =
        verdict.outcome === 'allow' && checked.claims !== undefined
          ? await this.#approve(job, checked, decision)
          : await this.#hold(job, checked, decision);
      this.#o.metrics.decision(result.outcome);
      return result;
    } catch (e) {
      await this.#o.orchestrator.transition(job.id, 'failed', {
        result: { decisionId: decision.decisionId, error: describeError(e) },
      });
      throw e;
    }
  }

  /** End a job that could not reach the gate, revoking its token. */
  async fail(request: { jobId: string; reason: string; steps: JobStep[]; token?: string }): Promise<void> {
    const job = await this.getJob(request.jobId);
    this.#o.metrics.runnerJob(request.steps, request.reason);
    if (request.token !== undefined) await this.#o.authority.revoke(request.token);
    if (job.state === 'queued' || job.state === 'running' || job.state === 'submitted') {
      await this.#o.orchestrator.transition(job.id, 'failed', {
        steps: request.steps,
        result: { error: request.reason },
      });
    } else {
      await this.#o.orchestrator.recordSteps(job.id, request.steps);
    }
  }

  /** Record the steps that ran after the decision (destroy, revoke) and revoke the token. */
  async finish(request: { jobId: string; steps: JobStep[]; token?: string }): Promise<void> {
    this.#o.metrics.runnerJob(request.steps);
    if (request.token !== undefined) await this.#o.authority.revoke(request.token);
    await this.#o.orchestrator.recordSteps(request.jobId, request.steps);
  }

  getJob(jobId: string): Promise<JobRecord> {
    return this.#o.orchestrator.get(jobId);
  }

  /** Only a running job (its runner attested) can be submitted, once. */
  async #enterGate(request: SubmitRequest): Promise<JobRecord> {
    const job = await this.getJob(request.submission.jobId);
    if (job.state !== 'running') {
      throw new GatehouseError(
        'CONFLICT',
        `job ${job.id} is ${job.state}; only a running job can be submitted`,
      );
    }
    await this.#o.orchestrator.transition(job.id, 'submitted', { steps: request.submission.steps });
    return job;
  }

  /** Allowed: sign, promote, and the job is allowed. */
  async #approve(job: JobRecord, checked: CheckedSubmission, decision: LoggedDecision): Promise<GateResult> {
    const { gate } = this.#o;
    const approval = { policyDigest: decision.result.policyDigest, at: decision.createdAt };
    const signed = await gate.sign(gate.held(checked), approval);
    const placement = await gate.promote(job, checked, decision, signed);
    await this.#o.orchestrator.transition(job.id, 'allowed', {
      result: { decisionId: decision.decisionId, outcome: 'allow', placement: placement.reference },
    });
    return { ...decision.result, ...signed, placement };
  }

  /** Denied or quarantined: the artifact goes to quarantine, and the job ends so. */
  async #hold(job: JobRecord, checked: CheckedSubmission, decision: LoggedDecision): Promise<GateResult> {
    const { outcome } = decision.result;
    const placement = await this.#o.gate.quarantine(job, checked, decision);
    await this.#o.orchestrator.transition(job.id, outcome === 'quarantine' ? 'quarantined' : 'denied', {
      result: { decisionId: decision.decisionId, outcome, placement: placement.reference },
    });
    return { ...decision.result, placement };
  }

  /** Run one appraisal, counting it and keeping a refusal's failed checks for audit. */
  async #appraise<T>(
    stage: AttestationRefusalRecord['stage'],
    jobId: string | undefined,
    appraise: () => Promise<T>,
    options: { countSuccess: boolean } = { countSuccess: true },
  ): Promise<T> {
    const t0 = performance.now();
    try {
      const result = await appraise();
      if (options.countSuccess) this.#o.metrics.attestation(true, performance.now() - t0);
      return result;
    } catch (e) {
      this.#o.metrics.attestation(false, performance.now() - t0, failedChecksOf(e));
      await this.#recordRefusal(stage, e, jobId ?? refusedJobOf(e));
      throw e;
    }
  }

  /** Keep a refusal for audit; a store failure here must not hide the refusal itself. */
  async #recordRefusal(stage: AttestationRefusalRecord['stage'], e: unknown, jobId?: string): Promise<void> {
    const failedChecks = failedChecksOf(e);
    if (failedChecks === undefined) return;
    try {
      await this.#o.store.attestation.addRefusal({
        id: randomUUID(),
        stage,
        ...(jobId === undefined ? {} : { jobId }),
        failedChecks: failedChecks.map((f) => ({ check: f.check, message: f.message })),
        createdAt: new Date().toISOString(),
      });
    } catch (cause) {
      process.stderr.write(`gatehouse: cannot record an attestation refusal: ${String(cause)}\n`);
    }
  }
}
