import type { JWK } from 'jose';
import type { Challenge } from '../attestation/tpm-verifier.ts';
import type { GateResult, SubmitRequest } from '../gate/submission.ts';
import type { JobRecord, JobStep } from '../store/store.ts';

/**
 * What a runner agent talks to: the control plane, in-process (`EmbeddedControlPlane`) or over
 * HTTP (`HttpControlPlane`). Both pass the same contract tests.
 */
export interface ControlPlane {
  /** Open a job for a project; the nonce binds the runner's evidence to it. */
  createJob(request: { project: string }): Promise<JobTicket>;
  /** Present software-measurement evidence for the job's runner; returns a short-lived token. */
  attest(request: AttestRequest): Promise<AttestResult>;
  /** TPM path, step 1: EK certificate, AK and runner key in; nonce and credential out. */
  attestationChallenge(body: unknown): Promise<Challenge>;
  /** TPM path, step 2: activated credential, quote and event log in; a token out. */
  attestationEvidence(body: unknown): Promise<AttestResult & { jobId: string }>;
  /** Hand the build's outputs to the gate; returns its decision and, when allowed, the bundle. */
  submit(request: SubmitRequest): Promise<GateResult>;
  /** End a job that could not reach the gate, revoking its token. */
  fail(request: { jobId: string; reason: string; steps: JobStep[]; token?: string }): Promise<void>;
  /** Record the steps that ran after the decision (destroy, revoke) and revoke the token. */
  finish(request: { jobId: string; steps: JobStep[]; token?: string }): Promise<void>;
  getJob(jobId: string): Promise<JobRecord>;
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
