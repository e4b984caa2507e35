/**
 * A `gatehouse run` stopped by a signal leaves nothing behind: its job is recorded cancelled, its
 * sandbox is killed, its workspace (and the tmpfs under it) removed and its vTPM destroyed.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { attestationPaths } from '../../src/attestation/trust-store.ts';
import { initHome, openHome } from '../../src/home/home.ts';
import { registerProject, seedVulnerabilityData } from '../../src/testing/submission.ts';
import { copyExample, repoRoot, tempDir } from '../helpers.ts';

/** Start `gatehouse run`, send `signal` once `after` appears on its stdout; resolve with its exit. */
function runAndSignal(
  args: string[],
  after: RegExp,
  signal: NodeJS.Signals,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(join(repoRoot, 'bin', 'gatehouse'), args, {
      env: { ...process.env, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let sent = false;
    const guard = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (!sent && after.test(stdout)) {
        sent = true;
        child.kill(signal);
      }
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(guard);
      resolve({ code, stdout, stderr });
    });
  });
}

/** What the jobs of this test's home could leave behind on the host (other tests run alongside). */
async function leftovers(home: string): Promise<string[]> {
  const opened = await openHome(home);
  const ids = (await opened.store.jobs.list({ limit: 1000 })).map((j) => j.id);
  await opened.close();
  const jobs = readdirSync(tmpdir()).filter((n) => ids.some((id) => n.startsWith(`gatehouse-${id}-`)));
  const inUse = join(attestationPaths(home).vtpmPool, 'in-use');
  const vtpms = existsSync(inUse) ? readdirSync(inUse).map((n) => `vtpm ${n}`) : [];
  return [...jobs.map((n) => `/tmp/${n}`), ...vtpms];
}

describe('a run stopped by a signal', () => {
  const tmp = tempDir('cancel');
  const root = join(tmp.path, 'home');
  let project = '';

  before(async () => {
    await initHome(root);
    const home = await openHome(root);
    try {
      await seedVulnerabilityData(home);
      await registerProject(home, 'slow-app');
    } finally {
      await home.close();
    }
    project = copyExample('hello-app', tmp.path);
    writeFileSync(
      join(project, 'gatehouse.yaml'),
      'project: slow-app\nbuild:\n  command: ["sh", "-c", "sleep 60"]\n  timeout: 120\noutputs: [dist/hello-app.tar]\n',
    );
  });
  after(() => tmp.cleanup());

  for (const signal of ['SIGTERM', 'SIGINT'] as const)
    it(`cancels the job on ${signal}, kills the build and leaves no workspace or vTPM behind`, async () => {
      const before = new Set(await leftovers(root));
      const started = Date.now();
      const r = await runAndSignal(['run', project, '--home', root], /✓ fetch/, signal);
      assert.equal(r.code, 1, r.stderr);
      assert.ok(Date.now() - started < 50_000, 'the 60 s build was killed, not waited for');
      assert.match(r.stderr, /cancel/);
      const home = await openHome(root);
      try {
        const [job] = await home.store.jobs.list({ limit: 1 });
        assert.equal(job?.state, 'cancelled');
        assert.ok(job?.steps.some((s) => s.name === 'destroy' && s.ok));
      } finally {
        await home.close();
      }
      assert.ok(
        existsSync(join(attestationPaths(root).vtpmPool, 'in-use')),
        'the check looks where vTPMs live',
      );
      assert.deepEqual(
        (await leftovers(root)).filter((l) => !before.has(l)),
        [],
      );
    });
});
