/**
 * One server's throughput: a `gatehouse server` process (its own home, SQLite store, the home's
 * OCI layout registry) and N concurrent runners driving trivial jobs (`examples/hello-app`)
 * through it over HTTP, for N in BENCH_SERVER_RUNNERS (default 1,4,8).
 *
 * What a job includes: the runner agent's whole job as `gatehouse run --server` runs it, in this
 * process (one agent per runner, concurrently): pinned source, create and claim, a vTPM taken from
 * the home's pool (filled before timing, so no vTPM is manufactured while timing), TPM attestation
 * (credential activation and quote), a fresh bubblewrap sandbox, the build, outputs digested and
 * uploaded, SBOM, submission; on the server: token, proof and outputs verified, catalogue, source,
 * vulnerability match and policy, decision logged, leaf with SCT, three signed and logged bundles,
 * promotion into the registry, job finished; then the runner destroyed and its vTPM removed. Not
 * included: Node start-up and the CLI of a `gatehouse run` process (see `bench -- job`), and
 * manufacturing vTPMs (see `bench -- attestation`).
 *
 * Besides jobs/min and latency, each row gives the CPU a job costs on each side, read from
 * /proc: the server process, and this process with its children (sandboxes, swtpm, tpm2-tools),
 * so that a missed target shows where the two cores went, and how much of them other work on the
 * machine took during the row (/proc/stat). Background vTPM refills are off while
 * timing (GATEHOUSE_BACKGROUND_FILL=0). BENCH_SERVER_JOBS (default 6) jobs per runner and row.
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runJob } from '../src/agent/agent.ts';
import { HttpControlPlane } from '../src/control-plane/http-control-plane.ts';
import { environmentCacheOf, homeVtpmPool, initHome, openHome, runnerAttester } from '../src/home/home.ts';
import { bubblewrapRunnerFromConfig } from '../src/runner/from-config.ts';
import { LocalGitProvider } from '../src/source/local-git-provider.ts';
import { startServerProcess } from '../src/testing/server-process.ts';
import { seedVulnerabilityData } from '../src/testing/submission.ts';
import { percentile, printTable, writeResult } from './lib.ts';

const repo = join(import.meta.dirname, '..');
const _bin = join(repo, 'bin', 'gatehouse');
const example = join(repo, 'examples', 'hello-app');
const RUNNERS = (process.env.BENCH_SERVER_RUNNERS ?? '1,4,8').split(',').map(Number);
const JOBS_PER_RUNNER = Number(process.env.BENCH_SERVER_JOBS ?? 6);
const TARGET_PER_MIN = 300;
/** Clock ticks per second of /proc/<pid>/stat (USER_HZ, 100 on Linux). */
const HZ = 100;
const env = { ...process.env, NO_COLOR: '1', GATEHOUSE_BACKGROUND_FILL: '0' };

/** CPU seconds the whole machine has spent busy (every process, every core), from /proc/stat. */
function machineBusySeconds(): number {
  const [cpu] = readFileSync('/proc/stat', 'utf8').split('\n');
  // user nice system idle iowait irq softirq steal …
  const f = (cpu ?? '').split(/\s+/).slice(1).map(Number);
  const busy = (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0);
  return busy / HZ;
}

/** CPU seconds of a process (and of its children it has waited for) from /proc/<pid>/stat. */
function cpuSeconds(pid: number | 'self'): { own: number; children: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the parenthesised command name: state is field 3; utime 14, stime 15, cutime 16, cstime 17.
  const f = stat
    .slice(stat.lastIndexOf(')') + 2)
    .split(' ')
    .map(Number);
  return { own: ((f[11] ?? 0) + (f[12] ?? 0)) / HZ, children: ((f[13] ?? 0) + (f[14] ?? 0)) / HZ };
}

interface Row {
  runners: number;
  jobs: number;
  errors: number;
  jobsPerMin: number;
  p50ms: number;
  p95ms: number;
  serverCpuMsPerJob: number;
  runnerCpuMsPerJob: number;
  /** Jobs/min if the two cores did nothing but this: 2 × 60 s / CPU seconds per job. */
  cpuCeilingPerMin: number;
  /** Cores busy with this benchmark (server, agents, their children) during the row. */
  coresOurs: number;
  /** Cores busy with everything else on the machine during the row (other work sharing it). */
  coresOthers: number;
  errorMessages: Record<string, number>;
  stepsP50: Record<string, number>;
}

async function phase(root: string, url: string, serverPid: number, runners: number): Promise<Row> {
  const { attester, host } = await runnerAttester(root);
  const runner = bubblewrapRunnerFromConfig({});
  const controlPlane = new HttpControlPlane({ url });
  const total = runners * JOBS_PER_RUNNER;
  const durations: number[] = [];
  const steps = new Map<string, number[]>();
  const errorMessages: Record<string, number> = {};
  let errors = 0;
  let started = 0;
  const server0 = cpuSeconds(serverPid).own;
  const self0 = cpuSeconds('self');
  const machine0 = machineBusySeconds();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: runners }, async () => {
      while (started < total) {
        started++;
        const s = performance.now();
        try {
          const outcome = await runJob(example, {
            runner,
            attester,
            host,
            controlPlane,
            source: new LocalGitProvider(),
            environmentCache: environmentCacheOf(root),
          });
          for (const st of outcome.steps) steps.set(st.name, [...(steps.get(st.name) ?? []), st.durationMs]);
          if (outcome.result?.outcome === 'allow') {
            durations.push(performance.now() - s);
            continue;
          }
          const message = (outcome.failure?.message ?? `outcome ${outcome.result?.outcome}`).slice(0, 160);
          errorMessages[message] = (errorMessages[message] ?? 0) + 1;
        } catch (e) {
          const message = String(e).slice(0, 160);
          errorMessages[message] = (errorMessages[message] ?? 0) + 1;
        }
        errors++;
      }
    }),
  );
  const wall = (performance.now() - t0) / 1000;
  const machine = machineBusySeconds() - machine0;
  const serverCpu = cpuSeconds(serverPid).own - server0;
  const self1 = cpuSeconds('self');
  const runnerCpu = self1.own - self0.own + (self1.children - self0.children);
  const done = durations.length + errors;
  const perJob = (serverCpu + runnerCpu) / Math.max(1, done);
  return {
    runners,
    jobs: durations.length,
    errors,
    jobsPerMin: Number(((durations.length / wall) * 60).toFixed(1)),
    p50ms: Math.round(percentile(durations, 50)),
    p95ms: Math.round(percentile(durations, 95)),
    serverCpuMsPerJob: Math.round((serverCpu * 1000) / Math.max(1, done)),
    runnerCpuMsPerJob: Math.round((runnerCpu * 1000) / Math.max(1, done)),
    cpuCeilingPerMin: Number(((2 * 60) / perJob).toFixed(0)),
    coresOurs: Number(((serverCpu + runnerCpu) / wall).toFixed(2)),
    coresOthers: Number((Math.max(0, machine - serverCpu - runnerCpu) / wall).toFixed(2)),
    errorMessages,
    stepsP50: Object.fromEntries([...steps].map(([k, v]) => [k, Math.round(percentile(v, 50))])),
  };
}

export async function run(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'gh-bench-server-'));
  let server: { url: string; child: ChildProcess } | undefined;
  try {
    const root = join(dir, 'home');
    await initHome(root);
    const home = await openHome(root);
    try {
      await seedVulnerabilityData(home);
    } finally {
      await home.close();
    }
    const pooled = await homeVtpmPool(root);
    const needed = RUNNERS.reduce((a, n) => a + n * JOBS_PER_RUNNER, 0) + 2;
    if (pooled !== undefined) {
      const f0 = performance.now();
      await pooled.pool.fill(needed);
      process.stdout.write(
        `filled the vTPM pool with ${needed} vTPMs in ${((performance.now() - f0) / 1000).toFixed(1)} s (not timed)\n`,
      );
    }
    server = await startServerProcess(root, { env });
    const pid = server.child.pid as number;
    // One job to warm the server (first decision loads the vulnerability index) and this process.
    await phase(root, server.url, pid, 1).catch(() => undefined);
    const rows: Row[] = [];
    for (const n of RUNNERS) rows.push(await phase(root, server.url, pid, n));
    printTable(
      `one gatehouse server, N concurrent runners (agents in this process), ${JOBS_PER_RUNNER} hello-app jobs per runner`,
      rows.map(({ errorMessages: _, stepsP50: __, ...r }) => ({ ...r })),
    );
    for (const r of rows)
      for (const [message, count] of Object.entries(r.errorMessages))
        process.stdout.write(`  ${r.runners} runners: ${count} × ${message}\n`);
    const best = rows.reduce((a, b) => (b.jobsPerMin > a.jobsPerMin ? b : a));
    const verdict =
      best.jobsPerMin >= TARGET_PER_MIN
        ? `target ≥ ${TARGET_PER_MIN} jobs/min met: ${best.jobsPerMin} with ${best.runners} runners`
        : `target ≥ ${TARGET_PER_MIN} jobs/min missed by ${(TARGET_PER_MIN - best.jobsPerMin).toFixed(0)} (best ${best.jobsPerMin} with ${best.runners} runners): a job costs ${best.serverCpuMsPerJob} ms of server CPU and ${best.runnerCpuMsPerJob} ms of runner CPU (agent, sandbox, swtpm, tpm2-tools), so two idle cores would hold at most ${best.cpuCeilingPerMin} jobs/min; during that row this benchmark kept ${best.coresOurs} cores busy and other work on the machine ${best.coresOthers}`;
    process.stdout.write(`${verdict}\n`);
    printTable(
      `runner steps, median ms (${best.runners} runners)`,
      Object.entries(best.stepsP50).map(([step, ms]) => ({ step, 'p50 ms': ms })),
    );
    const path = writeResult('server', { jobsPerRunner: JOBS_PER_RUNNER, rows, verdict });
    process.stdout.write(`\nwrote ${path}\n`);
  } finally {
    server?.child.kill('SIGTERM');
    if (server !== undefined)
      await new Promise<void>((r) =>
        server?.child.exitCode !== null ? r() : server.child.once('exit', () => r()),
      );
    await rm(dir, { recursive: true, force: true });
  }
}
