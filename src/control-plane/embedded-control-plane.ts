import { randomUUID } from 'node:crypto';
import type { AttestationAuthority } from '../attestation/authority.ts';
import { failedChecksOf, refusedJobOf } from '../attestation/checks.ts';
import type { ReferenceBundle, ReferenceValueService } from '../attestation/reference-values.ts';
import type { Challenge } from '../attestation/tpm-verifier.ts';
import { toBase64 } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import type { Gate } from '../gate/gate.ts';
import type { GateResult, SubmitRequest } from '../gate/submission.ts';
import type { Orchestrator } from '../orchestrator/orchestrator.ts';
import type { PolicyService, RevokeAct, TriageAct, TriageOutcome } from '../policy/policy-service.ts';
import type { RevocationList } from '../signing/revocation-list.ts';
import type {
  AttestationRefusalRecord,
  DecisionRecord,
  JobRecord,
  JobStep,
  PolicyVersionRecord,
  Store,
} from '../store/store.ts';
import { decisionEntryBody, type TransparencyLog } from '../tlog/transparency-log.ts';
import type { AttestRequest, AttestResult, ControlPlane, JobTicket } from './control-plane.ts';
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
  /** Origins the fetch phase's egress proxy may reach. */
  egressAllow?: readonly string[];
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
    return {
      jobId: job.id,
      project: job.project,
      nonce: job.nonce,
      toolchain: [...this.#o.toolchain],
      egressAllow: [...(this.#o.egressAllow ?? [])],
    };
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
      this.metrics.attestation(false, performance.now() - t0, failedChecksOf(e));
      await this.#recordRefusal('software', e, job.id);
      throw e;
    }
  }

  /** POST /v1/attestation/challenge: check EK certificate and AK, return nonce and credential. */
  async attestationChallenge(body: unknown): Promise<Challenge> {
    const t0 = performance.now();
    try {
      return await this.#o.authority.challenge(body);
    } catch (e) {
      this.metrics.attestation(false, performance.now() - t0, failedChecksOf(e));
      await this.#recordRefusal('challenge', e);
      throw e;
    }
  }

  /**
   * POST /v1/attestation/evidence: verify a TPM quote and its event log for a queued job (or a
   * running one re-attesting before its token expires) and issue a token.
   */
  async attestationEvidence(body: unknown): Promise<AttestResult & { jobId: string }> {
    const t0 = performance.now();
    try {
      const issued = await this.#o.authority.evidence(body, async (jobId) => {
        const job = await this.#o.orchestrator.get(jobId);
        if (job.state !== 'queued' && job.state !== 'running') {
          throw new GatehouseError('CONFLICT', `job ${job.id} is ${job.state}`);
        }
        return { nonce: job.nonce };
      });
      this.metrics.attestation(true, performance.now() - t0);
      const job = await this.#o.orchestrator.get(issued.jobId);
      if (job.state === 'queued') await this.#o.orchestrator.transition(job.id, 'running');
      return issued;
    } catch (e) {
      this.metrics.attestation(false, performance.now() - t0, failedChecksOf(e));
      await this.#recordRefusal('evidence', e, refusedJobOf(e));
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
    this.metrics.runnerJob(request.steps, request.reason);
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
    this.metrics.runnerJob(request.steps);
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
      reevaluation: await (async () => {
        const all = await this.#o.store.policies.listReevaluations({ limit: 1_000_000 });
        return {
          flagged: all.length,
          revoked: all.filter((r) => r.revoked).length,
          detectionSecondsSum: all.reduce((s, r) => s + r.detectionMs / 1000, 0),
          lastDetectionSeconds: (all[0]?.detectionMs ?? 0) / 1000,
        };
      })(),
    });
  }

  /** Central policies, triage and quarantine (set by the home's wiring). */
  policies: PolicyService | undefined;

  /** POST /v1/policies: publish a policy version signed by a trusted security key. */
  async publishPolicy(body: {
    text: string;
    signature: string;
    keyId: string;
  }): Promise<PolicyVersionRecord> {
    return this.#policies().publish(body.text, { signature: body.signature, keyId: body.keyId });
  }

  /** GET /v1/policies/:name[?version=N]: a published version (latest by default). */
  async getPolicy(name: string, version?: number): Promise<PolicyVersionRecord> {
    return (await this.#policies().load(name, version)).record;
  }

  /** GET /v1/policies/:name/history: every version, newest first. */
  policyHistory(name: string): Promise<PolicyVersionRecord[]> {
    return this.#policies().history(name);
  }

  /** GET /v1/quarantine: quarantined artifacts awaiting triage, with their reasons. */
  quarantined(limit: number): Promise<DecisionRecord[]> {
    return this.#policies().quarantined(Math.min(limit, 1000));
  }

  /** POST /v1/triage: release or reject a quarantined artifact (signed by the security role). */
  triage(body: TriageAct & { signature: string; keyId: string }): Promise<TriageOutcome> {
    return this.#policies().triage(
      { decisionId: body.decisionId, action: body.action, reason: body.reason },
      { signature: body.signature, keyId: body.keyId },
      async (doc) => (await this.#o.log.append(decisionEntryBody(doc))).index,
    );
  }

  /** POST /v1/revocations: revoke an artifact digest (signed by the security role), logged. */
  async revoke(body: RevokeAct & { signature: string; keyId: string }): Promise<Record<string, unknown>> {
    return {
      ...(await this.#policies().revoke(
        { digest: body.digest, reason: body.reason },
        { signature: body.signature, keyId: body.keyId },
        async (doc) => (await this.#o.log.append(decisionEntryBody(doc))).index,
      )),
    };
  }

  /** GET /v1/revocations: every revoked digest, signed by the log key (set by the home's wiring). */
  revocationList: (() => Promise<RevocationList>) | undefined;

  async revocations(): Promise<RevocationList> {
    if (this.revocationList === undefined)
      throw new GatehouseError('INTERNAL', 'the revocation list is not wired');
    return this.revocationList();
  }

  /** POST /v1/attestation/trusted-cas: trust an EK CA on the security role's signature (set by the home). */
  trustEkCa:
    | ((body: {
        certificate: string;
        signature: string;
        keyId: string;
      }) => Promise<{ name: string; subject: string; added: boolean }>)
    | undefined;

  /** Signed reference-value bundles (set by the home's wiring). */
  referenceValues: ReferenceValueService | undefined;

  /** POST /v1/reference-values: publish the next bundle, signed by a trusted security key. */
  publishReferenceValues(body: {
    version: number;
    values: unknown;
    signature: string;
    keyId: string;
  }): Promise<ReferenceBundle> {
    return this.#referenceValues().publish(body);
  }

  /** GET /v1/reference-values[?version=N]: a bundle (the one in force by default), verified. */
  getReferenceValues(version?: number): Promise<ReferenceBundle> {
    const rv = this.#referenceValues();
    return version === undefined ? rv.current() : rv.get(version);
  }

  /** GET /v1/reference-values/history: every bundle, newest first, with whether it verifies. */
  referenceValueHistory(): ReturnType<ReferenceValueService['history']> {
    return this.#referenceValues().history();
  }

  /** GET /v1/attestation/refusals: refused attestations with their failed checks, newest first. */
  attestationRefusals(options: { limit: number; jobId?: string }): Promise<AttestationRefusalRecord[]> {
    return this.#o.store.attestation.listRefusals({ ...options, limit: Math.min(options.limit, 1000) });
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

  #referenceValues(): ReferenceValueService {
    if (this.referenceValues === undefined)
      throw new GatehouseError('INTERNAL', 'reference values are not wired');
    return this.referenceValues;
  }

  #policies(): PolicyService {
    if (this.policies === undefined) throw new GatehouseError('INTERNAL', 'central policies are not wired');
    return this.policies;
  }
}
