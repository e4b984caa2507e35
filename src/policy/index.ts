export { EmbeddedPolicyEngine } from './embedded-engine.ts';
export type {
  AttestationRule,
  ComponentDenyRule,
  Policy,
  PolicyAction,
  PolicyRule,
  VulnerabilityRule,
} from './policy.ts';
export { parsePolicy, policyDigest } from './policy.ts';
export type { PolicyDecision, PolicyEngine, PolicyInput, PolicyReason } from './policy-engine.ts';
