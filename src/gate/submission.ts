import { z } from 'zod';
import type { Placement } from '../registry/registry.ts';
import type { SourceFacts } from '../source/source-provider.ts';
import type { DecisionOutcome, JobStep } from '../store/store.ts';

/** The facts the runner agent reports about one build; signed by the runner's key. */
export interface Submission {
  jobId: string;
  project: string;
  /**
   * What makes the runner's signature over this submission single-use and fresh: a random id the
   * gate accepts once, and when the runner signed.
   */
  proof: { jti: string; iat: number };
  subjects: { name: string; sha256: string }[];
  /** CycloneDX 1.6 JSON produced by the agent from the workspace before the build ran. */
  sbom: Record<string, unknown>;
  source: SourceFacts;
  build: {
    command: string[];
    startedOn: string;
    finishedOn: string;
    exitCode: number;
    sandboxProfileDigest: string;
  };
  steps: JobStep[];
  /**
   * The build environment (runner image) packages, as the SBOM the runner handed over once
   * (`sha256:<hex>` of its text) and the control plane keeps.
   */
  environment?: { sbom: string };
  /** Every artifact the fetch phase's egress proxy passed, with its digest (SLSA resolvedDependencies). */
  fetched?: { uri: string; digest: { sha256: string } }[];
  /**
   * The container image the agent assembled (src/registry/image-assembly.ts): the output named
   * `archive` is its OCI layout tar; the gate opens it and checks the manifest digest itself.
   */
  image?: SubmittedImage;
}

/** What a submission says about its image output. */
export interface SubmittedImage {
  name: string;
  /** The subject (output) holding the image as an OCI layout tar. */
  archive: string;
  manifestDigest: string;
  platform: { os: string; architecture: string; variant?: string };
  /** `scratch`, `store:sha256:…` or `oci-layout:sha256:…`, and the base manifest for an OCI base. */
  base: { source: string; manifestDigest?: string };
}

export interface SubmitRequest {
  /** The attestation token; a missing token is refused by the gate. */
  token: string | undefined;
  /** Compact JWS by the runner key over the canonical JSON of `submission`. */
  proof: string;
  submission: Submission;
}

export interface GateReason {
  rule: string;
  action?: string;
  message: string;
  [k: string]: unknown;
}

export interface GateResult {
  jobId: string;
  decisionId: string;
  outcome: DecisionOutcome;
  policyDigest: string;
  reasons: GateReason[];
  warnings: GateReason[];
  /** Index of the decision's transparency-log entry. */
  logIndex: number;
  /**
   * The reconciliation of what was declared, fetched and found in the artifact, in one line:
   * `declared 2, fetched 0, found 3, undeclared 0` (absent when the gate refused before cataloguing).
   */
  sbom?: string;
  /** Sigstore bundle of the signed provenance (allowed builds only). */
  bundle?: Record<string, unknown>;
  /** Sigstore bundle of the signed SBOM attestation (allowed builds only). */
  sbomBundle?: Record<string, unknown>;
  /** Sigstore bundle of the signed decision, a SLSA Verification Summary (allowed builds only). */
  vsaBundle?: Record<string, unknown>;
  placement: Placement;
}

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'must be a lowercase hex SHA-256');
const isoTime = z.iso.datetime({ offset: true });

/** Schema of a submission received over the API: parsed before the gate sees it. */
export const submissionSchema = z
  .object({
    jobId: z.string().min(1).max(128),
    project: z.string().min(1).max(63),
    proof: z
      .object({ jti: z.string().regex(/^[A-Za-z0-9_-]{16,128}$/), iat: z.number().int().nonnegative() })
      .strict(),
    subjects: z
      .array(z.object({ name: z.string().min(1).max(1024), sha256: sha256Hex }).strict())
      .min(1)
      .max(256),
    sbom: z.record(z.string(), z.unknown()),
    source: z
      .object({
        kind: z.enum(['git', 'directory']),
        uri: z.string().min(1).max(4096),
        commit: z
          .string()
          .regex(/^[0-9a-f]{40,64}$/)
          .optional(),
        ref: z.string().max(1024).optional(),
        path: z
          .string()
          .max(4096)
          .regex(/^(?!\/)(?!.*(?:^|\/)\.\.?(?:\/|$)).+$/, 'must be a relative path without . or .. segments')
          .optional(),
        pinned: z.boolean().optional(),
        dirty: z.boolean(),
        treeDigest: sha256Hex,
      })
      .strict(),
    build: z
      .object({
        command: z.array(z.string().max(4096)).max(256),
        startedOn: isoTime,
        finishedOn: isoTime,
        exitCode: z.number().int(),
        sandboxProfileDigest: sha256Hex,
      })
      .strict(),
    steps: z
      .array(
        z
          .object({
            name: z.string().max(64),
            startedAt: z.string().max(64),
            durationMs: z.number().nonnegative(),
            ok: z.boolean(),
            detail: z.string().max(4096).optional(),
          })
          .strict(),
      )
      .max(64),
    environment: z
      .object({ sbom: z.string().regex(/^sha256:[0-9a-f]{64}$/) })
      .strict()
      .optional(),
    fetched: z
      .array(z.object({ uri: z.url().max(4096), digest: z.object({ sha256: sha256Hex }).strict() }).strict())
      .max(100_000)
      .optional(),
    image: z
      .object({
        name: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/),
        archive: z.string().min(1).max(1024),
        manifestDigest: z.string().regex(/^sha256:[0-9a-f]{64}$/),
        platform: z
          .object({
            os: z.string().min(1).max(32),
            architecture: z.string().min(1).max(32),
            variant: z.string().min(1).max(32).optional(),
          })
          .strict(),
        base: z
          .object({
            source: z.string().regex(/^(?:scratch|(?:store|oci-layout):sha256:[0-9a-f]{64})$/),
            manifestDigest: z
              .string()
              .regex(/^sha256:[0-9a-f]{64}$/)
              .optional(),
          })
          .strict(),
      })
      .strict()
      .optional(),
  })
  .strict();

/** The build identity (certificate SAN) of a project. */
export function buildIdentity(identityBase: string, project: string): string {
  return `${identityBase.replace(/\/+$/, '')}/projects/${project}`;
}
