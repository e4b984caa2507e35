/**
 * Several control-plane instances, one truth: two `gatehouse server` processes on one PostgreSQL
 * (started by the test) and one distribution registry (`docker-registry`), sharing a home's keys
 * and staging, serve jobs through either; one is SIGKILLed mid-run. Afterwards every job is final
 * (the survivor reconciled what the dead one left), every decision is in the log at its index, the
 * log audits as one growing tree across the kill, and every allowed job was promoted once.
 * Bounded: a handful of jobs of the tiny example projects, on loopback.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { defaultConfig } from '../../src/home/config.ts';
import { initHome, openHome } from '../../src/home/home.ts';
import { registryFromConfig } from '../../src/registry/registry-config.ts';
import { postgresSkip, startPostgres, type TestPostgres } from '../../src/testing/postgres.ts';
import { registrySkip, startRegistry, type TestRegistry } from '../../src/testing/registry.ts';
import { processExited, startServerProcess as startServer } from '../../src/testing/server-process.ts';
import { seedVulnerabilityData } from '../../src/testing/submission.ts';
import { cli, examplesDir, repoRoot, tempDir } from '../helpers.ts';

const bin = join(repoRoot, 'bin', 'gatehouse');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const skip = postgresSkip() || registrySkip();

function start(args: string[]): ChildProcess {
  return spawn(bin, args, { env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
}

const exited = processExited;

describe('two control-plane instances on one PostgreSQL', { skip }, () => {
  const tmp = tempDir('instances');
  let pg: TestPostgres | undefined;
  let registry: TestRegistry | undefined;
  const servers: ChildProcess[] = [];
  before(async () => {
    pg = await startPostgres();
    registry = await startRegistry();
  });
  after(async () => {
    for (const s of servers) if (s.exitCode === null && s.signalCode === null) s.kill('SIGKILL');
    await Promise.all(servers.map(exited));
    await registry?.stop();
    await pg?.stop();
    tmp.cleanup();
  });

  it('serves jobs through either, survives one being SIGKILLed, and keeps one log with every decision', async () => {
    if (pg === undefined || registry === undefined) throw new Error('no services');
    const root = join(tmp.path, 'home');
    mkdirSync(root, { mode: 0o700 });
    copyFileSync(pg.passwordFile, join(root, 'db-password'));
    writeFileSync(
      join(root, 'config.json'),
      JSON.stringify({
        ...defaultConfig(),
        store: { kind: 'postgres', url: pg.url, passwordFile: 'db-password' },
        registry: {
          kind: 'oci-distribution',
          url: registry.url,
          repositoryPrefix: 'gatehouse/promoted',
          quarantinePrefix: 'gatehouse/quarantine',
          auth: { kind: 'anonymous' },
        },
        // Settle soon, yet after any decision here takes: an instance cannot tell another that is
        // slow from one that is dead, and would fail a job it is still deciding.
        jobs: { submittedGraceSeconds: 8, deadlineSeconds: 8 },
      }),
      { mode: 0o600 },
    );
    await initHome(root);
    const seeded = await openHome(root);
    try {
      await seedVulnerabilityData(seeded);
    } finally {
      await seeded.close();
    }
    const state = join(tmp.path, 'audit-state.json');
    const audit = async () => {
      const r = await cli(['log', 'audit', '--state', state, '--home', root]);
      assert.equal(r.code, 0, r.stderr);
    };

    const a = await startServer(root);
    // The second names its store on the command line (the password file stays the config's).
    const b = await startServer(root, { extra: ['--store', pg.url] });
    servers.push(a.child, b.child);
    const run = (project: string, url: string) =>
      cli(['run', join(examplesDir, project), '--server', url, '--home', root], { timeoutMs: 180_000 });

    // Jobs through both instances at once: allowed and denied, as a single instance decides them.
    const results = await Promise.all([
      run('hello-app', a.url),
      run('hello-app', b.url),
      run('vulnerable-app', a.url),
    ]);
    assert.deepEqual(
      results.map((r) => r.code),
      [0, 0, 3],
      results.map((r) => r.stderr).join('\n'),
    );
    await audit();

    // A job through A, and A SIGKILLed mid-run; B goes on serving.
    const jobCount = async () =>
      ((await (await fetch(`${b.url}/v1/jobs?limit=1000`)).json()) as { jobs: unknown[] }).jobs.length;
    const before = await jobCount();
    const doomed = start(['run', join(examplesDir, 'hello-app'), '--server', a.url, '--home', root]);
    // Kill once its job exists (seen through the other instance), while its runner works.
    for (let i = 0; i < 300 && (await jobCount()) === before; i++) await sleep(100);
    await sleep(300);
    a.child.kill('SIGKILL');
    await exited(a.child);
    await exited(doomed);
    // The run lost its control plane mid-way (a job takes seconds; the kill came sooner).
    assert.notEqual(doomed.exitCode, 0, 'the job through A was cut off');
    const afterKill = await run('hello-app', b.url);
    assert.equal(afterKill.code, 0, afterKill.stderr);

    // B reconciles what A left: wait (bounded) until no job is unfinished.
    const home = await openHome(root);
    try {
      let unfinished: string[] = [];
      for (let i = 0; i < 80; i++) {
        unfinished = (await home.store.jobs.listUnfinished()).map((j) => `${j.id} ${j.state}`);
        if (unfinished.length === 0) break;
        await sleep(500);
      }
      assert.deepEqual(unfinished, [], 'no job stuck');
      const jobs = await home.store.jobs.list({ limit: 1000 });
      const promoted = registryFromConfig(home.config.registry, home.root);
      assert.ok(jobs.length >= 5);
      // Every decision is in the log, at its index, once.
      const decisions = await home.store.decisions.list({ limit: 1000 });
      assert.ok(decisions.length >= 4);
      for (const d of decisions) {
        const entry = await home.store.log.get(d.logIndex);
        assert.ok(entry !== undefined, `decision ${d.id} has no log entry ${d.logIndex}`);
        const body = JSON.parse(Buffer.from(entry.body).toString()) as { spec?: { decisionId?: string } };
        assert.equal(body.spec?.decisionId, d.id, `log entry ${d.logIndex} is decision ${d.id}`);
      }
      assert.equal(new Set(decisions.map((d) => d.logIndex)).size, decisions.length);
      // A decided job reached the state its decision names, or failed with the reason logged; an
      // allowed one is promoted.
      for (const d of decisions) {
        const job = jobs.find((j) => j.id === d.jobId);
        const named = { allow: 'allowed', deny: 'denied', quarantine: 'quarantined' }[d.outcome];
        assert.ok(job?.state === named || job?.state === 'failed', `${d.jobId} is ${job?.state}`);
        if (job?.state === 'allowed')
          assert.ok(
            (await promoted.inspect('promoted', job.project, job.id)) !== undefined,
            `${job.id} allowed but not promoted`,
          );
        if (job?.state === 'failed')
          assert.equal(typeof job.result?.logIndex, 'number', `${job.id} failed unlogged`);
      }
      // One tree: the survivor's checkpoint and this process's name the same size and root.
      const [viaB, here] = await Promise.all([
        fetch(`${b.url}/v1/log/checkpoint`).then((r) => r.text()),
        home.log.checkpoint(),
      ]);
      assert.equal(viaB.split('\n').slice(0, 3).join('\n'), here.split('\n').slice(0, 3).join('\n'));
    } finally {
      await home.close();
    }
    await audit();
    b.child.kill('SIGTERM');
    await exited(b.child);
  });
});
