import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isGatehouseError } from '../common/errors.ts';
import { npmPurl } from '../sbom/purl.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import { component } from '../testing/components.ts';
import { cvss3BaseScore, severityOfScore } from './cvss.ts';
import { packagesOf } from './import.ts';
import { findVulnerabilities } from './match.ts';
import { compareNpmVersions, parseNpmVersion } from './npm-version.ts';
import { parseOsvRecord } from './osv.ts';

const VERSIONS = new URL('../../../shared/data/versions/', import.meta.url).pathname;

type Events = Record<string, string>[];
const osv = (
  id: string,
  name: string,
  ranges: { type?: string; events: Events }[],
  extra: Record<string, unknown> = {},
) => ({
  id,
  modified: '2024-01-01T00:00:00Z',
  affected: [
    { package: { ecosystem: 'npm', name }, ranges: ranges.map((r) => ({ type: r.type ?? 'SEMVER', ...r })) },
  ],
  ...extra,
});

async function storeWith(...records: Record<string, unknown>[]): Promise<SqliteStore> {
  const store = SqliteStore.open(':memory:');
  await store.vulns.upsert(
    records.map((raw) => {
      const r = parseOsvRecord(raw, 'test');
      return {
        id: r.id,
        modified: r.modified,
        withdrawn: null,
        aliases: r.aliases,
        json: JSON.stringify(raw),
        packages: packagesOf(r),
      };
    }),
  );
  return store;
}

describe('CVSS v3 base score', () => {
  const known: [string, number][] = [
    ['CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H', 9.8],
    ['CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H', 10.0],
    ['CVSS:3.1/AV:L/AC:H/PR:L/UI:N/S:U/C:H/I:N/A:N', 4.7],
    ['CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:L/A:N', 5.3],
    ['CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N', 6.1],
    ['CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H', 8.1],
    ['CVSS:3.0/AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H', 8.8],
    ['CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:N/I:N/A:N', 0],
  ];
  for (const [vector, score] of known) {
    it(`scores ${vector} as ${score}`, () => assert.equal(cvss3BaseScore(vector), score));
  }

  it('buckets scores into the qualitative ratings', () => {
    assert.deepEqual([9.0, 8.9, 7.0, 6.9, 4.0, 3.9, 0].map(severityOfScore), [
      'critical',
      'high',
      'high',
      'medium',
      'medium',
      'low',
      'low',
    ]);
  });

  for (const bad of [
    '',
    'CVSS:2.0/AV:N',
    'CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H',
    'CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H',
    'CVSS:3.1/AV:N/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H',
  ]) {
    it(`refuses the vector '${bad}'`, () =>
      assert.throws(
        () => cvss3BaseScore(bad),
        (e: unknown) => isGatehouseError(e, 'BAD_INPUT'),
      ));
  }
});

describe('npm version ordering', () => {
  const file = join(VERSIONS, 'semver-versions.txt');
  it('orders every pair of the reference list that npm can represent as the reference says', {
    skip: existsSync(VERSIONS) ? false : 'reference data ../shared/data not present',
  }, () => {
    // There is no npm-named file; semver-versions.txt is the SemVer 2.0 ordering npm follows.
    assert.ok(!readdirSync(VERSIONS).some((f) => f.startsWith('npm')));
    let checked = 0;
    const unrepresentable: string[] = [];
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const m = /^(\S+) ([<>=]) (\S+)$/.exec(line.trim());
      if (m === null) continue;
      const [, a = '', op, b = ''] = m;
      const pa = parseNpmVersion(a);
      const pb = parseNpmVersion(b);
      if (pa === undefined || pb === undefined) {
        unrepresentable.push(line);
        continue;
      }
      const c = Math.sign(compareNpmVersions(pa, pb));
      assert.equal(c, op === '<' ? -1 : op === '>' ? 1 : 0, line);
      checked++;
    }
    assert.ok(checked >= 80, `${checked} pairs checked`);
    // Numbers beyond 2^53 and four-part versions are not npm versions: refused, never guessed.
    assert.deepEqual(unrepresentable.length, 3, unrepresentable.join('\n'));
  });

  it('orders prereleases before their release', () => {
    const v = (s: string) => parseNpmVersion(s) ?? assert.fail(s);
    assert.ok(compareNpmVersions(v('1.0.0-rc.1'), v('1.0.0')) < 0);
    assert.ok(compareNpmVersions(v('1.0.0-beta.11'), v('1.0.0-beta.2')) > 0);
  });
});

describe('vulnerability matching', () => {
  let store: SqliteStore;
  before(async () => {
    store = await storeWith(
      osv('GHSA-fixed', 'fx', [{ events: [{ introduced: '0' }, { fixed: '1.2.0' }] }], {
        database_specific: { severity: 'MODERATE' },
        summary: 'fixed-range',
      }),
      osv('GHSA-last', 'la', [{ events: [{ introduced: '1.0.0' }, { last_affected: '1.4.0' }] }]),
      osv('GHSA-multi', 'mu', [
        {
          events: [{ introduced: '1.0.0' }, { fixed: '1.0.5' }, { introduced: '2.0.0' }, { fixed: '2.1.0' }],
        },
      ]),
      osv('GHSA-unsorted', 'us', [
        { type: 'ECOSYSTEM', events: [{ fixed: '2.0.0' }, { introduced: '1.5.0' }] },
      ]),
      osv('GHSA-pre', 'pr', [{ events: [{ introduced: '0' }, { fixed: '3.0.0-rc.2' }] }]),
      osv('GHSA-limit', 'li', [{ events: [{ introduced: '0' }, { limit: '2.0.0' }] }]),
      {
        id: 'GHSA-list',
        modified: '2024-01-01T00:00:00Z',
        affected: [{ package: { ecosystem: 'npm', name: 'ls' }, versions: ['1.0.1'] }],
      },
      osv('GHSA-git', 'gt', [
        { type: 'GIT', repo: 'https://x', events: [{ introduced: '0' }] } as { type: string; events: Events },
      ]),
      osv('GHSA-badev', 'be', [{ events: [{ introduced: '0' }, { fixed: 'not-a-version' }] }]),
      // One vulnerability published twice: a GHSA and a CVE record that alias each other.
      osv('GHSA-dup1', 'dp', [{ events: [{ introduced: '0' }, { fixed: '2.0.0' }] }], {
        aliases: ['CVE-2024-1'],
        database_specific: { severity: 'LOW' },
      }),
      osv('CVE-2024-1', 'dp', [{ events: [{ introduced: '0' }, { fixed: '2.0.1' }] }], {
        aliases: ['GHSA-dup1', 'OTHER-7'],
        severity: [{ type: 'CVSS_V3', score: 'CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H' }],
      }),
      osv('GHSA-cvss', 'cv', [{ events: [{ introduced: '0' }] }], {
        severity: [{ type: 'CVSS_V3', score: 'CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:L/A:N' }],
      }),
      {
        ...osv('PYSEC-x', 'fx', [{ events: [{ introduced: '0' }] }]),
        affected: [{ package: { ecosystem: 'PyPI', name: 'fx' }, versions: ['1.0.0'] }],
      },
    );
  });
  after(() => store.close());

  const hit = async (name: string, version: string) =>
    (await findVulnerabilities([component(npmPurl(name, version))], store.vulns)).map((f) => f.vulnId);

  const table: [string, string, string[]][] = [
    ['fx', '1.1.9', ['GHSA-fixed']],
    ['fx', '1.2.0', []],
    ['la', '0.9.0', []],
    ['la', '1.4.0', ['GHSA-last']],
    ['la', '1.4.1', []],
    ['mu', '1.0.4', ['GHSA-multi']],
    ['mu', '1.5.0', []],
    ['mu', '2.0.0', ['GHSA-multi']],
    ['mu', '2.1.0', []],
    ['us', '1.6.0', ['GHSA-unsorted']],
    ['us', '1.4.0', []],
    ['pr', '3.0.0-rc.1', ['GHSA-pre']],
    ['pr', '3.0.0-rc.2', []],
    ['pr', '3.0.0', []],
    ['li', '1.9.9', ['GHSA-limit']],
    ['li', '2.0.0', []],
    ['ls', '1.0.1', ['GHSA-list']],
    ['ls', '1.0.2', []],
    ['gt', '1.0.0', []],
    ['none', '1.0.0', []],
  ];
  for (const [name, version, expected] of table) {
    it(`${expected.length > 0 ? 'finds' : 'does not find'} ${name}@${version} affected`, async () => {
      assert.deepEqual(await hit(name, version), expected);
    });
  }

  it('matches only the ecosystem of the component', async () => {
    assert.deepEqual(await hit('fx', '1.0.0'), ['GHSA-fixed']);
  });

  it('reports one finding for records that alias each other, ids merged, worst severity kept', async () => {
    const [f, ...rest] = await findVulnerabilities([component(npmPurl('dp', '1.0.0'))], store.vulns);
    assert.equal(rest.length, 0);
    assert.equal(f?.vulnId, 'GHSA-dup1');
    assert.deepEqual(f?.aliases, ['CVE-2024-1', 'OTHER-7']);
    assert.equal(f?.severity, 'critical');
    assert.deepEqual(f?.fixedVersions, ['2.0.0', '2.0.1']);
  });

  it('takes severity from the database rating, else the CVSS vector, else unknown', async () => {
    const [fx] = await findVulnerabilities([component(npmPurl('fx', '1.0.0'))], store.vulns);
    assert.equal(fx?.severity, 'medium');
    assert.equal(fx?.summary, 'fixed-range');
    const [cv] = await findVulnerabilities([component(npmPurl('cv', '1.0.0'))], store.vulns);
    assert.equal(cv?.severity, 'medium');
    assert.equal(cv?.cvssVector, 'CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:L/A:N');
    const [la] = await findVulnerabilities([component(npmPurl('la', '1.0.0'))], store.vulns);
    assert.equal(la?.severity, 'unknown');
  });

  it('lists only fixes newer than the installed version', async () => {
    const [f] = await findVulnerabilities([component(npmPurl('mu', '2.0.0'))], store.vulns);
    assert.deepEqual(f?.fixedVersions, ['2.1.0']);
  });

  it('refuses to guess when a range event is not a version', async () => {
    await assert.rejects(
      findVulnerabilities([component(npmPurl('be', '1.0.0'))], store.vulns),
      (e: unknown) => isGatehouseError(e, 'BAD_OSV_RECORD') && /GHSA-badev.*not-a-version/.test(e.message),
    );
  });

  it('refuses a component whose version npm cannot order', async () => {
    await assert.rejects(
      findVulnerabilities([component(npmPurl('fx', 'latest'))], store.vulns),
      (e: unknown) => isGatehouseError(e, 'BAD_INPUT'),
    );
  });
});
