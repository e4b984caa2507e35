import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { component } from '../testing/components.ts';
import type { Finding } from '../vuln/findings.ts';
import { EmbeddedPolicyEngine } from './embedded-engine.ts';
import { readLicense } from './licenses.ts';
import { parsePolicy } from './policy.ts';
import type { PolicyInput } from './policy-engine.ts';

const head = 'apiVersion: gatehouse.dev/v1\nkind: Policy\nname: p\n';
const engine = (yaml: string) =>
  new EmbeddedPolicyEngine({ policy: parsePolicy(`${head}${yaml}`, 'p.yaml') });

const finding = (purl: string, vulnId: string, extra: Partial<Finding> = {}): Finding => {
  const { name, version } = component(purl);
  return {
    vulnId,
    aliases: [],
    purl,
    name,
    version,
    severity: 'high',
    fixedVersions: ['9.9.9'],
    summary: '',
    ...extra,
  };
};
const base: PolicyInput = { project: 'app', components: [], findings: [], now: '2025-06-01T00:00:00Z' };

describe('vulnerability thresholds', () => {
  const e = engine(
    'rules:\n  - { id: cvss, kind: vulnerability, maxCvss: 7.0, onlyWithFix: true, action: quarantine }\n',
  );
  it('acts on a CVSS score above the threshold (the higher of v3 and v4)', async () => {
    const d = await e.evaluate({
      ...base,
      findings: [
        finding('pkg:npm/a@1', 'V1', { cvssV3Score: 6.5, cvssV4Score: 7.1 }),
        finding('pkg:npm/b@1', 'V2', { cvssV3Score: 7.0 }),
      ],
    });
    assert.equal(d.outcome, 'quarantine');
    assert.deepEqual(
      d.reasons.map((r) => [r.vulnId, r.cvssScore]),
      [['V1', 7.1]],
    );
  });
  it('skips findings without a fix when onlyWithFix is set', async () => {
    const d = await e.evaluate({
      ...base,
      findings: [finding('pkg:npm/a@1', 'V1', { cvssV3Score: 9.8, fixedVersions: [] })],
    });
    assert.equal(d.outcome, 'allow');
  });
  it('compares a finding without a score by the top of its severity band', async () => {
    const d = await e.evaluate({ ...base, findings: [finding('pkg:npm/a@1', 'V1', { severity: 'high' })] });
    assert.equal(d.reasons[0]?.vulnId, 'V1');
  });
  it('lets a component that cannot be matched act as the rule says (deny by default)', async () => {
    const d = await e.evaluate({
      ...base,
      unmatched: [{ purl: 'pkg:npm/x@latest', reason: 'not a version', code: 'BAD_INPUT' }],
    });
    assert.equal(d.outcome, 'deny');
    assert.match(d.reasons[0]?.message ?? '', /cannot be matched/);
  });
});

describe('component rules', () => {
  const e = engine(
    [
      'rules:',
      "  - { id: ban, kind: component-deny, purls: ['pkg:maven/org.apache.logging.log4j/log4j-core@>=2.0-beta9, <2.17.1', 'pkg:pypi/evil-*'], action: deny }",
      "  - { id: only, kind: component-allow, purls: ['pkg:maven/*/*', 'pkg:pypi/*', 'pkg:npm/%40acme/*'], action: warn }",
      '',
    ].join('\n'),
  );
  it('bans by purl pattern and ecosystem version range', async () => {
    const d = await e.evaluate({
      ...base,
      components: [
        component('pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1'),
        component('pkg:maven/org.apache.logging.log4j/log4j-core@2.17.1'),
        component('pkg:pypi/evil-pkg@1.0'),
      ],
    });
    assert.deepEqual(
      d.reasons.map((r) => r.purl),
      ['pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1', 'pkg:pypi/evil-pkg@1.0'],
    );
  });
  it('warns about components outside the allowed list', async () => {
    const d = await e.evaluate({
      ...base,
      components: [component('pkg:npm/%40acme/ui@1.0.0'), component('pkg:npm/left-pad@1.0.0')],
    });
    assert.equal(d.outcome, 'allow');
    assert.deepEqual(
      d.warnings.map((w) => w.purl),
      ['pkg:npm/left-pad@1.0.0'],
    );
  });
});

describe('licence rules', () => {
  const e = engine(
    "rules:\n  - { id: lic, kind: license, allow: ['category:permissive', 'MPL-2.0'], deny: ['category:network-copyleft'], unknown: quarantine, action: deny }\n",
  );
  const cases: [string, string[] | undefined, string][] = [
    ['a permissive licence', ['MIT'], 'allow'],
    ['a free-form name spdx-correct normalises', ['Apache 2'], 'allow'],
    ['an OR with one allowed choice', ['(GPL-3.0-only OR MIT)'], 'allow'],
    ['an AND with a licence outside the list', ['MIT AND GPL-2.0-only'], 'deny'],
    ['a denied category', ['AGPL-3.0-or-later'], 'deny'],
    ['NOASSERTION', ['NOASSERTION'], 'quarantine'],
    ['NONE', ['NONE'], 'quarantine'],
    ['no licence', undefined, 'quarantine'],
    ['an unparseable licence', ['see LICENSE file ((('], 'quarantine'],
  ];
  for (const [what, licenses, outcome] of cases)
    it(`decides ${what}: ${outcome}`, async () => {
      const d = await e.evaluate({
        ...base,
        components: [component('pkg:npm/x@1.0.0', licenses === undefined ? {} : { licenses })],
      });
      assert.equal(d.outcome, outcome, JSON.stringify(d.reasons));
    });
  it('normalises declared licences into one SPDX expression', () => {
    const r = readLicense(['Apache 2', 'MIT OR BSD-3-Clause']);
    assert.ok(r.known && r.expression === 'Apache-2.0 AND (MIT OR BSD-3-Clause)', JSON.stringify(r));
  });
});

describe('build facts: runner evidence, SLSA level, source, SBOM age', () => {
  const e = engine(
    [
      'rules:',
      '  - { id: tpm, kind: attestation, require: [tpm], action: deny }',
      '  - { id: slsa, kind: slsa, minLevel: 3, action: deny }',
      '  - { id: src, kind: source, protectedBranch: true, minReviewers: 2, signedCommits: true, action: quarantine }',
      '  - { id: age, kind: sbom-age, maxAgeHours: 24, action: warn }',
      '',
    ].join('\n'),
  );
  it('denies every rule whose facts are missing, whatever its action', async () => {
    const d = await e.evaluate(base);
    assert.deepEqual(
      d.reasons.map((r) => [r.rule, r.action]),
      [
        ['tpm', 'deny'],
        ['slsa', 'deny'],
        ['src', 'deny'],
        ['age', 'deny'],
      ],
    );
    assert.ok(d.reasons.every((r) => r.message.endsWith('cannot pass')));
  });
  it('applies each rule to its facts', async () => {
    const d = await e.evaluate({
      ...base,
      attestation: { verified: true, evidenceTypes: ['software-measurement'] },
      build: { slsaBuildLevel: 2 },
      source: { protectedBranch: true, reviewers: 1, reviewed: true, signedCommit: false, commit: 'abc' },
      sbom: { createdAt: '2025-05-30T00:00:00Z' },
    });
    assert.deepEqual(
      [...d.reasons, ...d.warnings].map((r) => r.rule),
      ['tpm', 'slsa', 'src', 'src', 'age'],
    );
    assert.match(
      d.reasons.find((r) => r.rule === 'src')?.message ?? '',
      /not signed by a trusted key|reviewers/,
    );
  });
  it('fails closed on one missing source fact while judging the others', async () => {
    const d = await e.evaluate({ ...base, source: { protectedBranch: true, reviewers: 2 } });
    const src = d.reasons.filter((r) => r.rule === 'src');
    assert.deepEqual(
      src.map((r) => r.action),
      ['deny'],
    );
    assert.match(src[0]?.message ?? '', /signedCommit/);
  });
});

describe('exceptions', () => {
  const e = engine(
    [
      'rules:',
      '  - { id: vulns, kind: vulnerability, maxSeverity: medium, action: deny }',
      '  - { id: tpm, kind: attestation, require: [tpm], action: deny }',
      'exceptions:',
      "  - { id: waive-1, owner: alice@example.test, reason: 'not reachable, fix scheduled', expires: 2025-06-30, vulnerabilities: [CVE-1] }",
      "  - { id: old, owner: bob@example.test, reason: 'temporary', expires: 2025-01-01, purls: ['pkg:npm/b'] }",
      "  - { id: no-tpm, owner: carol@example.test, reason: 'lab', expires: 2030-01-01, rules: [tpm], purls: ['pkg:npm/c'] }",
      '',
    ].join('\n'),
  );
  it('sets aside a covered finding and lists it with owner, reason and expiry', async () => {
    const d = await e.evaluate({
      ...base,
      attestation: { verified: true, evidenceTypes: ['tpm'], submods: { tpm: 'affirming' } },
      findings: [finding('pkg:npm/a@1', 'GHSA-1', { aliases: ['CVE-1'] })],
    });
    assert.equal(d.outcome, 'allow');
    assert.deepEqual(d.suppressed, [
      {
        by: 'exception',
        id: 'waive-1',
        rule: 'vulns',
        purl: 'pkg:npm/a@1',
        vulnId: 'GHSA-1',
        reason: 'not reachable, fix scheduled',
        owner: 'alice@example.test',
        expires: '2025-06-30',
      },
    ]);
  });
  it('stops covering after its expiry, and says so', async () => {
    const d = await e.evaluate({
      ...base,
      attestation: { verified: true, evidenceTypes: ['tpm'], submods: { tpm: 'affirming' } },
      findings: [finding('pkg:npm/b@1', 'GHSA-2')],
    });
    assert.equal(d.outcome, 'deny');
    assert.match(
      d.warnings[0]?.message ?? '',
      /exception 'old' \(owner bob@example.test\) expired on 2025-01-01/,
    );
  });
  it('never waives a check that could not run', async () => {
    const d = await e.evaluate({ ...base, findings: [] });
    assert.deepEqual(
      d.reasons.map((r) => r.rule),
      ['tpm'],
    );
  });
});

describe('VEX in decisions', () => {
  it('lists what a VEX statement suppressed and why', async () => {
    const e = engine('rules:\n  - { id: vulns, kind: vulnerability, maxSeverity: none, action: deny }\n');
    const d = await e.evaluate({
      ...base,
      findings: [finding('pkg:npm/lib@1.0.0', 'CVE-7')],
      vex: [
        {
          document: 'vex-doc',
          vulnerability: 'CVE-7',
          aliases: [],
          products: ['pkg:generic/app'],
          subcomponents: [],
          status: 'not_affected',
          justification: 'vulnerable_code_not_present',
        },
      ],
    });
    assert.equal(d.outcome, 'allow');
    assert.deepEqual(d.suppressed?.[0], {
      by: 'vex',
      id: 'vex-doc',
      purl: 'pkg:npm/lib@1.0.0',
      vulnId: 'CVE-7',
      reason: 'not_affected: vulnerable_code_not_present',
    });
  });
});

describe('CEL rules over the fact model', () => {
  const e = engine(
    [
      'rules:',
      '  - id: too-many-criticals',
      '    kind: cel',
      '    when: \'size(findings.filter(f, f.severity == "critical" && f.fixAvailable)) > 1\'',
      '    message: more than one fixable critical finding',
      '    action: deny',
      '  - id: no-dev-in-prod',
      '    kind: cel',
      '    forEach: component',
      '    when: \'component.scope == "dev" && component.name.startsWith("debug")\'',
      '    message: debug tooling shipped',
      '    action: quarantine',
      '  - id: weak-source',
      '    kind: cel',
      "    when: '!source.signedCommit'",
      '    message: unsigned commit',
      '    action: warn',
      '  - id: high-score',
      '    kind: cel',
      '    forEach: finding',
      "    when: 'finding.cvssScore >= 9.0'",
      '    message: CVSS 9 or more',
      '    action: warn',
      '',
    ].join('\n'),
  );
  it('evaluates build-wide, per-component and per-finding expressions', async () => {
    const d = await e.evaluate({
      ...base,
      components: [{ ...component('pkg:npm/debug-tool@1.0.0'), scope: 'dev' }, component('pkg:npm/ok@1.0.0')],
      findings: [
        finding('pkg:npm/a@1', 'V1', { severity: 'critical', cvssV3Score: 9.8 }),
        finding('pkg:npm/b@1', 'V2', { severity: 'critical' }),
      ],
      source: { signedCommit: true },
    });
    assert.deepEqual(
      d.reasons.map((r) => [r.rule, r.purl ?? null]),
      [
        ['too-many-criticals', null],
        ['no-dev-in-prod', 'pkg:npm/debug-tool@1.0.0'],
      ],
    );
    assert.deepEqual(
      d.warnings.map((w) => w.vulnId),
      ['V1'],
    );
  });
  it('denies when an expression reads a fact that is missing', async () => {
    const d = await e.evaluate({ ...base, components: [] });
    const r = d.reasons.find((x) => x.rule === 'weak-source');
    assert.equal(r?.action, 'deny');
    assert.match(r?.message ?? '', /could not be evaluated/);
  });
  it('denies when an expression yields something other than a boolean', async () => {
    const odd = engine("rules:\n  - { id: odd, kind: cel, when: 'project', message: m, action: warn }\n");
    const d = await odd.evaluate(base);
    assert.equal(d.outcome, 'deny');
    assert.match(d.reasons[0]?.message ?? '', /not a boolean/);
  });
});

describe('undeclared components', () => {
  const undeclared = [
    {
      purl: 'pkg:npm/minimist@1.2.5',
      name: 'minimist',
      version: '1.2.5',
      path: 'dist/app.tar!vendor/mm/package.json',
      method: 'npm-package',
      declaredVersions: ['1.2.6'],
    },
  ];

  it('denies them, naming the component and where it was found, even in a policy that never mentions them', async () => {
    const d = await engine('rules: []\n').evaluate({ ...base, undeclared });
    assert.equal(d.outcome, 'deny');
    assert.equal(d.reasons[0]?.rule, 'undeclared-component');
    assert.match(
      d.reasons[0]?.message ?? '',
      /minimist@1\.2\.5 is in the artifact \(dist\/app\.tar!vendor\/mm\/package\.json, npm-package\) but the project declares minimist at 1\.2\.6/,
    );
  });

  it('takes the action the policy gives the rule', async () => {
    const e = engine('rules:\n  - { id: undeclared, kind: undeclared-component, action: quarantine }\n');
    assert.equal((await e.evaluate({ ...base, undeclared })).outcome, 'quarantine');
    assert.equal((await e.evaluate({ ...base, undeclared: [] })).outcome, 'allow');
  });
});
