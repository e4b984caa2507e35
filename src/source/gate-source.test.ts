import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cli, copyExample, examplesDir, tempDir } from '../../test/helpers.ts';
import { initRepo, sshKeyPair } from '../testing/source.ts';

/**
 * Source origin through the whole pipeline: `gatehouse run` on a real git repository registered
 * with `gatehouse source protect`, approvals recorded with `gatehouse source approve`. The gate
 * reads the repository itself; every refusal names its reason in the decision.
 */
describe('source origin at the gate', () => {
  const tmp = tempDir('source-gate');
  const home = join(tmp.path, 'home');
  const env = { GATEHOUSE_HOME: home };
  let app: string;
  const git = (...args: string[]) => execFileSync('git', ['-C', app, ...args], { encoding: 'utf8' }).trim();

  before(async () => {
    assert.equal((await cli(['init'], { env })).code, 0);
    assert.equal((await cli(['vulndb', 'import', join(examplesDir, 'advisories')], { env })).code, 0);
    app = copyExample('hello-app', tmp.path);
    initRepo(app, { name: 'Alice', email: 'alice@example.com' });
    git('add', '-A');
    git('commit', '-q', '-m', 'one');
    sshKeyPair(join(tmp.path, 'bob'));
    const protect = await cli(['source', 'protect', app, '--branch', 'main', '--approvals', '1'], { env });
    assert.equal(protect.code, 0, protect.stderr);
    const signer = await cli(
      ['source', 'signers', 'add', '--principal', 'bob@example.com', '--ssh-key', join(tmp.path, 'bob.pub')],
      { env },
    );
    assert.equal(signer.code, 0, signer.stderr);
  });
  after(() => tmp.cleanup());

  it('refuses an unreviewed commit, then allows it once a trusted reviewer approved it', async () => {
    const denied = await cli(['run', app, '--json'], { env });
    assert.equal(denied.code, 3, denied.stderr);
    const d = JSON.parse(denied.stdout);
    assert.equal(d.decision.reasons[0].rule, 'source-protection');
    assert.equal(d.decision.reasons[0].requirement, 'approvals');

    const approve = await cli(
      ['source', 'approve', app, 'HEAD', '--reviewer', 'bob@example.com', '--key', join(tmp.path, 'bob')],
      { env },
    );
    assert.equal(approve.code, 0, approve.stderr);
    const allowed = await cli(['run', app, '--json'], { env });
    assert.equal(allowed.code, 0, allowed.stdout + allowed.stderr);
    const steps = JSON.parse(allowed.stdout).steps as { name: string; detail?: string }[];
    assert.match(steps.find((s) => s.name === 'source')?.detail ?? '', /^pinned [0-9a-f]{12}$/);
  });

  it('refuses a work tree whose files are not the reviewed commit', async () => {
    appendFileSync(join(app, 'build.sh'), '# not committed\n');
    const r = await cli(['run', app, '--json'], { env });
    git('checkout', '-q', '--', 'build.sh');
    assert.equal(r.code, 3, r.stderr);
    const reasons = JSON.parse(r.stdout).decision.reasons as { requirement: string; message: string }[];
    assert.deepEqual(
      reasons.map((x) => x.requirement),
      ['tree'],
    );
  });

  it('refuses a build of a bound project from anything but its repository', async () => {
    const bind = await cli(['source', 'protect', app, '--branch', 'main', '--project', 'hello-app'], { env });
    assert.equal(bind.code, 0, bind.stderr);
    mkdirSync(join(tmp.path, 'plain'));
    const copy = copyExample('hello-app', join(tmp.path, 'plain'));
    const r = await cli(['run', copy, '--json'], { env });
    assert.equal(r.code, 3, r.stderr);
    const reasons = JSON.parse(r.stdout).decision.reasons as { requirement: string; message: string }[];
    assert.deepEqual(
      reasons.map((x) => x.requirement),
      ['repository'],
    );
    assert.match(
      reasons[0]?.message ?? '',
      /project hello-app must be built from file:\/\/.*, not a directory/,
    );
  });

  it('refuses a self-approval given on the command line with a key that is not the reviewer’s', async () => {
    const r = await cli(
      ['source', 'approve', app, 'HEAD', '--reviewer', 'alice@example.com', '--key', join(tmp.path, 'bob')],
      { env },
    );
    assert.equal(r.code, 3);
    assert.match(
      r.stderr,
      /^gatehouse source: review of [0-9a-f]{12} by alice@example.com is not signed by a trusted key/,
    );
    assert.equal(r.stderr.trim().split('\n').length, 1);
  });
});
