/**
 * Crashes at random moments, as an operator would meet them: the control plane SIGKILLed while
 * jobs run through it, and clients SIGKILLed mid-run. Afterwards every job reaches a final state,
 * no decided job is left half-done, each decision is promoted at most once, the log audits as one
 * growing log, and nothing of a killed run is left on the host. Bounded: a few jobs of a tiny
 * example project, on loopback.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { attestationPaths } from '../../src/attestation/trust-store.ts';
import { initHome, openHome } from '../../src/home/home.ts';
import { readLayoutIndex } from '../../src/registry/oci-layout-registry.ts';
import { processExited, startServerProcess as startServer } from '../../src/testing/server-process.ts';
import { registerProject, seedVulnerabilityData } from '../../src/testing/submission.ts';
import { cli, copyExample, examplesDir, repoRoot, tempDir } from '../helpers.ts';

const bin = join(repoRoot, 'bin', 'gatehouse');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** A pseudo-random sequence fixed by the test, so a failure can be replayed. */
function randomFrom(seed: number): () => number {
  let x = seed;
  return () => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return x / 2 ** 31;
  };
}

function start(args: string[]): ChildProcess {
  return spawn(bin, args, { env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
}

const exited = processExited;

async function makeHome(root: string): Promise<void> {
  await initHome(root);
  const config = JSON.parse(readFileSync(join(root, 'config.json'), 'utf8')) as Record<string, unknown>;
  // Settle quickly: a submitted job nobody decides after 1 s, a runner silent for 3 s.
  config.jobs = { submittedGraceSeconds: 1, deadlineSeconds: 3 };
  writeFileSync(join(root, 'config.json'), JSON.stringify(config));
  const home = await openHome(root);
  try {
    await seedVulnerabilityData(home);
    await registerProject(home, 'slow-app');
  } finally {
    await home.close();
  }
}

/** Every job final; each allowed one promoted exactly once, nothing promoted twice. */
async function assertSettled(root: string): Promise<void> {
  const home = await openHome(root);
  try {
    const jobs = await home.store.jobs.list({ limit: 1000 });
    const unfinished = jobs.filter((j) => ['queued', 'running', 'submitted'].includes(j.state));
    assert.deepEqual(
      unfinished.map((j) => `${j.id} ${j.state}`),
      [],
    );
    const promotedDir = join(root, 'registry', 'promoted', 'hello-app');
    const tags = existsSync(promotedDir)
      ? (await readLayoutIndex(promotedDir)).manifests
          .map((m) => m.annotations?.['org.opencontainers.image.ref.name'])
          .filter((t): t is string => t?.startsWith('job-') === true)
      : [];
    assert.equal(new Set(tags).size, tags.length, 'no job promoted twice');
    for (const d of await home.store.decisions.list({ limit: 1000 })) {
      const job = jobs.find((j) => j.id === d.jobId);
      if (d.outcome === 'allow' && job?.state === 'allowed')
        assert.ok(tags.includes(d.jobId), `${d.jobId} allowed but not promoted`);
      if (tags.includes(d.jobId))
        assert.equal(job?.state, 'allowed', `${d.jobId} promoted but ${job?.state}`);
    }
  } finally {
    await home.close();
  }
}

describe('crashes at random moments', () => {
  const tmp = tempDir('crash');
  after(() => tmp.cleanup());

  it('settles every job after the control plane is SIGKILLed under load, with one growing log', async () => {
    const root = join(tmp.path, 'server-home');
    await makeHome(root);
    const state = join(tmp.path, 'audit-state.json');
    const audit = async () => {
      const r = await cli(['log', 'audit', '--state', state, '--home', root]);
      assert.equal(r.code, 0, r.stderr);
    };
    const random = randomFrom(20261203);
    let server = await startServer(root);
    for (let round = 0; round < 5; round++) {
      const client = start(['run', join(examplesDir, 'hello-app'), '--server', server.url, '--home', root]);
      await sleep(150 + Math.floor(random() * 1600));
      server.child.kill('SIGKILL');
      await exited(server.child);
      await exited(client);
      server = await startServer(root);
      await audit();
    }
    await sleep(3500);
    server.child.kill('SIGTERM');
    await exited(server.child);
    // A fresh start reconciles everything that is now past its grace or deadline.
    server = await startServer(root);
    server.child.kill('SIGTERM');
    await exited(server.child);
    await audit();
    await assertSettled(root);
  });

  it('leaves nothing of a client SIGKILLed mid-run once the next run has swept', async () => {
    const root = join(tmp.path, 'client-home');
    await makeHome(root);
    const project = copyExample('hello-app', tmp.path);
    writeFileSync(
      join(project, 'gatehouse.yaml'),
      'project: slow-app\nbuild:\n  command: ["sh", "-c", "sleep 2; sh build.sh"]\noutputs: [dist/hello-app.tar]\n',
    );
    const before = new Set(readdirSync(tmpdir()).filter((n) => n.startsWith('gatehouse-job-')));
    const random = randomFrom(42);
    for (let round = 0; round < 4; round++) {
      const client = start(['run', project, '--home', root]);
      await sleep(300 + Math.floor(random() * 2500));
      client.kill('SIGKILL');
      await exited(client);
    }
    await sleep(3500);
    const clean = await cli(['run', join(examplesDir, 'hello-app'), '--home', root]);
    assert.equal(clean.code, 0, clean.stderr);
    // Only this home's jobs: other tests run jobs alongside.
    const opened = await openHome(root);
    const ids = (await opened.store.jobs.list({ limit: 1000 })).map((j) => j.id);
    await opened.close();
    const jobs = readdirSync(tmpdir()).filter(
      (n) => !before.has(n) && ids.some((id) => n.startsWith(`gatehouse-${id}-`)),
    );
    assert.deepEqual(jobs, []);
    const inUse = join(attestationPaths(root).vtpmPool, 'in-use');
    assert.deepEqual(existsSync(inUse) ? readdirSync(inUse) : [], []);
    // No swtpm of a killed client outlives the sweep, even one started before its pid was recorded.
    const serving = readdirSync('/proc')
      .filter((pid) => /^\d+$/.test(pid))
      .map((pid) => {
        try {
          return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        } catch {
          return [];
        }
      })
      .filter((argv) => argv[0]?.endsWith('swtpm') && argv.some((a) => a.startsWith(`dir=${inUse}/`)));
    assert.deepEqual(serving, []);
    await assertSettled(root);
  });
});
