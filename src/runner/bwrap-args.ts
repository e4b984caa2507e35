import { GatehouseError } from '../common/errors.ts';
import { etcFilePath } from './job-directory.ts';
import type { SandboxMount, SandboxProfile } from './runner.ts';
import { FORWARDER_PORT } from './sandbox-profile.ts';

/** Where the fetch phase finds the forwarder, inside the sandbox. */
const FORWARDER = '/run/gatehouse/egress-forwarder.mjs';
/** The image's node, which runs the forwarder in the fetch phase. */
const SANDBOX_NODE = '/usr/bin/node';

/** The fd bubblewrap reads the seccomp program from (stdio slot 4 of the spawned process). */
export const SECCOMP_FD = 4;

/** What differs between the fetch and the build phase of one runner. */
export interface Phase {
  readonly name: 'fetch' | 'build';
  readonly command: readonly string[];
  readonly timeoutSeconds: number;
  /** Fetch only: host path of the egress proxy socket and of the forwarder file. */
  readonly egress?: { readonly socket: string; readonly forwarder: string };
}

/**
 * The bwrap argv for a profile. Generated from the profile, never alongside it, so that what is
 * measured is what runs.
 */
export function bwrapArgs(
  profile: SandboxProfile,
  workspace: string,
  etcDir: string,
  phase: Phase,
): string[] {
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
  for (const m of profile.mounts) args.push(...mountArgs(m, profile, workspace, etcDir, phase));
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

/** The bwrap arguments of one mount of the profile, in the order bwrap applies them. */
function mountArgs(
  m: SandboxMount,
  profile: SandboxProfile,
  workspace: string,
  etcDir: string,
  phase: Phase,
): string[] {
  const args: string[] = [];
  switch (m.kind) {
    case 'ro-bind':
      args.push('--ro-bind', m.source, m.dest);
      break;
    case 'symlink':
      args.push('--symlink', m.target, m.dest);
      break;
    case 'file':
      args.push('--ro-bind', etcFilePath(etcDir, m.dest), m.dest);
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
  return args;
}
