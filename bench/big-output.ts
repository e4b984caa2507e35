/**
 * A large output, signed end to end: `gatehouse run` (whole process, embedded control plane, so
 * the agent and the gate share one process and its peak RSS bounds both) on a build whose output
 * is a 4 GiB file (BENCH_OUTPUT_GIB to change it): sparse zeros plus 1 MiB of random bytes, made
 * in the sandbox's tmpfs workspace. Measured: wall time and peak RSS (GNU time), next to the
 * floors taken in the same run on a file of the same size: `cat` to /dev/null and `sha256sum`.
 * What the run does with the bytes: the agent hashes them, streams them to the control plane,
 * which digests them into staging; the gate catalogues them and the registry stores them as a
 * blob (hashed again as it is written).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { printTable, writeResult } from './lib.ts';

const repo = resolve(import.meta.dirname, '..');
const cliMain = join(repo, 'src', 'cli', 'main.ts');

/** Run a command under GNU time: wall seconds and peak RSS in MiB. */
function timed(
  cmd: string[],
  cwd?: string,
): { seconds: number; rssMiB: number; status: number; out: string } {
  const r = spawnSync('/usr/bin/time', ['-f', '%e %M', ...cmd], {
    encoding: 'utf8',
    ...(cwd === undefined ? {} : { cwd }),
    maxBuffer: 64 * 1024 * 1024,
  });
  const last = r.stderr.trim().split('\n').pop() ?? '';
  const [secs, kb] = last.split(' ');
  return {
    seconds: Number(secs),
    rssMiB: Number(kb) / 1024,
    status: r.status ?? -1,
    out: `${r.stdout}${r.stderr}`,
  };
}

export async function run(): Promise<void> {
  if (spawnSync('/usr/bin/time', ['true']).status !== 0) {
    process.stdout.write('big-output: skipped, GNU time (/usr/bin/time) is not installed\n');
    return;
  }
  const gib = Number(process.env.BENCH_OUTPUT_GIB ?? 4);
  const work = mkdtempSync(join(tmpdir(), 'gatehouse-bench-big-'));
  try {
    const home = join(work, 'home');
    const node = process.execPath;
    const gatehouse = (args: string[]) => [node, '--disable-warning=ExperimentalWarning', cliMain, ...args];
    const init = timed(gatehouse(['init', '--home', home, '--no-examples']));
    if (init.status !== 0) throw new Error(`init failed: ${init.out}`);
    // The workspace is a tmpfs of 2 GiB by default: make room for the output.
    const configPath = join(home, 'config.json');
    const config = JSON.parse(readFileSync(configPath, 'utf8'));
    config.runner.limits = { ...config.runner.limits, workspaceMiB: Math.ceil(gib * 1024 + 512) };
    writeFileSync(configPath, JSON.stringify(config, null, 2));
    for (const args of [
      ['init', '--home', home, '--update-reference-values'],
      ['project', 'register', 'big', '--home', home, '--unverified-directory'],
      ['vulndb', 'import', '--home', home, join(repo, 'examples', 'advisories')],
    ]) {
      const r = timed(gatehouse(args));
      if (r.status !== 0) throw new Error(`${args.slice(0, 2).join(' ')} failed: ${r.out}`);
    }
    const project = join(work, 'big');
    mkdirSync(project);
    writeFileSync(
      join(project, 'gatehouse.yaml'),
      'project: big\nbuild:\n  command: ["sh", "build.sh"]\n  timeout: 600\noutputs: [dist/big.bin]\n',
    );
    writeFileSync(
      join(project, 'build.sh'),
      `set -eu\nmkdir -p dist\ntruncate -s ${gib}G dist/big.bin\nhead -c 1048576 /dev/urandom >> dist/big.bin\n`,
    );
    const job = timed(gatehouse(['run', '--home', home, project]));
    const outcome = /^(ALLOWED|DENIED|QUARANTINED|FAILED)/m.exec(job.out)?.[1] ?? `exit ${job.status}`;

    const floorFile = join(work, 'floor.bin');
    spawnSync('truncate', ['-s', `${gib}G`, floorFile]);
    const cat = timed(['sh', '-c', `cat ${floorFile} > /dev/null`]);
    const sum = timed(['sha256sum', floorFile]);
    const rows = [
      {
        measure: `gatehouse run, ${gib} GiB output (${outcome})`,
        s: job.seconds,
        'peak RSS MiB': job.rssMiB.toFixed(0),
      },
      { measure: `floor: cat ${gib} GiB > /dev/null`, s: cat.seconds, 'peak RSS MiB': cat.rssMiB.toFixed(0) },
      { measure: `floor: sha256sum ${gib} GiB`, s: sum.seconds, 'peak RSS MiB': sum.rssMiB.toFixed(0) },
    ];
    printTable(`A ${gib} GiB output, signed (whole process)`, rows);
    const path = writeResult('big-output', {
      gib,
      outcome,
      rows,
      steps: job.out.split('\n').filter((l) => /[✓✗]/.test(l)),
    });
    process.stdout.write(
      `${job.out
        .split('\n')
        .filter((l) => /[✓✗]/.test(l))
        .join('\n')}\nwritten ${path}\n`,
    );
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
