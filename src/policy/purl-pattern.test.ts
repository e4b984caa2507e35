import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isGatehouseError } from '../common/errors.ts';
import { matchesPurl, parseComponentPattern } from './purl-pattern.ts';

describe('component patterns', () => {
  const cases: [string, string, boolean][] = [
    ['pkg:npm/left-pad', 'pkg:npm/left-pad@1.3.0', true],
    ['pkg:npm/%40evil/*', 'pkg:npm/%40evil/pkg@1.0.0', true],
    ['pkg:npm/%40evil/*', 'pkg:npm/%40good/pkg@1.0.0', false],
    ['pkg:npm/a.b', 'pkg:npm/axb@1.0.0', false],
    ['pkg:pypi/evil-*', 'pkg:pypi/evil-pkg@1.0', true],
    ['pkg:npm/x@^1.2.0 || ^3.0.0', 'pkg:npm/x@3.1.0', true],
    ['pkg:npm/x@^1.2.0 || ^3.0.0', 'pkg:npm/x@2.0.0', false],
    ['pkg:pypi/django@<2.2.28 | >=3.0, <3.2.13', 'pkg:pypi/django@3.1.0', true],
    ['pkg:pypi/django@<2.2.28 | >=3.0, <3.2.13', 'pkg:pypi/django@2.2.28', false],
    ['pkg:pypi/django@<2.2.28', 'pkg:pypi/django@2.2.28rc1', true],
    [
      'pkg:deb/debian/openssl@<3.0.11-1~deb12u2',
      'pkg:deb/debian/openssl@3.0.11-1~deb12u1?distro=debian-12',
      true,
    ],
    ['pkg:maven/org.example/*@>=1.0', 'pkg:maven/org.example/lib@1.0-SNAPSHOT', false],
    ['pkg:npm/x@1.0.0', 'pkg:npm/x@1.0.0', true],
    ['pkg:npm/x@1.0.0', 'pkg:pypi/x@1.0.0', false],
    ['pkg:npm/x', 'not a purl', false],
  ];
  for (const [pattern, purl, want] of cases)
    it(`${want ? 'matches' : 'does not match'} ${purl} with ${pattern}`, () =>
      assert.equal(matchesPurl(parseComponentPattern(pattern), purl), want));

  const bad: [string, RegExp][] = [
    ['left-pad', /not a purl pattern/],
    ['pkg:/x', /not a purl pattern/],
    ['pkg:npm/', /not a purl pattern/],
    ['pkg:npm/a//b', /empty name/],
    ['pkg:npm/x@', /empty version/],
    ['pkg:npm/%zz', /percent-encoding/],
    ['pkg:npm/x@>=banana', /neither a version nor a semver range/],
    ['pkg:deb/debian/x@>=a:1', /not a version of its ecosystem/],
    ['pkg:generic/x@>=1', /no version ordering/],
    ['pkg:pypi/x@>=1,,|', /empty range alternative/],
  ];
  for (const [pattern, why] of bad)
    it(`refuses '${pattern}'`, () =>
      assert.throws(
        () => parseComponentPattern(pattern),
        (e: unknown) => isGatehouseError(e, 'BAD_POLICY') && why.test(e.message),
      ));
});
