import { describeError, GatehouseError } from '../common/errors.ts';
import type { SourceProtectionRecord, SourceStore } from '../store/store.ts';
import {
  checkSourceRequirements,
  refMatches,
  type SourceApproval,
  type SourceClaim,
  type SourceRefFact,
  type SourceRequirements,
  type SourceVerification,
  unverified,
} from './source-provider.ts';

/** The pieces every source provider shares: central protections, accepted heads, the assembled facts. */

/** The refusal of a claim whose commit the repository does not hold. */
export function noSuchCommit(claim: SourceClaim): GatehouseError<'SOURCE_UNAVAILABLE'> {
  return new GatehouseError(
    'SOURCE_UNAVAILABLE',
    `commit ${claim.commit.slice(0, 12)} is not in ${claim.repository}`,
  );
}

/** The strictest combination of several protections' rules. */
export function strictest(rules: readonly SourceProtectionRecord[]): SourceRequirements {
  return {
    refs: rules.map((r) => r.ref),
    minApprovals: Math.max(0, ...rules.map((r) => r.rule.minApprovals)),
    staleApprovals: rules.every((r) => r.rule.staleApprovals),
    forbidSelfApproval: rules.some((r) => r.rule.forbidSelfApproval),
    signedCommits: rules.some((r) => r.rule.signedCommits),
    buildConfigUnchanged: rules.some((r) => r.rule.buildConfigUnchanged),
  };
}

/**
 * Verify a claim about a repository registered with gatehouse: no protected refs is a verification
 * that establishes nothing; `verify` establishes the facts, and the requirements of the protected
 * refs that hold the commit (else of all of them) are checked against them.
 */
export async function verifyRegistered(
  provider: SourceVerification['provider'],
  store: SourceStore,
  claim: SourceClaim,
  verify: (protections: SourceProtectionRecord[]) => Promise<SourceVerification>,
): Promise<SourceVerification> {
  const { repository, commit } = claim;
  const protections = await store.protections(repository);
  if (protections.length === 0) {
    return unverified(
      provider,
      repository,
      `repository ${repository} is not registered with gatehouse (no protected refs)`,
      commit,
    );
  }
  try {
    const v = await verify(protections);
    const holding = protections.filter((p) => v.refs.some((r) => r.contains && refMatches(p.ref, r.ref)));
    v.protection = {
      ...strictest(holding.length > 0 ? holding : protections),
      refs: protections.map((p) => p.ref),
    };
    v.violations = checkSourceRequirements(v, v.protection);
    return v;
  } catch (e) {
    // Fail closed: anything that could not be read is a verification that established nothing.
    const v = unverified(provider, repository, describeError(e), commit);
    v.protection = strictest(protections);
    v.violations = checkSourceRequirements(v, v.protection);
    return v;
  }
}

/**
 * Compare a protected ref's head with the head gatehouse accepted before. A branch may only move
 * forward (the old head stays in its history); a tag never moves. A rewrite is recorded and sticks
 * until an operator accepts the new head (`gatehouse source protect … --accept-head`).
 */
export async function acceptHead(
  store: SourceStore,
  isAncestor: (older: string, newer: string) => Promise<boolean>,
  repository: string,
  ref: string,
  kind: 'branch' | 'tag',
  head: string,
): Promise<{ rewritten: boolean; lastSeen: string }> {
  const now = new Date().toISOString();
  const seen = await store.refHead(repository, ref);
  if (seen === undefined) {
    await store.setRefHead({ repository, ref, head, seenAt: now });
    return { rewritten: false, lastSeen: head };
  }
  if (seen.rewrittenTo !== undefined) return { rewritten: true, lastSeen: seen.head };
  if (seen.head === head) return { rewritten: false, lastSeen: head };
  // A missing old object also fails --is-ancestor: treated as a rewrite (fail closed).
  if (kind === 'branch' && (await isAncestor(seen.head, head))) {
    await store.setRefHead({ repository, ref, head, seenAt: now });
    return { rewritten: false, lastSeen: head };
  }
  await store.setRefHead({ ...seen, rewrittenTo: head, rewrittenAt: now });
  return { rewritten: true, lastSeen: seen.head };
}

/** A protected ref's fact from its head, whether it holds the commit, and what {@link acceptHead} saw. */
export function refFact(
  ref: string,
  kind: 'branch' | 'tag',
  head: string,
  contains: boolean,
  seen: { rewritten: boolean; lastSeen: string },
): SourceRefFact {
  return {
    ref,
    kind,
    head,
    contains,
    rewritten: seen.rewritten,
    ...(seen.rewritten ? { lastSeen: seen.lastSeen } : {}),
  };
}

/** The path of the build configuration file for a claim (its `path` subdirectory, if any). */
export function buildConfigPath(claim: SourceClaim, file: string): string {
  return claim.path === undefined || claim.path === '' ? file : `${claim.path}/${file}`;
}

/** What a provider established about one commit, to assemble into a verified {@link SourceVerification}. */
export interface EstablishedSource {
  provider: SourceVerification['provider'];
  repository: string;
  commit: string;
  problems: string[];
  refs: SourceRefFact[];
  author: NonNullable<SourceVerification['author']>;
  approvals: SourceApproval[];
  independentApprovals: SourceVerification['independentApprovals'];
  selfApproved: boolean;
  signature: SourceVerification['signature'];
  /** The build configuration's path and the sha256 hex of it at a commit (undefined: absent there). */
  buildConfig: { path: string; digestAt: (commit: string) => Promise<string | undefined> };
  reviewedCommit: string | undefined;
}

/**
 * The verified facts of one commit: on a protected ref when one that was not rewritten holds it; the
 * build configuration compared between the commit and the reviewed commit. Requirements are checked
 * by {@link verifyRegistered}.
 */
export async function establishedSource(s: EstablishedSource): Promise<SourceVerification> {
  const { reviewedCommit } = s;
  const configSha = await s.buildConfig.digestAt(s.commit);
  const reviewedSha = reviewedCommit === undefined ? undefined : await s.buildConfig.digestAt(reviewedCommit);
  const v: SourceVerification = {
    provider: s.provider,
    repository: s.repository,
    commit: s.commit,
    verified: true,
    problems: s.problems,
    refs: s.refs,
    onProtectedRef: s.refs.some((r) => r.contains && !r.rewritten),
    author: s.author,
    approvals: s.approvals,
    independentApprovals: s.independentApprovals,
    selfApproved: s.selfApproved,
    signature: s.signature,
    buildConfig: {
      path: s.buildConfig.path,
      ...(configSha === undefined ? {} : { sha256: configSha }),
      ...(reviewedSha === undefined ? {} : { reviewedSha256: reviewedSha }),
      unchangedSinceReview:
        reviewedCommit !== undefined && configSha !== undefined && configSha === reviewedSha,
    },
    violations: [],
  };
  if (reviewedCommit !== undefined) v.reviewedCommit = reviewedCommit;
  return v;
}
