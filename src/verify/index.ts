export type { VerifiedArtifact, VerifyArtifactOptions } from './verify.ts';
export { verifyArtifactBundle } from './verify.ts';
