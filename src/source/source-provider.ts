/**
 * Facts about where a build's source came from, as the runner agent reports them. The gate never
 * trusts them: it re-derives everything from the repository through a {@link SourceProvider}.
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
  /** Subdirectory of the repository the build ran in, `a/b` form (absent: the repository root). */
  path?: string;
  /** True when the work tree differs from the commit (tracked changes or untracked files). */
  dirty: boolean;
  /**
   * True when the workspace was populated from the commit's git objects (pinned checkout) rather
   * than copied from a directory; `treeDigest` is then {@link pinnedTreeDigest} of the commit's tree.
   */
  pinned?: boolean;
  /** sha256 hex over the sorted list of the files that went into the runner. */
  treeDigest: string;
}

/** What the gate asks a provider to verify: the repository and commit a job says it built. */
export interface SourceClaim {
  /** Repository URI (`file:///…`, `https://github.com/o/r`, `https://gitlab.example/g/p`). */
  repository: string;
  commit: string;
  /** The ref the job names (`refs/heads/main`); informative, membership is checked on protected refs. */
  ref?: string;
  /** Subdirectory of the repository the build ran in. */
  path?: string;
  /** The pinned tree digest the runner built, to compare with the commit's tree. */
  treeDigest?: string;
  /**
   * Claims of the job's CI identity token (GitHub Actions, GitLab CI), already verified by the
   * attestation stage. The hosted providers require them to name this repository and commit.
   */
  ciIdentity?: Readonly<Record<string, unknown>>;
}

/** A protected branch or tag pattern and what it demands, configured centrally in gatehouse. */
export interface SourceRequirements {
  /** Protected refs the commit must be on: `refs/heads/main`, `refs/tags/v*` (`*` within one segment). */
  refs?: readonly string[];
  /** Approvals needed from reviewers other than the commit's author. */
  minApprovals?: number;
  /** Count approvals of an ancestor of the commit too (default: only approvals of the exact commit). */
  staleApprovals?: boolean;
  /** Deny when the author approved their own change (their approval never counts either way). */
  forbidSelfApproval?: boolean;
  /** The commit must carry a signature by a trusted signer. */
  signedCommits?: boolean;
  /** The build configuration file must be byte-identical to the one in the reviewed commit. */
  buildConfigUnchanged?: boolean;
}

/** One approval that covers the verified commit. */
export interface SourceApproval {
  reviewer: string;
  /** The commit the reviewer approved: the verified commit or one of its ancestors. */
  commit: string;
  /** True when the approval is of exactly the verified commit. */
  exact: boolean;
  /** True when the reviewer is the commit's author (or its signer). */
  byAuthor: boolean;
  /** Where the approval comes from: a signed gatehouse review record, a GitHub review, a GitLab approval. */
  via: 'gatehouse-review' | 'github-review' | 'gitlab-approval';
  at?: string;
}

/** One protected ref of the repository and whether it holds the commit. */
export interface SourceRefFact {
  ref: string;
  kind: 'branch' | 'tag';
  /** Its current head (peeled, for tags). */
  head: string;
  /** True when the verified commit is the head or an ancestor of it (branches) or the tag's target. */
  contains: boolean;
  /** True when the ref's history was rewritten (force push, moved tag) since gatehouse last saw it. */
  rewritten: boolean;
  /** The last head gatehouse accepted, when it was rewritten away. */
  lastSeen?: string;
  /** The host's own protection of the ref (GitHub, GitLab), as reported; informative. */
  host?: { requiredApprovals?: number; signedCommits?: boolean; forcePushAllowed?: boolean };
}

/** A requirement the verified source does not meet. */
export interface SourceViolation {
  requirement:
    | 'verified'
    | 'repository'
    | 'protected-ref'
    | 'rewritten'
    | 'approvals'
    | 'self-approval'
    | 'signed-commit'
    | 'build-config'
    | 'tree';
  message: string;
}

/**
 * The facts a provider established about one commit of one repository, from the repository itself.
 * This is the `source` fact of the policy input and goes into the provenance. When `verified` is
 * false the facts could not be established (`problems` says why) and every requirement fails.
 */
export interface SourceVerification {
  provider: 'local-git' | 'github' | 'gitlab' | 'none';
  repository: string;
  commit?: string;
  verified: boolean;
  /** Why the facts are incomplete or could not be established. */
  problems: string[];
  /** The protected refs configured for the repository, each with whether it holds the commit. */
  refs: SourceRefFact[];
  /** True when a protected ref that was not rewritten holds the commit. */
  onProtectedRef: boolean;
  author?: { name?: string; email?: string; login?: string };
  approvals: SourceApproval[];
  /** Approvals not by the author: of the exact commit, and including approvals of ancestors. */
  independentApprovals: { exact: number; any: number };
  /** True when the author (or signer) approved exactly this commit. */
  selfApproved: boolean;
  /** The newest commit with an independent approval that is the verified commit or its ancestor. */
  reviewedCommit?: string;
  signature: {
    /** The commit carries a signature at all. */
    present: boolean;
    format?: 'ssh' | 'gpg' | 'x509';
    /** The signature verifies against a trusted signer. */
    trusted: boolean;
    signer?: string;
    keyId?: string;
    detail?: string;
  };
  buildConfig?: {
    path: string;
    /** sha256 hex of the file at the verified commit; absent when the commit has none. */
    sha256?: string;
    /** sha256 hex of the file at the reviewed commit. */
    reviewedSha256?: string;
    unchangedSinceReview: boolean;
  };
  /** Whether the pinned tree the runner built is exactly the commit's tree; absent when not pinned. */
  treeMatches?: boolean;
  /** The central protection in force for the repository (absent: the repository is not protected). */
  protection?: SourceRequirements;
  /** How the source falls short of `protection`. */
  violations: SourceViolation[];
  /** CI identity binding: the token's claims matched this repository, commit and ref. */
  ciIdentity?: { matched: boolean; detail?: string };
}

/**
 * Answers, for a repository and a commit, where the code came from: protected refs, approvals,
 * signature, build configuration. One adapter per source host: local git, GitHub, GitLab.
 */
export interface SourceProvider {
  readonly kind: SourceVerification['provider'];
  /** True when this provider answers for the repository URI. */
  handles(repository: string): boolean;
  /**
   * Establish the facts. Never trusts the claim beyond naming what to look at; a fact that
   * cannot be established is reported in `problems` (fail closed), not thrown.
   */
  verify(claim: SourceClaim): Promise<SourceVerification>;
}

/** The runner side: describes the directory a job copied into its workspace. */
export interface SourceDescriber {
  describe(dir: string, files: { path: string; sha256: string }[]): Promise<SourceFacts>;
}

/** A verification that establishes nothing, with the reason. */
export function unverified(
  provider: SourceVerification['provider'],
  repository: string,
  problem: string,
  commit?: string,
): SourceVerification {
  return {
    provider,
    repository,
    ...(commit === undefined ? {} : { commit }),
    verified: false,
    problems: [problem],
    refs: [],
    onProtectedRef: false,
    approvals: [],
    independentApprovals: { exact: 0, any: 0 },
    selfApproved: false,
    signature: { present: false, trusted: false },
    violations: [],
  };
}

/** True when a full ref name matches a pattern where `*` stands for any characters but `/`. */
export function refMatches(pattern: string, ref: string): boolean {
  const re = new RegExp(
    `^${pattern
      .split('*')
      .map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
      .join('[^/]*')}$`,
  );
  return re.test(ref);
}

/**
 * Check verified source facts against requirements: the hook the gate uses for a repository's
 * central protection and the policy engine for source rules. Returns what is not met, each with
 * a message that names the commit, ref, reviewer or file concerned.
 */
export function checkSourceRequirements(v: SourceVerification, r: SourceRequirements): SourceViolation[] {
  const out: SourceViolation[] = [];
  const short = (c: string | undefined): string => (c === undefined ? 'the commit' : c.slice(0, 12));
  if (!v.verified) {
    out.push({
      requirement: 'verified',
      message: `the source of ${v.repository} could not be verified: ${v.problems.join('; ') || 'no facts'}`,
    });
    return out;
  }
  for (const ref of v.refs) {
    if (ref.rewritten) {
      out.push({
        requirement: 'rewritten',
        message: `protected ${ref.kind} ${ref.ref} was rewritten: ${ref.lastSeen?.slice(0, 12) ?? 'its last accepted head'} is no longer in its history (now ${ref.head.slice(0, 12)})`,
      });
    }
  }
  if (r.refs !== undefined && r.refs.length > 0) {
    const ok = v.refs.some((f) => f.contains && !f.rewritten && r.refs?.some((p) => refMatches(p, f.ref)));
    if (!ok) {
      out.push({
        requirement: 'protected-ref',
        message: `commit ${short(v.commit)} is not on a protected ref (${r.refs.join(', ')})`,
      });
    }
  }
  if (r.minApprovals !== undefined && r.minApprovals > 0) {
    const n = r.staleApprovals === true ? v.independentApprovals.any : v.independentApprovals.exact;
    if (n < r.minApprovals) {
      out.push({
        requirement: 'approvals',
        message: `commit ${short(v.commit)} has ${n} approval${n === 1 ? '' : 's'} by someone other than its author, ${r.minApprovals} required${r.staleApprovals === true ? '' : ' (of this exact commit)'}`,
      });
    }
  }
  // The approvals that count under the rule: of the exact commit, and of the reviewed commit
  // when approvals of ancestors count too.
  const counted = v.approvals.filter(
    (a) => a.exact || (r.staleApprovals === true && a.commit === v.reviewedCommit),
  );
  const self = counted.find((a) => a.byAuthor);
  if (r.forbidSelfApproval === true && self !== undefined) {
    const who = self.reviewer;
    out.push({
      requirement: 'self-approval',
      message: `commit ${short(v.commit)} was approved by its own author ${who}`,
    });
  }
  if (r.signedCommits === true && !v.signature.trusted) {
    out.push({
      requirement: 'signed-commit',
      message: v.signature.present
        ? `commit ${short(v.commit)} has a ${v.signature.format ?? 'unknown'} signature that no trusted signer made${v.signature.detail === undefined ? '' : ` (${v.signature.detail})`}`
        : `commit ${short(v.commit)} is not signed`,
    });
  }
  if (r.buildConfigUnchanged === true) {
    const b = v.buildConfig;
    if (b === undefined || !b.unchangedSinceReview) {
      out.push({
        requirement: 'build-config',
        message:
          v.reviewedCommit === undefined
            ? `no reviewed commit to compare the build configuration of ${short(v.commit)} with`
            : `build configuration ${b?.path ?? 'file'} changed after review: sha256 ${b?.reviewedSha256?.slice(0, 12) ?? 'none'} at reviewed commit ${short(v.reviewedCommit)}, ${b?.sha256?.slice(0, 12) ?? 'none'} at ${short(v.commit)}`,
      });
    }
  }
  if (v.treeMatches === false) {
    out.push({
      requirement: 'tree',
      message: `the tree the job built is not the tree of commit ${short(v.commit)}`,
    });
  }
  return out;
}
