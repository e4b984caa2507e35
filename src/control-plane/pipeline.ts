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
import { createHash, randomUUID } from 'node:crypto';
import type { AlertSink } from '../alerts/alert-event.ts';
import type { AttestationAuthority } from '../attestation/authority.ts';
import { CHECKS, EvidenceRejectedError, failedChecksOf, refusedJobOf } from '../attestation/checks.ts';
import type { HostAttestation } from '../attestation/host-attestation.ts';
import type { HostEnrollment, HostRegistry } from '../attestation/hosts.ts';
import {
  type ExpectedRequest,
  isJobProof,
  JOB_REQUEST_TYP,
  jobProofKey,
  verifyRequestProof,
} from '../attestation/request-proof.ts';
import type { Challenge } from '../attestation/tpm-verifier.ts';
import { sha256Hex } from '../common/encoding.ts';
import { describeError, GatehouseError } from '../common/errors.ts';
import { SecretMasker } from '../common/secret-mask.ts';
import type { CheckedSubmission, Gate, LoggedDecision } from '../gate/gate.ts';
import type { OutputStaging } from '../gate/staging.ts';
import type { GateResult, SubmitRequest } from '../gate/submission.ts';
import type { Orchestrator } from '../orchestrator/orchestrator.ts';
import type { ProjectRegistration, ProjectRegistry } from '../policy/projects.ts';
import { BUILD_LOG_MAX_BYTES } from '../runner/build-log.ts';
import { environmentComponents } from '../sbom/environment.ts';
import type { AttestationRefusalRecord, JobRecord, Store } from '../store/store.ts';
import type {
  AttestRequest,
  AttestResult,
  ClaimJobRequest,
  ControlPlane,
  CreateJobRequest,
  EnvironmentSbomRequest,
  FailRequest,
  FinishRequest,
  HostQuoteBody,
  HostQuoteChallenge,
  HostQuoteResult,
  JobTicket,
  LogUploadRequest,
  LogUploadResult,
  UploadRequest,
  UploadResult,
} from './control-plane.ts';
import type { Metrics } from './metrics.ts';
import { ProvisioningWatch } from './provisioning-watch.ts';

/** The largest build-environment SBOM received (a full desktop image lists a few thousand packages). */
const MAX_ENVIRONMENT_SBOM_BYTES = 32 * 1024 * 1024;

export interface JobPipelineOptions {
  store: Store;
  orchestrator: Orchestrator;
  authority: AttestationAuthority;
  gate: Gate;
  metrics: Metrics;
  /** The enrolled runner hosts: who may claim and attest jobs. */
  hosts: HostRegistry;
  /** The registered projects: which names may have jobs, and which pools may build them. */
  projects: ProjectRegistry;
  /** Where outputs wait for the gate. */
  staging: OutputStaging;
  /** Toolchain binaries every runner measures. */
  toolchain: readonly string[];
  /** Origins the fetch phase's egress proxy may reach. */
  egressAllow: readonly string[];
  /**
   * The attestation the control plane accepts (its configuration, never the runner's say): `tpm`
   * refuses software evidence at every entry point.
   */
  attestation: 'tpm' | 'software';
  /**
   * Secret values the control plane holds (the operator's API token, registry passwords), masked
   * in every build log it keeps whatever the runner masked.
   */
  secrets?: readonly string[];
  /** Told of each deny, quarantine and attestation refusal (src/alerts). */
  alerts?: AlertSink;
  /**
   * A host's standing from host attestation: a quarantined or revoked host claims no job (its
   * vTPMs would be refused anyway; it is told at once).
   */
  hostStanding?: (
    host: string,
  ) => Promise<{ readonly check: string | undefined; readonly problem: string | undefined }>;
  /** Host attestation, for hosts that quote their boot state over the API. */
  hostAttestation?: HostAttestation;
}

/** The control plane's side of a job, as the runner agent's port (`ControlPlane`) sees it. */
export class JobPipeline implements ControlPlane {
  readonly #o: JobPipelineOptions;
  readonly #masker: SecretMasker;
  readonly #watch: ProvisioningWatch;

  constructor(options: JobPipelineOptions) {
    this.#o = options;
    this.#masker = new SecretMasker(options.secrets ?? []);
    this.#watch = new ProvisioningWatch({ jobs: options.store.jobs });
  }

  /** A host's signed request, verified; a refusal of an unenrolled or revoked host is told. */
  async #host(proof: string, expected: ExpectedRequest): Promise<{ host: HostEnrollment }> {
    try {
      return await this.#o.hosts.verifyRequest(proof, expected);
    } catch (e) {
      const message = e instanceof GatehouseError ? e.message : '';
      if (this.#o.alerts !== undefined && /is not enrolled|is revoked/.test(message)) {
        const event = this.#watch.unenrolled(expected.act, message);
        if (event !== undefined) await this.#o.alerts(event);
      }
      throw e;
    }
  }

  /**
   * Open a job for a registered project; claimed by the host whose proof it carries, or
   * unclaimed (the operator's) without one.
   * @throws GatehouseError NOT_FOUND (not registered), UNAUTHORIZED (a proof that does not verify,
   *   a host outside the project's pools)
   */
  async createJob(request: CreateJobRequest, proof?: string): Promise<JobTicket> {
    const project = await this.#o.projects.require(request.project);
    let host: HostEnrollment | undefined;
    if (proof !== undefined) {
      host = (await this.#host(proof, { act: 'create', request })).host;
      allowedToBuild(project, host);
    }
    const ticket = this.#ticket(await this.#o.orchestrator.createJob(project.name, host?.name));
    if (this.#o.alerts !== undefined) {
      const surge = await this.#watch.afterCreate(project.name).catch(() => undefined);
      if (surge !== undefined) await this.#o.alerts(surge);
    }
    return ticket;
  }

  /** A host asks whether it must quote its boot state, and for a nonce when it must. */
  async hostQuoteChallenge(proof: string): Promise<HostQuoteChallenge> {
    const { host } = await this.#o.hosts.verifyRequest(proof, { act: 'host-quote', request: {} });
    if (this.#o.hostAttestation === undefined)
      throw new GatehouseError('BAD_CONFIG', 'this control plane does not attest hosts');
    return this.#o.hostAttestation.quoteChallenge(host);
  }

  /** A host's boot-state quote, appraised against its enrollment and kept. */
  async hostQuote(body: HostQuoteBody, proof: string): Promise<HostQuoteResult> {
    const { host } = await this.#o.hosts.verifyRequest(proof, { act: 'host-quote', request: body });
    if (this.#o.hostAttestation === undefined)
      throw new GatehouseError('BAD_CONFIG', 'this control plane does not attest hosts');
    const r = await this.#o.hostAttestation.submitQuote(host, body);
    return {
      host: r.host,
      status: r.status,
      quotedAt: r.quotedAt,
      ...(r.reason === undefined ? {} : { reason: r.reason }),
    };
  }

  /** A host claims a queued job: once. @throws GatehouseError UNAUTHORIZED, NOT_FOUND, CONFLICT */
  async claimJob(request: ClaimJobRequest, proof: string): Promise<JobTicket> {
    const job = await this.getJob(request.jobId);
    const { host } = await this.#host(proof, { act: 'claim', job: job.id, request });
    allowedToBuild(await this.#o.projects.require(job.project), host);
    const standing = host.tpm === undefined ? undefined : await this.#o.hostStanding?.(host.name);
    if (standing?.check === CHECKS.hostQuarantined || standing?.check === CHECKS.hostUntrusted)
      throw new GatehouseError(
        'UNAUTHORIZED',
        `runner host ${host.name} may not claim jobs: ${standing.problem ?? ''}`,
      );
    return this.#ticket(await this.#o.orchestrator.claim(job.id, host.name));
  }

  /**
   * Software-measurement evidence for a queued job, from the host that claimed it: accepted only
   * when both the control plane and the host's enrollment say `software`; then the job runs.
   */
  async attest(request: AttestRequest, proof: string): Promise<AttestResult> {
    const job = await this.getJob(request.jobId);
    if (job.state !== 'queued') {
      throw new GatehouseError(
        'CONFLICT',
        `job ${job.id} is ${job.state}; a runner attests once, before it builds`,
      );
    }
    const host = await this.#claimer(job, { act: 'attest', job: job.id, request }, proof);
    const issued = await this.#appraise('software', job.id, async () => {
      // The mode belongs to the control plane and the security role: a self-reported baseline
      // is refused before it is even read unless both declared this host's pool software.
      const refusal = softwareRefusal(this.#o.attestation, host);
      if (refusal !== undefined)
        throw new EvidenceRejectedError(
          [{ check: CHECKS.attestationMode, message: refusal }],
          `job ${job.id}`,
          job.id,
        );
      return this.#o.authority.attest({
        jobId: job.id,
        nonce: job.nonce,
        runnerKey: request.runnerKey,
        evidence: request.evidence,
        runner: { host: host.name, pool: host.pool },
        requireCi: host.attestation === 'ci',
        ...(host.ci === undefined ? {} : { ciClaims: host.ci.claims }),
      });
    });
    await this.#bindRunnerKey(job.id, issued.token);
    await this.#o.orchestrator.transition(job.id, 'running');
    return issued;
  }

  /** TPM path, step 1: check the EK certificate and AK, return a nonce and a credential. */
  async attestationChallenge(body: unknown, proof: string): Promise<Challenge> {
    const jobId = (body as { job_id?: unknown } | null)?.job_id;
    if (typeof jobId === 'string') {
      await this.#claimer(await this.getJob(jobId), { act: 'challenge', job: jobId, request: body }, proof);
    } else {
      await this.#host(proof, { act: 'challenge', request: body });
    }
    // A challenge is half an attestation: only its refusals count; the evidence that follows is
    // the attempt that succeeds or fails.
    return this.#appraise('challenge', undefined, () => this.#o.authority.challenge(body), {
      countSuccess: false,
    });
  }

  /**
   * TPM path, step 2: verify a quote and its event log for a queued job (or a running one
   * re-attesting before its token expires) of the host that claimed it, and issue a token; a
   * queued job then runs.
   */
  async attestationEvidence(body: unknown, proof: string): Promise<AttestResult & { jobId: string }> {
    const { host } = await this.#host(proof, { act: 'evidence', request: body });
    const issued = await this.#appraise('evidence', undefined, () =>
      this.#o.authority.evidence(body, async (jobId) => {
        const job = await this.getJob(jobId);
        if (job.state !== 'queued' && job.state !== 'running') {
          throw new GatehouseError('CONFLICT', `job ${job.id} is ${job.state}`);
        }
        if (job.host !== host.name) throw new GatehouseError('UNAUTHORIZED', notClaimer(job, host));
        return {
          nonce: job.nonce,
          runner: { host: host.name, pool: host.pool },
          requireCi: host.attestation === 'ci',
          ...(host.ci === undefined ? {} : { ciClaims: host.ci.claims }),
          ...(job.runnerKey === undefined ? {} : { runnerKey: job.runnerKey }),
        };
      }),
    );
    await this.#bindRunnerKey(issued.jobId, issued.token);
    const job = await this.getJob(issued.jobId);
    if (job.state === 'queued') await this.#o.orchestrator.transition(job.id, 'running');
    return issued;
  }

  /**
   * Receive one output of a running, attested job from its job key: streamed into the staging
   * area under the digest computed here.
   * @throws GatehouseError CONFLICT (not running), UNAUTHORIZED, OUTPUT_REJECTED (too large)
   */
  async uploadOutput(
    request: UploadRequest,
    content: string | NodeJS.ReadableStream,
    proof: string,
  ): Promise<UploadResult> {
    const job = await this.getJob(request.jobId);
    if (job.state !== 'running' || job.runnerKey === undefined)
      throw new GatehouseError(
        'CONFLICT',
        `job ${job.id} is ${job.state}; outputs are received from an attested runner`,
      );
    await this.#jobSpeaker(job, { act: 'upload', job: job.id, request }, proof);
    const staged = await this.#o.staging.receive(job.id, request.name, content);
    return { sha256: staged.sha256, size: staged.size };
  }

  /** Whether the build-environment SBOM with this digest is kept. */
  async environmentSbomKnown(digest: string): Promise<boolean> {
    return (await this.#o.store.policies.environmentSbom(digest)) !== undefined;
  }

  /**
   * Keep the SBOM of a running, attested job's build environment, from its job key: under the
   * digest computed here, which must be the one the request names.
   * @throws GatehouseError CONFLICT (not running), UNAUTHORIZED, BAD_INPUT (digest, size, not an SBOM)
   */
  async uploadEnvironmentSbom(request: EnvironmentSbomRequest, text: string, proof: string): Promise<void> {
    const job = await this.getJob(request.jobId);
    if (job.state !== 'running' || job.runnerKey === undefined)
      throw new GatehouseError(
        'CONFLICT',
        `job ${job.id} is ${job.state}; a build environment is received from an attested runner`,
      );
    await this.#jobSpeaker(job, { act: 'environment', job: job.id, request }, proof);
    if (Buffer.byteLength(text) > MAX_ENVIRONMENT_SBOM_BYTES)
      throw new GatehouseError(
        'BAD_INPUT',
        `the build environment SBOM is larger than ${MAX_ENVIRONMENT_SBOM_BYTES} bytes`,
      );
    const digest = `sha256:${createHash('sha256').update(text).digest('hex')}`;
    if (digest !== request.digest)
      throw new GatehouseError('BAD_INPUT', `the build environment SBOM is ${digest}, not ${request.digest}`);
    // Read as an SBOM now, so that the gate never meets a document it cannot read.
    environmentComponents(text, digest);
    await this.#o.store.policies.putEnvironmentSbom({
      digest,
      document: text,
      createdAt: new Date().toISOString(),
    });
  }

  /**
   * Keep the build log of a running, attested job, from its job key, once. The log is
   * informational and what the runner says about it is not believed: the bytes must be the ones
   * the request names, no more than the bound, and the control plane masks its own secrets in
   * them before it keeps them; the digest it answers (and the provenance names) is of what it kept.
   * @throws GatehouseError CONFLICT (not running, or a log already kept), UNAUTHORIZED, BAD_INPUT
   */
  async uploadLog(request: LogUploadRequest, content: Uint8Array, proof: string): Promise<LogUploadResult> {
    const job = await this.getJob(request.jobId);
    if (job.state !== 'running' || job.runnerKey === undefined)
      throw new GatehouseError(
        'CONFLICT',
        `job ${job.id} is ${job.state}; a build log is received from an attested runner before it submits`,
      );
    await this.#jobSpeaker(job, { act: 'log', job: job.id, request }, proof);
    if (content.length > BUILD_LOG_MAX_BYTES)
      throw new GatehouseError(
        'BAD_INPUT',
        `the build log is ${content.length} bytes, more than the bound of ${BUILD_LOG_MAX_BYTES}`,
      );
    if (content.length !== request.size || sha256Hex(content) !== request.sha256)
      throw new GatehouseError(
        'BAD_INPUT',
        'the build log differs from the digest and size its request names',
      );
    const kept = this.#masker.mask(content);
    const record = {
      jobId: job.id,
      content: new Uint8Array(kept),
      sha256: sha256Hex(kept),
      size: kept.length,
      truncated: request.truncated,
      createdAt: new Date().toISOString(),
    };
    await this.#o.store.jobs.putLog(record);
    return { sha256: record.sha256, size: record.size, truncated: record.truncated };
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
    await gate.catalog(checked);
    await gate.verifySource(checked, job);
    await gate.checkVulnerabilityData(checked);
    const verdict = await gate.judge(job, checked);
    const decision = await gate.record(job, checked, verdict);
    await gate.retireToken(checked);
    try {
      const result =
        verdict.outcome === 'allow' && checked.claims !== undefined
          ? await this.#approve(job, checked, decision)
          : await this.#hold(job, checked, decision);
      this.#o.metrics.decision(result.outcome);
      if (result.outcome !== 'allow') {
        await this.#o.alerts?.({
          type:
            result.outcome === 'deny'
              ? 'dev.gatehouse.decision.denied'
              : 'dev.gatehouse.decision.quarantined',
          subject: `decisions/${decision.decisionId}`,
          data: {
            ...{ decisionId: decision.decisionId, jobId: job.id, project: job.project },
            ...{ outcome: result.outcome, policyDigest: result.policyDigest, logIndex: result.logIndex },
            ...{ reasons: result.reasons, placement: result.placement.reference },
            ...(job.host === undefined ? {} : { host: job.host }),
          },
        });
      }
      return result;
    } catch (e) {
      await this.#o.orchestrator.transition(job.id, 'failed', {
        result: { decisionId: decision.decisionId, error: describeError(e) },
      });
      throw e;
    } finally {
      // The registry holds what was placed; the staged copies are not needed any more.
      await this.#o.staging.remove(job.id);
    }
  }

  /** End a job that could not reach the gate, revoking its token: said by the job's runner only. */
  async fail(signed: FailRequest, proof: string): Promise<void> {
    const job = await this.getJob(signed.jobId);
    await this.#jobSpeaker(job, { act: 'fail', job: job.id, request: signed }, proof);
    // A failed build's reason quotes its output: the control plane's secrets never reach the job
    // record in it, whatever the runner masked.
    const request = {
      ...signed,
      reason: this.#maskText(signed.reason),
      steps: signed.steps.map((s) =>
        s.detail === undefined ? s : { ...s, detail: this.#maskText(s.detail) },
      ),
    };
    this.#o.metrics.runnerJob(request.steps, request.reason);
    if (request.token !== undefined) await this.#o.authority.revoke(request.token);
    const cancel = request.cancelled === true && (job.state === 'queued' || job.state === 'running');
    if (cancel) {
      await this.#o.orchestrator.transition(job.id, 'cancelled', {
        steps: request.steps,
        result: { error: request.reason },
      });
    } else if (job.state === 'queued' || job.state === 'running' || job.state === 'submitted') {
      await this.#o.orchestrator.transition(job.id, 'failed', {
        steps: request.steps,
        result: { error: request.reason },
      });
    } else {
      await this.#o.orchestrator.recordSteps(job.id, request.steps);
    }
  }

  /** Record the steps that ran after the decision (destroy, revoke) and revoke the token. */
  async finish(request: FinishRequest, proof: string): Promise<void> {
    const job = await this.getJob(request.jobId);
    await this.#jobSpeaker(job, { act: 'finish', job: job.id, request }, proof);
    this.#o.metrics.runnerJob(request.steps);
    if (request.token !== undefined) await this.#o.authority.revoke(request.token);
    await this.#o.orchestrator.recordSteps(request.jobId, request.steps);
  }

  getJob(jobId: string): Promise<JobRecord> {
    return this.#o.orchestrator.get(jobId);
  }

  #maskText(text: string): string {
    return this.#masker.size === 0 ? text : this.#masker.mask(Buffer.from(text)).toString();
  }

  #ticket(job: JobRecord): JobTicket {
    return {
      jobId: job.id,
      project: job.project,
      nonce: job.nonce,
      toolchain: [...this.#o.toolchain],
      egressAllow: [...this.#o.egressAllow],
      attestation: this.#o.attestation,
    };
  }

  /** The host a request about a job comes from, which must be the one that claimed the job. */
  async #claimer(job: JobRecord, expected: ExpectedRequest, proof: string): Promise<HostEnrollment> {
    const { host } = await this.#host(proof, expected);
    if (job.host !== host.name) throw new GatehouseError('UNAUTHORIZED', notClaimer(job, host));
    return host;
  }

  /**
   * Who may speak for a job: once a runner attested, only its job key (the key its token is bound
   * to); before that, the host that claimed the job. Nobody else, the operator included.
   */
  async #jobSpeaker(job: JobRecord, expected: ExpectedRequest, proof: string): Promise<void> {
    if (job.runnerKey === undefined) {
      await this.#claimer(job, expected, proof);
      return;
    }
    if (!isJobProof(proof))
      throw new GatehouseError(
        'UNAUTHORIZED',
        `job ${job.id} is attested: only its job key may speak for it`,
      );
    const publicJwk = jobProofKey(proof, job.runnerKey);
    await verifyRequestProof(proof, { publicJwk, typ: JOB_REQUEST_TYP }, expected, this.#o.store.tokens);
  }

  /** Bind the job key the issued token names (`cnf.jkt`) to the job, on its first attestation. */
  async #bindRunnerKey(jobId: string, token: string): Promise<void> {
    const claims = await this.#o.authority.verifyToken(token, jobId);
    try {
      await this.#o.orchestrator.bindRunnerKey(jobId, claims.cnf.jkt);
    } catch (e) {
      // A second runner key for one job: the token just issued must not outlive the refusal.
      await this.#o.authority.revokeClaims(claims);
      throw e;
    }
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
    // The manifest is planned first, so that the statements can name the digest a deployer pins.
    const signed = await gate.sign(gate.held(checked), approval, gate.deployment(job, checked, decision));
    const placement = await gate.promote(job, checked, decision, signed);
    await this.#o.orchestrator.transition(job.id, 'allowed', {
      result: { decisionId: decision.decisionId, outcome: 'allow', placement: placement.reference },
    });
    return { ...decision.result, ...signed.bundles, placement };
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
      await this.#alertRefusal(stage, e, jobId ?? refusedJobOf(e));
      throw e;
    }
  }

  /** Tell of a refused attestation, with its failed checks and the host that asked. */
  async #alertRefusal(stage: AttestationRefusalRecord['stage'], e: unknown, jobId?: string): Promise<void> {
    const failedChecks = failedChecksOf(e);
    if (failedChecks === undefined || this.#o.alerts === undefined) return;
    const host =
      jobId === undefined ? undefined : (await this.#o.store.jobs.get(jobId).catch(() => undefined))?.host;
    await this.#o.alerts({
      type: 'dev.gatehouse.attestation.refused',
      subject: jobId === undefined ? 'attestation' : `jobs/${jobId}`,
      data: {
        stage,
        ...(jobId === undefined ? {} : { jobId }),
        ...(host === undefined ? {} : { host }),
        failedChecks: failedChecks.map((f) => ({ check: f.check, message: f.message })),
      },
    });
    // A known host whose measured state no longer matches the signed reference values has drifted.
    const drift = failedChecks.filter((f) => DRIFT_CHECKS.has(f.check));
    if (host !== undefined && drift.length > 0)
      await this.#o.alerts({
        type: 'dev.gatehouse.host.drift',
        subject: `hosts/${host}`,
        data: {
          ...{ host, stage, ...(jobId === undefined ? {} : { jobId }) },
          failedChecks: drift.map((f) => ({ check: f.check, message: f.message })),
        },
      });
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

/** Failed checks that mean a host's measured state moved away from its reference values. */
const DRIFT_CHECKS: ReadonlySet<string> = new Set([
  CHECKS.pcrValues,
  CHECKS.referenceValues,
  CHECKS.eventLogReplay,
]);

/** A host may build a project only when the project's registration names the host's pool. */
function allowedToBuild(project: ProjectRegistration, host: HostEnrollment): void {
  if (!project.pools.includes(host.pool))
    throw new GatehouseError(
      'UNAUTHORIZED',
      `runner host ${host.name} (pool ${host.pool}) may not build project ${project.name} (pools: ${project.pools.join(', ')})`,
    );
}

function notClaimer(job: JobRecord, host: HostEnrollment): string {
  return job.host === undefined
    ? `job ${job.id} is not claimed: a host claims it before attesting`
    : `job ${job.id} was claimed by another runner host, not ${host.name}`;
}

/** Why software evidence from `host` is refused, if it is. */
function softwareRefusal(mode: 'tpm' | 'software', host: HostEnrollment): string | undefined {
  // A CI host's runners are software-measured on any control plane, but never without the CI
  // platform's verified identity token (the authority requires it) and never above Build L2: the
  // policy sees the runner kind and level and decides whether that is enough for a project.
  if (host.attestation === 'ci') return undefined;
  if (mode === 'tpm') return 'this control plane requires TPM attestation; software evidence is refused';
  if (host.attestation !== 'software')
    return `runner host ${host.name} is enrolled for TPM attestation; software evidence is refused`;
  return undefined;
}
