import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { canonicalJson, sha256Hex } from '../common/encoding.ts';
import { isGatehouseError } from '../common/errors.ts';
import { npmPurl } from '../sbom/purl.ts';
import { component } from '../testing/components.ts';
import type { Finding } from '../vuln/findings.ts';
import { EmbeddedPolicyEngine } from './embedded-engine.ts';
import { parsePolicy, policyDigest } from './policy.ts';
import type { PolicyInput } from './policy-engine.ts';

const yamlText = readFileSync(new URL('./testdata/default.yaml', import.meta.url), 'utf8');
const policy = parsePolicy(yamlText, 'default.yaml');

const finding = (name: string, severity: Finding['severity'], vulnId = `GHSA-${name}`): Finding => ({
  vulnId,
  aliases: ['CVE-1'],
  purl: npmPurl(name, '1.0.0'),
  name,
  version: '1.0.0',
  severity,
  fixedVersions: ['1.0.1'],
  summary: 's',
});
const clean: PolicyInput = {
  project: 'demo',
  components: [component(npmPurl('ok', '1.0.0'))],
  findings: [],
  attestation: {
    verified: true,
    evidenceTypes: ['software-measurement', 'tpm'],
    submods: { image: 'affirming', tpm: 'affirming' },
  },
};

describe('policy documents', () => {
  it('parses the YAML form and the same policy as JSON to one digest', () => {
    const json = JSON.stringify(policy);
    assert.equal(policyDigest(parsePolicy(json, 'p.json')), policyDigest(policy));
    assert.equal(policyDigest(policy), sha256Hex(canonicalJson(policy)));
    assert.match(policyDigest(policy), /^[0-9a-f]{64}$/);
  });

  it('applies defaults and freezes the result', () => {
    const r = policy.rules[0];
    assert.equal(r?.kind === 'vulnerability' && r.unknownSeverityAs, 'critical');
    assert.ok(Object.isFrozen(policy) && Object.isFrozen(policy.rules));
  });

  it('gives a different digest to a different policy', () => {
    const other = parsePolicy(yamlText.replace('maxSeverity: medium', 'maxSeverity: high'), 'x');
    assert.notEqual(policyDigest(other), policyDigest(policy));
  });

  const head = 'apiVersion: gatehouse.dev/v1\nkind: Policy\nname: p\n';
  const adversarial: [string, string, RegExp][] = [
    ['text that is not YAML', 'rules: [', /not valid YAML/],
    ['a key given twice', `${head}name: q\nrules: []\n`, /not valid YAML/],
    ['a wrong apiVersion', 'apiVersion: v2\nkind: Policy\nname: p\nrules: []\n', /field apiVersion/],
    ['an unknown top-level field', `${head}rules: []\nextra: 1\n`, /extra/],
    [
      'an unknown rule kind',
      `${head}rules:\n  - { id: r1, kind: licence, action: deny }\n`,
      /rule 'r1' \(rules\[0\]\) field kind/,
    ],
    [
      'a bad action',
      `${head}rules:\n  - { id: r1, kind: vulnerability, maxSeverity: high, action: block }\n`,
      /rule 'r1' \(rules\[0\]\) field action/,
    ],
    [
      'a bad severity',
      `${head}rules:\n  - { id: r1, kind: vulnerability, maxSeverity: severe, action: deny }\n`,
      /rule 'r1' \(rules\[0\]\) field maxSeverity/,
    ],
    [
      'a misspelt rule field',
      `${head}rules:\n  - { id: r1, kind: vulnerability, maxSeverty: high, action: deny }\n`,
      /rule 'r1'.*/,
    ],
    [
      'a repeated rule id',
      `${head}rules:\n  - { id: r1, kind: attestation, action: deny }\n  - { id: r1, kind: attestation, action: warn }\n`,
      /rule 'r1' \(rules\[1\]\) field id: repeats/,
    ],
    [
      'a range for a purl type without version rules',
      `${head}rules:\n  - { id: r1, kind: component-deny, purls: ['pkg:generic/x@>=1'], action: deny }\n`,
      /line 5: rule 'r1' \(rules\[0\]\) field purls\.0: .*no version ordering/,
    ],
    [
      'a string that is not a purl pattern',
      `${head}rules:\n  - { id: r1, kind: component-deny, purls: ['left-pad'], action: deny }\n`,
      /field purls\.0: 'left-pad' is not a purl pattern/,
    ],
    [
      'a CEL expression that does not parse',
      `${head}rules:\n  - id: r1\n    kind: cel\n    when: 'components.exists(c,'\n    message: m\n    action: deny\n`,
      /line 7: rule 'r1' \(rules\[0\]\) field when: the CEL expression does not parse/,
    ],
    [
      'a vulnerability rule with no threshold',
      `${head}rules:\n  - { id: r1, kind: vulnerability, action: deny }\n`,
      /needs maxSeverity, maxCvss or both/,
    ],
    [
      'a licence rule with neither allow nor deny',
      `${head}rules:\n  - { id: r1, kind: license, unknown: deny, action: deny }\n`,
      /needs allow, deny or both/,
    ],
    [
      'an exception without an owner',
      `${head}rules: []\nexceptions:\n  - { id: e1, reason: r, expires: 2030-01-01, vulnerabilities: [CVE-1] }\n`,
      /exception 'e1' \(exceptions\[0\]\) field owner/,
    ],
    [
      'an exception with an impossible date',
      `${head}rules: []\nexceptions:\n  - { id: e1, owner: o, reason: r, expires: 2030-02-31x, vulnerabilities: [CVE-1] }\n`,
      /field expires: must be a date/,
    ],
    [
      'an exception naming no rule of the policy',
      `${head}rules: []\nexceptions:\n  - { id: e1, owner: o, reason: r, expires: 2030-01-01, rules: [nope], vulnerabilities: [CVE-1] }\n`,
      /names no rule of this policy/,
    ],
    [
      'an OPA decision point with a bad path',
      `${head}rules: []\nopa: { url: 'http://127.0.0.1:8181', path: '../x' }\n`,
      /field opa\.path/,
    ],
    [
      'a purl with a nonsense version',
      `${head}rules:\n  - { id: r1, kind: component-deny, purls: ['pkg:npm/x@latest!'], action: deny }\n`,
      /neither a version nor a semver range/,
    ],
    [
      'an empty purl list',
      `${head}rules:\n  - { id: r1, kind: component-deny, purls: [], action: deny }\n`,
      /field purls/,
    ],
    [
      'a rule id with spaces',
      `${head}rules:\n  - { id: 'no vulns', kind: attestation, action: deny }\n`,
      /field id/,
    ],
    [
      'a YAML alias bomb',
      `a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n`,
      /not valid YAML/,
    ],
  ];
  for (const [what, text, message] of adversarial) {
    it(`refuses ${what} with BAD_POLICY naming the rule and field`, () => {
      assert.throws(
        () => parsePolicy(text, 'policy.yaml'),
        (e: unknown) =>
          isGatehouseError(e, 'BAD_POLICY') && e.where === 'policy.yaml' && message.test(e.message),
      );
    });
  }
});

describe('embedded policy engine', () => {
  const engine = new EmbeddedPolicyEngine({ policy });

  it('allows a clean build and records the policy digest', async () => {
    const d = await engine.evaluate(clean);
    assert.deepEqual(d, { outcome: 'allow', policyDigest: policyDigest(policy), reasons: [], warnings: [] });
  });

  it('denies findings above the maximum severity, with the finding in the reason', async () => {
    const d = await engine.evaluate({ ...clean, findings: [finding('a', 'high'), finding('b', 'medium')] });
    assert.equal(d.outcome, 'deny');
    assert.equal(d.reasons.length, 1);
    assert.deepEqual(d.reasons[0], {
      rule: 'no-critical-vulns',
      action: 'deny',
      message: 'a@1.0.0 is affected by GHSA-a (also CVE-1) (high); fixed in 1.0.1',
      purl: 'pkg:npm/a@1.0.0',
      vulnId: 'GHSA-a',
      aliases: ['CVE-1'],
      severity: 'high',
      fixedVersions: ['1.0.1'],
    });
  });

  it('counts a finding of unknown severity as critical unless told otherwise', async () => {
    assert.equal((await engine.evaluate({ ...clean, findings: [finding('u', 'unknown')] })).outcome, 'deny');
    const lenient = parsePolicy(
      yamlText.replace('action: deny', 'unknownSeverityAs: low\n    action: deny'),
      'x',
    );
    assert.equal(
      (
        await new EmbeddedPolicyEngine({ policy: lenient }).evaluate({
          ...clean,
          findings: [finding('u', 'unknown')],
        })
      ).outcome,
      'allow',
    );
  });

  const banned: [string, string, boolean][] = [
    ['event-stream', '3.3.6', true],
    ['event-stream', '3.3.5', false],
    ['left-pad', '0.0.1', true],
    ['left-pad', '1.3.0', true],
    ['@evil/pkg', '1.2.0', true],
    ['@evil/pkg', '1.4.2', false],
    ['@evil/pkg', '1.4.0-beta.1', true],
    ['left-pad-ok', '1.0.0', false],
  ];
  for (const [name, version, denied] of banned) {
    it(`${denied ? 'denies' : 'allows'} ${name}@${version} under the banned-components rule`, async () => {
      const d = await engine.evaluate({ ...clean, components: [component(npmPurl(name, version))] });
      assert.equal(d.outcome, denied ? 'deny' : 'allow');
      if (denied) assert.equal(d.reasons[0]?.purl, npmPurl(name, version));
    });
  }

  it('denies an unverified attestation and one lacking required evidence', async () => {
    const unverified = await engine.evaluate({
      ...clean,
      attestation: { verified: false, evidenceTypes: ['software-measurement'] },
    });
    assert.equal(unverified.outcome, 'deny');
    const lacking = await engine.evaluate({
      ...clean,
      attestation: { verified: true, evidenceTypes: ['tpm'] },
    });
    assert.match(lacking.reasons[0]?.message ?? '', /software-measurement/);
  });

  it('fails closed: a rule whose facts are missing denies, whatever its action', async () => {
    const warnOnly = parsePolicy(yamlText.replaceAll('action: deny', 'action: warn'), 'x');
    const e = new EmbeddedPolicyEngine({ policy: warnOnly });
    for (const missing of ['findings', 'components', 'attestation'] as const) {
      const { [missing]: _, ...input } = clean;
      const d = await e.evaluate(input);
      assert.equal(d.outcome, 'deny', missing);
      assert.equal(d.reasons.length, 1);
      assert.match(d.reasons[0]?.message ?? '', /missing/);
    }
  });

  it('ranks deny over quarantine over warn', async () => {
    const text = `apiVersion: gatehouse.dev/v1
kind: Policy
name: mixed
rules:
  - { id: w, kind: vulnerability, maxSeverity: none, action: warn }
  - { id: q, kind: vulnerability, maxSeverity: low, action: quarantine }
  - { id: d, kind: vulnerability, maxSeverity: high, action: deny }
`;
    const e = new EmbeddedPolicyEngine({ policy: parsePolicy(text, 'x') });
    const run = async (s: Finding['severity']) => e.evaluate({ ...clean, findings: [finding('x', s)] });
    const low = await run('low');
    assert.equal(low.outcome, 'allow');
    assert.deepEqual(
      low.warnings.map((w) => w.rule),
      ['w'],
    );
    assert.equal((await run('medium')).outcome, 'quarantine');
    const crit = await run('critical');
    assert.equal(crit.outcome, 'deny');
    assert.deepEqual(
      crit.reasons.map((r) => r.rule),
      ['q', 'd'],
    );
  });

  it('allows anything under a policy with no rules', async () => {
    const empty = parsePolicy('apiVersion: gatehouse.dev/v1\nkind: Policy\nname: open\nrules: []\n', 'x');
    assert.equal(
      (await new EmbeddedPolicyEngine({ policy: empty }).evaluate({ project: 'p' })).outcome,
      'allow',
    );
  });
});
