import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EVIDENCE_KINDS } from '../attestation/evidence/verifier.ts';
import { EmbeddedPolicyEngine } from './embedded-engine.ts';
import { EVIDENCE_SUBMODS, parsePolicy } from './policy.ts';
import type { PolicyInput } from './policy-engine.ts';

const head = 'apiVersion: gatehouse.dev/v1\nkind: Policy\nname: p\n';
const engine = (require: string) =>
  new EmbeddedPolicyEngine({
    policy: parsePolicy(
      `${head}rules:\n  - { id: hw, kind: attestation, require: ${require}, action: deny }\n`,
      'p.yaml',
    ),
  });
const base: PolicyInput = { project: 'app', components: [], findings: [], now: '2025-06-01T00:00:00Z' };
const token = (submods: Record<string, string>, evidenceTypes = Object.keys(submods)) => ({
  ...base,
  attestation: { verified: true, evidenceTypes, submods },
});

describe('attestation.require over EAR submods', () => {
  it('knows every kind of platform evidence, each with a submod of its own name', () => {
    for (const k of EVIDENCE_KINDS) assert.equal(EVIDENCE_SUBMODS[k], k);
  });

  it('allows a token whose required kinds each have an affirming submod', async () => {
    const d = await engine('[tpm, sev-snp]').evaluate(
      token({ tpm: 'affirming', 'sev-snp': 'affirming', image: 'affirming' }, [
        'tpm',
        'software-measurement',
        'sev-snp',
      ]),
    );
    assert.equal(d.outcome, 'allow', JSON.stringify(d.reasons));
  });

  it('denies a token that lacks a required kind', async () => {
    const d = await engine('[tpm, sev-snp]').evaluate(token({ tpm: 'affirming' }));
    assert.equal(d.outcome, 'deny');
    assert.match(d.reasons[0]?.message ?? '', /lacks required evidence: sev-snp/);
  });

  it('denies a kind the token names whose submod is absent or not affirming (fail closed)', async () => {
    for (const submods of [{}, { tdx: 'warning' }, { tdx: 'contraindicated' }]) {
      const d = await engine('[tdx]').evaluate({
        ...base,
        attestation: { verified: true, evidenceTypes: ['tdx'], submods },
      });
      assert.equal(d.outcome, 'deny', JSON.stringify(submods));
      assert.match(
        d.reasons[0]?.message ?? '',
        /does not affirm required evidence: tdx \(submod tdx (absent|warning|contraindicated)\)/,
      );
    }
    const noSubmods = await engine('[tpm]').evaluate({
      ...base,
      attestation: { verified: true, evidenceTypes: ['tpm'] },
    });
    assert.equal(noSubmods.outcome, 'deny');
  });

  it('reads software-measurement and ci-oidc from the image and ci submods', async () => {
    const d = await engine('[software-measurement, ci-oidc]').evaluate(
      token({ image: 'affirming', ci: 'affirming' }, ['software-measurement', 'ci-oidc']),
    );
    assert.equal(d.outcome, 'allow', JSON.stringify(d.reasons));
  });

  it('refuses a policy requiring a kind nobody attests', () => {
    assert.throws(() => engine('[sev_snp]'), /rule 'hw' \(rules\[0\]\) field require\.0/);
  });

  it('lets a CEL rule read the submod statuses, failing closed on a missing one', async () => {
    const cel = new EmbeddedPolicyEngine({
      policy: parsePolicy(
        `${head}rules:\n  - { id: snp, kind: cel, when: "attestation.submods['sev-snp'] != 'affirming'", message: no SEV-SNP, action: deny }\n`,
        'p.yaml',
      ),
    });
    assert.equal((await cel.evaluate(token({ 'sev-snp': 'affirming' }))).outcome, 'allow');
    assert.equal((await cel.evaluate(token({ tpm: 'affirming' }))).outcome, 'deny');
  });
});
