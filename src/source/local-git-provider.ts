import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { sha256Hex } from '../common/encoding.ts';
import type { SourceFacts, SourceProvider } from './source-provider.ts';

const run = promisify(execFile);

async function git(dir: string, args: string[]): Promise<string | undefined> {
  try {
    const { stdout } = await run('git', ['-C', dir, ...args], {
      encoding: 'utf8',
      // Never let the repository's own config run programs (fsmonitor, pagers) while we inspect it.
      env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_TERMINAL_PROMPT: '0', GIT_OPTIONAL_LOCKS: '0' },
    });
    return stdout.trim();
  } catch {
    return undefined;
  }
}

/** The digest of a file list, independent of the order the files were read in. */
export function treeDigest(files: { path: string; sha256: string }[]): string {
  const lines = files
    .map((f) => `${f.sha256}  ${f.path}\n`)
    .sort()
    .join('');
  return sha256Hex(lines);
}

/**
 * The embedded source provider: reads a local directory, and its git metadata where it is a git
 * work tree. Branch protection and review checks come with the source-origin stage.
 */
export class LocalGitProvider implements SourceProvider {
  async describe(dir: string, files: { path: string; sha256: string }[]): Promise<SourceFacts> {
    const abs = resolve(dir);
    const digest = treeDigest(files);
    const inside = await git(abs, ['-c', 'core.fsmonitor=false', 'rev-parse', '--is-inside-work-tree']);
    if (inside !== 'true')
      return { kind: 'directory', uri: `file://${abs}`, dirty: false, treeDigest: digest };
    const commit = await git(abs, ['rev-parse', '--verify', 'HEAD']);
    const ref = await git(abs, ['symbolic-ref', '-q', 'HEAD']);
    const origin = await git(abs, ['remote', 'get-url', 'origin']);
    const status = await git(abs, ['-c', 'core.fsmonitor=false', 'status', '--porcelain', '--', '.']);
    const facts: SourceFacts = {
      kind: 'git',
      uri: origin !== undefined && origin !== '' ? origin : `file://${abs}`,
      dirty: status === undefined || status !== '',
      treeDigest: digest,
    };
    if (commit !== undefined && /^[0-9a-f]{40,64}$/.test(commit)) facts.commit = commit;
    if (ref !== undefined && ref !== '') facts.ref = ref;
    return facts;
  }
}
