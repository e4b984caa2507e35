import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { measureBaseline } from '../attestation/measurement.ts';
import { generateRunnerKey, signSubmission } from '../attestation/token.ts';
import { canonicalJson, sha256Hex } from '../common/encoding.ts';
import { describeError, GatehouseError } from '../common/errors.ts';
import type { ControlPlane } from '../control-plane/control-plane.ts';
import type { GateResult, Submission } from '../gate/submission.ts';
import { BuildLog } from '../runner/build-log.ts';
import { defaultImageCacheDir } from '../runner/image.ts';
import { PROJECT_CONFIG_FILE, parseProjectConfig } from '../runner/project-config.ts';
import type { ImageRef, IsolationProfile, Runner, RunnerInstance } from '../runner/runner.ts';
import { catalogWorkspace } from '../sbom/catalog.ts';
import { writeCycloneDx } from '../sbom/cyclonedx.ts';
import { environmentSbom } from '../sbom/environment.ts';
import type { Component } from '../sbom/model.ts';
import { configAtCommit, pinSource } from '../source/pinned-checkout.ts';
import type { SourceDescriber } from '../source/source-provider.ts';
import type { JobStep } from '../store/store.ts';
import { type Attester, needsReattestation } from './attester.ts';
import { JobCredentials, type RunnerHost } from './credentials.ts';
import { explainReferenceDrift } from './drift.ts';
import { fetchDependencies, lastLineOf } from './fetch.ts';
import { type CollectedImage, collectImage } from './image-output.ts';
import { agentFiles } from './launcher.ts';
import { type CollectedOutput, collectOutputs } from './outputs.ts';

const srcRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The agent's files (measured by the launcher, src/agent/launcher.ts, not by the agent). */
export { agentFiles } from './launcher.ts';

/**
 * The part of a sandbox profile that says how a build is isolated, without what it runs (command,
 * environment, working directory: the developer's choices). This part is measured and appraised
 * against reference values; the whole profile's digest goes into the provenance.
 */
export function isolationProfile<P extends IsolationProfile>(profile: P): P {
  return { ...profile, command: [], env: {}, cwd: '' };
}

export interface AgentOptions {
  runner: Runner;
  controlPlane: ControlPlane;
  /** The enrolled runner host this agent runs on: its requests are signed with the host's key. */
  host: RunnerHost;
  source: SourceDescriber;
  /** Called as each lifecycle step ends, e.g. to print progress. */
  onStep?: (step: JobStep) => void;
  /** Overrides the project name from gatehouse.yaml. */
  project?: string;
  /**
   * Makes a fresh attester for each job: a `VtpmAttester` (a vTPM per runner, quoted) or a
   * `SoftwareAttester` (the baseline alone, which a TPM control plane refuses).
   */
  attester: () => Attester;
  /** Re-attest before the gate when the token has less than this left (seconds; default 60). */
  reattestMarginSeconds?: number;
  /**
   * The CI platform's identity token, when the agent runs inside a CI job (GitHub Actions,
   * GitLab CI): sent with every attestation, so that the token the runner earns names the CI job.
   */
  ciToken?: () => Promise<string>;
  /** Build this commit of the git repository at `dir` rather than its work tree. */
  commit?: string;
  /** Copy the outputs of an allowed build here (by file name), before the runner is destroyed. */
  outDir?: string;
  /**
   * Cancels the job: the sandbox is killed at once, no further step runs, the runner and its vTPM
   * are destroyed and the control plane records the job as cancelled.
   */
  signal?: AbortSignal;
  /**
   * Where the build environment's SBOM is kept between jobs, by the digest of the package
   * databases it was read from (the runner host's home); absent, it is made for every job.
   */
  environmentCache?: string;
  /**
   * The home whose security role publishes reference values, named in the command a refusal for
   * drifted measurements suggests (embedded runs; absent, the command names no home).
   */
  referenceHome?: string;
  /** Where the host-system image's measurements are cached (default: the machine's cache). */
  imageCacheDir?: string;
  /**
   * The build's output (fetch and build phases, stdout and stderr as they arrive), masked, as it
   * can be shown: for a live view. The log kept with the job is bounded; this is not.
   */
  onOutput?: (masked: Buffer) => void;
  /**
   * Secret values to mask in the build's output besides the job's own credentials (its
   * attestation tokens, always masked), e.g. tokens the caller holds.
   */
  secrets?: readonly string[];
  /** The runner host's image store (`gatehouse image import`), where an image's `base: {store}` is. */
  imagesDir?: string;
}

/** The job's build log, as the agent handed it over (or, if that failed, as it captured it). */
export interface JobLog {
  /** SHA-256 hex of the log as the control plane kept it (the provenance's `build.log`). */
  sha256: string;
  size: number;
  truncated: boolean;
  /** Whether the control plane kept it; false: the digest is of the agent's own copy. */
  stored: boolean;
  /** The last lines of the log (at most 40), as shown for a failed build. */
  lastLines: string[];
}

/** The verified image a profile names, for explaining a refusal (absent for remote backends). */
function imageOf(profile: IsolationProfile | undefined): { image?: ImageRef } {
  const image = profile !== undefined && 'image' in profile ? profile.image : undefined;
  return image !== undefined && 'digest' in image ? { image } : {};
}

/** How one job ended. */
export interface JobOutcome {
  jobId: string;
  project: string;
  steps: JobStep[];
  /** The gate's answer, when the job reached the gate. */
  result?: GateResult;
  /** Why the job failed before reaching a decision. */
  failure?: { code: string; message: string; explanation?: string[] };
  /** The outputs the agent collected and submitted, as it digested them. */
  outputs?: { name: string; sha256: string; size: number }[];
  /** The build log, once the fetch or build phase ran. */
  log?: JobLog;
}

/**
 * The runner agent: runs one job end to end in a fresh runner, then destroys the runner and
 * revokes its credentials whatever happened. The agent, not the build, measures the runner,
 * digests the outputs and catalogues the SBOM; the build never holds the runner key or token.
 * @throws GatehouseError BAD_PROJECT_CONFIG before any job is opened
 */
export async function runJob(dir: string, options: AgentOptions): Promise<JobOutcome> {
  const sourceDir = resolve(dir);
  const configPath = join(sourceDir, PROJECT_CONFIG_FILE);
  // A clean git work tree is built from exactly its HEAD commit, or from `options.commit` when
  // given (see src/source/pinned-checkout.ts).
  const checkout = await pinSource(sourceDir, options.commit);
  let configText: string;
  try {
    const atCommit = options.commit === undefined ? undefined : await configAtCommit(sourceDir, checkout);
    if (options.commit !== undefined && atCommit === undefined) {
      throw new Error(`no ${PROJECT_CONFIG_FILE} in commit ${options.commit}`);
    }
    configText = atCommit ?? (await readFile(configPath, 'utf8'));
  } catch (e) {
    throw new GatehouseError('BAD_PROJECT_CONFIG', `cannot read ${PROJECT_CONFIG_FILE}`, {
      where: configPath,
      cause: e,
    });
  }
  const config = parseProjectConfig(configText, configPath);
  const project = options.project ?? config.project;
  const cp = options.controlPlane;
  const steps: JobStep[] = [];

  const signal = options.signal;
  const cancelled = (): GatehouseError => new GatehouseError('CANCELLED', 'the job was cancelled');
  async function step<T>(name: string, fn: () => Promise<T>, detail?: (v: T) => string): Promise<T> {
    // A cancelled job takes no further step (the cleanup steps, destroy and revoke, excepted).
    if (signal?.aborted === true && name !== 'destroy' && name !== 'revoke') throw cancelled();
    const startedAt = new Date();
    const t0 = performance.now();
    try {
      const v = await fn();
      const s: JobStep = {
        name,
        startedAt: startedAt.toISOString(),
        durationMs: Math.round(performance.now() - t0),
        ok: true,
      };
      const d = detail?.(v);
      if (d !== undefined) s.detail = d;
      steps.push(s);
      options.onStep?.(s);
      return v;
    } catch (e) {
      const s: JobStep = {
        name,
        startedAt: startedAt.toISOString(),
        durationMs: Math.round(performance.now() - t0),
        ok: false,
        detail: describeError(e),
      };
      steps.push(s);
      options.onStep?.(s);
      throw e;
    }
  }

  // The job key: made here, never seen by the build, bound to the job by its first attestation.
  const key = await generateRunnerKey();
  const credentials = new JobCredentials(options.host, cp, key);
  const created = { project };
  const ticket = await cp.createJob(created, await credentials.host('create', undefined, created));
  const outcome: JobOutcome = { jobId: ticket.jobId, project, steps };
  const attester = options.attester();
  const endpoints = credentials.endpoints(ticket.jobId);
  const ci = options.ciToken === undefined ? {} : { ciToken: options.ciToken };
  let instance: RunnerInstance | undefined;
  let token: string | undefined;
  // The build's output, read by the runner from the sandbox's pipes (never reported by the build),
  // masked before anything of it is shown or kept, bounded, and handed over once.
  const buildLog = new BuildLog({
    secrets: options.secrets ?? [],
    ...(options.onOutput === undefined ? {} : { onOutput: options.onOutput }),
  });
  const sink = (chunk: Buffer): void => buildLog.write(chunk);
  let logStarted = false;
  let logSent: Promise<void> | undefined;
  const handOverLog = (): Promise<void> =>
    (logSent ??= (async () => {
      const content = buildLog.end();
      const local = {
        sha256: content.sha256,
        size: content.size,
        truncated: content.truncated,
        lastLines: buildLog.tail(),
      };
      outcome.log = { ...local, stored: false };
      const request = {
        jobId: ticket.jobId,
        sha256: content.sha256,
        size: content.size,
        truncated: content.truncated,
      };
      const kept = await cp.uploadLog(
        request,
        content.bytes,
        await credentials.job('log', ticket.jobId, request),
      );
      outcome.log = { ...local, sha256: kept.sha256, size: kept.size, stored: true };
    })());
  // Where an image output is assembled: the agent's own directory, never the build's workspace.
  let imageWork: string | undefined;
  // Stopped on purpose (SIGINT, SIGTERM): the sandbox's processes die now, whatever step is running;
  // the runner, its workspace and its vTPM are then destroyed as for any other end.
  const stopNow = (): void => {
    void instance?.destroy().catch(() => undefined);
  };
  signal?.addEventListener('abort', stopNow, { once: true });
  try {
    instance = await step('provision', () =>
      options.runner.provision({ jobId: ticket.jobId, sourceDir, config: { ...config, project } }),
    );
    const runnerInstance = instance;
    const baseline = await step('measure', async () =>
      measureBaseline({
        sandboxProfile: isolationProfile(runnerInstance.sandboxProfile),
        toolchain: ticket.toolchain,
        // No agent event: the launcher measured the agent into the vTPM before the job began
        // (src/agent/launcher.ts); the software path, self-reported, adds it itself.
        jobId: ticket.jobId,
        nonce: ticket.nonce,
      }),
    );
    const attested = await step(
      'attest',
      () => attester.attest({ jobId: ticket.jobId, baseline, runnerKey: key.publicJwk, endpoints, ...ci }),
      () => (options.ciToken === undefined ? attester.kind : `${attester.kind} + ci-oidc`),
    );
    token = attested.token;
    // The job's own credential is the first secret its log must never show.
    buildLog.addSecret(token);

    const source = await step(
      'source',
      async () =>
        (await checkout.populate(runnerInstance.workspace, configText)) ??
        options.source.describe(sourceDir, await listFiles(runnerInstance.workspace)),
      (s) =>
        s.pinned === true ? `pinned ${s.commit?.slice(0, 12)}` : s.dirty ? 'work tree with changes' : s.kind,
    );

    // The SBOM is taken from the workspace before the build runs, so the build cannot rewrite it.
    const declared = await step(
      'sbom',
      () => catalogue(runnerInstance.workspace, sourceDir, config.sbom.lockfiles, config.sbom.required),
      (c) => `${c.components.length} components`,
    );
    // The runner image's packages: one SBOM per image, referenced by digest, not listed per job.
    const environment =
      runnerInstance.imageRoot === undefined
        ? undefined
        : await environmentSbom(runnerInstance.imageRoot, options.environmentCache);

    // Dependencies come in through the agent's allowlisting egress proxy only, and are digested
    // on the way; the build that follows has no network at all.
    logStarted = true;
    const fetched = await step(
      'fetch',
      async () => {
        try {
          return await fetchDependencies(runnerInstance, ticket.egressAllow ?? [], buildLog);
        } catch (e) {
          // What is held back is let out before the step's end is shown.
          buildLog.end();
          throw e;
        }
      },
      (f) => f.summary,
    );

    const startedOn = new Date().toISOString();
    const build = await step('build', async () => {
      let r: Awaited<ReturnType<typeof runnerInstance.build>>;
      try {
        r = await runnerInstance.build(sink);
      } finally {
        buildLog.end();
      }
      if (r.exitCode !== 0) {
        // The log's last line, masked: the message is shown, and kept with the job.
        throw new GatehouseError(
          'BUILD_FAILED',
          `the build exited with code ${r.exitCode}: ${lastLineOf(buildLog)}`,
        );
      }
      return r;
    });
    const finishedOn = new Date().toISOString();
    let image: CollectedImage | undefined;
    const outputs = await step(
      'collect',
      async () => {
        if (config.image === undefined) return collectOutputs(runnerInstance, config.outputs);
        imageWork = await mkdtemp(join(tmpdir(), 'gatehouse-image-'));
        image = await collectImage({
          workspace: runnerInstance.workspace,
          image: config.image,
          workDir: imageWork,
          ...(options.imagesDir === undefined ? {} : { imagesDir: options.imagesDir }),
        });
        return [image.output];
      },
      (o) =>
        image === undefined
          ? o.map((f) => `${f.path} sha256:${f.sha256.slice(0, 12)}`).join(', ')
          : `image ${image.image.manifestDigest.slice(0, 19)} (${image.image.layers.length} layers)`,
    );
    const collectedImage = image as CollectedImage | undefined;

    outcome.outputs = outputs.map((o) => ({ name: o.path, sha256: o.sha256, size: o.size }));
    const subjects = outputs.map((o) => ({ name: o.path, sha256: o.sha256 }));
    const primary = subjects[0];
    const sbom = writeCycloneDx({
      subject: primary === undefined ? { name: project } : { name: primary.name, sha256: primary.sha256 },
      components: declared.components,
      projectPackages: declared.projects,
      ...(environment === undefined
        ? {}
        : {
            environment: {
              digest: environment.digest,
              url: `urn:gatehouse:build-environment:${environment.digest}`,
            },
          }),
    }) as unknown as Record<string, unknown>;
    const submission: Submission = {
      jobId: ticket.jobId,
      project,
      proof: { jti: randomBytes(18).toString('base64url'), iat: Math.floor(Date.now() / 1000) },
      subjects,
      sbom,
      source,
      build: {
        command: [...config.build.command],
        startedOn,
        finishedOn,
        exitCode: build.exitCode,
        sandboxProfileDigest: sha256Hex(canonicalJson(runnerInstance.sandboxProfile)),
      },
      steps: [...steps],
      ...(collectedImage === undefined
        ? {}
        : {
            image: {
              name: config.image?.name ?? project,
              archive: collectedImage.output.path,
              manifestDigest: collectedImage.image.manifestDigest,
              platform: { ...collectedImage.image.platform },
              base: { ...collectedImage.base },
            },
          }),
      ...(environment === undefined ? {} : { environment: { sbom: environment.digest } }),
      ...(fetched.fetched.length === 0
        ? {}
        : { fetched: fetched.fetched.map((f) => ({ uri: f.uri, digest: { sha256: f.digest.sha256 } })) }),
    };
    const proof = await signSubmission(submission, key.privateKey);
    // Continuous authentication: a job that outlived most of its token's life proves itself again
    // with a fresh quote before it uses the token at the gate.
    if (needsReattestation(attester, attested, new Date(), options.reattestMarginSeconds)) {
      const fresh = await step(
        'reattest',
        () => attester.attest({ jobId: ticket.jobId, baseline, runnerKey: key.publicJwk, endpoints, ...ci }),
        () => attester.kind,
      );
      token = fresh.token;
      buildLog.addSecret(fresh.token);
    }
    const result = await step(
      'gate',
      async () => {
        // The log first: the gate names the digest of what the control plane kept.
        await handOverLog();
        // Each output's bytes go to the control plane as a stream, signed for by the job key;
        // the control plane digests them itself.
        for (const o of outputs) {
          const request = { jobId: ticket.jobId, name: o.path, sha256: o.sha256, size: o.size };
          await cp.uploadOutput(request, o.file, await credentials.job('upload', ticket.jobId, request));
        }
        // The build environment's SBOM goes once: the control plane keeps it by its digest.
        if (environment !== undefined && !(await cp.environmentSbomKnown(environment.digest))) {
          const request = { jobId: ticket.jobId, digest: environment.digest };
          await cp.uploadEnvironmentSbom(
            request,
            environment.text,
            await credentials.job('environment', ticket.jobId, request),
          );
        }
        return cp.submit({ token, proof, submission });
      },
      (r) => r.outcome,
    );
    outcome.result = result;
    // Copies of an allowed build's outputs for the caller (`run --out`), before the runner goes.
    if (result.outcome === 'allow' && options.outDir !== undefined)
      await copyOutputs(outputs, options.outDir);
  } catch (e) {
    const error = signal?.aborted === true ? cancelled() : e;
    outcome.failure = {
      code: error instanceof GatehouseError ? error.code : 'INTERNAL',
      message: describeError(error),
    };
    // Measurements that are no longer reference values: say which changed, since when, and what to run.
    const explanation = await explainReferenceDrift({
      refusal: outcome.failure.message,
      ...imageOf(instance?.sandboxProfile),
      imageCacheDir: options.imageCacheDir ?? defaultImageCacheDir(),
      agentFiles,
      agentRoot: dirname(srcRoot),
      ...(options.referenceHome === undefined ? {} : { home: options.referenceHome }),
    }).catch(() => []);
    if (explanation.length > 0) outcome.failure.explanation = explanation;
    // A failed build's log is kept too (it says why); a log that cannot be handed over must not
    // hide the failure itself.
    if (logStarted && token !== undefined) await handOverLog().catch(() => undefined);
  } finally {
    signal?.removeEventListener('abort', stopNow);
    const destroyed = instance;
    // The runner and its vTPM die together: the TPM state is deleted with the workspace.
    await step('destroy', async () => {
      await Promise.all([destroyed?.destroy(), attester.destroy()]);
    }).catch(() => undefined);
    const tokenPart = token === undefined ? {} : { token };
    const ended =
      outcome.failure === undefined
        ? credentials.end(
            'finish',
            { jobId: ticket.jobId, steps: steps.slice(), ...tokenPart },
            token !== undefined,
          )
        : credentials.end(
            'fail',
            {
              jobId: ticket.jobId,
              reason: outcome.failure.message,
              ...(outcome.failure.code === 'CANCELLED' ? { cancelled: true } : {}),
              steps: steps.slice(),
              ...tokenPart,
            },
            token !== undefined,
          );
    await step('revoke', () => ended).catch(() => undefined);
    if (imageWork !== undefined) await rm(imageWork, { recursive: true, force: true });
  }
  return outcome;
}

/**
 * Components of every lockfile in the workspace copy, plus the configured ones (which may only
 * add: a decoy list cannot hide a lockfile), plus the runner image's packages as the build
 * environment; errors name the file in the source.
 */
async function catalogue(
  workspace: string,
  sourceDir: string,
  lockfiles: readonly string[],
  required: boolean,
): Promise<{ components: Component[]; projects: string[] }> {
  return catalogWorkspace(workspace, {
    displayRoot: sourceDir,
    environmentRoot: false,
    ...(required ? { extra: lockfiles } : {}),
  });
}

/** Copy outputs into `dir` by their file names, as streams. */
async function copyOutputs(outputs: readonly CollectedOutput[], dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const o of outputs)
    await pipeline(createReadStream(o.file), createWriteStream(join(dir, basename(o.path))));
}

async function listFiles(root: string): Promise<{ path: string; sha256: string }[]> {
  const out: { path: string; sha256: string }[] = [];
  async function walk(dir: string): Promise<void> {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) out.push({ path: relative(root, p), sha256: sha256Hex(await readFile(p)) });
    }
  }
  await walk(root);
  return out;
}
