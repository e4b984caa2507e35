import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { needsReattestation, REATTEST_MARGIN_SECONDS } from './attester.ts';

describe('continuous authentication', () => {
  const now = new Date(1_760_000_000_000);
  const at = (secondsLeft: number) => ({ expiresAt: now.getTime() / 1000 + secondsLeft });

  it('re-attests a TPM runner whose token is about to expire, and only then', () => {
    const table: [number, boolean][] = [
      [300, false],
      [REATTEST_MARGIN_SECONDS, false],
      [REATTEST_MARGIN_SECONDS - 1, true],
      [0, true],
      [-30, true],
    ];
    for (const [left, expected] of table)
      assert.equal(needsReattestation({ reattests: true }, at(left), now), expected, `${left} s left`);
  });

  it('never re-attests on the software path, which has no fresh evidence to give', () => {
    assert.equal(needsReattestation({ reattests: false }, at(-30), now), false);
  });

  it('honours a configured margin', () => {
    assert.equal(needsReattestation({ reattests: true }, at(300), now, 600), true);
    assert.equal(needsReattestation({ reattests: true }, at(300), now, 10), false);
  });
});
