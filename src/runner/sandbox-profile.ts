import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deepFreeze, sha256Hex } from '../common/encoding.ts';
import { type HostLayout, ROOT_DIRS } from './host-layout.ts';
import { DEFAULT_LIMITS, type RunnerLimits } from './limits.ts';
import type { ProjectConfig } from './project-config.ts';
import type { ImageRef, SandboxMount, SandboxProfile } from './runner.ts';
import { buildSeccompFilter } from './seccomp.ts';

const SANDBOX_UID = 1000;
const SANDBOX_GID = 1000;
const WORKSPACE = '/workspace';
const SANDBOX_PATH = '/usr/bin:/bin';
/** Where the fetch phase finds the egress proxy's socket, inside the sandbox. */
const PROXY_SOCKET = '/run/gatehouse/egress.sock';
/** The port the forwarder listens on inside the fetch phase's sandbox. */
export const FORWARDER_PORT = 3128;
const forwarderPath = join(dirname(fileURLToPath(import.meta.url)), 'egress-forwarder.mjs');
/** The egress forwarder the fetch phase runs: measured into the profile, copied into the job. */
export const forwarderText = readFileSync(forwarderPath);

/**
 * The sandbox's /etc. The host's /etc is not mounted: it names host users and hosts, and holds
 * resolver, TLS and machine identity files a build has no business reading. A build needs only
 * enough for `id`, `whoami` and `localhost` to work.
 */
export const ETC_FILES: Readonly<Record<string, string>> = {
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
  const mounts = profileMounts(layout, hardening.imageRoot ?? '/', limits);
  const env = sandboxEnv(config);
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

/** The sandbox's file system, in mount order, with the system directories taken from `root`. */
function profileMounts(layout: HostLayout, root: string, limits: RunnerLimits): SandboxMount[] {
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
  return mounts;
}

/** The build's whole environment: the project's variables, then the sandbox's PATH and HOME. */
function sandboxEnv(config: ProjectConfig): Record<string, string> {
  // Sorted so that the profile (and its digest) does not depend on the order keys were written in.
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...config.build.env, PATH: SANDBOX_PATH, HOME: WORKSPACE }).sort(
    ([a], [b]) => (a < b ? -1 : a > b ? 1 : 0),
  )) {
    env[k] = v;
  }
  return env;
}
