import type { Component } from '../sbom/model.ts';
import { SEVERITY_RANK, type Severity } from '../vuln/cvss.ts';
import type { Finding } from '../vuln/findings.ts';
import { projectPurl, vexFor } from '../vuln/vex.ts';
import { type CelPredicate, celComponent, celFacts, celFinding, compileCel } from './cel.ts';
import { licenseChoices, licenseNamed, readLicense } from './licenses.ts';
import {
  type AttestationRule,
  type CelRule,
  type ComponentAllowRule,
  type ComponentDenyRule,
  EVIDENCE_SUBMODS,
  type LicenseRule,
  type Policy,
  type PolicyException,
  policyDigest,
  type SbomAgeRule,
  type SlsaRule,
  type SourceRule,
  type VulnerabilityRule,
} from './policy.ts';
import type {
  PolicyAction,
  PolicyDecision,
  PolicyEngine,
  PolicyInput,
  PolicyReason,
  Suppressed,
} from './policy-engine.ts';
import {
  type ComponentPattern,
  matchesComponent,
  matchesPurl,
  parseComponentPattern,
} from './purl-pattern.ts';

const THRESHOLD: Record<NonNullable<VulnerabilityRule['maxSeverity']>, number> = {
  none: 0,
  low: SEVERITY_RANK.low,
  medium: SEVERITY_RANK.medium,
  high: SEVERITY_RANK.high,
  critical: SEVERITY_RANK.critical,
};

// A finding without a CVSS score is compared with a CVSS threshold at the top of its severity
// band: the cautious reading.
const BAND_TOP: Record<Exclude<Severity, 'unknown'>, number> = {
  low: 3.9,
  medium: 6.9,
  high: 8.9,
  critical: 10,
};

const missing = (rule: string, what: string): PolicyReason => ({
  rule,
  action: 'deny',
  message: `${what} missing, so this rule cannot pass`,
});

/** The CVSS score a finding is judged by: the higher of its v3 and v4 scores, if any. */
export function findingScore(f: Finding): number | undefined {
  if (f.cvssV3Score === undefined && f.cvssV4Score === undefined) return undefined;
  return Math.max(f.cvssV3Score ?? 0, f.cvssV4Score ?? 0);
}

interface CompiledException {
  e: PolicyException;
  expiresAt: number;
  purls: ComponentPattern[];
}

/**
 * The policy engine that runs in process: evaluates a parsed {@link Policy} against the facts of
 * a build. Deny beats quarantine beats warn; a rule whose facts are missing denies. VEX
 * statements set findings aside before the rules run; exceptions set reasons aside after.
 */
export class EmbeddedPolicyEngine implements PolicyEngine {
  readonly #policy: Policy;
  readonly #digest: string;
  readonly #patterns = new Map<string, ComponentPattern[]>();
  readonly #cel = new Map<string, CelPredicate>();
  readonly #exceptions: CompiledException[];

  constructor(options: { policy: Policy }) {
    this.#policy = options.policy;
    this.#digest = policyDigest(options.policy);
    for (const r of options.policy.rules) {
      if (r.kind === 'component-deny' || r.kind === 'component-allow')
        this.#patterns.set(r.id, r.purls.map(parseComponentPattern));
      if (r.kind === 'cel') this.#cel.set(r.id, compileCel(r.when));
    }
    this.#exceptions = options.policy.exceptions.map((e) => ({
      e,
      // A bare date covers that whole day (UTC).
      expiresAt: /^\d{4}-\d{2}-\d{2}$/.test(e.expires)
        ? Date.parse(`${e.expires}T23:59:59.999Z`)
        : Date.parse(e.expires),
      purls: (e.purls ?? []).map(parseComponentPattern),
    }));
  }

  /** sha256 hex of the policy this engine evaluates. */
  get policyDigest(): string {
    return this.#digest;
  }

  /** The policy this engine evaluates. */
  get policy(): Policy {
    return this.#policy;
  }

  async evaluate(input: PolicyInput): Promise<PolicyDecision> {
    const now = input.now === undefined ? new Date() : new Date(input.now);
    const suppressed: Suppressed[] = [];

    // VEX first: a finding the vendor or the security team has declared not affecting the
    // product never reaches the rules; the decision lists it with the statement's reason.
    let findings = input.findings;
    if (findings !== undefined && input.vex !== undefined && input.vex.length > 0) {
      const subjects = [projectPurl(input.project), ...(input.subjects ?? [])];
      const vex = input.vex;
      findings = findings.filter((f) => {
        const s = vexFor(f, vex, subjects);
        if (s === undefined) return true;
        suppressed.push({
          by: 'vex',
          id: s.document,
          purl: f.purl,
          vulnId: f.vulnId,
          reason: [s.status, s.justification, s.detail].filter((x) => x !== undefined).join(': '),
        });
        return false;
      });
    }
    const facts =
      findings === input.findings ? input : { ...input, ...(findings === undefined ? {} : { findings }) };

    const fired: PolicyReason[] = [];
    for (const rule of this.#policy.rules) {
      switch (rule.kind) {
        case 'vulnerability':
          fired.push(...this.#vulnerability(rule, facts));
          break;
        case 'component-deny':
          fired.push(...this.#componentDeny(rule, facts));
          break;
        case 'component-allow':
          fired.push(...this.#componentAllow(rule, facts));
          break;
        case 'license':
          fired.push(...this.#license(rule, facts));
          break;
        case 'attestation':
          fired.push(...this.#attestation(rule, facts));
          break;
        case 'slsa':
          fired.push(...this.#slsa(rule, facts));
          break;
        case 'source':
          fired.push(...this.#source(rule, facts));
          break;
        case 'sbom-age':
          fired.push(...this.#sbomAge(rule, facts, now));
          break;
        case 'cel':
          fired.push(...this.#celRule(rule, facts, now));
          break;
        case 'undeclared-component':
          fired.push(...undeclaredReasons(rule.id, rule.action, facts));
          break;
        default: {
          const never: never = rule;
          throw new Error(`unhandled rule ${JSON.stringify(never)}`);
        }
      }
    }

    // What the artifact holds and the project did not declare is refused even by a policy that
    // never mentions it: a decoy lockfile must not be a way to ship an unjudged package.
    if (!this.#policy.rules.some((r) => r.kind === 'undeclared-component'))
      fired.push(...undeclaredReasons('undeclared-component', 'deny', facts));

    // Exceptions: an accountable, expiring waiver of one reason. Fail-closed reasons (missing
    // facts) are never waived: an exception covers a finding, not a check that did not run.
    const kept: PolicyReason[] = [];
    const expiredWarnings: PolicyReason[] = [];
    for (const r of fired) {
      const failClosed = r.message.endsWith('cannot pass');
      const match = failClosed ? undefined : this.#exceptions.find((x) => this.#covers(x, r));
      if (match === undefined) {
        kept.push(r);
        continue;
      }
      if (match.expiresAt < now.getTime()) {
        kept.push(r);
        expiredWarnings.push({
          rule: r.rule,
          action: 'warn',
          message: `exception '${match.e.id}' (owner ${match.e.owner}) expired on ${match.e.expires} and no longer covers: ${r.message}`,
          ...(r.purl === undefined ? {} : { purl: r.purl }),
        });
        continue;
      }
      suppressed.push({
        by: 'exception',
        id: match.e.id,
        rule: r.rule,
        ...(r.purl === undefined ? {} : { purl: r.purl }),
        ...(r.vulnId === undefined ? {} : { vulnId: r.vulnId }),
        reason: match.e.reason,
        owner: match.e.owner,
        expires: match.e.expires,
      });
    }

    const reasons = kept.filter((r) => r.action !== 'warn');
    const warnings = [...kept.filter((r) => r.action === 'warn'), ...expiredWarnings];
    const outcome = reasons.some((r) => r.action === 'deny')
      ? 'deny'
      : reasons.some((r) => r.action === 'quarantine')
        ? 'quarantine'
        : 'allow';
    const decision: PolicyDecision = { outcome, policyDigest: this.#digest, reasons, warnings };
    if (suppressed.length > 0) decision.suppressed = suppressed;
    return decision;
  }

  #covers(x: CompiledException, r: PolicyReason): boolean {
    const e = x.e;
    if (e.rules !== undefined && !e.rules.includes(r.rule)) return false;
    if (e.vulnerabilities !== undefined) {
      const ids = new Set([r.vulnId, ...(r.aliases ?? [])].filter((i) => i !== undefined));
      if (!e.vulnerabilities.some((v) => ids.has(v))) return false;
    }
    if (x.purls.length > 0) {
      const purl = r.purl;
      if (purl === undefined || !x.purls.some((p) => matchesPurl(p, purl))) return false;
    }
    return true;
  }

  #vulnerability(rule: VulnerabilityRule, input: PolicyInput): PolicyReason[] {
    // Fail closed: no findings means the check did not run, not that nothing is vulnerable.
    if (input.findings === undefined) return [missing(rule.id, 'vulnerability findings are')];
    const out: PolicyReason[] = [];
    for (const u of input.unmatched ?? [])
      out.push({
        rule: rule.id,
        action: rule.unmatchable,
        message: `${u.purl} has advisories but cannot be matched against them: ${u.reason}`,
        purl: u.purl,
      });
    for (const f of input.findings) {
      if (
        rule.ecosystems !== undefined &&
        (f.ecosystem === undefined || !rule.ecosystems.includes(f.ecosystem))
      )
        continue;
      const hasFix = f.fixedVersions.length > 0;
      if (rule.onlyWithFix && !hasFix) continue;
      const rated: Exclude<Severity, 'unknown'> =
        f.severity === 'unknown' ? rule.unknownSeverityAs : f.severity;
      const score = findingScore(f);
      const bySeverity = rule.maxSeverity !== undefined && SEVERITY_RANK[rated] > THRESHOLD[rule.maxSeverity];
      const byScore = rule.maxCvss !== undefined && (score ?? BAND_TOP[rated]) > rule.maxCvss;
      if (!bySeverity && !byScore) continue;
      const fix = hasFix ? `; fixed in ${f.fixedVersions.join(', ')}` : '; no fix known';
      const rating = `${f.severity}${f.severity === 'unknown' ? `, counted as ${rated}` : ''}${score === undefined ? '' : `, CVSS ${score.toFixed(1)}`}`;
      const aka =
        f.aliases.length > 0
          ? ` (also ${f.aliases.slice(0, 4).join(', ')}${f.aliases.length > 4 ? ', …' : ''})`
          : '';
      const reason: PolicyReason = {
        rule: rule.id,
        action: rule.action,
        message: `${f.name}@${f.version} is affected by ${f.vulnId}${aka} (${rating})${fix}${whereFound(input, f.purl)}`,
        purl: f.purl,
        vulnId: f.vulnId,
        aliases: f.aliases,
        severity: f.severity,
        fixedVersions: f.fixedVersions,
      };
      if (score !== undefined) reason.cvssScore = score;
      out.push(reason);
    }
    return out;
  }

  #componentDeny(rule: ComponentDenyRule, input: PolicyInput): PolicyReason[] {
    if (input.components === undefined) return [missing(rule.id, 'the component list is')];
    const out: PolicyReason[] = [];
    const patterns = this.#patterns.get(rule.id) ?? [];
    for (const c of input.components) {
      const m = patterns.find((p) => matchesComponent(p, c));
      if (m === undefined) continue;
      out.push({
        rule: rule.id,
        action: rule.action,
        message: `${c.name}@${c.version} is banned by '${m.pattern}'`,
        purl: c.purl,
      });
    }
    return out;
  }

  #componentAllow(rule: ComponentAllowRule, input: PolicyInput): PolicyReason[] {
    if (input.components === undefined) return [missing(rule.id, 'the component list is')];
    const patterns = this.#patterns.get(rule.id) ?? [];
    return input.components
      .filter((c) => !patterns.some((p) => matchesComponent(p, c)))
      .map((c) => ({
        rule: rule.id,
        action: rule.action,
        message: `${c.name}@${c.version} is not on the allowed list`,
        purl: c.purl,
      }));
  }

  #license(rule: LicenseRule, input: PolicyInput): PolicyReason[] {
    if (input.components === undefined) return [missing(rule.id, 'the component list is')];
    const out: PolicyReason[] = [];
    for (const c of input.components) {
      const read = readLicense(c.licenses);
      if (!read.known) {
        if (rule.unknown !== 'allow')
          out.push({
            rule: rule.id,
            action: rule.unknown as PolicyAction,
            message: `${c.name}@${c.version} has an unknown licence (${read.why})`,
            purl: c.purl,
          });
        continue;
      }
      const choices = licenseChoices(read.tree);
      const denied =
        rule.deny !== undefined && choices.every((ch) => ch.some((l) => licenseNamed(l, rule.deny ?? [])));
      const allowed =
        rule.allow === undefined || choices.some((ch) => ch.every((l) => licenseNamed(l, rule.allow ?? [])));
      if (denied || !allowed)
        out.push({
          rule: rule.id,
          action: rule.action,
          message: `${c.name}@${c.version} is licensed ${read.expression}, which the policy ${denied ? 'denies' : 'does not allow'}`,
          purl: c.purl,
        });
    }
    return out;
  }

  #attestation(rule: AttestationRule, input: PolicyInput): PolicyReason[] {
    const a = input.attestation;
    if (a === undefined) return [missing(rule.id, 'attestation facts are')];
    if (!a.verified)
      return [{ rule: rule.id, action: rule.action, message: 'the runner attestation was not verified' }];
    const lacking = rule.require.filter((t) => !a.evidenceTypes.includes(t));
    // Naming a type is not enough: its appraisal (the submod) must be there and affirm, so that
    // a token listing a kind whose submod is missing or contraindicated fails closed.
    const unaffirmed = rule.require
      .filter((t) => !lacking.includes(t))
      .map((t) => [t, a.submods?.[EVIDENCE_SUBMODS[t]]] as const)
      .filter(([, status]) => status !== 'affirming');
    const out: PolicyReason[] = [];
    if (lacking.length > 0)
      out.push({
        rule: rule.id,
        action: rule.action,
        message: `the attestation lacks required evidence: ${lacking.join(', ')}`,
      });
    if (unaffirmed.length > 0)
      out.push({
        rule: rule.id,
        action: rule.action,
        message: `the attestation does not affirm required evidence: ${unaffirmed
          .map(([t, status]) => `${t} (submod ${EVIDENCE_SUBMODS[t]} ${status ?? 'absent'})`)
          .join(', ')}`,
      });
    return out;
  }

  #slsa(rule: SlsaRule, input: PolicyInput): PolicyReason[] {
    const level = input.build?.slsaBuildLevel;
    if (level === undefined) return [missing(rule.id, 'the SLSA build level is')];
    if (level >= rule.minLevel) return [];
    return [
      {
        rule: rule.id,
        action: rule.action,
        message: `the build is SLSA Build L${level}; the policy requires L${rule.minLevel}`,
      },
    ];
  }

  #source(rule: SourceRule, input: PolicyInput): PolicyReason[] {
    const s = input.source;
    if (s === undefined) return [missing(rule.id, 'source facts are')];
    const out: PolicyReason[] = [];
    const need = (wanted: boolean, fact: boolean | undefined, name: string, failure: string) => {
      if (!wanted) return;
      if (fact === undefined) out.push(missing(rule.id, `the source fact '${name}' is`));
      else if (!fact) out.push({ rule: rule.id, action: rule.action, message: failure });
    };
    need(
      rule.protectedBranch,
      s.protectedBranch,
      'protectedBranch',
      `${s.ref ?? 'the ref'} is not a protected branch`,
    );
    need(
      rule.review,
      s.reviewed,
      'reviewed',
      `commit ${s.commit ?? ''} has no approving review`.replace('  ', ' '),
    );
    need(
      rule.signedCommits,
      s.signedCommit,
      'signedCommit',
      `commit ${s.commit ?? ''} is not signed by a trusted key`.replace('  ', ' '),
    );
    if (rule.minReviewers !== undefined) {
      if (s.reviewers === undefined) out.push(missing(rule.id, "the source fact 'reviewers' is"));
      else if (s.reviewers < rule.minReviewers)
        out.push({
          rule: rule.id,
          action: rule.action,
          message: `the commit has ${s.reviewers} approving reviewers; the policy requires ${rule.minReviewers}`,
        });
    }
    return out;
  }

  #sbomAge(rule: SbomAgeRule, input: PolicyInput, now: Date): PolicyReason[] {
    const created = input.sbom?.createdAt === undefined ? Number.NaN : Date.parse(input.sbom.createdAt);
    if (Number.isNaN(created)) return [missing(rule.id, 'the SBOM creation time is')];
    const hours = (now.getTime() - created) / 3_600_000;
    if (hours <= rule.maxAgeHours) return [];
    return [
      {
        rule: rule.id,
        action: rule.action,
        message: `the SBOM is ${hours.toFixed(1)} hours old; the policy allows ${rule.maxAgeHours}`,
      },
    ];
  }

  #celRule(rule: CelRule, input: PolicyInput, now: Date): PolicyReason[] {
    const predicate = this.#cel.get(rule.id);
    if (predicate === undefined) return [missing(rule.id, 'the compiled expression is')];
    const facts = celFacts(input, now);
    const failed = (e: unknown): PolicyReason => ({
      rule: rule.id,
      action: 'deny',
      message: `the CEL rule could not be evaluated (${e instanceof Error ? (e.message.split('\n')[0] ?? '') : String(e)}), so this rule cannot pass`,
    });
    try {
      if (rule.forEach === undefined)
        return predicate(facts) ? [{ rule: rule.id, action: rule.action, message: rule.message }] : [];
      const out: PolicyReason[] = [];
      if (rule.forEach === 'component') {
        if (input.components === undefined) return [missing(rule.id, 'the component list is')];
        const byPurl = new Map<string, Record<string, unknown>[]>();
        for (const f of input.findings ?? [])
          byPurl.set(f.purl, [...(byPurl.get(f.purl) ?? []), celFinding(f)]);
        for (const c of input.components) {
          const ctx = {
            ...facts,
            component: celComponent(c as Component),
            componentFindings: byPurl.get(c.purl) ?? [],
          };
          if (predicate(ctx))
            out.push({
              rule: rule.id,
              action: rule.action,
              message: `${c.name}@${c.version}: ${rule.message}`,
              purl: c.purl,
            });
        }
      } else {
        if (input.findings === undefined) return [missing(rule.id, 'vulnerability findings are')];
        for (const f of input.findings) {
          if (predicate({ ...facts, finding: celFinding(f) }))
            out.push({
              rule: rule.id,
              action: rule.action,
              message: `${f.vulnId} in ${f.name}@${f.version}: ${rule.message}`,
              purl: f.purl,
              vulnId: f.vulnId,
              aliases: f.aliases,
            });
        }
      }
      return out;
    } catch (e) {
      return [failed(e)];
    }
  }
}

/** Where in the artifact the gate found a component (from its judged origins), for a reason's text. */
function whereFound(input: PolicyInput, purl: string): string {
  const c = input.components?.find((x) => x.purl === purl);
  const paths = (c?.origins ?? [])
    .filter((o) => o.kind === 'found' && o.path !== undefined)
    .map((o) => o.path);
  if (paths.length === 0) return '';
  return `; found in the artifact at ${paths.slice(0, 3).join(', ')}${paths.length > 3 ? ', …' : ''}`;
}

/** One reason per component found in the artifact and not declared, naming where it was found. */
function undeclaredReasons(rule: string, action: PolicyAction, input: PolicyInput): PolicyReason[] {
  return (input.undeclared ?? []).map((u) => ({
    rule,
    action,
    purl: u.purl,
    message:
      u.declaredVersions.length === 0
        ? `${u.name}@${u.version} is in the artifact (${u.path}, ${u.method}) but the project declares no such package`
        : `${u.name}@${u.version} is in the artifact (${u.path}, ${u.method}) but the project declares ${u.name} at ${u.declaredVersions.join(', ')}`,
  }));
}
