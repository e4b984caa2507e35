import type { Component } from '../sbom/model.ts';
import type { UndeclaredComponent } from '../sbom/reconcile.ts';
import type { SourceVerification } from '../source/source-provider.ts';
import type { Severity } from '../vuln/cvss.ts';
import type { Finding } from '../vuln/findings.ts';
import type { Unmatched } from '../vuln/match.ts';
import type { VexStatement } from '../vuln/vex.ts';

/** What a rule does when it fires. */
export type PolicyAction = 'deny' | 'quarantine' | 'warn';

/**
 * Source-origin facts, established by the source stage (src/source) and handed to the policy.
 * Every field is optional: a rule that needs one that is absent denies.
 */
export interface SourceFacts {
  /** Repository URI the build's source came from. */
  repository?: string;
  ref?: string;
  commit?: string;
  /** The ref is protected by central configuration, and the commit is on it. */
  protectedBranch?: boolean;
  /** The commit carries an approving review by someone other than its author. */
  reviewed?: boolean;
  /** Number of distinct approving reviewers of the commit. */
  reviewers?: number;
  /** The commit's signature verifies with a key trusted for the repository. */
  signedCommit?: boolean;
}

/**
 * The facts a policy decides on. A fact that could not be established (the vulnerability
 * database was unavailable, the SBOM could not be read, attestation did not run, the source
 * stage did not report) is left out, and every rule that needs it denies.
 */
export interface PolicyInput {
  project: string;
  components?: readonly Component[];
  findings?: readonly Finding[];
  /** Components that have advisories but could not be matched against them. */
  unmatched?: readonly Unmatched[];
  attestation?: {
    verified: boolean;
    evidenceTypes: readonly string[];
    /** Each EAR submod of the token and its `ear.status`; a required type needs its submod affirming. */
    submods?: Readonly<Record<string, string>>;
  };
  source?: SourceFacts;
  /**
   * SLSA build level of the build that produced the artifact, and the kind of runner that built
   * it (`gatehouse-ephemeral`, `github-actions-hosted`, `github-actions-self-hosted`,
   * `gitlab-ci-hosted`, `gitlab-ci-self-hosted`), both from the verified attestation.
   */
  build?: { slsaBuildLevel?: number; runnerKind?: string };
  /**
   * Components the gate found in the artifact that the declared SBOM lacks or names at another
   * version, with where they were found. Absent: the artifact was not catalogued (nothing to judge).
   */
  undeclared?: readonly UndeclaredComponent[];
  /** When the SBOM was created (its metadata timestamp). */
  sbom?: { createdAt?: string };
  /**
   * Identifiers of the artifact that VEX products may name besides its project purl: subject
   * digests (`sha256:<hex>`) and purls. Never output paths: another project may have the same.
   */
  subjects?: readonly string[];
  /** VEX statements that apply centrally; `not_affected` and `fixed` suppress findings. */
  vex?: readonly VexStatement[];
  /** Evaluation time (RFC 3339), for exception expiry and SBOM age; defaults to now. */
  now?: string;
}

/** Why a rule acted. */
export interface PolicyReason {
  rule: string;
  action: PolicyAction;
  message: string;
  purl?: string;
  vulnId?: string;
  aliases?: string[];
  severity?: Severity;
  cvssScore?: number;
  fixedVersions?: string[];
}

/** A finding or reason that a VEX statement or a policy exception set aside, and why. */
export interface Suppressed {
  by: 'vex' | 'exception';
  /** The exception's id, or the VEX document's id. */
  id: string;
  rule?: string;
  purl?: string;
  vulnId?: string;
  /** VEX status and justification, or the exception's reason. */
  reason: string;
  owner?: string;
  expires?: string;
}

/** The outcome of evaluating a policy, with the digest of the policy that made it. */
export interface PolicyDecision {
  outcome: 'allow' | 'deny' | 'quarantine';
  policyDigest: string;
  /** Reasons for a deny or quarantine. */
  reasons: PolicyReason[];
  /** Rules with action `warn` that fired; they never change the outcome. */
  warnings: PolicyReason[];
  /** What VEX statements and exceptions set aside. */
  suppressed?: Suppressed[];
}

/** A policy decision point: embedded here, or an external one (OPA) behind the same interface. */
export interface PolicyEngine {
  evaluate(input: PolicyInput): Promise<PolicyDecision>;
}

/**
 * The policy's source facts from the source stage's verification. Only a verification that
 * completed yields facts; otherwise only the repository and commit are known, and rules that
 * need more deny.
 */
export function sourceFactsOf(v: SourceVerification): SourceFacts {
  const facts: SourceFacts = { repository: v.repository };
  if (v.commit !== undefined) facts.commit = v.commit;
  if (!v.verified || v.provider === 'none') return facts;
  const held = v.refs.find((r) => r.contains && !r.rewritten);
  if (held !== undefined) facts.ref = held.ref;
  facts.protectedBranch = v.onProtectedRef;
  facts.reviewers = v.independentApprovals.exact;
  facts.reviewed = v.independentApprovals.exact > 0;
  facts.signedCommit = v.signature.present && v.signature.trusted;
  return facts;
}

/** The creation time a CycloneDX (`metadata.timestamp`) or SPDX (`creationInfo.created`) SBOM states. */
export function sbomCreatedAt(sbom: Record<string, unknown>): string | undefined {
  const meta = sbom.metadata as { timestamp?: unknown } | undefined;
  const info = sbom.creationInfo as { created?: unknown } | undefined;
  const t = meta?.timestamp ?? info?.created;
  return typeof t === 'string' && !Number.isNaN(Date.parse(t)) ? t : undefined;
}
