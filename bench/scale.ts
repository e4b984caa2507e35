/**
 * Scale-out: 1, 2 and 4 control-plane instances (`gatehouse server` processes) on one PostgreSQL,
 * N concurrent runners (`gatehouse run --server`, each a real bubblewrap sandbox with a vTPM)
 * spread over them, against one distribution registry. Then 2 instances with one SIGKILLed half-way:
 * the runners of the dead one move to the live one, and after reconciliation the run counts
 * decisions lost (a decision without its log entry, or a decided job in neither the state it names
 * nor failed with a logged reason), forks (the log's audit across the kill) and stuck jobs.
 *
 * What a figure includes: a job is the whole `gatehouse run` process, from spawn to exit (runner
 * start, vTPM, attestation, build, SBOM, gate, signing, log, promotion). The floor is the same load
 * on one instance with the embedded SQLite store, measured in the same run. The machine has two
 * cores shared by everything here (PostgreSQL, the instances, the sandboxes), so more instances
 * cannot add CPU: the rows show what the shared database costs and that nothing is lost, not a
 * cluster's throughput.
 *
 * SCALE_RUNNERS (default 4) and SCALE_SECONDS (default 30) size each phase.
 */
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultConfig } from '../src/home/config.ts';
import { initHome, openHome } from '../src/home/home.ts';
import { registryFromConfig } from '../src/registry/registry-config.ts';
import { postgresSkip, startPostgres, type TestPostgres } from '../src/testing/postgres.ts';
import { registrySkip, startRegistry, type TestRegistry } from '../src/testing/registry.ts';
import {
  processExited,
  type ServerProcess,
  startServerProcess as startServer,
} from '../src/testing/server-process.ts';
import { seedVulnerabilityData } from '../src/testing/submission.ts';
import { percentile, printTable, writeResult } from './lib.ts';

const repo = join(import.meta.dirname, '..');
const bin = join(repo, 'bin', 'gatehouse');
const example = join(repo, 'examples', 'hello-app');
const RUNNERS = Number(process.env.SCALE_RUNNERS ?? 4);
const SECONDS = Number(process.env.SCALE_SECONDS ?? 30);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const exited = processExited;

/** One `gatehouse run` against a server: its exit code, wall time and last line on stderr. */
function runJob(home: string, url: string): Promise<{ code: number; ms: number; error: string }> {
  const t0 = performance.now();
  const child = spawn(bin, ['run', example, '--server', url, '--home', home], {
    env: { ...process.env, NO_COLOR: '1' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-2000);
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
  return new Promise((resolve) =>
    child.on('close', (code) => {
      clearTimeout(timer);
      const error = stderr.trim().split('\n').at(-1) ?? '';
      resolve({ code: code ?? -1, ms: performance.now() - t0, error });
    }),
  );
}

/** A home whose store is the given database (PostgreSQL URL, or the embedded SQLite file). */
async function prepareHome(
  root: string,
  store: { kind: 'postgres'; url: string; passwordFile: string } | { kind: 'sqlite'; path: string },
  registry: TestRegistry,
): Promise<void> {
  // One home per phase: its own log, anchor and database; the keys are made again (cheap).
  rmSync(root, { recursive: true, force: true });
  mkdirSync(root, { mode: 0o700 });
  if (store.kind === 'postgres') copyFileSync(store.passwordFile, join(root, 'db-password'));
  writeFileSync(
    join(root, 'config.json'),
    JSON.stringify({
      ...defaultConfig(),
      store: store.kind === 'postgres' ? { ...store, passwordFile: 'db-password' } : store,
      registry: {
        kind: 'oci-distribution',
        url: registry.url,
        repositoryPrefix: 'gatehouse/promoted',
        quarantinePrefix: 'gatehouse/quarantine',
        auth: { kind: 'anonymous' },
      },
      // A grace longer than any decision takes here: a reconciler cannot tell a slow instance from a
      // dead one, and would fail a job another instance is still deciding.
      jobs: { submittedGraceSeconds: 10, deadlineSeconds: 20 },
    }),
    { mode: 0o600 },
  );
  await initHome(root);
  const home = await openHome(root);
  try {
    await seedVulnerabilityData(home);
  } finally {
    await home.close();
  }
}

interface PhaseResult {
  phase: string;
  instances: number;
  store: string;
  jobs: number;
  errors: number;
  cutOff: number;
  jobsPerMin: number;
  approvalsPerS: number;
  p50ms: number;
  p95ms: number;
  decisionsLost: number;
  forks: number;
  stuckJobs: number;
  /** What the runs that failed said last (not in the table), by message. */
  errorMessages: Record<string, number>;
}

async function phase(
  name: string,
  root: string,
  instances: number,
  storeName: string,
  kill: boolean,
): Promise<PhaseResult> {
  const servers = await Promise.all(Array.from({ length: instances }, () => startServer(root)));
  const alive = new Set(servers);
  const audit = join(root, 'audit-state.json');
  const auditOnce = async (): Promise<number> => {
    const child = spawn(bin, ['log', 'audit', '--state', audit, '--home', root], { stdio: 'ignore' });
    return new Promise((r) => child.on('exit', (code) => r(code ?? -1)));
  };
  let forks = (await auditOnce()) === 0 ? 0 : 1;
  const durations: number[] = [];
  let errors = 0;
  let cutOff = 0;
  const errorMessages: Record<string, number> = {};
  const t0 = performance.now();
  const deadline = t0 + SECONDS * 1000;
  let killedAt: number | undefined;
  const killer = kill
    ? (async () => {
        await sleep((SECONDS * 1000) / 2);
        const victim = servers[0] as ServerProcess;
        alive.delete(victim);
        killedAt = performance.now();
        victim.child.kill('SIGKILL');
        await exited(victim.child);
      })()
    : Promise.resolve();
  await Promise.all(
    Array.from({ length: RUNNERS }, async (_, r) => {
      for (let n = 0; performance.now() < deadline; n++) {
        // Round robin over the live instances, as a load balancer would.
        const live = [...alive];
        const target = live[(r + n) % live.length] as ServerProcess;
        const started = performance.now();
        const result = await runJob(root, target.url);
        if (result.code === 0) durations.push(result.ms);
        else if (killedAt !== undefined && started <= killedAt && !alive.has(target)) cutOff++;
        else {
          errors++;
          const message = result.error.replace(/job-[0-9a-f-]{36}/g, 'job-…').slice(0, 200);
          errorMessages[message] = (errorMessages[message] ?? 0) + 1;
        }
      }
    }),
  );
  await killer;
  const wallS = (performance.now() - t0) / 1000;
  // Let the live instances reconcile what the dead one left (bounded), then count.
  const home = await openHome(root);
  let stuckJobs = 0;
  let decisionsLost = 0;
  let approvals = 0;
  try {
    for (let i = 0; i < 120; i++) {
      stuckJobs = (await home.store.jobs.listUnfinished()).length;
      if (stuckJobs === 0) break;
      await sleep(500);
    }
    const jobs = await home.store.jobs.list({ limit: 100_000 });
    const decisions = await home.store.decisions.list({ limit: 100_000 });
    const registry = registryFromConfig(home.config.registry, home.root);
    const named = { allow: 'allowed', deny: 'denied', quarantine: 'quarantined' } as const;
    for (const d of decisions) {
      const entry = await home.store.log.get(d.logIndex);
      const spec =
        entry === undefined
          ? undefined
          : (JSON.parse(Buffer.from(entry.body).toString()).spec as { decisionId?: string });
      const job = jobs.find((j) => j.id === d.jobId);
      // Lost: not in the log at its index, or its job neither in the state it names nor failed
      // (a failure after the decision is an error, counted with the runs), or allowed unpromoted.
      const settled = job?.state === named[d.outcome] || job?.state === 'failed';
      const promoted =
        job?.state !== 'allowed' || (await registry.inspect('promoted', job.project, job.id)) !== undefined;
      if (spec?.decisionId !== d.id || !settled || !promoted) decisionsLost++;
      if (d.outcome === 'allow' && job?.state === 'allowed') approvals++;
    }
  } finally {
    await home.close();
  }
  forks += (await auditOnce()) === 0 ? 0 : 1;
  for (const s of alive) s.child.kill('SIGTERM');
  await Promise.all(servers.map((s) => exited(s.child)));
  return {
    phase: name,
    instances,
    store: storeName,
    jobs: durations.length,
    errors,
    cutOff,
    jobsPerMin: Number(((durations.length / wallS) * 60).toFixed(1)),
    approvalsPerS: Number((approvals / wallS).toFixed(3)),
    p50ms: Math.round(percentile(durations, 50)),
    p95ms: Math.round(percentile(durations, 95)),
    decisionsLost,
    forks,
    stuckJobs,
    errorMessages,
  };
}

export async function run(): Promise<void> {
  const skip = postgresSkip() || registrySkip();
  if (skip !== false) {
    process.stdout.write(`scale: skipped: ${skip}\n`);
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), 'gh-bench-scale-'));
  let pg: TestPostgres | undefined;
  let registry: TestRegistry | undefined;
  try {
    pg = await startPostgres();
    registry = await startRegistry();
    const root = join(dir, 'home');
    const rows: PhaseResult[] = [];
    // The floor: the same load on one instance with the embedded store.
    await prepareHome(root, { kind: 'sqlite', path: 'gatehouse.db' }, registry);
    rows.push(await phase('floor', root, 1, 'sqlite', false));
    for (const [n, kill] of [
      [1, false],
      [2, false],
      [4, false],
      [2, true],
    ] as const) {
      const url = pg.createDatabase(`scale_${n}_${kill ? 'kill' : 'steady'}`);
      await prepareHome(root, { kind: 'postgres', url, passwordFile: pg.passwordFile }, registry);
      rows.push(await phase(kill ? 'kill one' : 'steady', root, n, 'postgres', kill));
    }
    printTable(
      `scale: ${RUNNERS} concurrent runners, ${SECONDS} s a phase, hello-app jobs (whole gatehouse run processes)`,
      rows.map(({ errorMessages: _, ...r }) => ({ ...r })),
    );
    for (const r of rows)
      for (const [message, n] of Object.entries(r.errorMessages))
        process.stdout.write(`  ${r.phase} ×${r.instances}: ${n} × ${message}\n`);
    const path = writeResult('scale', { runners: RUNNERS, secondsPerPhase: SECONDS, rows });
    process.stdout.write(`\nwritten ${path}\n`);
  } finally {
    await registry?.stop();
    await pg?.stop();
    if (existsSync(dir)) await rm(dir, { recursive: true, force: true });
  }
}
