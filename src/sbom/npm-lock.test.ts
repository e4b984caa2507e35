import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { isGatehouseError } from '../common/errors.ts';
import { catalogNpmLockfile, sriToHashes } from './npm-lock.ts';

const fixture = readFileSync(new URL('./testdata/package-lock.v3.json', import.meta.url), 'utf8');
const hex = (s: string, alg = 'sha512') => createHash(alg).update(s).digest('hex');

function byName(name: string, version?: string) {
  const { components } = catalogNpmLockfile(fixture, 'package-lock.json');
  const c = components.find((x) => x.name === name && (version === undefined || x.version === version));
  assert.ok(c, `component ${name}@${version ?? '*'} present`);
  return c;
}

describe('npm lockfile cataloguing', () => {
  it('lists every installed package once, and not the project itself', () => {
    const cat = catalogNpmLockfile(fixture, 'package-lock.json');
    assert.deepEqual(cat.project, { name: 'demo-app', version: '1.0.0' });
    assert.deepEqual(
      cat.components.map((c) => c.purl),
      [
        'pkg:npm/%40s/n@3.1.0-beta.1',
        'pkg:npm/a@1.2.3',
        'pkg:npm/b@1.0.0',
        'pkg:npm/b@2.0.0',
        'pkg:npm/d@1.0.0',
        'pkg:npm/fsevents@2.3.3',
        'pkg:npm/real-strip@6.0.1',
        'pkg:npm/util@0.1.0',
      ],
    );
  });

  it('encodes the scope @ of a scoped package as %40 in the purl', () => {
    assert.equal(byName('@s/n').purl, 'pkg:npm/%40s/n@3.1.0-beta.1');
  });

  it('resolves dependency edges to the nearest node_modules, as Node does', () => {
    // a has its own nested b@2; @s/n and the workspace see the top-level b@1.
    assert.deepEqual(byName('a').dependencies, ['pkg:npm/b@2.0.0']);
    assert.deepEqual(byName('@s/n').dependencies, ['pkg:npm/b@1.0.0']);
    assert.deepEqual(byName('util').dependencies, ['pkg:npm/b@1.0.0']);
    assert.deepEqual(byName('d').dependencies, ['pkg:npm/a@1.2.3']);
  });

  it('follows link entries to the workspace they point to, and counts workspace dependencies as direct', () => {
    const cat = catalogNpmLockfile(fixture, 'package-lock.json');
    assert.deepEqual(cat.direct, [
      'pkg:npm/%40s/n@3.1.0-beta.1',
      'pkg:npm/a@1.2.3',
      'pkg:npm/b@1.0.0',
      'pkg:npm/d@1.0.0',
      'pkg:npm/fsevents@2.3.3',
      'pkg:npm/util@0.1.0',
    ]);
  });

  it('maps dev, optional and devOptional flags to a scope', () => {
    assert.equal(byName('a').scope, 'required');
    assert.equal(byName('d').scope, 'dev');
    assert.equal(byName('fsevents').scope, 'optional');
    assert.equal(byName('real-strip').scope, 'dev');
  });

  it('names an aliased install by the real package, which is what advisories name', () => {
    assert.equal(byName('real-strip').purl, 'pkg:npm/real-strip@6.0.1');
  });

  it('turns SRI integrity into hex hashes', () => {
    assert.deepEqual(byName('a').hashes, [{ alg: 'SHA-512', content: hex('a') }]);
    assert.deepEqual(byName('b', '1.0.0').hashes, [{ alg: 'SHA-1', content: hex('b1', 'sha1') }]);
  });

  it('keeps declared licences', () => {
    assert.deepEqual(byName('a').licenses, ['MIT']);
    assert.deepEqual(byName('@s/n').licenses, ['(MIT OR Apache-2.0)']);
    assert.equal(byName('d').licenses, undefined);
  });

  it('reads several digests from one SRI string', () => {
    const sri = `sha512-${createHash('sha512').update('x').digest('base64')} sha1-${createHash('sha1').update('x').digest('base64')}`;
    assert.deepEqual(sriToHashes(sri), [
      { alg: 'SHA-512', content: hex('x') },
      { alg: 'SHA-1', content: hex('x', 'sha1') },
    ]);
  });

  it('accepts lockfileVersion 2 the same way', () => {
    const v2 = JSON.parse(fixture) as { lockfileVersion: number };
    v2.lockfileVersion = 2;
    assert.equal(catalogNpmLockfile(JSON.stringify(v2), 'x').components.length, 8);
  });

  const sha512 = `sha512-${createHash('sha512').update('z').digest('base64')}`;
  const lock = (packages: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
    JSON.stringify({ lockfileVersion: 3, packages: { '': { name: 'p' }, ...packages }, ...extra });
  const adversarial: [string, string, RegExp][] = [
    ['text that is not JSON', '{"lockfileVersion": 3,', /not valid JSON/],
    ['a JSON array', '[]', /not a JSON object/],
    ['no lockfileVersion', JSON.stringify({ packages: {} }), /no lockfileVersion/],
    ['a string lockfileVersion', JSON.stringify({ lockfileVersion: '3', packages: {} }), /lockfileVersion/],
    [
      'a lockfileVersion 1 dependency that is not an object',
      JSON.stringify({ lockfileVersion: 1, dependencies: { a: 'x' } }),
      /dependency 'node_modules\/a' is malformed/,
    ],
    ['lockfileVersion 4', JSON.stringify({ lockfileVersion: 4, packages: {} }), /lockfileVersion 4/],
    ['no packages map', JSON.stringify({ lockfileVersion: 3 }), /without "packages"/],
    [
      'an entry without version',
      lock({ 'node_modules/x': { integrity: sha512 } }),
      /'node_modules\/x' has no version/,
    ],
    [
      'an entry with a non-semver version',
      lock({ 'node_modules/x': { version: 'latest' } }),
      /'node_modules\/x' has an invalid version 'latest'/,
    ],
    ['an entry that is not an object', lock({ 'node_modules/x': 'oops' }), /'node_modules\/x' is malformed/],
    [
      'a numeric version',
      lock({ 'node_modules/x': { version: 1 } }),
      /'node_modules\/x' field version is malformed/,
    ],
    [
      'integrity that is not SRI',
      lock({ 'node_modules/x': { version: '1.0.0', integrity: 'deadbeef' } }),
      /'node_modules\/x'.*not a valid SRI/,
    ],
    [
      'integrity with an unknown algorithm',
      lock({ 'node_modules/x': { version: '1.0.0', integrity: 'md5-AAAAAAAAAAAAAAAAAAAAAA==' } }),
      /unsupported algorithm 'md5'/,
    ],
    [
      'a truncated sha512 digest',
      lock({ 'node_modules/x': { version: '1.0.0', integrity: 'sha512-AAAA' } }),
      /3 bytes, expected 64/,
    ],
    [
      'a path escaping the project',
      lock({ 'node_modules/../../etc/x': { version: '1.0.0' } }),
      /invalid path/,
    ],
    [
      'an invalid package name',
      lock({ 'node_modules/has space': { version: '1.0.0' } }),
      /invalid package name/,
    ],
    ['an empty package name', lock({ 'node_modules/': { version: '1.0.0' } }), /invalid package name ''/],
    [
      'two copies of one version with different digests',
      lock({
        'node_modules/x': { version: '1.0.0', integrity: sha512 },
        'node_modules/y/node_modules/x': {
          version: '1.0.0',
          integrity: `sha512-${createHash('sha512').update('other').digest('base64')}`,
        },
        'node_modules/y': { version: '1.0.0' },
      }),
      /different SHA-512 integrity/,
    ],
  ];
  for (const [what, text, message] of adversarial) {
    it(`refuses ${what} with BAD_LOCKFILE naming the problem`, () => {
      assert.throws(
        () => catalogNpmLockfile(text, 'app/package-lock.json'),
        (e: unknown) =>
          isGatehouseError(e, 'BAD_LOCKFILE') &&
          (e.where === 'app/package-lock.json' || /^app\/package-lock\.json:\d+:\d+$/.test(e.where ?? '')) &&
          message.test(e.message),
      );
    });
  }

  it('names the line and column of a JSON syntax error', () => {
    assert.throws(
      () => catalogNpmLockfile('{\n  "lockfileVersion": 3,\n  oops\n}', 'package-lock.json'),
      (e: unknown) => isGatehouseError(e, 'BAD_LOCKFILE') && e.where === 'package-lock.json:3:3',
    );
  });

  it('refuses a __proto__ entry as an invalid name instead of touching a prototype', () => {
    const text = lock({ 'node_modules/__proto__': { version: '1.0.0' } });
    assert.throws(() => catalogNpmLockfile(text, 'x'), /invalid package name '__proto__'/);
    assert.equal(({} as Record<string, unknown>).version, undefined);
  });
});
