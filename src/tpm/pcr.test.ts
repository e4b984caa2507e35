import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { isGatehouseError } from '../common/errors.ts';
import { extendPcr, PCR_RESET_VALUE, replayEventLog } from './pcr.ts';

const h = (s: string) => createHash('sha256').update(s).digest('hex');

describe('PCR extend and event-log replay', () => {
  it('extends as SHA-256(old ‖ digest), from 32 zero bytes', () => {
    const d = h('event');
    const expected = createHash('sha256')
      .update(Buffer.alloc(32))
      .update(Buffer.from(d, 'hex'))
      .digest('hex');
    assert.equal(extendPcr(PCR_RESET_VALUE, d), expected);
  });

  it('replays each PCR independently and in order', () => {
    const [a, b, c] = [h('a'), h('b'), h('c')];
    const pcrs = replayEventLog([
      { pcr: 8, digest: a },
      { pcr: 9, digest: b },
      { pcr: 8, digest: c },
    ]);
    assert.deepEqual(pcrs, {
      8: extendPcr(extendPcr(PCR_RESET_VALUE, a), c),
      9: extendPcr(PCR_RESET_VALUE, b),
    });
  });

  it('gives a different value when events are reordered (property, 50 random logs)', () => {
    for (let i = 0; i < 50; i++) {
      const x = randomBytes(32).toString('hex');
      const y = randomBytes(32).toString('hex');
      const one = replayEventLog([
        { pcr: 10, digest: x },
        { pcr: 10, digest: y },
      ]);
      const two = replayEventLog([
        { pcr: 10, digest: y },
        { pcr: 10, digest: x },
      ]);
      assert.notEqual(one[10], two[10]);
    }
  });

  it('reports only the PCRs the log touches', () => {
    assert.deepEqual(replayEventLog([]), {});
  });

  const bad: [string, { pcr: number; digest: string }][] = [
    ['a negative PCR', { pcr: -1, digest: h('x') }],
    ['PCR 24', { pcr: 24, digest: h('x') }],
    ['a fractional PCR', { pcr: 8.5, digest: h('x') }],
    ['an upper-case digest', { pcr: 8, digest: h('x').toUpperCase() }],
    ['a short digest', { pcr: 8, digest: 'ab' }],
    ['a SHA-1 sized digest', { pcr: 8, digest: 'a'.repeat(40) }],
  ];
  for (const [name, event] of bad) {
    it(`refuses ${name}`, () => {
      assert.throws(
        () => replayEventLog([event]),
        (e) => isGatehouseError(e, 'BAD_INPUT'),
      );
    });
  }
});
