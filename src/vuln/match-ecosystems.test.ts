import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';
import type { Component } from '../sbom/model.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import { component } from '../testing/components.ts';
import { importOsv } from './import.ts';
import { matchVulnerabilities } from './match.ts';
import { parseOsvRecord } from './osv.ts';
import { osvPackageOf } from './osv-package.ts';
import { VulnIndex } from './vuln-index.ts';

const PYPI_ZIP = new URL('../../../shared/data/osv/PyPI/all.zip', import.meta.url).pathname;

const rec = (
  id: string,
  ecosystem: string,
  name: string,
  events: Record<string, string>[],
  extra: Record<string, unknown> = {},
) =>
  parseOsvRecord(
    {
      id,
      modified: '2024-01-01T00:00:00Z',
      affected: [{ package: { ecosystem, name }, ranges: [{ type: 'ECOSYSTEM', events }] }],
      ...extra,
    },
    'test',
  );

const index = VulnIndex.of([
  rec('PYSEC-1', 'PyPI', 'Zope.Interface', [{ introduced: '0' }, { fixed: '5.0.0rc1' }]),
  rec('GO-1', 'Go', 'github.com/gin-gonic/gin', [{ introduced: '0' }, { fixed: '1.9.1' }]),
  rec('GHSA-mvn1', 'Maven', 'org.apache.logging.log4j:log4j-core', [
    { introduced: '2.0-beta9' },
    { fixed: '2.15.0' },
  ]),
  rec('DSA-1', 'Debian:12', 'openssl', [{ introduced: '0' }, { fixed: '3.0.11-1~deb12u2' }]),
  rec('DSA-2', 'Debian:11', 'openssl', [{ introduced: '0' }, { fixed: '1.1.1w-0+deb11u1' }]),
  rec('ALPINE-1', 'Alpine:v3.18', 'busybox', [{ introduced: '0' }, { fixed: '1.36.1-r1' }]),
  rec('GHSA-gem1', 'RubyGems', 'rack', [{ introduced: '2.0.0' }, { last_affected: '2.2.3' }]),
  rec('GHSA-php1', 'Packagist', 'Symfony/HTTP-Kernel', [{ introduced: '0' }, { fixed: '4.4.13' }]),
  rec('GHSA-nuget1', 'NuGet', 'Newtonsoft.Json', [{ introduced: '0' }, { fixed: '13.0.1' }]),
  rec('RUSTSEC-1', 'crates.io', 'smallvec', [{ introduced: '1.0.0' }, { fixed: '1.6.1' }]),
  rec('GHSA-bad', 'npm', 'odd', [{ introduced: '0' }, { fixed: 'not.a.version!' }]),
  rec('GHSA-limit', 'npm', 'lim', [{ introduced: '0' }, { limit: '2.0.0' }]),
]);

describe('matching across ecosystems', () => {
  const cases: [string, Component, string[]][] = [
    [
      'PyPI, with PEP 503 names and a PEP 440 prerelease fix',
      component('pkg:pypi/zope-interface@4.7.2'),
      ['PYSEC-1'],
    ],
    ['PyPI, not affected after the fix', component('pkg:pypi/zope.interface@5.0.0'), []],
    ['Go module paths', component('pkg:golang/github.com/gin-gonic/gin@v1.9.0'), ['GO-1']],
    [
      'Maven group:artifact with qualifiers in versions',
      component('pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1'),
      ['GHSA-mvn1'],
    ],
    [
      'Maven before the introduced prerelease',
      component('pkg:maven/org.apache.logging.log4j/log4j-core@2.0-alpha1'),
      [],
    ],
    [
      'Debian by source package and release',
      component('pkg:deb/debian/libssl3@3.0.11-1~deb12u1?arch=amd64&distro=debian-12&upstream=openssl'),
      ['DSA-1'],
    ],
    [
      'Debian through the SBOM source package',
      component('pkg:deb/debian/libssl1.1@1.1.1n-0+deb11u5?distro=debian-11', {
        sourcePackage: { name: 'openssl' },
      }),
      ['DSA-2'],
    ],
    [
      'Alpine with -r revisions',
      component('pkg:apk/alpine/busybox@1.36.1-r0?distro=alpine-3.18.4'),
      ['ALPINE-1'],
    ],
    ['RubyGems with last_affected inclusive', component('pkg:gem/rack@2.2.3'), ['GHSA-gem1']],
    [
      'Packagist names without regard to case',
      component('pkg:composer/symfony/http-kernel@v4.4.12'),
      ['GHSA-php1'],
    ],
    ['NuGet ids without regard to case', component('pkg:nuget/newtonsoft.json@12.0.3'), ['GHSA-nuget1']],
    ['crates.io', component('pkg:cargo/smallvec@1.6.0'), ['RUSTSEC-1']],
    ['a limit event', component('pkg:npm/lim@2.0.0'), []],
  ];
  for (const [what, c, ids] of cases)
    it(`matches ${what}`, async () => {
      const r = await matchVulnerabilities([c], index);
      assert.deepEqual(r.unmatched, []);
      assert.deepEqual(
        r.findings.map((f) => f.vulnId),
        ids,
      );
    });

  it('names the versions that fix a finding, ordered by the ecosystem', async () => {
    const r = await matchVulnerabilities([component('pkg:pypi/zope-interface@4.0')], index);
    assert.deepEqual(r.findings[0]?.fixedVersions, ['5.0.0rc1']);
    assert.equal(r.findings[0]?.ecosystem, 'PyPI');
  });

  it('reports, never passes, a component that cannot be matched', async () => {
    const r = await matchVulnerabilities(
      [component('pkg:npm/odd@1.0.0'), component('pkg:npm/lim@latest')],
      index,
    );
    assert.deepEqual(
      r.unmatched.map((u) => [u.purl, u.code]),
      [
        ['pkg:npm/odd@1.0.0', 'BAD_OSV_RECORD'],
        ['pkg:npm/lim@latest', 'BAD_INPUT'],
      ],
    );
    assert.match(r.unmatched[0]?.reason ?? '', /GHSA-bad.*not\.a\.version!/);
  });

  it('reads OSV package identities from purls', () => {
    assert.deepEqual(osvPackageOf(component('pkg:npm/%40scope/pkg@1.0.0')), {
      ecosystem: 'npm',
      name: '@scope/pkg',
      version: '1.0.0',
    });
    assert.equal(osvPackageOf(component('pkg:generic/thing@1')), undefined);
    assert.equal(osvPackageOf({ ...component('pkg:generic/thing@1'), purl: 'not a purl' }), undefined);
  });

  it('finds the real PyPI advisories of an old Django through the store', {
    skip: existsSync(PYPI_ZIP) ? false : 'reference data ../shared/data not present',
  }, async () => {
    const store = SqliteStore.open(':memory:');
    await importOsv([PYPI_ZIP], store);
    const r = await matchVulnerabilities([component('pkg:pypi/Django@1.11.0')], store.vulns);
    assert.ok(r.findings.length > 10, String(r.findings.length));
    assert.ok(r.findings.every((f) => f.fixedVersions.length > 0 && f.ecosystem === 'PyPI'));
    // One finding per vulnerability, not one per alias.
    const ids = r.findings.flatMap((f) => [f.vulnId, ...f.aliases]);
    assert.equal(new Set(ids).size, ids.length);
    await store.close();
  });
});
