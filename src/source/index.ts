export { addSigner, protectRef, refPattern } from './admin.ts';
export { type SourceConfig, sourceConfigSchema } from './config.ts';
export { parseCommitObject, pinnedTreeDigest, readCommitTree } from './git.ts';
export { GitHubProvider } from './github-provider.ts';
export { GitLabProvider } from './gitlab-provider.ts';
export { canonicalRepositoryUri, LocalGitProvider } from './local-git-provider.ts';
export { type PinnedCheckout, pinSource } from './pinned-checkout.ts';
export { REVIEW_NAMESPACE, REVIEW_TYPE, type ReviewRecord, recordReview, verifyReview } from './review.ts';
export type { TrustedSigner } from './signers.ts';
export {
  checkSourceRequirements,
  type SourceApproval,
  type SourceClaim,
  type SourceDescriber,
  type SourceFacts,
  type SourceProvider,
  type SourceRequirements,
  type SourceVerification,
  type SourceViolation,
} from './source-provider.ts';
export type { HostedProviderOptions } from './verification.ts';
export { verifySubmittedSource } from './verify-submission.ts';
export { sourceProviders, sourceVerifier } from './wiring.ts';
