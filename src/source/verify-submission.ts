import { describeError } from '../common/errors.ts';
import {
  checkSourceRequirements,
  type SourceClaim,
  type SourceFacts,
  type SourceProvider,
  type SourceVerification,
  unverified,
} from './source-provider.ts';

/**
 * The gate's source step: re-derive the facts of a submission's source from the repository itself,
 * through the provider that answers for its URI. The runner's report only names what to look at;
 * its tree digest is compared with the commit's own tree. Never throws: what cannot be
 * established is an unverified result with its reason (fail closed).
 */
export async function verifySubmittedSource(
  providers: readonly SourceProvider[],
  facts: SourceFacts,
  ciIdentity?: Readonly<Record<string, unknown>>,
): Promise<SourceVerification> {
  if (facts.kind === 'directory' || facts.commit === undefined) {
    return unverified('none', facts.uri, 'the job built a directory, not a git commit');
  }
  const provider = providers.find((p) => p.handles(facts.uri));
  if (provider === undefined) {
    return unverified('none', facts.uri, `no source provider answers for ${facts.uri}`, facts.commit);
  }
  const claim: SourceClaim = {
    repository: facts.uri,
    commit: facts.commit,
    ...(facts.ref === undefined ? {} : { ref: facts.ref }),
    ...(facts.path === undefined ? {} : { path: facts.path }),
    ...(facts.pinned === true ? { treeDigest: facts.treeDigest } : {}),
    ...(ciIdentity === undefined ? {} : { ciIdentity }),
  };
  let v: SourceVerification;
  try {
    v = await provider.verify(claim);
  } catch (e) {
    v = unverified(provider.kind, facts.uri, describeError(e), facts.commit);
  }
  if (facts.pinned !== true) {
    // A copied work tree (with local changes, or not fetched by commit) is not the commit's tree.
    v.treeMatches = false;
    v.problems.push(
      facts.dirty
        ? `the job built a work tree with local changes, not exactly commit ${facts.commit.slice(0, 12)}`
        : `the job's workspace was not fetched from commit ${facts.commit.slice(0, 12)}`,
    );
    if (v.protection !== undefined) v.violations = checkSourceRequirements(v, v.protection);
  }
  return v;
}
