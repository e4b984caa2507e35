/** Repositories, keys and protections for the source tests (test support, not product code). */
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import type { SourceProtectionRecord } from '../store/store.ts';

/** The gatehouse.yaml the source tests commit: `sh build.sh`, one output. */
export const BUILD_CONFIG = 'project: app\nbuild:\n  command: ["sh", "build.sh"]\noutputs: [out.tar]\n';

/** A protection demanding one independent approval of the exact commit and a trusted signature. */
export function reviewedAndSigned(
  change: Partial<SourceProtectionRecord['rule']> = {},
): SourceProtectionRecord['rule'] {
  return {
    minApprovals: 1,
    staleApprovals: false,
    forbidSelfApproval: true,
    signedCommits: true,
    buildConfigUnchanged: false,
    ...change,
  };
}

/** A new Ed25519 SSH key pair without a passphrase at `path` (and `path`.pub); returns `path`. */
export function sshKeyPair(path: string, comment?: string): string {
  execFileSync('ssh-keygen', [
    '-q',
    '-t',
    'ed25519',
    '-N',
    '',
    ...(comment === undefined ? [] : ['-C', comment]),
    '-f',
    path,
  ]);
  return path;
}

/** A new git repository at `dir` on branch main, committing as `author`, without signing. */
export function initRepo(dir: string, author: { name: string; email: string }): string {
  mkdirSync(dir, { recursive: true });
  const git = (...args: string[]) => execFileSync('git', ['-C', dir, ...args]);
  git('init', '-q', '-b', 'main');
  git('config', 'user.name', author.name);
  git('config', 'user.email', author.email);
  git('config', 'commit.gpgsign', 'false');
  return dir;
}
