import type { Component } from '../sbom/model.ts';
import type { Severity } from '../vuln/cvss.ts';
import type { Finding } from '../vuln/match.ts';
import type { PolicyAction } from './policy.ts';

/**
 * The facts a policy decides on. A fact that could not be established (the vulnerability
 * database was unavailable, the SBOM could not be read, attestation did not run) is left out,
 * and every rule that needs it denies.
 */
export interface PolicyInput {
  project: string;
  components?: readonly Component[];
  findings?: readonly Finding[];
  attestation?: { verified: boolean; evidenceTypes: readonly string[] };
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
  fixedVersions?: string[];
}

/** The outcome of evaluating a policy, with the digest of the policy that made it. */
export interface PolicyDecision {
  outcome: 'allow' | 'deny' | 'quarantine';
  policyDigest: string;
  /** Reasons for a deny or quarantine. */
  reasons: PolicyReason[];
  /** Rules with action `warn` that fired; they never change the outcome. */
  warnings: PolicyReason[];
}

/** A policy decision point: embedded here, or an external one (OPA) behind the same interface. */
export interface PolicyEngine {
  evaluate(input: PolicyInput): Promise<PolicyDecision>;
}
