/**
 * Whole `gatehouse run` processes, as a user runs them: `bin/gatehouse run examples/hello-app`
 * (bash wrapper, Node start-up, CLI, opening the home, a vTPM from the pool, sandbox, build, gate,
 * signing, promotion, teardown, exit), timed from spawn to exit, p50/p95 over JOBS runs. Floors
 * measured in the same run: `node -e 0` (the same Node binary), a bare bubblewrap `/bin/true`, and
 * `gatehouse --help`. The pool is filled beforehand with one vTPM per run and background refills
 * are off (GATEHOUSE_BACKGROUND_FILL=0) so that no filler competes for the two cores while timing;
 * the median of each step (from `--json`) gives the breakdown.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { percentile, printTable, writeResult } from './lib.ts';

const JOBS = Number(process.env.BENCH_JOBS ?? 15);
const FLOOR_RUNS = 20;
const repo = resolve(import.meta.dirname, '..');
const bin = join(repo, 'bin', 'gatehouse');
const env = { ...process.env, GATEHOUSE_BACKGROUND_FILL: '0' };

function timedRun(cmd: string, args: string[]): Promise<{ ms: number; code: number; stdout: string }> {
  return new Promise((resolvePromise, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'ignore'] });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ ms: performance.now() - t0, code: code ?? -1, stdout }));
  });
}

async function series(cmd: string, args: string[], n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await timedRun(cmd, args)).ms);
  return out;
}

function stats(label: string, ms: number[], floor: number, target: string): Record<string, string | number> {
  const p50 = percentile(ms, 50);
  return {
    measure: label,
    n: ms.length,
    'p50 ms': p50.toFixed(0),
    'p95 ms': percentile(ms, 95).toFixed(0),
    'x node -e 0': (p50 / floor).toFixed(1),
    target,
  };
}

export async function run(): Promise<void> {
  const home = mkdtempSync(join(tmpdir(), 'gatehouse-bench-job-'));
  try {
    const setup = (args: string[]) => {
      const r = spawnSync(bin, [...args, '--home', home], { env, encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`gatehouse ${args.join(' ')}: ${r.stderr}`);
    };
    setup(['init']);
    setup(['vulndb', 'import', join(repo, 'examples', 'advisories')]);
    setup(['attestation', 'vtpm-pool', 'fill', String(JOBS + 1)]);
    // One run to warm the page cache and Node's compile cache, as for any user after the first.
    await timedRun(bin, ['run', join(repo, 'examples', 'hello-app'), '--home', home]);

    const node = await series(process.execPath, ['-e', '0'], FLOOR_RUNS);
    const bwrap = await series(
      'bwrap',
      ['--ro-bind', '/', '/', '--unshare-all', '--die-with-parent', '/bin/true'],
      FLOOR_RUNS,
    );
    const help = await series(bin, ['--help'], FLOOR_RUNS);
    const jobs: number[] = [];
    const steps = new Map<string, number[]>();
    let failures = 0;
    for (let i = 0; i < JOBS; i++) {
      const r = await timedRun(bin, ['run', join(repo, 'examples', 'hello-app'), '--home', home, '--json']);
      jobs.push(r.ms);
      try {
        const doc = JSON.parse(r.stdout) as {
          outcome: string;
          steps: { name: string; durationMs: number }[];
        };
        if (doc.outcome !== 'allow') failures++;
        for (const s of doc.steps) steps.set(s.name, [...(steps.get(s.name) ?? []), s.durationMs]);
      } catch {
        failures++;
      }
    }
    const floor = percentile(node, 50);
    const rows = [
      stats('node -e 0 (floor)', node, floor, ''),
      stats('bwrap /bin/true (floor)', bwrap, floor, ''),
      stats('gatehouse --help', help, floor, '<= 4x node -e 0'),
      stats(
        `gatehouse run hello-app (${failures} not allowed)`,
        jobs,
        floor,
        '< 1000 ms p50, <= 20x node -e 0',
      ),
    ];
    printTable('whole processes, spawn to exit', rows);
    const p50 = percentile(jobs, 50);
    const verdicts = [
      p50 < 1000 ? 'run: < 1 s met' : `run: missed 1 s by ${(p50 - 1000).toFixed(0)} ms`,
      p50 / floor <= 20 ? 'run: <= 20x met' : `run: ${(p50 / floor).toFixed(1)}x, missed 20x`,
      percentile(help, 50) / floor <= 4
        ? 'help: <= 4x met'
        : `help: ${(percentile(help, 50) / floor).toFixed(1)}x, missed 4x`,
    ];
    process.stdout.write(`${verdicts.join('; ')}\n`);
    const breakdown = [...steps].map(([name, v]) => ({ step: name, 'p50 ms': percentile(v, 50).toFixed(0) }));
    const stepTotal = [...steps.values()].reduce((t, v) => t + percentile(v, 50), 0);
    breakdown.push({
      step: '(outside the steps: start-up, opening the home, printing, exit)',
      'p50 ms': (p50 - stepTotal).toFixed(0),
    });
    printTable('gatehouse run, median per step', breakdown);
    writeResult('job', { jobs, node, bwrap, help, breakdown, failures });
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}
