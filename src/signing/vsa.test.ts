import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isGatehouseError } from '../common/errors.ts';
import { buildLevelOf, parseVsa, verificationSummary } from './vsa.ts';

const digest = 'a'.repeat(64);
const good = verificationSummary({
  verifierId: 'https://gatehouse.internal/gate',
  timeVerified: new Date('2026-11-22T03:00:00Z'),
  resourceUri: 'oci://registry.internal/gatehouse/promoted/app',
  policyUri: `https://gatehouse.internal/policies/sha256:${digest}`,
  policyDigest: digest,
  inputAttestations: [{ uri: 'https://gatehouse.internal/log/entries/3', sha256: 'b'.repeat(64) }],
  passed: true,
  evidenceTypes: ['software-measurement'],
});

describe('verification summary (SLSA VSA v1)', () => {
  it('round-trips the policy digest, inputs, result and level', () => {
    assert.equal(good.verificationResult, 'PASSED');
    assert.deepEqual(good.verifiedLevels, ['SLSA_BUILD_LEVEL_2']);
    const parsed = parseVsa(JSON.parse(JSON.stringify(good)), 'test');
    assert.equal(parsed.policyDigest, digest);
    assert.deepEqual(parsed.inputAttestationDigests, ['b'.repeat(64)]);
    assert.equal(parsed.buildLevel, 2);
    assert.equal(parsed.passed, true);
  });

  it('states Build L3 only with TPM evidence', () => {
    assert.equal(buildLevelOf(['tpm', 'software-measurement']), 3);
    assert.equal(buildLevelOf(['software-measurement']), 2);
    assert.equal(buildLevelOf([]), 2);
  });

  it('refuses a policy digest that is not SHA-256', () => {
    assert.throws(
      () =>
        verificationSummary({
          ...{
            verifierId: 'x',
            timeVerified: 'x',
            resourceUri: 'x',
            policyUri: 'x',
            inputAttestations: [],
            passed: true,
            evidenceTypes: [],
          },
          policyDigest: 'nope',
        }),
      (e) => isGatehouseError(e, 'BAD_INPUT'),
    );
  });

  const bad: [string, Record<string, unknown>][] = [
    ['no verifier', { verifier: undefined }],
    ['a bad time', { timeVerified: 'yesterday' }],
    ['a policy without digest', { policy: { uri: 'x', digest: {} } }],
    ['a short policy digest', { policy: { uri: 'x', digest: { sha256: 'ab' } } }],
    ['an unknown result', { verificationResult: 'MAYBE' }],
    ['two build levels', { verifiedLevels: ['SLSA_BUILD_LEVEL_2', 'SLSA_BUILD_LEVEL_3'] }],
    ['levels not a list', { verifiedLevels: 'SLSA_BUILD_LEVEL_3' }],
  ];
  for (const [what, change] of bad) {
    it(`refuses a summary with ${what}`, () => {
      assert.throws(
        () => parseVsa({ ...good, ...change }, 'test'),
        (e) => isGatehouseError(e, 'BAD_BUNDLE'),
      );
    });
  }
  it('refuses a predicate that is not an object', () => {
    for (const v of [null, 'x', 3, []])
      assert.throws(
        () => parseVsa(v, 'test'),
        (e) => isGatehouseError(e, 'BAD_BUNDLE'),
      );
  });
});
