/**
 * A reader that goes away before the command has written (`gatehouse … | head -1`) ends the command
 * quietly with its own exit code: no stack trace, and a `run` still finishes its job and cleans up.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { initHome, openHome } from '../../src/home/home.ts';
import { registerProject, seedVulnerabilityData } from '../../src/testing/submission.ts';
import { copyExample, repoRoot, tempDir } from '../helpers.ts';

/** Run gatehouse with its stdout closed by the reader before anything is written. */
function runWithClosedStdout(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(join(repoRoot, 'bin', 'gatehouse'), args, {
      env: { ...process.env, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.destroy();
    let stderr = '';
    const guard = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(guard);
      resolve({ code, stderr });
    });
  });
}

describe('a closed output pipe', () => {
  const tmp = tempDir('epipe');
  const root = join(tmp.path, 'home');

  before(async () => {
    await initHome(root);
    const home = await openHome(root);
    try {
      await seedVulnerabilityData(home);
      await registerProject(home, 'hello-app');
    } finally {
      await home.close();
    }
  });
  after(() => tmp.cleanup());

  for (const args of [['--help'], ['policy', 'show'], ['log', 'checkpoint', '--json'], ['trust-root']])
    it(`ends \`gatehouse ${args.join(' ')}\` quietly with exit 0`, async () => {
      const r = await runWithClosedStdout(args[0] === '--help' ? args : [...args, '--home', root]);
      assert.equal(r.stderr, '');
      assert.equal(r.code, 0);
    });

  it('lets a run finish its job, with its exit code, when nobody reads its output', async () => {
    const project = copyExample('hello-app', tmp.path);
    const r = await runWithClosedStdout(['run', project, '--home', root]);
    assert.equal(r.stderr, '');
    assert.equal(r.code, 0);
    const home = await openHome(root);
    try {
      const [job] = await home.store.jobs.list({ limit: 1 });
      assert.equal(job?.state, 'allowed');
    } finally {
      await home.close();
    }
  });
});
