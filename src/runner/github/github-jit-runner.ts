/**
 * A runner backend that builds on an ephemeral GitHub Actions runner: for each gatehouse job a
 * just-in-time runner is registered with GitHub (single use, its own name as its only job label),
 * a launcher the operator provides boots a fresh machine that runs it with the job's workspace,
 * the build workflow is dispatched to that one runner (when configured), and the runner is removed
 * from GitHub after the job — also when anything failed, and by `sweep()` when an agent died.
 *
 * The launcher is host software, like bwrap for the bubblewrap backend: it is measured (its
 * executable's digest is in the isolation profile) and it alone sees the JIT configuration, on its
 * stdin — never in an argv or an environment another process could read, never in the workspace.
 * Its contract (docs/ci.md): read the configuration from stdin, boot a fresh single-use machine
 * with the workspace at `$GATEHOUSE_WORKSPACE`, run the runner there
 * (`run.sh --jitconfig <configuration>`), exit with the build's exit code, destroy the machine.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { GatehouseError } from '../../common/errors.ts';
import {
  copySource,
  createJobDirectory,
  type JobDirectory,
  removeJobDirectory,
  sweepJobDirectories,
} from '../job-directory.ts';
import type { RunnerLimits } from '../limits.ts';
import { Tail } from '../output-tail.ts';
import { killGroup } from '../process-tree.ts';
import type { ProjectConfig } from '../project-config.ts';
import {
  type BuildResult,
  type FetchRequest,
  type JitRunnerProfile,
  OUTPUT_TAIL_BYTES,
  type OutputSink,
  type ProvisionSpec,
  type Runner,
  type RunnerInstance,
} from '../runner.ts';
import type { GithubRunnersApi } from './github-api.ts';

export interface GithubJitRunnerOptions {
  api: GithubRunnersApi;
  /** The runner group the JIT runners join (GitHub requires one; 1 is a repository's default). */
  runnerGroupId: number;
  /** Labels every runner gets besides its own name, e.g. `["self-hosted", "linux", "gatehouse"]`. */
  labels: readonly string[];
  /** The launcher's argv; its first element is the absolute path of an executable. */
  launcher: readonly string[];
  /** The workflow (file name or id) dispatched to each job's runner, on `ref`; absent: none is. */
  workflow?: { file: string; ref: string };
  /** Directory for job workspaces on this host (the launcher hands them to the machine). */
  workspaceRoot: string;
  limits: RunnerLimits;
  /** Prefix of this host's runner names (default: the host name); `sweep()` removes only its own. */
  namePrefix?: string;
  /** Time the launcher may take to boot the machine, on top of the build's timeout (default 300 s). */
  bootSeconds?: number;
}

type Settings = Required<Omit<GithubJitRunnerOptions, 'workflow'>> & {
  workflow: GithubJitRunnerOptions['workflow'];
};

/** Where a job directory records the runner registered for it (outside the workspace). */
const RECORD_FILE = 'github-runner.json';
const LABEL = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function sanitizedHostName(): string {
  const name = hostname()
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 24);
  return name === '' ? 'host' : name;
}

export class GithubJitRunner implements Runner {
  readonly #o: Settings;

  /** @throws GatehouseError BAD_CONFIG for a launcher that is not absolute, bad labels or group */
  constructor(options: GithubJitRunnerOptions) {
    const [exe] = options.launcher;
    if (exe === undefined || !exe.startsWith('/'))
      throw new GatehouseError('BAD_CONFIG', 'the JIT runner launcher must start with an absolute path');
    if (!Number.isSafeInteger(options.runnerGroupId) || options.runnerGroupId < 1)
      throw new GatehouseError('BAD_CONFIG', `runner group ${options.runnerGroupId} is not a group id`);
    for (const l of options.labels)
      if (!LABEL.test(l)) throw new GatehouseError('BAD_CONFIG', `'${l}' is not a runner label`);
    const prefix = options.namePrefix ?? sanitizedHostName();
    if (!/^[a-z0-9][a-z0-9-]{0,23}$/.test(prefix))
      throw new GatehouseError(
        'BAD_CONFIG',
        `'${prefix}' is not a runner name prefix (a-z, 0-9, -, at most 24)`,
      );
    this.#o = { bootSeconds: 300, ...options, namePrefix: prefix, workflow: options.workflow };
  }

  /** The isolation every job of this runner gets, as measured: nothing per job in it. */
  async profileFor(config: ProjectConfig): Promise<JitRunnerProfile> {
    const o = this.#o;
    const [exe = ''] = o.launcher;
    let sha256: string;
    try {
      sha256 = createHash('sha256')
        .update(await readFile(exe))
        .digest('hex');
    } catch (cause) {
      throw new GatehouseError('SANDBOX_UNAVAILABLE', 'the JIT runner launcher cannot be read', {
        where: exe,
        cause,
      });
    }
    return Object.freeze({
      version: 1,
      backend: 'github-jit',
      repository: o.api.repository,
      runnerGroupId: o.runnerGroupId,
      labels: [...o.labels].sort(),
      workflow: o.workflow === undefined ? null : { file: o.workflow.file, ref: o.workflow.ref },
      launcher: { argv: [...o.launcher], sha256 },
      limits: o.limits,
      env: { ...config.build.env },
      cwd: '/workspace',
      command: [...config.build.command],
    } satisfies JitRunnerProfile);
  }

  /**
   * Remove what agents that died left behind: their job directories, then this host's runners
   * that GitHub still lists, are offline and belong to no live job here.
   * @returns the directories and runners (`github-runner:NAME`) removed
   */
  async sweep(): Promise<string[]> {
    const removed = await sweepJobDirectories(this.#o.workspaceRoot);
    const live = await liveRunnerNames(this.#o.workspaceRoot);
    const prefix = `gatehouse-${this.#o.namePrefix}-`;
    for (const r of await this.#o.api.listRunners()) {
      if (!r.name.startsWith(prefix) || live.has(r.name) || r.busy === true || r.status === 'online')
        continue;
      await this.#o.api.deleteRunner(r.id);
      removed.push(`github-runner:${r.name}`);
    }
    return removed;
  }

  async provision(
    spec: ProvisionSpec,
  ): Promise<RunnerInstance & { readonly sandboxProfile: JitRunnerProfile }> {
    const source = await stat(spec.sourceDir).catch(() => undefined);
    if (source?.isDirectory() !== true)
      throw new GatehouseError('BAD_INPUT', `source ${spec.sourceDir} is not a directory`);
    const profile = await this.profileFor(spec.config);
    return createJobDirectory(
      this.#o.workspaceRoot,
      spec.jobId,
      this.#o.limits.workspaceBytes,
      async (dir) => {
        await copySource(spec.sourceDir, dir.workspace);
        return new JitInstance(this.#o, spec, dir, profile);
      },
    );
  }
}

async function liveRunnerNames(workspaceRoot: string): Promise<Set<string>> {
  const names = new Set<string>();
  for (const d of await readdir(workspaceRoot).catch(() => [] as string[])) {
    const text = await readFile(join(workspaceRoot, d, RECORD_FILE), 'utf8').catch(() => '');
    try {
      const name = (JSON.parse(text) as { name?: unknown }).name;
      if (typeof name === 'string') names.add(name);
    } catch {
      // no record: no runner was registered for that job
    }
  }
  return names;
}

class JitInstance implements RunnerInstance {
  readonly id: string;
  readonly jobId: string;
  readonly workspace: string;
  readonly config: ProjectConfig;
  readonly sandboxProfile: JitRunnerProfile;
  readonly #o: Settings;
  readonly #dir: JobDirectory;
  /** The runner's name, which is also the one label only this job's workflow run asks for. */
  readonly #name: string;
  #state: 'ready' | 'building' | 'built' | 'destroyed' = 'ready';
  #registered: number | undefined;
  #child: ChildProcess | undefined;

  constructor(o: Settings, spec: ProvisionSpec, dir: JobDirectory, profile: JitRunnerProfile) {
    this.#o = o;
    this.jobId = spec.jobId;
    this.workspace = dir.workspace;
    this.config = spec.config;
    this.sandboxProfile = profile;
    this.#dir = dir;
    this.#name = `gatehouse-${o.namePrefix}-${randomBytes(8).toString('hex')}`;
    this.id = `github-jit-${this.#name}`;
  }

  fetch(_request: FetchRequest): Promise<BuildResult> {
    return Promise.reject(
      new GatehouseError(
        'FETCH_FAILED',
        'the GitHub JIT runner has no fetch phase: vendor dependencies or build on a bubblewrap host',
        { where: this.jobId },
      ),
    );
  }

  async build(output?: OutputSink): Promise<BuildResult> {
    if (this.#state !== 'ready')
      throw new GatehouseError('BUILD_FAILED', `runner ${this.id} cannot build: it is ${this.#state}`, {
        where: this.jobId,
      });
    this.#state = 'building';
    const o = this.#o;
    const t0 = performance.now();
    const registration = await o.api.generateJitConfig({
      name: this.#name,
      runnerGroupId: o.runnerGroupId,
      labels: [...o.labels, this.#name],
    });
    if (this.#isDestroyed()) {
      // Destroyed while GitHub answered: the runner it made is removed at once, not left behind.
      await o.api.deleteRunner(registration.runner.id).catch(() => undefined);
      throw cancelled(this.jobId);
    }
    this.#registered = registration.runner.id;
    // Recorded beside the workspace, so that a sweep after a crash knows the runner was this job's.
    await writeFile(
      join(this.#dir.root, RECORD_FILE),
      `${JSON.stringify({ id: registration.runner.id, name: this.#name })}\n`,
      { mode: 0o600 },
    );
    if (this.#isDestroyed()) throw cancelled(this.jobId);
    const timeoutSeconds = this.config.build.timeoutSeconds + o.bootSeconds;
    const [exe = '', ...args] = o.launcher;
    const child = spawn(exe, args, {
      // The launcher gets the job and nothing of the agent's environment (no tokens of ours).
      env: {
        PATH: '/usr/local/bin:/usr/bin:/bin',
        GATEHOUSE_JOB_ID: this.jobId,
        GATEHOUSE_RUNNER_NAME: this.#name,
        GATEHOUSE_RUNNER_LABEL: this.#name,
        GATEHOUSE_WORKSPACE: this.workspace,
        GATEHOUSE_BUILD_COMMAND: JSON.stringify(this.config.build.command),
        GATEHOUSE_BUILD_ENV: JSON.stringify(this.config.build.env),
        GATEHOUSE_TIMEOUT_SECONDS: String(this.config.build.timeoutSeconds),
      },
      cwd: this.#dir.root,
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.#child = child;
    const stdout = new Tail(OUTPUT_TAIL_BYTES);
    const stderr = new Tail(OUTPUT_TAIL_BYTES);
    // The launcher relays the runner's output: it is the build's, handed on as it arrives.
    child.stdout?.on('data', (c: Buffer) => {
      stdout.push(c);
      output?.(c, 'stdout');
    });
    child.stderr?.on('data', (c: Buffer) => {
      stderr.push(c);
      output?.(c, 'stderr');
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>(
      (resolve) => {
        child.once('error', (error) => resolve({ code: null, signal: null, error }));
        child.once('close', (code, signal) => resolve({ code, signal }));
      },
    );
    // The configuration goes to the launcher's stdin only, then stdin is closed.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(`${registration.encodedJitConfig}\n`);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child);
    }, timeoutSeconds * 1000);
    try {
      if (o.workflow !== undefined) {
        // After the runner's machine is on its way: a run dispatched to a label no runner has
        // would wait in GitHub's queue for a day.
        await o.api.dispatchWorkflow(o.workflow.file, o.workflow.ref, {
          runner_label: this.#name,
          gatehouse_job: this.jobId,
        });
      }
    } catch (e) {
      killGroup(child);
      clearTimeout(timer);
      await exited;
      if (!this.#isDestroyed()) this.#state = 'built';
      throw e;
    }
    const end = await exited;
    clearTimeout(timer);
    this.#child = undefined;
    if (this.#isDestroyed()) throw cancelled(this.jobId);
    this.#state = 'built';
    if (timedOut)
      throw new GatehouseError(
        'BUILD_TIMEOUT',
        `the build ran past its ${this.config.build.timeoutSeconds} s limit (and ${o.bootSeconds} s to boot) and was stopped`,
        { where: this.jobId },
      );
    if (end.error !== undefined || (end.code === null && end.signal === null))
      throw new GatehouseError(
        'BUILD_FAILED',
        `the JIT runner launcher could not be started: ${String(end.error)}`,
        {
          where: this.jobId,
          cause: end.error,
        },
      );
    const signals: Record<string, number> = { SIGKILL: 9, SIGTERM: 15, SIGINT: 2, SIGSEGV: 11, SIGABRT: 6 };
    const exitCode = end.code ?? 128 + (signals[end.signal ?? ''] ?? 0);
    return {
      exitCode,
      durationMs: Math.round(performance.now() - t0),
      stdoutTail: stdout.text(),
      stderrTail: stderr.text(),
      truncated: stdout.truncated || stderr.truncated,
    };
  }

  /** Whether destroy() ran (it may, while build() awaits). */
  #isDestroyed(): boolean {
    return this.#state === 'destroyed';
  }

  /** Stop the launcher, remove the runner from GitHub (gone already is fine), remove the workspace. */
  async destroy(): Promise<void> {
    if (this.#state === 'destroyed') return;
    this.#state = 'destroyed';
    const child = this.#child;
    if (child !== undefined) {
      killGroup(child);
      if (child.exitCode === null && child.signalCode === null)
        await new Promise((resolve) => child.once('close', resolve));
    }
    try {
      if (this.#registered !== undefined) await this.#o.api.deleteRunner(this.#registered);
    } finally {
      // The workspace goes whatever GitHub answered; a runner left registered is swept later.
      await removeJobDirectory(this.#dir);
    }
  }
}

function cancelled(jobId: string): GatehouseError {
  return new GatehouseError('CANCELLED', 'the runner was destroyed while the build ran', { where: jobId });
}
