/**
 * Runner benchmark: provisioning-to-ready and teardown latency of hardened bubblewrap runners
 * (p50/p95 over 50 runners), a trivial command in the sandbox, a plain process spawn measured in
 * the same run as the floor, and the whole per-job gatehouse overhead (everything but the build
 * command) through the embedded control plane.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runJob } from '../src/agent/agent.ts';
import { homeVtpmPool, initHome, openHome } from '../src/home/home.ts';
import { BubblewrapRunner } from '../src/runner/bubblewrap-runner.ts';
import { parseProjectConfig } from '../src/runner/project-config.ts';
import { LocalGitProvider } from '../src/source/local-git-provider.ts';
import { registerProject, seedVulnerabilityData } from '../src/testing/submission.ts';
import { percentile, printTable, writeResult } from './lib.ts';

const RUNNERS = 50;
const JOBS = 20;
const READY_TARGET_MS = 50;
const OVERHEAD_TARGET_MS = 1000;

function spawnTrue(): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const c = spawn('/bin/true', [], { stdio: 'ignore' });
    c.on('error', reject);
    c.on('close', () => resolve(performance.now() - t0));
  });
}

function row(name: string, values: number[], target?: number): Record<string, string | number> {
  const p50 = percentile(values, 50);
  const p95 = percentile(values, 95);
  return {
    measure: name,
    n: values.length,
    'p50 ms': p50.toFixed(1),
    'p95 ms': p95.toFixed(1),
    target: target === undefined ? '' : `< ${target} ms p50`,
    verdict:
      target === undefined
        ? ''
        : p50 < target
          ? 'met'
          : `missed by ${(p50 - target).toFixed(1)} ms (${((p50 / target - 1) * 100).toFixed(0)}%)`,
  };
}

export async function run(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'gatehouse-bench-runner-'));
  try {
    const source = join(work, 'src');

    mkdirSync(source);
    writeFileSync(join(source, 'input.txt'), 'bench\n');
    const config = parseProjectConfig(
      'project: bench\nbuild:\n  command: ["true"]\noutputs: [out]\n',
      'bench/gatehouse.yaml',
    );
    const runner = new BubblewrapRunner();
    // Warm-up: bwrap check, host layout, image verification (cached after its first measurement).
    await (await runner.provision({ jobId: 'bench-warmup', sourceDir: source, config })).destroy();

    const floor: number[] = [];
    const ready: number[] = [];
    const exec: number[] = [];
    const teardown: number[] = [];
    for (let i = 0; i < RUNNERS; i++) {
      floor.push(await spawnTrue());
      const t0 = performance.now();
      const instance = await runner.provision({ jobId: `bench-${i}`, sourceDir: source, config });
      const t1 = performance.now();
      await instance.build();
      const t2 = performance.now();
      await instance.destroy();
      const t3 = performance.now();
      ready.push(t1 - t0);
      exec.push(t2 - t1);
      teardown.push(t3 - t2);
    }

    // Whole jobs through the embedded control plane: attestation, gate, signing, log, registry.
    const homeRoot = join(work, 'home');
    await initHome(homeRoot);
    const home = await openHome(homeRoot);
    // A job is only for a project the security role registered (as for any user of gatehouse).
    await seedVulnerabilityData(home);
    await registerProject(home, 'bench');
    // vTPMs come from a filled pool, as the server and the CLI keep it (manufacturing is not a job's
    // cost): one ready for every job, made before the clock starts.
    await (await homeVtpmPool(homeRoot))?.pool.fill(JOBS + 1);
    const project = join(work, 'project');
    mkdirSync(project);
    writeFileSync(
      join(project, 'gatehouse.yaml'),
      'project: bench\nbuild:\n  command: ["sh", "-c", "echo built > out.txt"]\noutputs: [out.txt]\n',
    );
    const overhead: number[] = [];
    const total: number[] = [];
    let outcomes = '';
    for (let i = 0; i < JOBS; i++) {
      const t0 = performance.now();
      const outcome = await runJob(project, {
        runner: home.runner,
        attester: home.attester,
        host: home.host,
        controlPlane: home.controlPlane,
        source: new LocalGitProvider(),
      });
      const elapsed = performance.now() - t0;
      const build = outcome.steps.find((s) => s.name === 'build')?.durationMs ?? 0;
      total.push(elapsed);
      overhead.push(elapsed - build);
      outcomes = outcome.result?.outcome ?? outcome.failure?.code ?? 'unknown';
    }
    await home.close();

    const rows = [
      row('plain process spawn (floor)', floor),
      row('provision → ready', ready, READY_TARGET_MS),
      row('run `true` in the sandbox', exec),
      row('teardown (destroy)', teardown),
      row('whole job, wall clock', total),
      row('gatehouse overhead per job (all but the build step)', overhead, OVERHEAD_TARGET_MS),
    ];
    printTable(`runner (${RUNNERS} runners, ${JOBS} jobs; last job outcome: ${outcomes})`, rows);
    const path = writeResult('runner', { runners: RUNNERS, jobs: JOBS, rows });
    process.stdout.write(`\nwrote ${path}\n`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
