export { EmbeddedPolicyEngine } from './embedded-engine.ts';
export { initSecurityRole, loadSecuritySigner, securityKeyPath, trustedSecurityKeys } from './home-policy.ts';
export { CombinedPolicyEngine, OpaPolicyEngine } from './opa-engine.ts';
export type {
  AttestationRule,
  CelRule,
  ComponentAllowRule,
  ComponentDenyRule,
  LicenseRule,
  Policy,
  PolicyAction,
  PolicyException,
  PolicyRule,
  SbomAgeRule,
  SlsaRule,
  SourceRule,
  VulnerabilityRule,
} from './policy.ts';
export { parsePolicy, policyDigest } from './policy.ts';
export type {
  PolicyDecision,
  PolicyEngine,
  PolicyInput,
  PolicyReason,
  SourceFacts,
  Suppressed,
} from './policy-engine.ts';
export { sbomCreatedAt, sourceFactsOf } from './policy-engine.ts';
export type { LoadedPolicy, ReevaluationResult, TriageAct } from './policy-service.ts';
export { DEFAULT_POLICY_NAME, engineForPolicy, PolicyService } from './policy-service.ts';
export type { SecuritySignature, TrustedKey } from './signed-policy.ts';
export { SECURITY_PAYLOAD, signSecurityAct, verifySecurityAct } from './signed-policy.ts';
