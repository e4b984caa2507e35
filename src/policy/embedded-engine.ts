import semver from 'semver';
import { SEVERITY_RANK, type Severity } from '../vuln/cvss.ts';
import {
  type AttestationRule,
  type ComponentDenyRule,
  type DenyPattern,
  type Policy,
  parseDenyPattern,
  policyDigest,
  type VulnerabilityRule,
} from './policy.ts';
import type { PolicyDecision, PolicyEngine, PolicyInput, PolicyReason } from './policy-engine.ts';

const THRESHOLD: Record<VulnerabilityRule['maxSeverity'], number> = {
  none: 0,
  low: SEVERITY_RANK.low,
  medium: SEVERITY_RANK.medium,
  high: SEVERITY_RANK.high,
  critical: SEVERITY_RANK.critical,
};

/**
 * The policy engine that runs in process: evaluates a parsed {@link Policy} against the facts of
 * a build. Deny beats quarantine beats warn; a rule whose facts are missing denies.
 */
export class EmbeddedPolicyEngine implements PolicyEngine {
  readonly #policy: Policy;
  readonly #digest: string;
  readonly #matchers: Map<string, DenyPattern[]>;

  constructor(options: { policy: Policy }) {
    this.#policy = options.policy;
    this.#digest = policyDigest(options.policy);
    this.#matchers = new Map(
      options.policy.rules
        .filter((r) => r.kind === 'component-deny')
        .map((r) => [r.id, r.purls.map(parseDenyPattern)]),
    );
  }

  /** sha256 hex of the policy this engine evaluates. */
  get policyDigest(): string {
    return this.#digest;
  }

  async evaluate(input: PolicyInput): Promise<PolicyDecision> {
    const fired: PolicyReason[] = [];
    for (const rule of this.#policy.rules) {
      switch (rule.kind) {
        case 'vulnerability':
          fired.push(...this.#vulnerability(rule, input));
          break;
        case 'component-deny':
          fired.push(...this.#componentDeny(rule, input));
          break;
        case 'attestation':
          fired.push(...this.#attestation(rule, input));
          break;
        default: {
          const never: never = rule;
          throw new Error(`unhandled rule ${JSON.stringify(never)}`);
        }
      }
    }
    const reasons = fired.filter((r) => r.action !== 'warn');
    const warnings = fired.filter((r) => r.action === 'warn');
    const outcome = reasons.some((r) => r.action === 'deny')
      ? 'deny'
      : reasons.some((r) => r.action === 'quarantine')
        ? 'quarantine'
        : 'allow';
    return { outcome, policyDigest: this.#digest, reasons, warnings };
  }

  #vulnerability(rule: VulnerabilityRule, input: PolicyInput): PolicyReason[] {
    // Fail closed: no findings means the check did not run, not that nothing is vulnerable.
    if (input.findings === undefined)
      return [
        {
          rule: rule.id,
          action: 'deny',
          message: 'vulnerability findings are missing, so this rule cannot pass',
        },
      ];
    const limit = THRESHOLD[rule.maxSeverity];
    const out: PolicyReason[] = [];
    for (const f of input.findings) {
      const rated: Severity = f.severity === 'unknown' ? rule.unknownSeverityAs : f.severity;
      if (SEVERITY_RANK[rated] <= limit) continue;
      const fix = f.fixedVersions.length > 0 ? `; fixed in ${f.fixedVersions.join(', ')}` : '; no fix known';
      out.push({
        rule: rule.id,
        action: rule.action,
        message: `${f.name}@${f.version} is affected by ${f.vulnId} (${f.severity}${f.severity === 'unknown' ? `, counted as ${rated}` : ''})${fix}`,
        purl: f.purl,
        vulnId: f.vulnId,
        aliases: f.aliases,
        severity: f.severity,
        fixedVersions: f.fixedVersions,
      });
    }
    return out;
  }

  #componentDeny(rule: ComponentDenyRule, input: PolicyInput): PolicyReason[] {
    if (input.components === undefined)
      return [
        { rule: rule.id, action: 'deny', message: 'the component list is missing, so this rule cannot pass' },
      ];
    const out: PolicyReason[] = [];
    for (const c of input.components) {
      if (c.ecosystem !== 'npm') continue;
      for (const m of this.#matchers.get(rule.id) ?? []) {
        if (m.name !== c.name) continue;
        const matches =
          m.version === undefined ||
          m.version === c.version ||
          (m.range !== undefined && semver.satisfies(c.version, m.range, { includePrerelease: true }));
        if (!matches) continue;
        out.push({
          rule: rule.id,
          action: rule.action,
          message: `${c.name}@${c.version} is banned by '${m.pattern}'`,
          purl: c.purl,
        });
        break;
      }
    }
    return out;
  }

  #attestation(rule: AttestationRule, input: PolicyInput): PolicyReason[] {
    const a = input.attestation;
    if (a === undefined)
      return [
        { rule: rule.id, action: 'deny', message: 'attestation facts are missing, so this rule cannot pass' },
      ];
    if (!a.verified)
      return [{ rule: rule.id, action: rule.action, message: 'the runner attestation was not verified' }];
    const missing = rule.require.filter((t) => !a.evidenceTypes.includes(t));
    if (missing.length === 0) return [];
    return [
      {
        rule: rule.id,
        action: rule.action,
        message: `the attestation lacks required evidence: ${missing.join(', ')}`,
      },
    ];
  }
}
