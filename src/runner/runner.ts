import type { LimitEnforcement, RunnerLimits } from './limits.ts';
import type { ProjectConfig } from './project-config.ts';
import type { SeccompDescription } from './seccomp.ts';

/** One mount in a sandbox, described from inside the sandbox. */
export type SandboxMount =
  | { readonly kind: 'ro-bind'; readonly dest: string; readonly source: string }
  /** The job's workspace; its host path differs per job and is deliberately not part of the profile. */
  | { readonly kind: 'workspace'; readonly dest: string; readonly writable: true }
  | { readonly kind: 'symlink'; readonly dest: string; readonly target: string }
  /** A file the runner writes itself (e.g. a minimal /etc/passwd), identified by its content digest. */
  | { readonly kind: 'file'; readonly dest: string; readonly sha256: string }
  | { readonly kind: 'proc'; readonly dest: string }
  | { readonly kind: 'dev'; readonly dest: string }
  | { readonly kind: 'tmpfs'; readonly dest: string; readonly sizeBytes?: number }
  /** Make an already mounted path read-only (used last, on `/`, to freeze the sandbox's root). */
  | { readonly kind: 'remount-ro'; readonly dest: string };

/**
 * The exact, canonical description of a runner's sandbox: what a build inside it can see and do.
 * Its canonical JSON is what the measured baseline hashes into the sandbox-profile PCR, so two
 * runners with equal profiles are isolated identically. Nothing host- or job-specific (temp paths,
 * pids) appears in it.
 */
export interface SandboxProfile {
  readonly version: 1;
  readonly backend: string;
  /** Linux namespaces the build gets fresh copies of, sorted. */
  readonly namespaces: readonly string[];
  /** Whether the build may create further user namespaces. */
  readonly nestedUserNamespaces: boolean;
  /** Network reachable from the build: only the loopback of its own network namespace. */
  readonly network: 'none' | 'loopback-only';
  readonly uid: number;
  readonly gid: number;
  readonly hostname: string;
  /** Capabilities the build keeps, sorted (empty: all dropped). */
  readonly capabilities: readonly string[];
  readonly newSession: boolean;
  readonly dieWithParent: boolean;
  /** no_new_privs is set before the build starts (bubblewrap always sets it; recorded explicitly). */
  readonly noNewPrivileges: true;
  /** The seccomp filter the build runs under. */
  readonly seccomp: SeccompDescription;
  /** Resource limits and what enforces them. Wall-clock time is the project's `build.timeout`. */
  readonly limits: RunnerLimits & { readonly enforcement: LimitEnforcement };
  /** The root file system image the sandbox's system directories come from, by content digest. */
  readonly image: ImageRef;
  /**
   * How the fetch phase differs from the build phase: only it gets the agent's egress proxy,
   * as a Unix socket at this path, and a forwarder (identified by digest) listening on its loopback.
   */
  readonly fetch: {
    readonly proxySocket: string;
    readonly forwarderSha256: string;
    readonly proxyUrl: string;
  };
  /** Mounts in the order they are made. */
  readonly mounts: readonly SandboxMount[];
  /** The build's whole environment: nothing else from the host is passed. */
  readonly env: Readonly<Record<string, string>>;
  readonly cwd: string;
  readonly command: readonly string[];
}

/**
 * The isolation of a build Pod on Kubernetes (src/runner/kubernetes): the canonical Pod template
 * the Job is made from, without anything per job; measured like a sandbox profile.
 */
export interface PodProfile {
  readonly version: 1;
  readonly backend: 'kubernetes-job';
  readonly pod: Readonly<Record<string, unknown>>;
  /** The build image, by manifest digest (`sha256:<hex>`). */
  readonly image: { readonly kind: 'oci'; readonly reference: string };
  readonly limits: RunnerLimits;
  readonly env: Readonly<Record<string, string>>;
  readonly cwd: string;
  readonly command: readonly string[];
}

/**
 * The isolation of a build on a just-in-time GitHub Actions runner (src/runner/github): which
 * repository's runners, which group and labels, and the launcher (by digest) that boots the
 * single-use machine; without anything per job.
 */
export interface JitRunnerProfile {
  readonly version: 1;
  readonly backend: 'github-jit';
  readonly repository: string;
  readonly runnerGroupId: number;
  /** The labels every runner gets, sorted (each job's runner also gets its own name as a label). */
  readonly labels: readonly string[];
  /** The workflow dispatched to run the build on the runner, if gatehouse dispatches one. */
  readonly workflow: { readonly file: string; readonly ref: string } | null;
  /** The launcher's argv and the SHA-256 of its executable. */
  readonly launcher: { readonly argv: readonly string[]; readonly sha256: string };
  readonly limits: RunnerLimits;
  readonly env: Readonly<Record<string, string>>;
  readonly cwd: string;
  readonly command: readonly string[];
}

/** How a runner isolates a build, as measured into the sandbox-profile PCR. */
export type IsolationProfile = SandboxProfile | PodProfile | JitRunnerProfile;

/** A verified base image: what it is and its content digest (see image.ts). */
export interface ImageRef {
  readonly kind: 'host-system' | 'directory';
  /** SHA-256 of the image's canonical manifest, hex; 'unmeasured' only in profiles built without one. */
  readonly digest: string;
}

/**
 * Receives a sandbox's output as it is written, chunk by chunk, read by the runner from the
 * sandbox's pipes (outside the sandbox): what the agent's build log is made of.
 */
export type OutputSink = (chunk: Buffer, stream: 'stdout' | 'stderr') => void;

/** What the agent's egress proxy tells a fetch phase. */
export interface FetchRequest {
  /** The argv of the fetch command (e.g. npm ci --ignore-scripts). */
  readonly command: readonly string[];
  readonly timeoutSeconds: number;
  /** Host path of the egress proxy's Unix socket, bound into the sandbox for this phase only. */
  readonly proxySocket: string;
  /** Where the fetch command's output goes as it is written. */
  readonly output?: OutputSink;
}

/** What one build run produced, apart from its outputs. */
export interface BuildResult {
  /** The build command's exit code; 0 is success. A command killed by signal N reports 128 + N. */
  readonly exitCode: number;
  readonly durationMs: number;
  /** The last bytes (at most {@link OUTPUT_TAIL_BYTES}) of the build's stdout, as UTF-8. */
  readonly stdoutTail: string;
  readonly stderrTail: string;
  /** True when the tails dropped earlier output. */
  readonly truncated: boolean;
}

/** How much of each output stream a build result keeps. */
export const OUTPUT_TAIL_BYTES = 64 * 1024;

/** One provisioned runner: used for exactly one job, then destroyed. */
export interface RunnerInstance {
  readonly id: string;
  readonly jobId: string;
  /** Host path of the job's workspace, seen as /workspace inside the sandbox. */
  readonly workspace: string;
  readonly config: ProjectConfig;
  readonly sandboxProfile: IsolationProfile;
  /**
   * Host path of the root of the image the build runs in (`/` for the host's own system), where
   * the build environment's packages are read from; absent when the image is not on this host.
   */
  readonly imageRoot?: string;
  /**
   * Run the project's build command in the sandbox, once, handing its output to `output` as it
   * is written (a backend that can only read the output at the end hands it over then).
   * Resolves with the result whatever the exit code; the caller decides what a failure means.
   * @throws GatehouseError BUILD_TIMEOUT when the wall-clock limit killed it, BUILD_FAILED when the
   *   sandbox could not start the command or build() was already called
   */
  build(output?: OutputSink): Promise<BuildResult>;
  /**
   * Run the dependency-fetch command in the same kind of sandbox, whose only way out is the
   * egress proxy's socket. Must come before build(), at most once.
   * @throws GatehouseError BUILD_TIMEOUT, BUILD_LIMIT_EXCEEDED, BUILD_FAILED as build()
   */
  fetch(request: FetchRequest): Promise<BuildResult>;
  /** Kill anything still running and remove the workspace. Idempotent; never throws on a missing dir. */
  destroy(): Promise<void>;
}

/** What a runner backend needs to provision a runner for one job. */
export interface ProvisionSpec {
  readonly jobId: string;
  /** The pinned source checkout; copied, never mounted, so the build cannot change it. */
  readonly sourceDir: string;
  readonly config: ProjectConfig;
}

/** A backend that provisions one fresh, isolated runner per job (bubblewrap, Kubernetes Jobs). */
export interface Runner {
  /**
   * Create a fresh workspace holding a copy of the source, and describe its sandbox.
   * @throws GatehouseError SANDBOX_UNAVAILABLE, BAD_INPUT
   */
  provision(spec: ProvisionSpec): Promise<RunnerInstance>;
  /**
   * Remove what runners of processes that died without cleaning up left behind (workspaces and
   * their mounts). @returns what it removed
   */
  sweep(): Promise<string[]>;
}
