import type { JWK } from 'jose';
import type { Challenge } from '../attestation/tpm-verifier.ts';
import type { GateResult, SubmitRequest } from '../gate/submission.ts';
import type { JobRecord, JobStep } from '../store/store.ts';

/**
 * What a runner agent talks to: the control plane, in-process (`EmbeddedControlPlane`) or over
 * HTTP (`HttpControlPlane`). Every call about a job carries the credential that may make it
 * (docs/trust-model.md): `proof` is a signed request (src/attestation/request-proof.ts) by the
 * enrolled runner host that claimed the job, or, once the job is attested, by the job's key; a
 * submission carries the attestation token and its own proof of possession. Both adapters check
 * exactly the same way.
 */
export interface ControlPlane {
  /**
   * Open a job for a registered project; the nonce binds the runner's evidence to it. With a
   * host's proof (act `create`) the job is created claimed by that host; without one (the
   * operator) it waits, unclaimed, for a host to claim it.
   */
  createJob(request: CreateJobRequest, proof?: string): Promise<JobTicket>;
  /** Claim an unclaimed job for the host whose proof (act `claim`) this is. */
  claimJob(request: ClaimJobRequest, proof: string): Promise<JobTicket>;
  /** Present software-measurement evidence for the job's runner; returns a short-lived token. */
  attest(request: AttestRequest, proof: string): Promise<AttestResult>;
  /** TPM path, step 1: EK certificate, AK and runner key in; nonce and credential out. */
  attestationChallenge(body: unknown, proof: string): Promise<Challenge>;
  /** TPM path, step 2: activated credential, quote and event log in; a token out. */
  attestationEvidence(body: unknown, proof: string): Promise<AttestResult & { jobId: string }>;
  /**
   * Hand one output to the control plane before submitting: its bytes, streamed (`content` is a
   * file to read, or a stream), with a proof by the job key. The control plane keeps them under the
   * digest it computes itself and returns that digest.
   */
  uploadOutput(
    request: UploadRequest,
    content: string | NodeJS.ReadableStream,
    proof: string,
  ): Promise<UploadResult>;
  /** Whether the control plane keeps the build-environment SBOM with this digest (`sha256:<hex>`). */
  environmentSbomKnown(digest: string): Promise<boolean>;
  /**
   * Hand the SBOM of the job's build environment to the control plane, once per environment: the
   * CycloneDX text whose digest the submission names, with a proof by the job key (act `environment`).
   */
  uploadEnvironmentSbom(request: EnvironmentSbomRequest, text: string, proof: string): Promise<void>;
  /**
   * Hand the job's build log to the control plane, once, before submitting or failing: the masked,
   * bounded bytes the agent captured from the sandbox's pipes, with a proof by the job key (act
   * `log`). The control plane masks its own secrets in it again and keeps it under the digest it
   * computes of what it keeps, which is the digest the provenance names.
   */
  uploadLog(request: LogUploadRequest, content: Uint8Array, proof: string): Promise<LogUploadResult>;
  /** Hand the build's facts to the gate; returns its decision and, when allowed, the bundles. */
  submit(request: SubmitRequest): Promise<GateResult>;
  /** End a job that could not reach the gate, revoking its token. */
  fail(request: FailRequest, proof: string): Promise<void>;
  /** Record the steps that ran after the decision (destroy, revoke) and revoke the token. */
  finish(request: FinishRequest, proof: string): Promise<void>;
  getJob(jobId: string): Promise<JobRecord>;
  /**
   * Host attestation over the API, step 1 (a host proof, act `host-quote`, over `{}`): `fresh`
   * when the host's last boot-state quote is recent enough, else a nonce to quote over.
   */
  hostQuoteChallenge(proof: string): Promise<HostQuoteChallenge>;
  /** Step 2: the quote over PCRs 0–7 and the boot log (host proof over the body); the appraisal. */
  hostQuote(body: HostQuoteBody, proof: string): Promise<HostQuoteResult>;
}

export type HostQuoteChallenge = { fresh: true } | { fresh: false; session: string; nonce: string };

export interface HostQuoteBody {
  session: string;
  /** TPMS_ATTEST, base64. */
  quote: string;
  /** TPMT_SIGNATURE, base64. */
  signature: string;
  /** SHA-256 PCRs 0–7, hex. */
  pcrs: Record<string, string>;
  /** The TCG crypto-agile boot event log, base64. */
  boot_log: string;
}

export interface HostQuoteResult {
  host: string;
  status: 'trusted' | 'quarantined';
  quotedAt: number;
  reason?: string;
}

export interface CreateJobRequest {
  project: string;
}

export interface ClaimJobRequest {
  jobId: string;
}

export interface JobTicket {
  jobId: string;
  project: string;
  /** Base64 of 32 random bytes. */
  nonce: string;
  /** Absolute paths of the toolchain binaries the runner must measure (central configuration). */
  toolchain: string[];
  /** Origins the fetch phase's egress proxy may reach (central configuration); none: no egress. */
  egressAllow?: string[];
  /** How the job's runner must attest: the control plane's choice, never the runner's. */
  attestation: 'tpm' | 'software';
}

export interface AttestRequest {
  jobId: string;
  /** The runner's per-job public key (EC P-256 JWK); the token is bound to it. */
  runnerKey: JWK;
  /** Evidence as the runner produced it; parsed and checked by the attestation authority. */
  evidence: unknown;
}

export interface AttestResult {
  token: string;
  /** Seconds since the epoch. */
  expiresAt: number;
}

export interface UploadRequest {
  jobId: string;
  /** The output's workspace-relative path, as a subject name. */
  name: string;
  /** The digest the runner computed (the control plane computes its own). */
  sha256: string;
  size: number;
}

export interface EnvironmentSbomRequest {
  jobId: string;
  /** `sha256:<hex>` of the document's text. */
  digest: string;
}

export interface LogUploadRequest {
  jobId: string;
  /** SHA-256 hex of the bytes sent. */
  sha256: string;
  size: number;
  /** The agent left output out in the middle (the content says where). */
  truncated: boolean;
}

/** The build log as the control plane kept it. */
export interface LogUploadResult {
  /** SHA-256 hex of the bytes kept (after the control plane's own masking). */
  sha256: string;
  size: number;
  truncated: boolean;
}

export interface UploadResult {
  /** The digest of the bytes the control plane received. */
  sha256: string;
  size: number;
}

export interface FailRequest {
  jobId: string;
  reason: string;
  /** The job was stopped on purpose (SIGINT, SIGTERM) before it reached the gate. */
  cancelled?: boolean;
  steps: JobStep[];
  /** The job's token, if it has one, to revoke. */
  token?: string;
}

export interface FinishRequest {
  jobId: string;
  steps: JobStep[];
  /** The job's token, if it has one, to revoke. */
  token?: string;
}
