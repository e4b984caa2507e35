import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isGatehouseError } from '../common/errors.ts';
import { npmNameOf, npmPurl, parsePurl } from './purl.ts';

describe('package URLs', () => {
  it('writes npm purls with the scope @ percent-encoded', () => {
    assert.equal(npmPurl('left-pad', '1.3.0'), 'pkg:npm/left-pad@1.3.0');
    assert.equal(npmPurl('@angular/animation', '12.3.1'), 'pkg:npm/%40angular/animation@12.3.1');
    assert.equal(npmPurl('@angular/animation'), 'pkg:npm/%40angular/animation');
    assert.equal(npmPurl('x', '1.0.0+build.1'), 'pkg:npm/x@1.0.0%2Bbuild.1');
  });

  it('reads back what it writes', () => {
    for (const [name, version] of [
      ['@babel/core', '7.0.0-beta.4'],
      ['JSONStream', '1.3.5'],
      ['x', '1.0.0+b'],
    ] as const) {
      const p = parsePurl(npmPurl(name, version));
      assert.equal(p.type, 'npm');
      assert.equal(npmNameOf(p), name);
      assert.equal(p.version, version);
    }
  });

  it('parses qualifiers and subpath', () => {
    const p = parsePurl('pkg:npm/%40babel/helper@7.19.4?vcs_url=git%3A%2F%2Fh%2Fr#packages/x');
    assert.deepEqual(p, {
      type: 'npm',
      namespace: '@babel',
      name: 'helper',
      version: '7.19.4',
      qualifiers: { vcs_url: 'git://h/r' },
      subpath: 'packages/x',
    });
  });

  it('tolerates an unencoded scope @ without mistaking it for the version', () => {
    assert.deepEqual(parsePurl('pkg:npm/@babel/core'), {
      type: 'npm',
      namespace: '@babel',
      name: 'core',
      qualifiers: {},
    });
    assert.equal(parsePurl('pkg:npm/@babel/core@7.1.0').version, '7.1.0');
  });

  for (const bad of [
    '',
    'npm/x@1',
    'pkg:',
    'pkg:npm',
    'pkg:npm/',
    'pkg:npm/x@',
    'pkg:n%pm/x',
    'pkg:npm/%E0%A4%A@1',
  ]) {
    it(`refuses '${bad}'`, () => {
      assert.throws(
        () => parsePurl(bad),
        (e: unknown) => isGatehouseError(e, 'BAD_INPUT'),
      );
    });
  }
});
