import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isGatehouseError } from '../common/errors.ts';
import { CVSS4_MACROVECTORS, cvss4Score } from './cvss4.ts';

describe('CVSS v4.0 score', () => {
  // Scores as FIRST's calculator gives them.
  const known: [string, number][] = [
    ['CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H', 10],
    ['CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N', 9.3],
    ['CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:L/VI:L/VA:L/SC:N/SI:N/SA:N', 6.9],
    ['CVSS:4.0/AV:L/AC:L/AT:N/PR:L/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N', 8.5],
    ['CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:H/SC:N/SI:N/SA:N', 8.7],
    ['CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:P/VC:N/VI:N/VA:N/SC:L/SI:L/SA:N', 5.3],
    ['CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:N/SC:N/SI:N/SA:N', 0],
  ];
  for (const [vector, score] of known)
    it(`scores ${vector} as ${score}`, () => assert.equal(cvss4Score(vector), score));

  it('knows all 270 MacroVectors of the specification', () => assert.equal(CVSS4_MACROVECTORS, 270));

  it('lowers the score for threat metric E:U (unreported exploitation)', () => {
    const base = 'CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N';
    assert.ok(cvss4Score(`${base}/E:U`) < cvss4Score(base));
    assert.equal(cvss4Score(`${base}/E:X`), cvss4Score(base));
  });

  it('stays within 0..10 and is monotone in attack vector', () => {
    const rest = 'AC:L/AT:N/PR:N/UI:N/VC:H/VI:L/VA:N/SC:L/SI:N/SA:N';
    const scores = ['N', 'A', 'L', 'P'].map((av) => cvss4Score(`CVSS:4.0/AV:${av}/${rest}`));
    for (const s of scores) assert.ok(s >= 0 && s <= 10);
    for (let i = 1; i < scores.length; i++)
      assert.ok((scores[i] ?? 0) <= (scores[i - 1] ?? 0), String(scores));
  });

  const bad: [string, RegExp][] = [
    ['CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H', /not CVSS v4/],
    ['CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N', /lacks SA/],
    ['CVSS:4.0/AV:Q/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N', /invalid value for AV/],
    ['CVSS:4.0/AV:N/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N', /malformed metric/],
    ['CVSS:4.0/AV:N:X/AC:L', /malformed metric/],
    ['', /not CVSS v4/],
  ];
  for (const [vector, why] of bad)
    it(`refuses '${vector}'`, () =>
      assert.throws(
        () => cvss4Score(vector),
        (e: unknown) => isGatehouseError(e, 'BAD_INPUT') && why.test(e.message),
      ));
});
