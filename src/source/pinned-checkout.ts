import { lstat, mkdir, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { sha256Hex } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import { PROJECT_CONFIG_FILE } from '../runner/project-config.ts';
import { git, pinnedTreeDigest, readCommitTree, type TreeEntry } from './git.ts';
import { LocalGitProvider } from './local-git-provider.ts';
import type { SourceFacts } from './source-provider.ts';

/** A job's source, pinned to a commit when it comes from a clean git work tree. */
export interface PinnedCheckout {
  /** What the directory is; `commit` is the pinned commit when `pinned`. */
  readonly facts: SourceFacts;
  /** True when the job builds exactly `facts.commit`'s tree. */
  readonly pinned: boolean;
  /**
   * Replace the workspace's content with the pinned commit's tree, read from git objects, then
   * digest what landed on disk and compare it with the commit's tree. Returns the facts to submit,
   * or undefined when the source is not pinned (a plain directory or a work tree with changes).
   * @throws GatehouseError SOURCE_MISMATCH when the workspace is not exactly the commit's tree, or
   *   the build configuration the job was started with is not the commit's
   */
  populate(workspace: string, configText: string): Promise<SourceFacts | undefined>;
}

/**
 * Decide how a job's source is fetched: a clean git work tree is pinned to its HEAD commit (the
 * workspace gets exactly that commit's tree, never the files on disk); anything else is copied as a
 * directory and reported as such (`kind: directory`, or `dirty: true`).
 */
export async function pinSource(dir: string, requested?: string): Promise<PinnedCheckout> {
  const described = await new LocalGitProvider().describe(dir, []);
  const facts = requested === undefined ? described : await atCommit(dir, described, requested);
  const commit = facts.commit;
  const pinned = facts.kind === 'git' && !facts.dirty && commit !== undefined;
  return {
    facts,
    pinned,
    async populate(workspace, configText) {
      if (!pinned || commit === undefined) return undefined;
      const entries = await readCommitTree(dir, commit, facts.path);
      const config = entries.find((e) => e.path === PROJECT_CONFIG_FILE);
      if (config === undefined || config.content.toString('utf8') !== configText) {
        throw new GatehouseError(
          'SOURCE_MISMATCH',
          `${PROJECT_CONFIG_FILE} the job started with is not the one in commit ${commit.slice(0, 12)}`,
          { where: dir },
        );
      }
      await writeTree(workspace, entries);
      const expected = pinnedTreeDigest(entries);
      const built = pinnedTreeDigest(await digestWorkspace(workspace));
      if (built !== expected) {
        throw new GatehouseError(
          'SOURCE_MISMATCH',
          `the workspace is not the tree of commit ${commit.slice(0, 12)} (sha256 ${built.slice(0, 12)}, expected ${expected.slice(0, 12)})`,
        );
      }
      return { ...facts, pinned: true, treeDigest: expected };
    },
  };
}

/**
 * The facts for building `requested` (any commit-ish) of the repository at `dir` instead of its
 * work tree: the work tree's state no longer matters, only that the commit exists.
 * @throws GatehouseError BAD_INPUT when `dir` is not a git repository or has no such commit
 */
async function atCommit(dir: string, described: SourceFacts, requested: string): Promise<SourceFacts> {
  if (described.kind !== 'git') {
    throw new GatehouseError('BAD_INPUT', 'a commit was asked for, but this is not a git repository', {
      where: dir,
    });
  }
  // `--end-of-options` keeps a requested value starting with '-' from being read as an option.
  const resolved = /^[^\s]{1,256}$/.test(requested)
    ? (
        await git(dir, [
          'rev-parse',
          '--verify',
          '--quiet',
          '--end-of-options',
          `${requested}^{commit}`,
        ]).catch(() => '')
      ).trim()
    : '';
  if (!/^[0-9a-f]{40,64}$/.test(resolved)) {
    throw new GatehouseError('BAD_INPUT', `no commit '${requested}' in the repository`, { where: dir });
  }
  const { ref: _ref, ...rest } = described;
  // The branch checked out says nothing about another commit; the gate finds its protected refs.
  return {
    ...rest,
    commit: resolved,
    dirty: false,
    ...(described.commit === resolved && _ref !== undefined ? { ref: _ref } : {}),
  };
}

/** The project file as it is in the pinned commit (what a `--commit` job must be configured by). */
export async function configAtCommit(dir: string, checkout: PinnedCheckout): Promise<string | undefined> {
  const commit = checkout.facts.commit;
  if (!checkout.pinned || commit === undefined) return undefined;
  const entries = await readCommitTree(dir, commit, checkout.facts.path);
  return entries.find((e) => e.path === PROJECT_CONFIG_FILE)?.content.toString('utf8');
}

/** Empty `root` and write the entries into it: files with their mode, symlinks as links. */
export async function writeTree(root: string, entries: readonly TreeEntry[]): Promise<void> {
  for (const name of await readdir(root)) await rm(join(root, name), { recursive: true, force: true });
  for (const e of entries) {
    const path = join(root, e.path);
    // Entries are checked by readCommitTree; this guards the join against anything it missed.
    if (relative(root, path).startsWith('..')) throw new GatehouseError('BAD_INPUT', `unsafe path ${e.path}`);
    await mkdir(dirname(path), { recursive: true });
    if (e.kind === 'symlink') await symlink(e.content.toString('utf8'), path);
    else await writeFile(path, e.content, { mode: e.kind === 'executable' ? 0o755 : 0o644, flag: 'wx' });
  }
}

/** The entries of a directory as {@link pinnedTreeDigest} takes them; links are read, never followed. */
export async function digestWorkspace(
  root: string,
): Promise<{ path: string; kind: TreeEntry['kind']; sha256: string }[]> {
  const out: { path: string; kind: TreeEntry['kind']; sha256: string }[] = [];
  async function walk(dir: string): Promise<void> {
    for (const name of await readdir(dir)) {
      const p = join(dir, name);
      const st = await lstat(p);
      const rel = relative(root, p);
      if (st.isDirectory()) await walk(p);
      else if (st.isSymbolicLink())
        out.push({ path: rel, kind: 'symlink', sha256: sha256Hex(await readlink(p)) });
      else if (st.isFile())
        out.push({
          path: rel,
          kind: st.mode & 0o111 ? 'executable' : 'file',
          sha256: sha256Hex(await readFile(p)),
        });
      else throw new GatehouseError('SOURCE_MISMATCH', `the workspace holds a special file ${rel}`);
    }
  }
  await walk(root);
  return out;
}
