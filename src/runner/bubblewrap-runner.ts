import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { GatehouseError } from '../common/errors.ts';
import { bwrapArgs, type Phase } from './bwrap-args.ts';
import { checkBwrap } from './bwrap-binary.ts';
import { detectHostLayout, type HostLayout } from './host-layout.ts';
import { type BaseImage, defaultImageCacheDir, HostSystemImage } from './image.ts';
import {
  copySource,
  createJobDirectory,
  isFull,
  type JobDirectory,
  removeJobDirectory,
  sweepJobDirectories,
  writeEtcFiles,
} from './job-directory.ts';
import { BuildCgroup, DEFAULT_LIMITS, describeBreach, type RunnerLimits } from './limits.ts';
import {
  killGroup,
  type SandboxExit,
  SandboxOutput,
  type SandboxVerdict,
  sandboxExit,
  settleSandbox,
  spawnSandbox,
  Watchdog,
} from './process-tree.ts';
import type { ProjectConfig } from './project-config.ts';
import type {
  BuildResult,
  FetchRequest,
  ImageRef,
  OutputSink,
  ProvisionSpec,
  Runner,
  RunnerInstance,
  SandboxProfile,
} from './runner.ts';
import { bubblewrapSandboxProfile, forwarderText } from './sandbox-profile.ts';
import { buildSeccompFilter } from './seccomp.ts';

const JOB_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

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

  /** The profile of a project on this host, with the verified image (if any). */
  #profile(config: ProjectConfig, layout: HostLayout, image: ImageRef | undefined): SandboxProfile {
    return bubblewrapSandboxProfile(config, layout, {
      limits: this.#limits,
      ...(image === undefined ? {} : { image }),
      ...(this.#image?.root === undefined ? {} : { imageRoot: this.#image.root }),
    });
  }

  /**
   * The isolation-relevant sandbox profile this runner gives a project, exactly as provision()
   * would (image verified): what reference values are measured from.
   * @throws GatehouseError SANDBOX_UNAVAILABLE, IMAGE_UNVERIFIED
   */
  async profileFor(config: ProjectConfig): Promise<SandboxProfile> {
    const ready = await this.#prepare();
    const image = this.#image === undefined ? undefined : await this.#image.verify();
    return this.#profile(config, ready.layout, image);
  }

  /**
   * @throws GatehouseError SANDBOX_UNAVAILABLE when bwrap is missing or cannot sandbox here;
   *   IMAGE_UNVERIFIED when the base image does not match its digest; BAD_INPUT for a bad job id
   *   or an unreadable source directory
   */
  sweep(): Promise<string[]> {
    return sweepJobDirectories(this.#tempRoot);
  }

  async provision(
    spec: ProvisionSpec,
  ): Promise<RunnerInstance & { readonly sandboxProfile: SandboxProfile }> {
    const ready = await this.#prepare();
    await checkProvisionSpec(spec);
    // Checked before every use: a base image that no longer matches its digest is never run.
    const image = this.#image === undefined ? undefined : await this.#image.verify();
    return await createJobDirectory(this.#tempRoot, spec.jobId, this.#limits.workspaceBytes, async (dir) => {
      await writeEtcFiles(dir.etcDir);
      await writeFile(dir.seccompFile, ready.seccomp, { mode: 0o600 });
      await copySource(spec.sourceDir, dir.workspace);
      return new BubblewrapInstance({
        bwrap: ready.bwrap,
        jobId: spec.jobId,
        dir,
        config: spec.config,
        profile: this.#profile(spec.config, ready.layout, image),
        limits: this.#limits,
        imageRoot: this.#image?.root ?? '/',
      });
    });
  }
}

/**
 * A job id names the job's directory, so it must be a plain name; the source must be a directory.
 * @throws GatehouseError BAD_INPUT
 */
async function checkProvisionSpec(spec: ProvisionSpec): Promise<void> {
  if (!JOB_ID.test(spec.jobId)) {
    throw new GatehouseError('BAD_INPUT', `job id '${spec.jobId.slice(0, 64)}' is not [A-Za-z0-9._-]{1,128}`);
  }
  const source = await stat(spec.sourceDir).catch((e: unknown) => {
    throw new GatehouseError('BAD_INPUT', `source directory ${spec.sourceDir} cannot be read`, {
      cause: e,
    });
  });
  if (!source.isDirectory())
    throw new GatehouseError('BAD_INPUT', `source ${spec.sourceDir} is not a directory`);
}

interface InstanceInit {
  bwrap: string;
  jobId: string;
  dir: JobDirectory;
  config: ProjectConfig;
  profile: SandboxProfile;
  limits: RunnerLimits;
  imageRoot: string;
}

/** How the sandbox of one phase ended, everything {@link BubblewrapInstance} judges it by. */
interface PhaseEnd {
  readonly exit: SandboxExit;
  readonly verdict: SandboxVerdict;
  readonly timedOut: boolean;
  readonly workspaceFull: boolean;
  readonly durationMs: number;
  readonly output: SandboxOutput;
}

class BubblewrapInstance implements RunnerInstance {
  readonly id = `bwrap-${randomUUID()}`;
  readonly jobId: string;
  readonly workspace: string;
  readonly config: ProjectConfig;
  readonly sandboxProfile: SandboxProfile;
  readonly imageRoot: string;
  readonly #bwrap: string;
  readonly #dir: JobDirectory;
  readonly #limits: RunnerLimits;
  #state: 'ready' | 'fetching' | 'fetched' | 'building' | 'built' | 'destroyed' = 'ready';
  #child: ChildProcess | undefined;
  #cgroup: BuildCgroup | undefined;
  #exited: Promise<void> | undefined;

  constructor(init: InstanceInit) {
    this.jobId = init.jobId;
    this.workspace = init.dir.workspace;
    this.config = init.config;
    this.sandboxProfile = init.profile;
    this.imageRoot = init.imageRoot;
    this.#bwrap = init.bwrap;
    this.#dir = init.dir;
    this.#limits = init.limits;
  }

  async fetch(request: FetchRequest): Promise<BuildResult> {
    if (this.#state !== 'ready') {
      throw new GatehouseError('FETCH_FAILED', `runner ${this.id} cannot fetch: it is ${this.#state}`, {
        where: this.jobId,
      });
    }
    this.#state = 'fetching';
    const forwarder = this.#dir.forwarderFile;
    await writeFile(forwarder, forwarderText, { mode: 0o444 });
    try {
      return await this.#run(
        {
          name: 'fetch',
          command: request.command,
          timeoutSeconds: request.timeoutSeconds,
          egress: { socket: request.proxySocket, forwarder },
        },
        request.output,
      );
    } finally {
      if (this.#state === 'fetching') this.#state = 'fetched';
    }
  }

  async build(output?: OutputSink): Promise<BuildResult> {
    if (this.#state !== 'ready' && this.#state !== 'fetched') {
      throw new GatehouseError('BUILD_FAILED', `runner ${this.id} cannot build: it is ${this.#state}`, {
        where: this.jobId,
      });
    }
    this.#state = 'building';
    try {
      return await this.#run(
        {
          name: 'build',
          command: this.sandboxProfile.command,
          timeoutSeconds: this.config.build.timeoutSeconds,
        },
        output,
      );
    } finally {
      if (this.#state === 'building') this.#state = 'built';
    }
  }

  /** Run one phase in a fresh sandbox under its own cgroup, wait for it and everything it started. */
  async #run(phase: Phase, sink: OutputSink | undefined): Promise<BuildResult> {
    const started = performance.now();
    const cgroup = await BuildCgroup.create(
      this.sandboxProfile.limits.enforcement,
      `${this.jobId.slice(0, 48)}-${phase.name}`,
      this.#limits,
    );
    this.#cgroup = cgroup;
    const child = await spawnSandbox({
      bwrap: this.#bwrap,
      args: bwrapArgs(this.sandboxProfile, this.workspace, this.#dir.etcDir, phase),
      seccompFile: this.#dir.seccompFile,
      cgroup,
      limits: this.#limits,
    });
    this.#child = child;
    const output = new SandboxOutput(child, sink);
    const watchdog = new Watchdog(child, cgroup, this.#limits.cpuSeconds, phase.timeoutSeconds);
    const exited = sandboxExit(child);
    this.#exited = exited.then(() => undefined);
    const exit = await exited;
    watchdog.stop();
    this.#child = undefined;
    const verdict = await settleSandbox(output.status, cgroup, watchdog);
    this.#cgroup = undefined;
    const durationMs = Math.round(performance.now() - started);
    const workspaceFull = await isFull(this.workspace);
    return this.#judge(phase, {
      exit,
      verdict,
      timedOut: watchdog.timedOut,
      workspaceFull,
      durationMs,
      output,
    });
  }

  /**
   * The phase's result, or the error that explains why it has none.
   * @throws GatehouseError BUILD_LIMIT_EXCEEDED, BUILD_TIMEOUT, FETCH_FAILED or BUILD_FAILED
   */
  #judge(phase: Phase, end: PhaseEnd): BuildResult {
    const failed = phase.name === 'fetch' ? 'FETCH_FAILED' : 'BUILD_FAILED';
    const { code, error } = end.exit;
    const { exitCode, breach } = end.verdict;
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
    if (end.timedOut) {
      throw new GatehouseError(
        'BUILD_TIMEOUT',
        `the ${phase.name} ran longer than its timeout of ${phase.timeoutSeconds}s and was killed`,
        { where: this.jobId },
      );
    }
    if (end.workspaceFull) {
      throw new GatehouseError(
        'BUILD_LIMIT_EXCEEDED',
        `${phase.name}: the build filled its workspace limit of ${Math.round(this.#limits.workspaceBytes / 1024 ** 2)} MiB`,
        { where: this.jobId },
      );
    }
    const { stdout, stderr } = end.output;
    if (exitCode === undefined) {
      // bwrap reports exit-code only for a command it started; without it the sandbox itself failed.
      const why = stderr.text().trim().split('\n').at(-1) ?? `bwrap exited with ${String(code)}`;
      throw new GatehouseError(failed, `the sandbox could not run the ${phase.name} command: ${why}`, {
        where: this.jobId,
      });
    }
    const stderrText = stderr.text();
    const stdoutText = stdout.text();
    return {
      exitCode,
      durationMs: end.durationMs,
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
    await removeJobDirectory(this.#dir);
  }
}
