import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { isGatehouseError } from '../common/errors.ts';
import { normalizePackageName, parseOsvJson, parseOsvRecord } from './osv.ts';

const SAMPLES = new URL('../../../shared/data/osv/samples/', import.meta.url).pathname;
const skip = { skip: existsSync(SAMPLES) ? false : 'reference data ../shared/data not present' };

describe('OSV record parsing', () => {
  it('parses every well-formed sample record', skip, () => {
    for (const f of readdirSync(SAMPLES).filter((x) => x.endsWith('.json') && !/^no/.test(x))) {
      const r = parseOsvJson(readFileSync(join(SAMPLES, f), 'utf8'), f);
      assert.ok(r.id !== '' && r.modified !== '', f);
    }
  });

  it('refuses the sample whose range has no introduced event', skip, () => {
    const f = 'nointroduced-CVE-2023-41045.json';
    assert.throws(
      () => parseOsvJson(readFileSync(join(SAMPLES, f), 'utf8'), f),
      (e: unknown) =>
        isGatehouseError(e, 'BAD_OSV_RECORD') &&
        e.where === f &&
        /CVE-2023-41045.*affected\[0\]\.ranges\[0\].*no 'introduced' event/.test(e.message),
    );
  });

  it('refuses the sample whose range repeats one commit as introduced and fixed', skip, () => {
    const f = 'nondistinct-CVE-2018-5407.json';
    assert.throws(
      () => parseOsvJson(readFileSync(join(SAMPLES, f), 'utf8'), f),
      (e: unknown) =>
        isGatehouseError(e, 'BAD_OSV_RECORD') &&
        /affected\[6\]\.ranges\[1\].*not distinct: it is introduced and fixed at 'e818b74b/.test(e.message),
    );
  });

  it('accepts the nopackage sample: it is well-formed, only its PyPI package does not exist', skip, () => {
    // The osv-linter flags this file with a check that asks the PyPI registry whether the package
    // "Gradi0" exists. Nothing in the record itself is wrong, and gatehouse imports offline.
    const f = 'nopackage-GHSA-9v2f-6vcg-3hgv.json';
    const r = parseOsvJson(readFileSync(join(SAMPLES, f), 'utf8'), f);
    assert.equal(r.affected[0]?.package?.name, 'Gradi0');
  });

  it('keeps the fields matching needs', skip, () => {
    const r = parseOsvJson(readFileSync(join(SAMPLES, 'GHSA-9v2f-6vcg-3hgv.json'), 'utf8'), 'x');
    assert.deepEqual(r.aliases, ['CVE-2024-39236']);
    assert.equal(r.database_specific?.severity, 'CRITICAL');
    assert.deepEqual(r.severity, [
      { type: 'CVSS_V3', score: 'CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H' },
    ]);
    assert.deepEqual(r.affected[0]?.versions, ['4.36.1', '4.36.-1']);
  });

  it('accepts an affected entry without a package (GIT-only ranges are allowed by the schema)', () => {
    const r = parseOsvRecord(
      {
        id: 'X-1',
        modified: '2024-01-01T00:00:00Z',
        affected: [{ ranges: [{ type: 'GIT', repo: 'r', events: [{ introduced: '0' }] }] }],
      },
      'x',
    );
    assert.equal(r.affected[0]?.package, undefined);
    assert.deepEqual(r.affected[0]?.ranges[0]?.events, [{ kind: 'introduced', version: '0' }]);
  });

  const ok = { id: 'GHSA-1', modified: '2024-01-01T00:00:00Z' };
  const pkg = { ecosystem: 'npm', name: 'x' };
  const withRange = (r: unknown) => ({ ...ok, affected: [{ package: pkg, ranges: [r] }] });
  const adversarial: [string, unknown, RegExp][] = [
    ['a record that is not an object', [], /OSV record: /],
    ['a record without id', { modified: ok.modified }, /OSV record id: /],
    ['a record without modified', { id: 'A-1' }, /'A-1' modified/],
    [
      'a modified date that is not RFC 3339',
      { ...ok, modified: 'yesterday' },
      /modified: is not an RFC 3339/,
    ],
    ['aliases that are not strings', { ...ok, aliases: [1] }, /aliases\[0\]/],
    [
      'an affected package without a name',
      { ...ok, affected: [{ package: { ecosystem: 'npm' } }] },
      /affected\[0\]\.package\.name/,
    ],
    [
      'an unknown range type',
      withRange({ type: 'DATE', events: [{ introduced: '0' }] }),
      /ranges\[0\]\.type/,
    ],
    ['a range without events', withRange({ type: 'SEMVER', events: [] }), /ranges\[0\]\.events/],
    [
      'an event with two kinds',
      withRange({ type: 'SEMVER', events: [{ introduced: '0', fixed: '1.0.0' }] }),
      /exactly one of/,
    ],
    ['an empty event', withRange({ type: 'SEMVER', events: [{}] }), /exactly one of/],
    [
      'an event whose version is a number',
      withRange({ type: 'SEMVER', events: [{ introduced: 0 }] }),
      /exactly one of/,
    ],
    [
      'a range without introduced',
      withRange({ type: 'SEMVER', events: [{ fixed: '1.0.0' }] }),
      /no 'introduced'/,
    ],
    [
      'a range mixing fixed and last_affected',
      withRange({
        type: 'SEMVER',
        events: [{ introduced: '0' }, { fixed: '2.0.0' }, { last_affected: '1.0.0' }],
      }),
      /mixes/,
    ],
    ['a GIT range without repo', withRange({ type: 'GIT', events: [{ introduced: 'abc' }] }), /needs a repo/],
    [
      'a range introduced and fixed at one version',
      withRange({ type: 'SEMVER', events: [{ introduced: '1.0.0' }, { fixed: '1.0.0' }] }),
      /not distinct/,
    ],
    ['a severity without score', { ...ok, severity: [{ type: 'CVSS_V3' }] }, /severity\[0\]\.score/],
  ];
  for (const [what, input, message] of adversarial) {
    it(`refuses ${what}`, () => {
      assert.throws(
        () => parseOsvRecord(input, 'file.json'),
        (e: unknown) =>
          isGatehouseError(e, 'BAD_OSV_RECORD') && e.where === 'file.json' && message.test(e.message),
      );
    });
  }

  it('accepts adjacent intervals that share a boundary version, as real PyPI advisories list them', () => {
    const r = parseOsvRecord(
      withRange({
        type: 'ECOSYSTEM',
        events: [{ introduced: '0' }, { fixed: '3.1.1' }, { introduced: '3.1.1' }, { fixed: '3.1.3' }],
      }),
      'x',
    );
    assert.equal(r.affected[0]?.ranges[0]?.events.length, 4);
  });

  it('refuses text that is not JSON', () => {
    assert.throws(
      () => parseOsvJson('{', 'f.json'),
      (e: unknown) => isGatehouseError(e, 'BAD_OSV_RECORD'),
    );
  });

  it('treats null aliases, severity and affected as empty', () => {
    const r = parseOsvRecord({ ...ok, aliases: null, severity: null, affected: null }, 'x');
    assert.deepEqual([r.aliases, r.severity, r.affected], [[], [], []]);
  });
});

describe('package name normalisation', () => {
  it('normalises PyPI names per PEP 503 and leaves npm names alone', () => {
    assert.equal(normalizePackageName('PyPI', 'Foo.Bar__baz-_qux'), 'foo-bar-baz-qux');
    assert.equal(normalizePackageName('npm', 'JSONStream'), 'JSONStream');
    assert.equal(normalizePackageName('npm', '@Scope/x'), '@Scope/x');
  });
});
