import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import {
  access,
  cp,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import { promisify } from 'node:util';
import { sha256Hex } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import type { ProjectConfig } from './project-config.ts';
import {
  type BuildResult,
  OUTPUT_TAIL_BYTES,
  type ProvisionSpec,
  type Runner,
  type RunnerInstance,
  type SandboxMount,
  type SandboxProfile,
} from './runner.ts';

const execFileAsync = promisify(execFile);

/** Where bubblewrap is looked for when no path is given. */
const BWRAP_CANDIDATES = ['/usr/bin/bwrap', '/usr/local/bin/bwrap', '/bin/bwrap'];

const SANDBOX_UID = 1000;
const SANDBOX_GID = 1000;
const WORKSPACE = '/workspace';
const SANDBOX_PATH = '/usr/bin:/bin';

/**
 * The sandbox's /etc. The host's /etc is not mounted: it names host users and hosts, and holds
 * resolver, TLS and machine identity files a build has no business reading. A build needs only
 * enough for `id`, `whoami` and `localhost` to work.
 */
const ETC_FILES: Readonly<Record<string, string>> = {
  '/etc/passwd': [
    'root:x:0:0:root:/root:/usr/sbin/nologin',
    `builder:x:${SANDBOX_UID}:${SANDBOX_GID}:gatehouse build:${WORKSPACE}:/bin/sh`,
    'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin',
    '',
  ].join('\n'),
  '/etc/group': ['root:x:0:', `builder:x:${SANDBOX_GID}:`, 'nogroup:x:65534:', ''].join('\n'),
  '/etc/hosts': ['127.0.0.1 localhost', '::1 localhost', '127.0.1.1 runner', ''].join('\n'),
  '/etc/nsswitch.conf': ['passwd: files', 'group: files', 'hosts: files', ''].join('\n'),
};

/**
 * Host /etc entries that are read-only bound in: both are derived from /usr and hold no secrets,
 * and without them Debian's alternatives (awk, editor…) and the dynamic linker cache break.
 */
const ETC_HOST_BINDS = ['/etc/alternatives', '/etc/ld.so.cache'];

/** Top-level directories that may be symlinks into /usr (merged /usr) or real directories. */
const ROOT_DIRS = ['/bin', '/lib', '/lib64', '/lib32', '/libx32', '/sbin'];

/** Source entries never copied into a workspace. */
const EXCLUDED_SOURCE = new Set(['.git', 'node_modules']);

const JOB_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** How the host's root file system is laid out, as far as the sandbox mirrors it. */
export interface HostLayout {
  /** For each top-level dir: a symlink target, 'dir' for a real directory, absent when missing. */
  readonly rootDirs: Readonly<Record<string, { kind: 'symlink'; target: string } | { kind: 'dir' }>>;
  /** Which of {@link ETC_HOST_BINDS} exist on the host. */
  readonly etcBinds: readonly string[];
}

/** Inspect the host so that the sandbox mirrors its /bin, /lib… exactly as the host has them. */
export async function detectHostLayout(): Promise<HostLayout> {
  const rootDirs: Record<string, { kind: 'symlink'; target: string } | { kind: 'dir' }> = {};
  for (const dir of ROOT_DIRS) {
    try {
      const st = await lstat(dir);
      if (st.isSymbolicLink()) rootDirs[dir] = { kind: 'symlink', target: await readlink(dir) };
      else if (st.isDirectory()) rootDirs[dir] = { kind: 'dir' };
    } catch {
      // Absent on this host: nothing to mirror.
    }
  }
  const etcBinds: string[] = [];
  for (const path of ETC_HOST_BINDS) {
    try {
      await access(path, fsConstants.R_OK);
      etcBinds.push(path);
    } catch {
      // Absent: not bound.
    }
  }
  return { rootDirs, etcBinds };
}

/**
 * The sandbox profile BubblewrapRunner uses for a project on a host with the given layout. Pure,
 * so that a control plane can compute the expected sandbox-profile digest for a job.
 */
export function bubblewrapSandboxProfile(config: ProjectConfig, layout: HostLayout): SandboxProfile {
  const mounts: SandboxMount[] = [{ kind: 'ro-bind', dest: '/usr', source: '/usr' }];
  for (const dir of ROOT_DIRS) {
    const entry = layout.rootDirs[dir];
    if (entry === undefined) continue;
    mounts.push(
      entry.kind === 'symlink'
        ? { kind: 'symlink', dest: dir, target: entry.target }
        : { kind: 'ro-bind', dest: dir, source: dir },
    );
  }
  for (const [dest, content] of Object.entries(ETC_FILES))
    mounts.push({ kind: 'file', dest, sha256: sha256Hex(content) });
  for (const path of layout.etcBinds) mounts.push({ kind: 'ro-bind', dest: path, source: path });
  mounts.push(
    { kind: 'proc', dest: '/proc' },
    { kind: 'dev', dest: '/dev' },
    { kind: 'tmpfs', dest: '/tmp' },
    { kind: 'workspace', dest: WORKSPACE, writable: true },
    // bwrap's root is a tmpfs the build could otherwise write to (/x, /etc/x): freeze it. Only
    // /workspace, /tmp and the private /dev stay writable.
    { kind: 'remount-ro', dest: '/' },
  );
  // Sorted so that the profile (and its digest) does not depend on the order keys were written in.
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...config.build.env, PATH: SANDBOX_PATH, HOME: WORKSPACE }).sort(
    ([a], [b]) => (a < b ? -1 : a > b ? 1 : 0),
  )) {
    env[k] = v;
  }
  return deepFreeze({
    version: 1,
    backend: 'bubblewrap',
    namespaces: ['cgroup', 'ipc', 'mnt', 'net', 'pid', 'user', 'uts'],
    nestedUserNamespaces: false,
    network: 'loopback-only',
    uid: SANDBOX_UID,
    gid: SANDBOX_GID,
    hostname: 'runner',
    capabilities: [],
    newSession: true,
    dieWithParent: true,
    mounts,
    env,
    cwd: WORKSPACE,
    command: [...config.build.command],
  } satisfies SandboxProfile);
}

/**
 * The bwrap argv for a profile. Generated from the profile, never alongside it, so that what is
 * measured is what runs.
 */
function bwrapArgs(profile: SandboxProfile, workspace: string, etcDir: string): string[] {
  const args = [
    '--unshare-all',
    // --unshare-all only *tries* a user namespace; insist, and forbid the build from making more.
    '--unshare-user',
    '--disable-userns',
    '--die-with-parent',
    '--new-session',
    '--cap-drop',
    'ALL',
    '--uid',
    String(profile.uid),
    '--gid',
    String(profile.gid),
    '--hostname',
    profile.hostname,
    '--clearenv',
  ];
  for (const [k, v] of Object.entries(profile.env)) args.push('--setenv', k, v);
  for (const m of profile.mounts) {
    switch (m.kind) {
      case 'ro-bind':
        args.push('--ro-bind', m.source, m.dest);
        break;
      case 'symlink':
        args.push('--symlink', m.target, m.dest);
        break;
      case 'file':
        args.push('--ro-bind', join(etcDir, m.dest.replaceAll('/', '_')), m.dest);
        break;
      case 'proc':
        args.push('--proc', m.dest);
        break;
      case 'dev':
        args.push('--dev', m.dest);
        break;
      case 'tmpfs':
        args.push('--tmpfs', m.dest);
        break;
      case 'workspace':
        args.push('--bind', workspace, m.dest);
        break;
      case 'remount-ro':
        args.push('--remount-ro', m.dest);
        break;
      default: {
        const never: never = m;
        throw new GatehouseError('INTERNAL', `unknown mount kind ${JSON.stringify(never)}`);
      }
    }
  }
  args.push('--chdir', profile.cwd, '--json-status-fd', '3', '--', ...profile.command);
  return args;
}

async function findBwrap(explicit: string | undefined): Promise<string> {
  const candidates = explicit === undefined ? BWRAP_CANDIDATES : [explicit];
  for (const path of candidates) {
    try {
      await access(path, fsConstants.X_OK);
      return path;
    } catch {
      // try the next one
    }
  }
  throw new GatehouseError(
    'SANDBOX_UNAVAILABLE',
    `bubblewrap (bwrap) was not found at ${candidates.join(', ')}; install the bubblewrap package`,
  );
}

async function checkBwrap(explicit: string | undefined): Promise<string> {
  const bwrap = await findBwrap(explicit);
  try {
    // A real, minimal sandbox: proves bwrap runs *and* that this kernel lets us create namespaces.
    await execFileAsync(
      bwrap,
      ['--unshare-all', '--unshare-user', '--disable-userns', '--ro-bind', '/', '/', '--', '/bin/true'],
      { env: {}, timeout: 10_000 },
    );
  } catch (e) {
    const stderr = (e as { stderr?: string }).stderr?.trim().split('\n').at(-1) ?? String(e);
    throw new GatehouseError(
      'SANDBOX_UNAVAILABLE',
      `bubblewrap at ${bwrap} cannot create a sandbox here (are unprivileged user namespaces disabled?): ${stderr}`,
      { cause: e },
    );
  }
  return bwrap;
}

/** Options for {@link BubblewrapRunner}. */
export interface BubblewrapRunnerOptions {
  /** Path of the bwrap binary; default: the first of /usr/bin, /usr/local/bin, /bin that has one. */
  readonly bwrapPath?: string;
  /** Directory under which per-job directories are made; default: the OS temp dir. */
  readonly tempRoot?: string;
}

/**
 * The embedded runner backend: each job runs in a fresh bubblewrap sandbox with its own namespaces
 * (no network but its own loopback), an empty environment, a read-only /usr, and a private
 * writable copy of the source at /workspace.
 */
export class BubblewrapRunner implements Runner {
  readonly #bwrapPath: string | undefined;
  readonly #tempRoot: string;
  #ready: Promise<{ bwrap: string; layout: HostLayout }> | undefined;

  constructor(options: BubblewrapRunnerOptions = {}) {
    this.#bwrapPath = options.bwrapPath;
    this.#tempRoot = options.tempRoot ?? tmpdir();
  }

  /**
   * @throws GatehouseError SANDBOX_UNAVAILABLE when bwrap is missing or cannot sandbox here;
   *   BAD_INPUT for a bad job id or an unreadable source directory
   */
  async provision(spec: ProvisionSpec): Promise<RunnerInstance> {
    // Check bwrap once per runner backend; a failed check is retried next time.
    this.#ready ??= Promise.all([checkBwrap(this.#bwrapPath), detectHostLayout()]).then(
      ([bwrap, layout]) => ({
        bwrap,
        layout,
      }),
    );
    let ready: { bwrap: string; layout: HostLayout };
    try {
      ready = await this.#ready;
    } catch (e) {
      this.#ready = undefined;
      throw e;
    }
    if (!JOB_ID.test(spec.jobId)) {
      throw new GatehouseError(
        'BAD_INPUT',
        `job id '${spec.jobId.slice(0, 64)}' is not [A-Za-z0-9._-]{1,128}`,
      );
    }
    const source = await stat(spec.sourceDir).catch((e: unknown) => {
      throw new GatehouseError('BAD_INPUT', `source directory ${spec.sourceDir} cannot be read`, {
        cause: e,
      });
    });
    if (!source.isDirectory())
      throw new GatehouseError('BAD_INPUT', `source ${spec.sourceDir} is not a directory`);

    // mkdtemp makes the directory 0700: other host users cannot look into or race the job.
    const jobRoot = await mkdtemp(join(this.#tempRoot, `gatehouse-${spec.jobId}-`));
    try {
      const workspace = join(jobRoot, 'workspace');
      const etcDir = join(jobRoot, 'etc');
      await mkdir(workspace, { mode: 0o700 });
      await mkdir(etcDir, { mode: 0o700 });
      for (const [dest, content] of Object.entries(ETC_FILES)) {
        await writeFile(join(etcDir, dest.replaceAll('/', '_')), content, { mode: 0o644 });
      }
      await copySource(spec.sourceDir, workspace);
      const profile = bubblewrapSandboxProfile(spec.config, ready.layout);
      return new BubblewrapInstance({
        bwrap: ready.bwrap,
        jobId: spec.jobId,
        jobRoot,
        workspace,
        etcDir,
        config: spec.config,
        profile,
      });
    } catch (e) {
      await rm(jobRoot, { recursive: true, force: true });
      throw e;
    }
  }
}

async function copySource(sourceDir: string, workspace: string): Promise<void> {
  try {
    await cp(sourceDir, workspace, {
      recursive: true,
      // Symlinks are copied as symlinks, never followed: a link to /root/.ssh stays a dangling
      // link inside the sandbox instead of becoming a copy of the host's keys.
      verbatimSymlinks: true,
      dereference: false,
      preserveTimestamps: false,
      filter: (src) =>
        !relative(sourceDir, src)
          .split(sep)
          .some((part) => EXCLUDED_SOURCE.has(part)),
    });
  } catch (e) {
    throw new GatehouseError(
      'BAD_INPUT',
      `cannot copy the source ${sourceDir} into the workspace: ${e instanceof Error ? e.message : String(e)}`,
      { cause: e },
    );
  }
}

/** Keeps the last `limit` bytes of a stream. */
class Tail {
  readonly #limit: number;
  #chunks: Buffer[] = [];
  #size = 0;
  truncated = false;

  constructor(limit: number) {
    this.#limit = limit;
  }

  push(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#size += chunk.length;
    while (this.#chunks.length > 1 && this.#size - (this.#chunks[0]?.length ?? 0) >= this.#limit) {
      this.#size -= this.#chunks.shift()?.length ?? 0;
      this.truncated = true;
    }
  }

  text(): string {
    const all = Buffer.concat(this.#chunks);
    if (all.length > this.#limit) this.truncated = true;
    return all.subarray(Math.max(0, all.length - this.#limit)).toString('utf8');
  }
}

interface InstanceInit {
  bwrap: string;
  jobId: string;
  jobRoot: string;
  workspace: string;
  etcDir: string;
  config: ProjectConfig;
  profile: SandboxProfile;
}

class BubblewrapInstance implements RunnerInstance {
  readonly id = `bwrap-${randomUUID()}`;
  readonly jobId: string;
  readonly workspace: string;
  readonly config: ProjectConfig;
  readonly sandboxProfile: SandboxProfile;
  readonly #bwrap: string;
  readonly #jobRoot: string;
  readonly #etcDir: string;
  #state: 'ready' | 'building' | 'built' | 'destroyed' = 'ready';
  #child: ChildProcess | undefined;
  #exited: Promise<void> | undefined;

  constructor(init: InstanceInit) {
    this.jobId = init.jobId;
    this.workspace = init.workspace;
    this.config = init.config;
    this.sandboxProfile = init.profile;
    this.#bwrap = init.bwrap;
    this.#jobRoot = init.jobRoot;
    this.#etcDir = init.etcDir;
  }

  async build(): Promise<BuildResult> {
    if (this.#state !== 'ready') {
      throw new GatehouseError('BUILD_FAILED', `runner ${this.id} cannot build: it is ${this.#state}`, {
        where: this.jobId,
      });
    }
    this.#state = 'building';
    const started = performance.now();
    const stdout = new Tail(OUTPUT_TAIL_BYTES);
    const stderr = new Tail(OUTPUT_TAIL_BYTES);
    let status = '';
    const child = spawn(this.#bwrap, bwrapArgs(this.sandboxProfile, this.workspace, this.#etcDir), {
      // bwrap itself gets an empty environment too: nothing of ours can leak through it.
      env: {},
      // Its own process group, so that a timeout can kill bwrap and everything it started at once.
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    });
    this.#child = child;
    child.stdout?.on('data', (c: Buffer) => stdout.push(c));
    child.stderr?.on('data', (c: Buffer) => stderr.push(c));
    child.stdio[3]?.on('data', (c: Buffer) => {
      if (status.length < 65_536) status += c.toString('utf8');
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child);
    }, this.config.build.timeoutSeconds * 1000);
    const exited = new Promise<{ code: number | null; error?: Error }>((resolve) => {
      child.once('error', (error) => resolve({ code: null, error }));
      child.once('close', (code) => resolve({ code }));
    });
    this.#exited = exited.then(() => undefined);
    const { code, error } = await exited;
    clearTimeout(timer);
    this.#child = undefined;
    const statusLines = parseStatus(status);
    const pidNamespace = statusLines.find((s) => typeof s['pid-namespace'] === 'number')?.['pid-namespace'];
    if (typeof pidNamespace === 'number') await reapNamespace(pidNamespace);
    if (this.#state === 'building') this.#state = 'built';
    const durationMs = Math.round(performance.now() - started);

    if (error !== undefined) {
      throw new GatehouseError('BUILD_FAILED', `cannot start bubblewrap: ${error.message}`, {
        cause: error,
        where: this.jobId,
      });
    }
    if (timedOut) {
      throw new GatehouseError(
        'BUILD_TIMEOUT',
        `the build ran longer than its timeout of ${this.config.build.timeoutSeconds}s and was killed`,
        { where: this.jobId },
      );
    }
    const exit = statusLines.find((s) => typeof s['exit-code'] === 'number')?.['exit-code'];
    if (typeof exit !== 'number') {
      // bwrap reports exit-code only for a command it started; without it the sandbox itself failed.
      const why = stderr.text().trim().split('\n').at(-1) ?? `bwrap exited with ${String(code)}`;
      throw new GatehouseError('BUILD_FAILED', `the sandbox could not run the build command: ${why}`, {
        where: this.jobId,
      });
    }
    const stderrText = stderr.text();
    const stdoutText = stdout.text();
    return {
      exitCode: exit,
      durationMs,
      stdoutTail: stdoutText,
      stderrTail: stderrText,
      truncated: stdout.truncated || stderr.truncated,
    };
  }

  async destroy(): Promise<void> {
    this.#state = 'destroyed';
    const child = this.#child;
    if (child !== undefined) {
      killGroup(child);
      await this.#exited;
    }
    await rm(this.#jobRoot, { recursive: true, force: true, maxRetries: 3 });
  }
}

function killGroup(child: ChildProcess): void {
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
  for (let attempt = 0; attempt < 50; attempt++) {
    const left = await processesIn(pidNamespace);
    if (left.length === 0) return;
    for (const pid of left) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new GatehouseError(
    'INTERNAL',
    `processes of a finished sandbox would not die (pid namespace ${pidNamespace})`,
  );
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
