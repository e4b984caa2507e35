import type { AttestationAuthority } from '../attestation/authority.ts';
import type { HostEnrollment, HostRegistry } from '../attestation/hosts.ts';
import type { ReferenceBundle, ReferenceValueService } from '../attestation/reference-values.ts';
import type { Challenge } from '../attestation/tpm-verifier.ts';
import { toBase64 } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import type { GateResult, SubmitRequest } from '../gate/submission.ts';
import type { PolicyService } from '../policy/policy-service.ts';
import type { ProjectRegistration } from '../policy/projects.ts';
import type { RevocationList } from '../signing/revocation-list.ts';
import type {
  AttestationRefusalRecord,
  BuildLogRecord,
  DecisionRecord,
  JobRecord,
  PolicyVersionRecord,
  Store,
} from '../store/store.ts';
import type { TransparencyLog } from '../tlog/transparency-log.ts';
import type { RevokeAct, TriageAct, TriageOutcome, TriageService } from '../triage/triage-service.ts';
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
import type { JobPipeline } from './pipeline.ts';

/** A security-role act as it arrives: the act's fields, its signature and the signing key's id. */
type Signed<T> = T & { signature: string; keyId: string };

export interface EmbeddedControlPlaneOptions {
  store: Store;
  /** The job pipeline: everything a runner agent asks of the control plane. */
  pipeline: JobPipeline;
  authority: AttestationAuthority;
  log: TransparencyLog;
  metrics: Metrics;
  policies: PolicyService;
  hosts: HostRegistry;
  /** Host attestation standing, for /metrics (which hosts are quarantined). */
  hostStanding?: (
    host: string,
  ) => Promise<{ readonly check: string | undefined; readonly problem: string | undefined }>;
  triage: TriageService;
  referenceValues: ReferenceValueService;
  trustedRoot: () => Promise<Record<string, unknown>>;
  /** The revocation list as it stands, signed by the log key. */
  revocationList: () => Promise<RevocationList>;
  /** Trust an EK CA on the security role's signature. */
  trustEkCa: (
    body: Signed<{ certificate: string }>,
  ) => Promise<{ name: string; subject: string; added: boolean }>;
}

/**
 * The control plane in-process: the job pipeline the runner agent talks to, the read side
 * (decisions, log proofs, metrics) and the security role's signed acts, which the HTTP API serves.
 * Everything it uses is handed to its constructor.
 */
export class EmbeddedControlPlane implements ControlPlane {
  readonly #o: EmbeddedControlPlaneOptions;
  readonly metrics: Metrics;

  constructor(options: EmbeddedControlPlaneOptions) {
    this.#o = options;
    this.metrics = options.metrics;
  }

  createJob(request: CreateJobRequest, proof?: string): Promise<JobTicket> {
    return this.#o.pipeline.createJob(request, proof);
  }

  claimJob(request: ClaimJobRequest, proof: string): Promise<JobTicket> {
    return this.#o.pipeline.claimJob(request, proof);
  }

  hostQuoteChallenge(proof: string): Promise<HostQuoteChallenge> {
    return this.#o.pipeline.hostQuoteChallenge(proof);
  }

  hostQuote(body: HostQuoteBody, proof: string): Promise<HostQuoteResult> {
    return this.#o.pipeline.hostQuote(body, proof);
  }

  attest(request: AttestRequest, proof: string): Promise<AttestResult> {
    return this.#o.pipeline.attest(request, proof);
  }

  /** POST /v1/attestation/challenge: check EK certificate and AK, return nonce and credential. */
  attestationChallenge(body: unknown, proof: string): Promise<Challenge> {
    return this.#o.pipeline.attestationChallenge(body, proof);
  }

  /** POST /v1/attestation/evidence: verify a TPM quote and event log, issue a token. */
  attestationEvidence(body: unknown, proof: string): Promise<AttestResult & { jobId: string }> {
    return this.#o.pipeline.attestationEvidence(body, proof);
  }

  uploadOutput(
    request: UploadRequest,
    content: string | NodeJS.ReadableStream,
    proof: string,
  ): Promise<UploadResult> {
    return this.#o.pipeline.uploadOutput(request, content, proof);
  }

  environmentSbomKnown(digest: string): Promise<boolean> {
    return this.#o.pipeline.environmentSbomKnown(digest);
  }

  uploadEnvironmentSbom(request: EnvironmentSbomRequest, text: string, proof: string): Promise<void> {
    return this.#o.pipeline.uploadEnvironmentSbom(request, text, proof);
  }

  uploadLog(request: LogUploadRequest, content: Uint8Array, proof: string): Promise<LogUploadResult> {
    return this.#o.pipeline.uploadLog(request, content, proof);
  }

  submit(request: SubmitRequest): Promise<GateResult> {
    return this.#o.pipeline.submit(request);
  }

  fail(request: FailRequest, proof: string): Promise<void> {
    return this.#o.pipeline.fail(request, proof);
  }

  finish(request: FinishRequest, proof: string): Promise<void> {
    return this.#o.pipeline.finish(request, proof);
  }

  getJob(jobId: string): Promise<JobRecord> {
    return this.#o.pipeline.getJob(jobId);
  }

  /**
   * GET /v1/jobs/:id/log: the job's build log as kept (masked, bounded), with its digest.
   * @throws GatehouseError NOT_FOUND (no such job, or it has no log)
   */
  async getLog(jobId: string): Promise<BuildLogRecord> {
    const job = await this.#o.pipeline.getJob(jobId);
    const log = await this.#o.store.jobs.getLog(job.id);
    if (log === undefined) throw new GatehouseError('NOT_FOUND', `job ${job.id} has no build log`);
    return log;
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
      ...(this.#o.hostStanding === undefined
        ? {}
        : {
            hostsByStanding: await (async () => {
              const counts: Record<string, number> = {};
              for (const h of await this.#o.hosts.list()) {
                if (h.tpm === undefined) continue;
                const s = await this.#o.hostStanding?.(h.name);
                const key =
                  s?.problem === undefined
                    ? 'trusted'
                    : s.check === 'HOST_QUARANTINED'
                      ? 'quarantined'
                      : s.check === 'HOST_QUOTE_STALE'
                        ? 'stale'
                        : 'revoked';
                counts[key] = (counts[key] ?? 0) + 1;
              }
              return counts;
            })(),
          }),
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

  /** POST /v1/policies: publish a policy version signed by a trusted security key. */
  async publishPolicy(
    body: Signed<{ text: string; version: number; allowEmpty?: boolean | undefined }>,
  ): Promise<PolicyVersionRecord> {
    return this.#o.policies.publish(
      body.text,
      body.version,
      { signature: body.signature, keyId: body.keyId },
      'the pushed policy',
      { allowEmpty: body.allowEmpty === true },
    );
  }

  /** GET /v1/policies/:name[?version=N]: a published version (latest by default). */
  async getPolicy(name: string, version?: number): Promise<PolicyVersionRecord> {
    return (await this.#o.policies.load(name, version)).record;
  }

  /** GET /v1/policies/:name/history: every version, newest first. */
  policyHistory(name: string): Promise<PolicyVersionRecord[]> {
    return this.#o.policies.history(name);
  }

  /** GET /v1/quarantine: quarantined artifacts awaiting triage, with their reasons. */
  quarantined(limit: number): Promise<DecisionRecord[]> {
    return this.#o.triage.quarantined(Math.min(limit, 1000));
  }

  /** POST /v1/triage: release or reject a quarantined artifact (signed by the security role). */
  triage(body: Signed<TriageAct>): Promise<TriageOutcome> {
    return this.#o.triage.triage(
      { decisionId: body.decisionId, action: body.action, reason: body.reason },
      { signature: body.signature, keyId: body.keyId },
    );
  }

  /** POST /v1/revocations: revoke an artifact digest (signed by the security role), logged. */
  async revoke(body: Signed<RevokeAct>): Promise<Record<string, unknown>> {
    return {
      ...(await this.#o.triage.revoke(
        { digest: body.digest, reason: body.reason },
        { signature: body.signature, keyId: body.keyId },
      )),
    };
  }

  /** GET /v1/revocations: every revoked digest, signed by the log key. */
  revocations(): Promise<RevocationList> {
    return this.#o.revocationList();
  }

  /** POST /v1/attestation/trusted-cas: trust an EK CA on the security role's signature. */
  trustEkCa(
    body: Signed<{ certificate: string }>,
  ): Promise<{ name: string; subject: string; added: boolean }> {
    return this.#o.trustEkCa(body);
  }

  /** POST /v1/reference-values: publish the next bundle, signed by a trusted security key. */
  publishReferenceValues(body: Signed<{ version: number; values: unknown }>): Promise<ReferenceBundle> {
    return this.#o.referenceValues.publish(body);
  }

  /** GET /v1/reference-values[?version=N]: a bundle (the one in force by default), verified. */
  getReferenceValues(version?: number): Promise<ReferenceBundle> {
    const rv = this.#o.referenceValues;
    return version === undefined ? rv.current() : rv.get(version);
  }

  /** GET /v1/reference-values/history: every bundle, newest first, with whether it verifies. */
  referenceValueHistory(): ReturnType<ReferenceValueService['history']> {
    return this.#o.referenceValues.history();
  }

  /** GET /v1/projects: every registered project. */
  projects(): Promise<ProjectRegistration[]> {
    return this.#o.policies.projects.list();
  }

  /** POST /v1/projects: register a project (or its next version), signed by the security role. */
  registerProject(
    body: Signed<{ name: string; version: number; content: unknown }>,
  ): Promise<ProjectRegistration> {
    return this.#o.policies.projects.register(body.name, body.version, body.content, {
      signature: body.signature,
      keyId: body.keyId,
    });
  }

  /** GET /v1/hosts: every enrolled runner host. */
  hosts(): Promise<HostEnrollment[]> {
    return this.#o.hosts.list();
  }

  /** POST /v1/hosts: enroll a runner host (or publish its next version), signed by the security role. */
  enrollHost(body: Signed<{ name: string; version: number; content: unknown }>): Promise<HostEnrollment> {
    return this.#o.hosts.enroll(body.name, body.version, body.content, {
      signature: body.signature,
      keyId: body.keyId,
    });
  }

  /** GET /v1/attestation/refusals: refused attestations with their failed checks, newest first. */
  attestationRefusals(options: { limit: number; jobId?: string }): Promise<AttestationRefusalRecord[]> {
    return this.#o.store.attestation.listRefusals({ ...options, limit: Math.min(options.limit, 1000) });
  }
}
