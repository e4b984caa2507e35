import { type ChildProcess, spawn } from 'node:child_process';
import { open, readdir, readFile, readlink } from 'node:fs/promises';
import { GatehouseError } from '../common/errors.ts';
import { type BuildCgroup, killUntilGone, type LimitBreach, type RunnerLimits } from './limits.ts';
import { Tail } from './output-tail.ts';
import { OUTPUT_TAIL_BYTES, type OutputSink } from './runner.ts';

/** How often the CPU-time limit is checked. */
const CPU_POLL_MS = 250;

/** What {@link spawnSandbox} starts: bwrap and its argv, inside a build's cgroups and rlimits. */
export interface SandboxCommand {
  readonly bwrap: string;
  readonly args: readonly string[];
  /** Host path of the seccomp program, handed to bwrap as its fd 4 (see bwrap-args.ts). */
  readonly seccompFile: string;
  readonly cgroup: BuildCgroup;
  readonly limits: RunnerLimits;
}

/** Start bwrap as the leader of its own process group, with nothing of our environment. */
export async function spawnSandbox(command: SandboxCommand): Promise<ChildProcess> {
  const { cgroup, limits } = command;
  const seccomp = await open(command.seccompFile, 'r');
  try {
    // The first process moves itself into the build's cgroups *before* it execs anything, so
    // that no process of the build ever runs outside its limits. prlimit adds per-process
    // limits the cgroups do not have: no core dumps, CPU seconds, largest file.
    const enter =
      'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n-1)); done; exec "$@"';
    return spawn(
      '/bin/sh',
      [
        '-c',
        enter,
        'gatehouse-enter',
        String(cgroup.procsFiles.length),
        ...cgroup.procsFiles,
        'prlimit',
        '--core=0',
        // Soft below hard: SIGXCPU (reported as 152) comes first and names the cause.
        `--cpu=${limits.cpuSeconds}:${limits.cpuSeconds + 1}`,
        `--fsize=${limits.workspaceBytes}`,
        '--',
        command.bwrap,
        ...command.args,
      ],
      {
        // bwrap itself gets an empty environment too: nothing of ours can leak through it.
        env: {},
        // Its own process group, so that a timeout can kill bwrap and everything it started at once.
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe', 'pipe', seccomp.fd],
      },
    );
  } finally {
    // The child holds its own copy of the descriptor.
    await seccomp.close();
  }
}

/**
 * What a sandbox writes: the tails of its stdout and stderr, and bwrap's JSON status (fd 3);
 * every chunk of stdout and stderr also goes to the sink, if there is one, as it arrives.
 */
export class SandboxOutput {
  readonly stdout = new Tail(OUTPUT_TAIL_BYTES);
  readonly stderr = new Tail(OUTPUT_TAIL_BYTES);
  #status = '';

  constructor(child: ChildProcess, sink?: OutputSink) {
    child.stdout?.on('data', (c: Buffer) => {
      this.stdout.push(c);
      sink?.(c, 'stdout');
    });
    child.stderr?.on('data', (c: Buffer) => {
      this.stderr.push(c);
      sink?.(c, 'stderr');
    });
    child.stdio[3]?.on('data', (c: Buffer) => {
      if (this.#status.length < 65_536) this.#status += c.toString('utf8');
    });
  }

  /** bwrap's status so far (at most about 64 KiB). */
  get status(): string {
    return this.#status;
  }
}

/** Kills the whole tree when the phase runs past its timeout or the build past its CPU time. */
export class Watchdog {
  #timedOut = false;
  #cpuExceeded = false;
  readonly #timer: NodeJS.Timeout;
  readonly #cpuPoll: NodeJS.Timeout;

  constructor(child: ChildProcess, cgroup: BuildCgroup, cpuSeconds: number, timeoutSeconds: number) {
    this.#timer = setTimeout(() => {
      this.#timedOut = true;
      killGroup(child);
      void cgroup.kill();
    }, timeoutSeconds * 1000);
    // The cgroup adds up CPU time over all the build's processes; rlimit only sees one at a time.
    this.#cpuPoll = setInterval(() => {
      void cgroup.cpuSeconds().then((used) => {
        if (used >= cpuSeconds && !this.#cpuExceeded) {
          this.#cpuExceeded = true;
          killGroup(child);
          void cgroup.kill();
        }
      });
    }, CPU_POLL_MS);
  }

  get timedOut(): boolean {
    return this.#timedOut;
  }

  get cpuExceeded(): boolean {
    return this.#cpuExceeded;
  }

  stop(): void {
    clearTimeout(this.#timer);
    clearInterval(this.#cpuPoll);
  }
}

/** How bwrap itself ended: its exit code, or why it could not be started. */
export interface SandboxExit {
  readonly code: number | null;
  readonly error?: Error;
}

/** Resolves when bwrap has exited and its output streams are closed; never rejects. */
export function sandboxExit(child: ChildProcess): Promise<SandboxExit> {
  return new Promise<SandboxExit>((resolve) => {
    child.once('error', (error) => resolve({ code: null, error }));
    child.once('close', (code) => resolve({ code }));
  });
}

/** What a finished sandbox's status and cgroup say about its command. */
export interface SandboxVerdict {
  /** The command's exit code; absent when bwrap did not start it. */
  readonly exitCode: number | undefined;
  readonly breach: LimitBreach | undefined;
}

/**
 * After bwrap has exited: make sure nothing of the sandbox still runs, read the command's exit
 * code from bwrap's status, name the limit it ran into if any, and remove its cgroup.
 * @throws GatehouseError INTERNAL when processes of the sandbox would not die
 */
export async function settleSandbox(
  status: string,
  cgroup: BuildCgroup,
  watchdog: { readonly cpuExceeded: boolean },
): Promise<SandboxVerdict> {
  const statusLines = parseStatus(status);
  const pidNamespace = statusLines.find((s) => typeof s['pid-namespace'] === 'number')?.['pid-namespace'];
  if (typeof pidNamespace === 'number') await reapNamespace(pidNamespace);
  const exitCode = statusLines.find((s) => typeof s['exit-code'] === 'number')?.['exit-code'];
  // 128 + SIGXCPU: the per-process CPU rlimit fired before the cgroup total was polled.
  const breach = watchdog.cpuExceeded || exitCode === 128 + 24 ? 'cpu' : await cgroup.breach();
  await cgroup.remove();
  return { exitCode: typeof exitCode === 'number' ? exitCode : undefined, breach };
}

/** Kill bwrap's whole process group. */
export function killGroup(child: ChildProcess): void {
  if (child.pid === undefined) return;
  try {
    // Negative pid: the whole process group. bwrap's sandbox lives in its own session, but it runs
    // with --die-with-parent, and when the sandbox's pid 1 dies the kernel kills its namespace.
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

function parseStatus(text: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      const v: unknown = JSON.parse(line);
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) out.push(v as Record<string, unknown>);
    } catch {
      // bwrap writes one JSON object a line; ignore anything else.
    }
  }
  return out;
}

/** Host pids of live (not zombie) processes in the given pid namespace. */
async function processesIn(pidNamespace: number): Promise<number[]> {
  const want = `pid:[${pidNamespace}]`;
  const found: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if ((await readlink(`/proc/${name}/ns/pid`)) !== want) continue;
      // A zombie has already died: it only waits for a parent (here, maybe a container init that
      // never reaps) to collect its exit status. It runs nothing and holds nothing.
      const stat = await readFile(`/proc/${name}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z') found.push(Number(name));
    } catch {
      // exited meanwhile, or not ours to inspect
    }
  }
  return found;
}

/**
 * Make sure nothing from a finished sandbox still runs. The kernel kills a pid namespace when its
 * init dies, but we verify rather than trust, and kill stragglers by pid.
 */
async function reapNamespace(pidNamespace: number): Promise<void> {
  if (await killUntilGone(() => processesIn(pidNamespace))) return;
  throw new GatehouseError(
    'INTERNAL',
    `processes of a finished sandbox would not die (pid namespace ${pidNamespace})`,
  );
}
