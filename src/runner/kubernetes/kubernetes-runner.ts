/**
 * A runner backend that builds in a Kubernetes Job: one Job and one Pod per gatehouse job, on the
 * node of the agent that provisions it (a DaemonSet holding the node's TPM and vTPM pool, which
 * attests the runner as on any host), with the job's workspace from that node and a NetworkPolicy
 * that cuts the Pod off. The Job is created when the build starts, polled until it ends, its log
 * and exit code read, and deleted with its Pod and policy when the runner is destroyed.
 */
import { randomUUID } from 'node:crypto';
import { chown, readdir, stat } from 'node:fs/promises';
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
import type { ProjectConfig } from '../project-config.ts';
import {
  type BuildResult,
  type FetchRequest,
  OUTPUT_TAIL_BYTES,
  type OutputSink,
  type PodProfile,
  type ProvisionSpec,
  type Runner,
  type RunnerInstance,
} from '../runner.ts';
import { apiError, type KubernetesApi } from './api.ts';
import { BUILD_UID, jobManifest, networkPolicyManifest, type PodPlan, podTemplate } from './job-manifest.ts';

export interface KubernetesRunnerOptions {
  api: KubernetesApi;
  /** The build image, pinned: `registry/repo@sha256:<hex>`. */
  image: string;
  /** This agent's node (the Pod runs there, where the workspace is). */
  node: string;
  /** Node-local directory for job workspaces; the same path on the node and in the agent's Pod. */
  workspaceRoot: string;
  limits: RunnerLimits;
  seccomp?: PodPlan['seccomp'];
  /** How often the Job is polled while it runs (default 500 ms). */
  pollMs?: number;
  /** Grace after the deadline before the runner gives the Job up (default 30 s: the kubelet's). */
  graceSeconds?: number;
}

type Settings = Required<Omit<KubernetesRunnerOptions, 'seccomp'>> & { seccomp: PodPlan['seccomp'] };

const IMAGE_REF = /^[a-z0-9][a-z0-9._/:-]*@sha256:[0-9a-f]{64}$/;

export class KubernetesRunner implements Runner {
  readonly #o: Settings;

  constructor(options: KubernetesRunnerOptions) {
    if (!IMAGE_REF.test(options.image))
      throw new GatehouseError(
        'BAD_CONFIG',
        `the build image '${options.image}' must be pinned by digest (repo@sha256:…)`,
      );
    this.#o = {
      pollMs: 500,
      graceSeconds: 30,
      seccomp: { type: 'RuntimeDefault' },
      ...options,
    };
  }

  /** The isolation every job of this runner gets, as measured (nothing per job in it). */
  profileFor(config: ProjectConfig): PodProfile {
    const o = this.#o;
    return Object.freeze({
      version: 1,
      backend: 'kubernetes-job',
      pod: podTemplate({
        image: o.image,
        node: o.node,
        limits: o.limits,
        seccomp: o.seccomp,
        timeoutSeconds: config.build.timeoutSeconds,
      }),
      image: { kind: 'oci', reference: o.image },
      limits: o.limits,
      env: { ...config.build.env },
      cwd: '/workspace',
      command: [...config.build.command],
    } satisfies PodProfile);
  }

  /** Remove workspaces of jobs whose agent died; their Jobs expire (ttlSecondsAfterFinished). */
  sweep(): Promise<string[]> {
    return sweepJobDirectories(this.#o.workspaceRoot);
  }

  async provision(spec: ProvisionSpec): Promise<RunnerInstance & { readonly sandboxProfile: PodProfile }> {
    const source = await stat(spec.sourceDir).catch(() => undefined);
    if (source?.isDirectory() !== true)
      throw new GatehouseError('BAD_INPUT', `source ${spec.sourceDir} is not a directory`);
    return createJobDirectory(
      this.#o.workspaceRoot,
      spec.jobId,
      this.#o.limits.workspaceBytes,
      async (dir) => {
        await copySource(spec.sourceDir, dir.workspace);
        // The Pod runs as the build user: the workspace is its, and nothing else on the node.
        await chownTree(dir.workspace, BUILD_UID);
        return new KubernetesInstance(this.#o, spec, dir, this.profileFor(spec.config));
      },
    );
  }
}

async function chownTree(path: string, uid: number): Promise<void> {
  await chown(path, uid, uid);
  for (const e of await readdir(path, { withFileTypes: true })) {
    const p = join(path, e.name);
    if (e.isDirectory()) await chownTree(p, uid);
    else if (e.isFile()) await chown(p, uid, uid);
  }
}

interface JobStatus {
  active?: number;
  succeeded?: number;
  failed?: number;
  conditions?: { type?: string; status?: string; reason?: string; message?: string }[];
}

interface PodList {
  items?: {
    metadata?: { name?: string };
    status?: {
      phase?: string;
      containerStatuses?: {
        name?: string;
        state?: {
          terminated?: { exitCode?: number; reason?: string; signal?: number };
          waiting?: { reason?: string; message?: string };
        };
      }[];
    };
  }[];
}

class KubernetesInstance implements RunnerInstance {
  readonly id = `k8s-${randomUUID()}`;
  readonly jobId: string;
  readonly workspace: string;
  readonly config: ProjectConfig;
  readonly sandboxProfile: PodProfile;
  readonly #o: Settings;
  readonly #dir: JobDirectory;
  readonly #name: string;
  #state: 'ready' | 'building' | 'built' | 'destroyed' = 'ready';
  #created = false;

  constructor(o: Settings, spec: ProvisionSpec, dir: JobDirectory, profile: PodProfile) {
    this.#o = o;
    this.jobId = spec.jobId;
    this.workspace = dir.workspace;
    this.config = spec.config;
    this.sandboxProfile = profile;
    this.#dir = dir;
    // Kubernetes names: DNS labels of at most 63 characters.
    this.#name = `gh-${spec.jobId
      .toLowerCase()
      .replace(/[^a-z0-9-]/g, '-')
      .slice(0, 40)
      .replace(/-+$/, '')}-${randomUUID().slice(0, 8)}`;
  }

  fetch(_request: FetchRequest): Promise<BuildResult> {
    return Promise.reject(
      new GatehouseError(
        'FETCH_FAILED',
        'the Kubernetes runner has no fetch phase: vendor dependencies or build on a bubblewrap host',
        {
          where: this.jobId,
        },
      ),
    );
  }

  async build(output?: OutputSink): Promise<BuildResult> {
    if (this.#state !== 'ready')
      throw new GatehouseError('BUILD_FAILED', `runner ${this.id} cannot build: it is ${this.#state}`, {
        where: this.jobId,
      });
    this.#state = 'building';
    const api = this.#o.api;
    const t0 = performance.now();
    const timeout = this.config.build.timeoutSeconds;
    const plan: PodPlan = {
      name: this.#name,
      jobId: this.jobId,
      image: this.#o.image,
      command: this.config.build.command,
      env: this.config.build.env,
      timeoutSeconds: timeout,
      limits: this.#o.limits,
      node: this.#o.node,
      workspaceHostPath: this.workspace,
      seccomp: this.#o.seccomp,
    };
    // The policy first: the Pod never exists without it.
    await api.expect('POST', api.networkPoliciesPath(), networkPolicyManifest(plan));
    this.#created = true;
    await api.expect('POST', api.jobsPath(), jobManifest(plan));
    const deadline = Date.now() + (timeout + this.#o.graceSeconds) * 1000;
    let status: JobStatus = {};
    for (;;) {
      const answer = await api.expect('GET', api.jobsPath(this.#name));
      status = ((answer.body as { status?: JobStatus }).status ?? {}) as JobStatus;
      if ((status.succeeded ?? 0) > 0 || (status.failed ?? 0) > 0 || finished(status) !== undefined) break;
      if (Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, this.#o.pollMs));
    }
    this.#state = 'built';
    const durationMs = Math.round(performance.now() - t0);
    const ended = finished(status);
    const pod = await this.#pod();
    const container = pod?.status?.containerStatuses?.find((c) => c.name === 'build');
    const waiting = container?.state?.waiting;
    // A Pod still waiting at the end never ran: its image, its volume or the node refused it.
    if (waiting !== undefined && (status.succeeded ?? 0) === 0)
      throw new GatehouseError(
        'BUILD_FAILED',
        `the build Pod never started: ${waiting.reason ?? 'waiting'}${waiting.message === undefined ? '' : ` (${waiting.message})`}`,
        { where: this.jobId },
      );
    if (
      ended?.reason === 'DeadlineExceeded' ||
      (ended === undefined && (status.succeeded ?? 0) === 0 && (status.failed ?? 0) === 0)
    )
      throw new GatehouseError('BUILD_TIMEOUT', `the build ran past its ${timeout} s limit and was stopped`, {
        where: this.jobId,
      });
    const terminated = container?.state?.terminated;
    if (terminated?.exitCode === undefined)
      throw new GatehouseError(
        'BUILD_FAILED',
        `the build Pod ended without an exit code (${ended?.reason ?? pod?.status?.phase ?? 'no Pod'})`,
        {
          where: this.jobId,
        },
      );
    const log = pod?.metadata?.name === undefined ? '' : await this.#log(pod.metadata.name);
    // The API server gives the container's log only now, in one piece (stdout and stderr merged).
    if (log !== '') output?.(Buffer.from(log), 'stdout');
    return {
      exitCode: terminated.exitCode,
      durationMs,
      stdoutTail: log.slice(-OUTPUT_TAIL_BYTES),
      stderrTail: '',
      truncated: log.length > OUTPUT_TAIL_BYTES,
    };
  }

  async #pod(): Promise<NonNullable<PodList['items']>[number] | undefined> {
    const api = this.#o.api;
    const q = new URLSearchParams({ labelSelector: `job-name=${this.#name}` });
    const list = (await api.expect('GET', `${api.podsPath()}?${q}`)).body as PodList;
    return list.items?.[0];
  }

  async #log(pod: string): Promise<string> {
    const api = this.#o.api;
    // Enough for the agent's bounded build log (BUILD_LOG_MAX_BYTES) with room to mark the cut.
    const q = new URLSearchParams({ container: 'build', limitBytes: String(2 * 1024 * 1024) });
    const answer = await api.call('GET', `${api.podsPath(pod)}/log?${q}`);
    return answer.status === 200 ? answer.text : '';
  }

  async destroy(): Promise<void> {
    if (this.#state === 'destroyed') return;
    this.#state = 'destroyed';
    if (this.#created) {
      const api = this.#o.api;
      // Background propagation deletes the Pod too; a Job or policy already gone is fine.
      const q = new URLSearchParams({ propagationPolicy: 'Background' });
      for (const path of [`${api.jobsPath(this.#name)}?${q}`, api.networkPoliciesPath(this.#name)]) {
        const answer = await api.call('DELETE', path);
        if (answer.status !== 404 && (answer.status < 200 || answer.status >= 300))
          throw apiError('DELETE', path, answer);
      }
    }
    await removeJobDirectory(this.#dir);
  }
}

/** The Job's terminal condition, if it has one. */
function finished(status: JobStatus): { type: string; reason?: string } | undefined {
  const c = status.conditions?.find(
    (x) => (x.type === 'Complete' || x.type === 'Failed') && x.status === 'True',
  );
  return c?.type === undefined
    ? undefined
    : { type: c.type, ...(c.reason === undefined ? {} : { reason: c.reason }) };
}
