import { BubblewrapRunner } from './bubblewrap-runner.ts';
import { defaultImageCacheDir, HostSystemImage } from './image.ts';
import { DEFAULT_LIMITS, type RunnerLimits } from './limits.ts';

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
    | undefined;
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
export function bubblewrapRunnerFromConfig(config: BubblewrapRunnerConfig): BubblewrapRunner {
  const image = config.image ?? { kind: 'host-system' };
  return new BubblewrapRunner({
    limits: limitsFromConfig(config.limits),
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
