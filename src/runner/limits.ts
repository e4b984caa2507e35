import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GatehouseError } from '../common/errors.ts';
import { pathExists } from '../common/files.ts';

/** Resource limits every build runs under: central configuration, never the project's choice. */
export interface RunnerLimits {
  /** CPU time of the whole build (all its processes), seconds. */
  readonly cpuSeconds: number;
  /** Memory of the whole build, including its tmpfs files (/tmp, /dev/shm), bytes. */
  readonly memoryBytes: number;
  /** Processes and threads alive at once. */
  readonly processes: number;
  /** Size of the workspace file system, bytes. */
  readonly workspaceBytes: number;
  /** Size of the sandbox's private /tmp, bytes. */
  readonly tmpBytes: number;
}

/** The limits used when the config names none. */
export const DEFAULT_LIMITS: RunnerLimits = Object.freeze({
  cpuSeconds: 600,
  memoryBytes: 2 * 1024 ** 3,
  processes: 512,
  workspaceBytes: 2 * 1024 ** 3,
  tmpBytes: 512 * 1024 ** 2,
});

/**
 * How the limits are enforced on this host. Part of the measured sandbox profile: a runner that
 * could only enforce weaker limits attests differently.
 */
export type LimitEnforcement = 'cgroup-v1' | 'cgroup-v2';

/** Why a build was stopped by a limit. */
export type LimitBreach = 'memory' | 'processes' | 'cpu';

const CGROUP_ROOT = '/sys/fs/cgroup';

/** SIGKILL each of the processes; one that is gone already is passed over. */
export function killAll(pids: readonly number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
}

/**
 * Kill what `left` names until it names nothing, for about a second (50 rounds 20 ms apart).
 * @returns false when processes were still there in the last round
 */
export async function killUntilGone(left: () => Promise<readonly number[]>): Promise<boolean> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const pids = await left();
    if (pids.length === 0) return true;
    killAll(pids);
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

/** Which cgroup hierarchy this host offers for limits, or why it offers none. */
export async function detectCgroups(): Promise<LimitEnforcement> {
  if (await pathExists(join(CGROUP_ROOT, 'cgroup.controllers'))) return 'cgroup-v2';
  if (
    (await pathExists(join(CGROUP_ROOT, 'pids', 'cgroup.procs'))) &&
    (await pathExists(join(CGROUP_ROOT, 'memory', 'cgroup.procs'))) &&
    (await pathExists(join(CGROUP_ROOT, 'cpuacct', 'cgroup.procs')))
  ) {
    return 'cgroup-v1';
  }
  // Failing closed: without cgroups a fork bomb or a memory hog would reach the host.
  throw new GatehouseError(
    'SANDBOX_UNAVAILABLE',
    `no usable cgroup hierarchy under ${CGROUP_ROOT} (need cgroup v2, or v1 with pids, memory and cpuacct) to limit builds`,
  );
}

/** Our own cgroup path in a v1 controller's hierarchy (or the v2 one, controller ''). */
async function ownCgroup(controller: string): Promise<string> {
  const text = await readFile('/proc/self/cgroup', 'utf8');
  for (const line of text.split('\n')) {
    const [, controllers, path] = line.split(':');
    if (controllers === undefined || path === undefined) continue;
    if (controller === '' ? controllers === '' : controllers.split(',').includes(controller)) return path;
  }
  return '/';
}

/**
 * One build's cgroup(s): created before the build starts, the build's first process moves itself
 * in before it execs bubblewrap (so no child escapes), removed at destroy.
 */
export class BuildCgroup {
  /** The `cgroup.procs` files the build's first process writes its pid to. */
  readonly procsFiles: readonly string[];
  readonly #dirs: readonly string[];
  readonly #kind: LimitEnforcement;
  readonly #cpuFile: string;
  readonly #limits: RunnerLimits;

  private constructor(kind: LimitEnforcement, dirs: string[], limits: RunnerLimits) {
    this.#kind = kind;
    this.#dirs = dirs;
    this.#limits = limits;
    this.procsFiles = dirs.map((d) => join(d, 'cgroup.procs'));
    this.#cpuFile =
      kind === 'cgroup-v2' ? join(dirs[0] ?? '', 'cpu.stat') : join(dirs[2] ?? '', 'cpuacct.usage');
  }

  /**
   * @throws GatehouseError SANDBOX_UNAVAILABLE when the cgroups cannot be made or limited
   */
  static async create(kind: LimitEnforcement, name: string, limits: RunnerLimits): Promise<BuildCgroup> {
    const leaf = `gatehouse-${name}-${randomBytes(4).toString('hex')}`;
    const dirs: string[] = [];
    try {
      if (kind === 'cgroup-v2') {
        // A v2 parent may not hold processes and delegate at once, so builds live in a
        // dedicated `gatehouse` cgroup under the root, with the controllers enabled for it.
        const base = join(CGROUP_ROOT, 'gatehouse');
        await mkdir(base, { recursive: true });
        await writeFile(join(CGROUP_ROOT, 'cgroup.subtree_control'), '+memory +pids +cpu').catch(
          () => undefined,
        );
        await writeFile(join(base, 'cgroup.subtree_control'), '+memory +pids +cpu');
        const dir = join(base, leaf);
        await mkdir(dir);
        dirs.push(dir);
        await writeFile(join(dir, 'memory.max'), String(limits.memoryBytes));
        await writeFile(join(dir, 'memory.swap.max'), '0').catch(() => undefined);
        await writeFile(join(dir, 'pids.max'), String(limits.processes));
      } else {
        // Under our own cgroup in each hierarchy, so that whatever limits the agent also limits
        // its builds.
        for (const controller of ['pids', 'memory', 'cpuacct']) {
          const dir = join(CGROUP_ROOT, controller, await ownCgroup(controller), leaf);
          await mkdir(dir);
          dirs.push(dir);
        }
        const [pids, memory] = dirs as [string, string, string];
        await writeFile(join(pids, 'pids.max'), String(limits.processes));
        await writeFile(join(memory, 'memory.limit_in_bytes'), String(limits.memoryBytes));
        // With swap, memsw bounds memory + swap; without swap accounting the file is absent.
        await writeFile(join(memory, 'memory.memsw.limit_in_bytes'), String(limits.memoryBytes)).catch(
          () => undefined,
        );
      }
    } catch (e) {
      for (const d of dirs.reverse()) await rmdir(d).catch(() => undefined);
      throw new GatehouseError(
        'SANDBOX_UNAVAILABLE',
        `cannot create a ${kind} cgroup to limit the build: ${e instanceof Error ? e.message : String(e)}`,
        { cause: e },
      );
    }
    return new BuildCgroup(kind, dirs, limits);
  }

  /** CPU time used so far by everything in the cgroup, seconds. */
  async cpuSeconds(): Promise<number> {
    const text = await readFile(this.#cpuFile, 'utf8').catch(() => '0');
    if (this.#kind === 'cgroup-v2') {
      const m = /^usage_usec (\d+)/m.exec(text);
      return m === null ? 0 : Number(m[1]) / 1e6;
    }
    return Number(text.trim()) / 1e9;
  }

  /** Host pids still in the build's cgroup. */
  async pids(): Promise<number[]> {
    const text = await readFile(this.procsFiles[0] ?? '', 'utf8').catch(() => '');
    return text
      .split('\n')
      .filter((l) => l !== '')
      .map(Number);
  }

  /** Which limit the build ran into, if any (memory first: an OOM kill explains a signal exit). */
  async breach(): Promise<LimitBreach | undefined> {
    const read = (dir: string | undefined, file: string) =>
      readFile(join(dir ?? '', file), 'utf8').catch(() => '');
    if (this.#kind === 'cgroup-v2') {
      const dir = this.#dirs[0];
      const mem = await read(dir, 'memory.events');
      if (/^(oom_kill|max) [1-9]/m.test(mem)) return 'memory';
      if (/^max [1-9]/m.test(await read(dir, 'pids.events'))) return 'processes';
    } else {
      const [pids, memory] = this.#dirs;
      const oom = await read(memory, 'memory.oom_control');
      if (/^oom_kill [1-9]/m.test(oom)) return 'memory';
      if (/^max [1-9]/m.test(await read(pids, 'pids.events'))) return 'processes';
    }
    // A hair of slack: the rlimit fires at the limit, the accounting may lag it by a tick.
    if ((await this.cpuSeconds()) >= this.#limits.cpuSeconds * 0.98) return 'cpu';
    return undefined;
  }

  /** Kill everything in the cgroup now (one pass; remove() makes sure). */
  async kill(): Promise<void> {
    killAll(await this.pids());
  }

  /** Kill everything left and remove the cgroups. Idempotent. */
  async remove(): Promise<void> {
    await killUntilGone(() => this.pids());
    for (const d of [...this.#dirs].reverse()) await rmdir(d).catch(() => undefined);
  }
}

/** A human description of a breach, naming the limit. */
export function describeBreach(breach: LimitBreach, limits: RunnerLimits): string {
  switch (breach) {
    case 'memory':
      return `the build exceeded its memory limit of ${Math.round(limits.memoryBytes / 1024 ** 2)} MiB and was killed`;
    case 'processes':
      return `the build hit its limit of ${limits.processes} processes (fork bomb?)`;
    case 'cpu':
      return `the build used more than its CPU time limit of ${limits.cpuSeconds}s and was killed`;
  }
}
