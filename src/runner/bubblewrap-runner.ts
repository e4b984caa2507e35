import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { constants as fsConstants, readFileSync } from 'node:fs';
import {
  access,
  cp,
  lstat,
  mkdir,
  mkdtemp,
  open,
  readdir,
  readFile,
  readlink,
  rm,
  stat,
  statfs,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { sha256Hex } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import { type BaseImage, defaultImageCacheDir, HostSystemImage } from './image.ts';
import {
  BuildCgroup,
  DEFAULT_LIMITS,
  describeBreach,
  detectCgroups,
  type LimitEnforcement,
  type RunnerLimits,
} from './limits.ts';
import type { ProjectConfig } from './project-config.ts';
import {
  type BuildResult,
  type FetchRequest,
  type ImageRef,
  OUTPUT_TAIL_BYTES,
  type ProvisionSpec,
  type Runner,
  type RunnerInstance,
  type SandboxMount,
  type SandboxProfile,
} from './runner.ts';
import { buildSeccompFilter } from './seccomp.ts';

const execFileAsync = promisify(execFile);

/** Where bubblewrap is looked for when no path is given. */
const BWRAP_CANDIDATES = ['/usr/bin/bwrap', '/usr/local/bin/bwrap', '/bin/bwrap'];

const SANDBOX_UID = 1000;
const SANDBOX_GID = 1000;
const WORKSPACE = '/workspace';
const SANDBOX_PATH = '/usr/bin:/bin';
/** Where the fetch phase finds the egress proxy's socket and the forwarder, inside the sandbox. */
const PROXY_SOCKET = '/run/gatehouse/egress.sock';
const FORWARDER = '/run/gatehouse/egress-forwarder.mjs';
const FORWARDER_PORT = 3128;
/** The image's node, which runs the forwarder in the fetch phase. */
const SANDBOX_NODE = '/usr/bin/node';
const forwarderPath = join(dirname(fileURLToPath(import.meta.url)), 'egress-forwarder.mjs');
const forwarderText = readFileSync(forwarderPath);

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
  /** What enforces resource limits here. */
  readonly enforcement: LimitEnforcement;
}

/** Central hardening inputs to a sandbox profile (defaults: {@link DEFAULT_LIMITS}, no image). */
export interface SandboxHardening {
  readonly limits?: RunnerLimits;
  readonly image?: ImageRef;
  /**
   * Host directory of a directory image's root file system: /usr, /bin, /lib… and the /etc binds
   * come from it (with a layout from {@link detectHostLayout} of that root) instead of the host.
   */
  readonly imageRoot?: string;
}

/** Inspect the host so that the sandbox mirrors its /bin, /lib… exactly as the host has them. */
export async function detectHostLayout(root = '/'): Promise<HostLayout> {
  const rootDirs: Record<string, { kind: 'symlink'; target: string } | { kind: 'dir' }> = {};
  for (const dir of ROOT_DIRS) {
    try {
      const st = await lstat(join(root, dir));
      if (st.isSymbolicLink()) rootDirs[dir] = { kind: 'symlink', target: await readlink(join(root, dir)) };
      else if (st.isDirectory()) rootDirs[dir] = { kind: 'dir' };
    } catch {
      // Absent on this host: nothing to mirror.
    }
  }
  const etcBinds: string[] = [];
  for (const path of ETC_HOST_BINDS) {
    try {
      await access(join(root, path), fsConstants.R_OK);
      etcBinds.push(path);
    } catch {
      // Absent: not bound.
    }
  }
  return { rootDirs, etcBinds, enforcement: await detectCgroups() };
}

/**
 * The sandbox profile BubblewrapRunner uses for a project on a host with the given layout. Pure,
 * so that a control plane can compute the expected sandbox-profile digest for a job.
 */
export function bubblewrapSandboxProfile(
  config: ProjectConfig,
  layout: HostLayout,
  hardening: SandboxHardening = {},
): SandboxProfile {
  const limits = hardening.limits ?? DEFAULT_LIMITS;
  const root = hardening.imageRoot ?? '/';
  const mounts: SandboxMount[] = [{ kind: 'ro-bind', dest: '/usr', source: join(root, '/usr') }];
  for (const dir of ROOT_DIRS) {
    const entry = layout.rootDirs[dir];
    if (entry === undefined) continue;
    mounts.push(
      entry.kind === 'symlink'
        ? { kind: 'symlink', dest: dir, target: entry.target }
        : { kind: 'ro-bind', dest: dir, source: join(root, dir) },
    );
  }
  for (const [dest, content] of Object.entries(ETC_FILES))
    mounts.push({ kind: 'file', dest, sha256: sha256Hex(content) });
  for (const path of layout.etcBinds) mounts.push({ kind: 'ro-bind', dest: path, source: join(root, path) });
  mounts.push(
    { kind: 'proc', dest: '/proc' },
    { kind: 'dev', dest: '/dev' },
    { kind: 'tmpfs', dest: '/tmp', sizeBytes: limits.tmpBytes },
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
    noNewPrivileges: true,
    seccomp: buildSeccompFilter().description,
    limits: { ...limits, enforcement: layout.enforcement },
    image: hardening.image ?? { kind: 'host-system', digest: 'unmeasured' },
    fetch: {
      proxySocket: PROXY_SOCKET,
      forwarderSha256: sha256Hex(forwarderText),
      proxyUrl: `http://127.0.0.1:${FORWARDER_PORT}`,
    },
    mounts,
    env,
    cwd: WORKSPACE,
    command: [...config.build.command],
  } satisfies SandboxProfile);
}

/** What differs between the fetch and the build phase of one runner. */
interface Phase {
  readonly name: 'fetch' | 'build';
  readonly command: readonly string[];
  readonly timeoutSeconds: number;
  /** Fetch only: host path of the egress proxy socket and of the forwarder file. */
  readonly egress?: { readonly socket: string; readonly forwarder: string };
}

/** The fd bubblewrap reads the seccomp program from (stdio slot 4 of the spawned process). */
const SECCOMP_FD = 4;

/**
 * The bwrap argv for a profile. Generated from the profile, never alongside it, so that what is
 * measured is what runs.
 */
function bwrapArgs(profile: SandboxProfile, workspace: string, etcDir: string, phase: Phase): string[] {
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
        if (m.sizeBytes !== undefined) args.push('--size', String(m.sizeBytes));
        args.push('--tmpfs', m.dest);
        break;
      case 'workspace':
        args.push('--bind', workspace, m.dest);
        break;
      case 'remount-ro':
        // The fetch phase's extra files are bound before the root is frozen.
        if (phase.egress !== undefined) {
          args.push(
            '--bind',
            phase.egress.socket,
            profile.fetch.proxySocket,
            '--ro-bind',
            phase.egress.forwarder,
            FORWARDER,
          );
        }
        args.push('--remount-ro', m.dest);
        break;
      default: {
        const never: never = m;
        throw new GatehouseError('INTERNAL', `unknown mount kind ${JSON.stringify(never)}`);
      }
    }
  }
  let command = [...phase.command];
  if (phase.egress !== undefined) {
    args.push('--setenv', 'npm_config_cache', '/tmp/npm-cache');
    command = [SANDBOX_NODE, FORWARDER, profile.fetch.proxySocket, String(FORWARDER_PORT), '--', ...command];
  }
  args.push(
    '--seccomp',
    String(SECCOMP_FD),
    '--chdir',
    profile.cwd,
    '--json-status-fd',
    '3',
    '--',
    ...command,
  );
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
  /** Resource limits of every build; default {@link DEFAULT_LIMITS}. */
  readonly limits?: RunnerLimits;
  /**
   * The verified base image the system directories come from, verified at each provision; default
   * the host's system directories with the machine-wide cache; `null`: unmeasured (tests only).
   */
  readonly image?: BaseImage | null;
}

interface Ready {
  bwrap: string;
  layout: HostLayout;
  seccomp: Buffer;
}

/**
 * The embedded runner backend: each job runs in a fresh bubblewrap sandbox with its own namespaces
 * (no network but its own loopback), an empty environment, a read-only /usr, a seccomp filter,
 * cgroup limits, and a private, size-limited writable copy of the source at /workspace.
 */
export class BubblewrapRunner implements Runner {
  readonly #bwrapPath: string | undefined;
  readonly #tempRoot: string;
  readonly #limits: RunnerLimits;
  readonly #image: BaseImage | undefined;
  #ready: Promise<Ready> | undefined;

  constructor(options: BubblewrapRunnerOptions = {}) {
    this.#bwrapPath = options.bwrapPath;
    this.#tempRoot = options.tempRoot ?? tmpdir();
    this.#limits = Object.freeze({ ...(options.limits ?? DEFAULT_LIMITS) });
    this.#image =
      options.image === null
        ? undefined
        : (options.image ?? new HostSystemImage({ cacheDir: defaultImageCacheDir() }));
  }

  async #prepare(): Promise<Ready> {
    // Check bwrap once per runner backend; a failed check is retried next time.
    this.#ready ??= Promise.all([checkBwrap(this.#bwrapPath), detectHostLayout(this.#image?.root)]).then(
      ([bwrap, layout]) => {
        if (layout.enforcement === 'cgroup-v1' || layout.enforcement === 'cgroup-v2') {
          // Creating cgroups and mounting a tmpfs both need root here; refuse early, not per job.
          if (process.getuid?.() !== 0) {
            throw new GatehouseError(
              'SANDBOX_UNAVAILABLE',
              'the bubblewrap runner enforces memory, process and workspace limits with cgroups and a tmpfs, which needs root',
            );
          }
        }
        return { bwrap, layout, seccomp: buildSeccompFilter().program };
      },
    );
    try {
      return await this.#ready;
    } catch (e) {
      this.#ready = undefined;
      throw e;
    }
  }

  /**
   * The isolation-relevant sandbox profile this runner gives a project, exactly as provision()
   * would (image verified): what reference values are measured from.
   * @throws GatehouseError SANDBOX_UNAVAILABLE, IMAGE_UNVERIFIED
   */
  async profileFor(config: ProjectConfig): Promise<SandboxProfile> {
    const ready = await this.#prepare();
    const image = this.#image === undefined ? undefined : await this.#image.verify();
    return bubblewrapSandboxProfile(config, ready.layout, {
      limits: this.#limits,
      ...(image === undefined ? {} : { image }),
      ...(this.#image?.root === undefined ? {} : { imageRoot: this.#image.root }),
    });
  }

  /**
   * @throws GatehouseError SANDBOX_UNAVAILABLE when bwrap is missing or cannot sandbox here;
   *   IMAGE_UNVERIFIED when the base image does not match its digest; BAD_INPUT for a bad job id
   *   or an unreadable source directory
   */
  async provision(spec: ProvisionSpec): Promise<RunnerInstance> {
    const ready = await this.#prepare();
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
    // Checked before every use: a base image that no longer matches its digest is never run.
    const image = this.#image === undefined ? undefined : await this.#image.verify();

    // mkdtemp makes the directory 0700: other host users cannot look into or race the job.
    const jobRoot = await mkdtemp(join(this.#tempRoot, `gatehouse-${spec.jobId}-`));
    const workspace = join(jobRoot, 'workspace');
    let mounted = false;
    try {
      const etcDir = join(jobRoot, 'etc');
      await mkdir(workspace, { mode: 0o700 });
      await mkdir(etcDir, { mode: 0o700 });
      // The workspace is its own tmpfs, so that filling it fills only it (ENOSPC), never the host.
      await execFileAsync(
        'mount',
        [
          '-t',
          'tmpfs',
          '-o',
          `size=${this.#limits.workspaceBytes},mode=0700,nosuid,nodev`,
          'gatehouse-workspace',
          workspace,
        ],
        { env: {}, timeout: 10_000 },
      ).catch((e: unknown) => {
        throw new GatehouseError('SANDBOX_UNAVAILABLE', `cannot mount the workspace tmpfs: ${String(e)}`, {
          cause: e,
        });
      });
      mounted = true;
      for (const [dest, content] of Object.entries(ETC_FILES)) {
        await writeFile(join(etcDir, dest.replaceAll('/', '_')), content, { mode: 0o644 });
      }
      await writeFile(join(jobRoot, 'seccomp.bpf'), ready.seccomp, { mode: 0o600 });
      await copySource(spec.sourceDir, workspace);
      const profile = bubblewrapSandboxProfile(spec.config, ready.layout, {
        limits: this.#limits,
        ...(image === undefined ? {} : { image }),
        ...(this.#image?.root === undefined ? {} : { imageRoot: this.#image.root }),
      });
      return new BubblewrapInstance({
        bwrap: ready.bwrap,
        jobId: spec.jobId,
        jobRoot,
        workspace,
        etcDir,
        config: spec.config,
        profile,
        limits: this.#limits,
      });
    } catch (e) {
      if (mounted) await unmount(workspace);
      await rm(jobRoot, { recursive: true, force: true });
      throw e;
    }
  }
}

async function unmount(dir: string): Promise<void> {
  // Lazy: a process that somehow still holds the mount cannot keep the job's files alive.
  await execFileAsync('umount', ['-l', dir], { env: {}, timeout: 10_000 }).catch(() => undefined);
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
  limits: RunnerLimits;
}

/** How often the CPU-time limit is checked. */
const CPU_POLL_MS = 250;

class BubblewrapInstance implements RunnerInstance {
  readonly id = `bwrap-${randomUUID()}`;
  readonly jobId: string;
  readonly workspace: string;
  readonly config: ProjectConfig;
  readonly sandboxProfile: SandboxProfile;
  readonly #bwrap: string;
  readonly #jobRoot: string;
  readonly #etcDir: string;
  readonly #limits: RunnerLimits;
  #state: 'ready' | 'fetching' | 'fetched' | 'building' | 'built' | 'destroyed' = 'ready';
  #child: ChildProcess | undefined;
  #cgroup: BuildCgroup | undefined;
  #exited: Promise<void> | undefined;

  constructor(init: InstanceInit) {
    this.jobId = init.jobId;
    this.workspace = init.workspace;
    this.config = init.config;
    this.sandboxProfile = init.profile;
    this.#bwrap = init.bwrap;
    this.#jobRoot = init.jobRoot;
    this.#etcDir = init.etcDir;
    this.#limits = init.limits;
  }

  async fetch(request: FetchRequest): Promise<BuildResult> {
    if (this.#state !== 'ready') {
      throw new GatehouseError('FETCH_FAILED', `runner ${this.id} cannot fetch: it is ${this.#state}`, {
        where: this.jobId,
      });
    }
    this.#state = 'fetching';
    const forwarder = join(this.#jobRoot, 'egress-forwarder.mjs');
    await writeFile(forwarder, forwarderText, { mode: 0o444 });
    try {
      return await this.#run({
        name: 'fetch',
        command: request.command,
        timeoutSeconds: request.timeoutSeconds,
        egress: { socket: request.proxySocket, forwarder },
      });
    } finally {
      if (this.#state === 'fetching') this.#state = 'fetched';
    }
  }

  async build(): Promise<BuildResult> {
    if (this.#state !== 'ready' && this.#state !== 'fetched') {
      throw new GatehouseError('BUILD_FAILED', `runner ${this.id} cannot build: it is ${this.#state}`, {
        where: this.jobId,
      });
    }
    this.#state = 'building';
    try {
      return await this.#run({
        name: 'build',
        command: this.sandboxProfile.command,
        timeoutSeconds: this.config.build.timeoutSeconds,
      });
    } finally {
      if (this.#state === 'building') this.#state = 'built';
    }
  }

  async #run(phase: Phase): Promise<BuildResult> {
    const started = performance.now();
    const stdout = new Tail(OUTPUT_TAIL_BYTES);
    const stderr = new Tail(OUTPUT_TAIL_BYTES);
    let status = '';
    const failed = phase.name === 'fetch' ? 'FETCH_FAILED' : 'BUILD_FAILED';
    const cgroup = await BuildCgroup.create(
      this.sandboxProfile.limits.enforcement,
      `${this.jobId.slice(0, 48)}-${phase.name}`,
      this.#limits,
    );
    this.#cgroup = cgroup;
    const seccomp = await open(join(this.#jobRoot, 'seccomp.bpf'), 'r');
    let child: ChildProcess;
    try {
      // The first process moves itself into the build's cgroups *before* it execs anything, so
      // that no process of the build ever runs outside its limits. prlimit adds per-process
      // limits the cgroups do not have: no core dumps, CPU seconds, largest file.
      const enter =
        'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n-1)); done; exec "$@"';
      child = spawn(
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
          `--cpu=${this.#limits.cpuSeconds}:${this.#limits.cpuSeconds + 1}`,
          `--fsize=${this.#limits.workspaceBytes}`,
          '--',
          this.#bwrap,
          ...bwrapArgs(this.sandboxProfile, this.workspace, this.#etcDir, phase),
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
    this.#child = child;
    child.stdout?.on('data', (c: Buffer) => stdout.push(c));
    child.stderr?.on('data', (c: Buffer) => stderr.push(c));
    child.stdio[3]?.on('data', (c: Buffer) => {
      if (status.length < 65_536) status += c.toString('utf8');
    });
    let timedOut = false;
    let cpuExceeded = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child);
      void cgroup.kill();
    }, phase.timeoutSeconds * 1000);
    // The cgroup adds up CPU time over all the build's processes; rlimit only sees one at a time.
    const cpuPoll = setInterval(() => {
      void cgroup.cpuSeconds().then((used) => {
        if (used >= this.#limits.cpuSeconds && !cpuExceeded) {
          cpuExceeded = true;
          killGroup(child);
          void cgroup.kill();
        }
      });
    }, CPU_POLL_MS);
    const exited = new Promise<{ code: number | null; error?: Error }>((resolve) => {
      child.once('error', (error) => resolve({ code: null, error }));
      child.once('close', (code) => resolve({ code }));
    });
    this.#exited = exited.then(() => undefined);
    const { code, error } = await exited;
    clearTimeout(timer);
    clearInterval(cpuPoll);
    this.#child = undefined;
    const statusLines = parseStatus(status);
    const pidNamespace = statusLines.find((s) => typeof s['pid-namespace'] === 'number')?.['pid-namespace'];
    if (typeof pidNamespace === 'number') await reapNamespace(pidNamespace);
    const exitCode = statusLines.find((s) => typeof s['exit-code'] === 'number')?.['exit-code'];
    // 128 + SIGXCPU: the per-process CPU rlimit fired before the cgroup total was polled.
    const breach = cpuExceeded || exitCode === 128 + 24 ? 'cpu' : await cgroup.breach();
    await cgroup.remove();
    this.#cgroup = undefined;
    const durationMs = Math.round(performance.now() - started);
    const exit = exitCode;
    const workspaceFull = await isFull(this.workspace);

    if (error !== undefined) {
      throw new GatehouseError(failed, `cannot start bubblewrap: ${error.message}`, {
        cause: error,
        where: this.jobId,
      });
    }
    // A limit explains a timeout or a failure better than either: name it. A build that ran into
    // a limit fails even if its script ignored the failure: its result is not what it would be.
    if (breach !== undefined) {
      throw new GatehouseError(
        'BUILD_LIMIT_EXCEEDED',
        `${phase.name}: ${describeBreach(breach, this.#limits)}`,
        {
          where: this.jobId,
        },
      );
    }
    if (timedOut) {
      throw new GatehouseError(
        'BUILD_TIMEOUT',
        `the ${phase.name} ran longer than its timeout of ${phase.timeoutSeconds}s and was killed`,
        { where: this.jobId },
      );
    }
    if (workspaceFull) {
      throw new GatehouseError(
        'BUILD_LIMIT_EXCEEDED',
        `${phase.name}: the build filled its workspace limit of ${Math.round(this.#limits.workspaceBytes / 1024 ** 2)} MiB`,
        { where: this.jobId },
      );
    }
    if (typeof exit !== 'number') {
      // bwrap reports exit-code only for a command it started; without it the sandbox itself failed.
      const why = stderr.text().trim().split('\n').at(-1) ?? `bwrap exited with ${String(code)}`;
      throw new GatehouseError(failed, `the sandbox could not run the ${phase.name} command: ${why}`, {
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
      await this.#cgroup?.remove();
      await this.#exited;
    }
    if (await isMountPoint(this.workspace)) await unmount(this.workspace);
    await rm(this.#jobRoot, { recursive: true, force: true, maxRetries: 3 });
  }
}

/** Whether a workspace tmpfs has (almost) no room left. */
async function isFull(dir: string): Promise<boolean> {
  try {
    const s = await statfs(dir);
    return s.bavail * s.bsize < 64 * 1024;
  } catch {
    return false;
  }
}

async function isMountPoint(dir: string): Promise<boolean> {
  try {
    const [self, parent] = await Promise.all([stat(dir), stat(dirname(dir))]);
    return self.dev !== parent.dev;
  } catch {
    return false;
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
