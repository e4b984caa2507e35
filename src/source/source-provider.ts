/**
 * Facts about where a build's source came from, established by gatehouse from the repository
 * itself, never taken from what the build claims.
 */
export interface SourceFacts {
  /** `git` when the directory is a git work tree, else `directory`. */
  kind: 'git' | 'directory';
  /** Repository URI: the `origin` remote when there is one, else a `file://` URI. */
  uri: string;
  /** The commit checked out (git only). */
  commit?: string;
  /** The branch checked out (git only; absent on a detached HEAD). */
  ref?: string;
  /** True when the work tree differs from the commit (tracked changes or untracked files). */
  dirty: boolean;
  /** sha256 hex over the sorted list of (path, file sha256) of the files that went into the runner. */
  treeDigest: string;
}

/** Answers where a source directory came from. */
export interface SourceProvider {
  describe(dir: string, files: { path: string; sha256: string }[]): Promise<SourceFacts>;
}
