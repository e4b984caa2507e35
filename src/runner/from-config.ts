import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { GatehouseError } from '../common/errors.ts';
import { BubblewrapRunner } from './bubblewrap-runner.ts';
import { DirectoryImage } from './directory-image.ts';
import { GithubRunnersApi } from './github/github-api.ts';
import { GithubJitRunner } from './github/github-jit-runner.ts';
import { type BaseImage, defaultImageCacheDir, HostSystemImage } from './image.ts';
import { inClusterAccess, type KubernetesAccess, KubernetesApi } from './kubernetes/api.ts';
import { KubernetesRunner } from './kubernetes/kubernetes-runner.ts';
import { DEFAULT_LIMITS, type RunnerLimits } from './limits.ts';
import type { ProjectConfig } from './project-config.ts';
import type { IsolationProfile, Runner } from './runner.ts';

/** The runner part of the home's config, as this folder needs it (validated by the server's schema). */
export interface BubblewrapRunnerConfig {
  readonly limits?:
    | {
        readonly cpuSeconds?: number | undefined;
        readonly memoryMiB?: number | undefined;
        readonly processes?: number | undefined;
        readonly workspaceMiB?: number | undefined;
        readonly tmpMiB?: number | undefined;
      }
    | undefined;
  readonly image?:
    | {
        readonly kind: 'host-system';
        readonly cacheDir?: string | undefined;
        readonly reverifySeconds?: number | undefined;
        readonly pinnedDigest?: string | undefined;
      }
    | { readonly kind: 'unmeasured' }
    | { readonly kind: 'directory'; readonly digest: string; readonly imagesDir?: string | undefined }
    | undefined;
}

/** The Kubernetes runner part of the home's config (validated by the home's schema). */
export interface KubernetesRunnerConfig {
  readonly namespace: string;
  readonly image: string;
  readonly node?: string | undefined;
  readonly workspaceRoot: string;
  readonly apiServer?: string | undefined;
  readonly tokenFile?: string | undefined;
  readonly caFile?: string | undefined;
  readonly seccompProfile?: string | undefined;
  readonly limits?: BubblewrapRunnerConfig['limits'];
}

/** The GitHub just-in-time runner part of the home's config (validated by the home's schema). */
export interface GithubJitRunnerConfig {
  readonly repository: string;
  readonly apiUrl?: string | undefined;
  readonly tokenFile: string;
  readonly runnerGroupId: number;
  readonly labels: readonly string[];
  readonly launcher: readonly string[];
  readonly workflow?: { readonly file: string; readonly ref: string } | undefined;
  readonly workspaceRoot: string;
  readonly namePrefix?: string | undefined;
  readonly bootSeconds?: number | undefined;
  readonly limits?: BubblewrapRunnerConfig['limits'];
}

/** A runner that can say, before any job, how it isolates one: what reference values measure. */
export type MeasurableRunner = Runner & {
  profileFor(config: ProjectConfig): IsolationProfile | Promise<IsolationProfile>;
};

/** The runner a home's config describes, of either kind. */
export function runnerFromConfig(
  config:
    | ({ kind: 'bubblewrap' } & BubblewrapRunnerConfig)
    | ({ kind: 'kubernetes' } & KubernetesRunnerConfig)
    | ({ kind: 'github-jit' } & GithubJitRunnerConfig),
  homeDir?: string,
): MeasurableRunner {
  switch (config.kind) {
    case 'kubernetes':
      return kubernetesRunnerFromConfig(config);
    case 'github-jit':
      return githubJitRunnerFromConfig(config);
    case 'bubblewrap':
      return bubblewrapRunnerFromConfig(config, homeDir);
  }
}

/**
 * The GitHub just-in-time runner a config describes, with its token read from a file only its
 * owner may read.
 * @throws GatehouseError BAD_CONFIG when the token file is missing, empty or readable by others
 */
export function githubJitRunnerFromConfig(config: GithubJitRunnerConfig): GithubJitRunner {
  let token: string;
  try {
    if ((statSync(config.tokenFile).mode & 0o077) !== 0)
      throw new GatehouseError('BAD_CONFIG', 'the GitHub token file is readable by others: chmod 600 it', {
        where: config.tokenFile,
      });
    token = readFileSync(config.tokenFile, 'utf8').trim();
  } catch (cause) {
    if (cause instanceof GatehouseError) throw cause;
    throw new GatehouseError('BAD_CONFIG', 'the GitHub token file cannot be read', {
      where: config.tokenFile,
      cause,
    });
  }
  return new GithubJitRunner({
    api: new GithubRunnersApi({
      apiUrl: config.apiUrl ?? 'https://api.github.com',
      repository: config.repository,
      token,
    }),
    runnerGroupId: config.runnerGroupId,
    labels: config.labels,
    launcher: config.launcher,
    workspaceRoot: config.workspaceRoot,
    limits: limitsFromConfig(config.limits),
    ...(config.workflow === undefined ? {} : { workflow: { ...config.workflow } }),
    ...(config.namePrefix === undefined ? {} : { namePrefix: config.namePrefix }),
    ...(config.bootSeconds === undefined ? {} : { bootSeconds: config.bootSeconds }),
  });
}

/**
 * The Kubernetes Job runner a config describes: the API server and credentials given, or the
 * Pod's own service account.
 * @throws GatehouseError BAD_CONFIG when the node, the token or the CA cannot be found
 */
export function kubernetesRunnerFromConfig(config: KubernetesRunnerConfig): KubernetesRunner {
  const node = config.node ?? process.env.NODE_NAME;
  if (node === undefined || node === '')
    throw new GatehouseError(
      'BAD_CONFIG',
      'the Kubernetes runner needs its node: runner.node or $NODE_NAME (downward API)',
    );
  let access: KubernetesAccess;
  if (config.apiServer === undefined) access = inClusterAccess(config.namespace);
  else {
    const read = (file: string | undefined, what: string): string | undefined => {
      if (file === undefined) return undefined;
      try {
        return readFileSync(file, 'utf8').trim();
      } catch (cause) {
        throw new GatehouseError('BAD_CONFIG', `the Kubernetes ${what} cannot be read`, {
          where: file,
          cause,
        });
      }
    };
    const token = read(config.tokenFile, 'token');
    if (token === undefined)
      throw new GatehouseError('BAD_CONFIG', 'runner.tokenFile is needed with runner.apiServer');
    const ca = read(config.caFile, 'CA');
    access = {
      server: config.apiServer,
      token,
      namespace: config.namespace,
      ...(ca === undefined ? {} : { ca }),
    };
  }
  return new KubernetesRunner({
    api: new KubernetesApi(access),
    image: config.image,
    node,
    workspaceRoot: config.workspaceRoot,
    limits: limitsFromConfig(config.limits),
    ...(config.seccompProfile === undefined
      ? {}
      : { seccomp: { type: 'Localhost' as const, localhostProfile: config.seccompProfile } }),
  });
}

/** Resolve configured limits over the defaults. */
export function limitsFromConfig(limits: BubblewrapRunnerConfig['limits']): RunnerLimits {
  const MiB = 1024 ** 2;
  return Object.freeze({
    cpuSeconds: limits?.cpuSeconds ?? DEFAULT_LIMITS.cpuSeconds,
    memoryBytes: limits?.memoryMiB === undefined ? DEFAULT_LIMITS.memoryBytes : limits.memoryMiB * MiB,
    processes: limits?.processes ?? DEFAULT_LIMITS.processes,
    workspaceBytes:
      limits?.workspaceMiB === undefined ? DEFAULT_LIMITS.workspaceBytes : limits.workspaceMiB * MiB,
    tmpBytes: limits?.tmpMiB === undefined ? DEFAULT_LIMITS.tmpBytes : limits.tmpMiB * MiB,
  });
}

/**
 * The bubblewrap runner a home's config describes: its limits and its verified base image. The
 * host-system image (the default) is measured once into a cache shared by all homes here.
 */
export function bubblewrapRunnerFromConfig(
  config: BubblewrapRunnerConfig,
  homeDir?: string,
): BubblewrapRunner {
  const image = config.image ?? { kind: 'host-system' };
  return new BubblewrapRunner({
    limits: limitsFromConfig(config.limits),
    ...(image.kind === 'directory' ? { image: directoryImage(image, homeDir) } : {}),
    ...(image.kind === 'host-system'
      ? {
          image: new HostSystemImage({
            cacheDir: image.cacheDir ?? defaultImageCacheDir(),
            ...(image.reverifySeconds === undefined ? {} : { reverifySeconds: image.reverifySeconds }),
            ...(image.pinnedDigest === undefined ? {} : { pinnedDigest: image.pinnedDigest }),
          }),
        }
      : {}),
  });
}

/** The images directory of a home: where `gatehouse image build|import` store images. */
export function homeImagesDir(homeDir: string): string {
  return join(homeDir, 'images');
}

/**
 * A directory image by digest; without an images directory (neither configured nor a home given)
 * every verify() refuses, so that a runner never falls back to another image.
 */
function directoryImage(
  image: { readonly digest: string; readonly imagesDir?: string | undefined },
  homeDir: string | undefined,
): BaseImage {
  const imagesDir = image.imagesDir ?? (homeDir === undefined ? undefined : homeImagesDir(homeDir));
  if (imagesDir === undefined) {
    return {
      verify: () =>
        Promise.reject(
          new GatehouseError(
            'IMAGE_UNVERIFIED',
            `image ${image.digest} cannot be found: no images directory is configured (runner.image.imagesDir)`,
          ),
        ),
    };
  }
  return new DirectoryImage({ imagesDir, digest: image.digest });
}
