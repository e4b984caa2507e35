/**
 * A runner whose measurements left the reference values (an upgraded package, an edited agent) is
 * refused with exit 3, the measurement that changed, and the command that makes it the reference;
 * that command then lets jobs through again.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cli, copyExample, tempDir } from '../helpers.ts';

describe('reference-value drift', () => {
  const tmp = tempDir('drift');
  const home = join(tmp.path, 'home');
  const h = ['--home', home];
  let project = '';

  before(async () => {
    assert.equal((await cli(['init', ...h])).code, 0);
    project = copyExample('hello-app', tmp.path);
    // What a host upgrade looks like to the authority: the published sandbox profile digest is
    // not the one this runner measures any more.
    const values = JSON.parse(readFileSync(join(home, 'reference-values.json'), 'utf8'));
    values.sandboxProfile = ['0'.repeat(64)];
    const stale = join(tmp.path, 'stale.json');
    writeFileSync(stale, JSON.stringify(values));
    assert.equal((await cli(['attestation', 'reference-values', 'publish', stale, ...h])).code, 0);
  });
  after(() => tmp.cleanup());

  it('refuses the job with exit 3, says what changed and what to run; running it lets jobs through', async () => {
    const refused = await cli(['run', project, ...h]);
    assert.equal(refused.code, 3, refused.stderr);
    assert.match(
      refused.stderr,
      /REFERENCE_VALUES: sandbox profile digest [0-9a-f]{64} is not a reference value/,
    );
    assert.match(refused.stderr, /\n {2}cause: the runner's (isolation|host-system image)/);
    const fix = `fix: if the change was intended, the security role makes it the reference: gatehouse init --update-reference-values --home ${home} `;
    assert.ok(refused.stderr.includes(fix), refused.stderr);
    const json = await cli(['run', project, ...h, '--json']);
    assert.equal(json.code, 3);
    const doc = JSON.parse(json.stdout);
    assert.ok(doc.failure.explanation.some((l: string) => l.startsWith('fix: ')));

    assert.equal((await cli(['init', '--update-reference-values', ...h])).code, 0);
    const allowed = await cli(['run', project, ...h]);
    assert.doesNotMatch(allowed.stdout + allowed.stderr, /REFERENCE_VALUES/);
    assert.match(allowed.stdout, /✓ attest/);
  });
});
