/** Evidence appraisal, attestation tokens, and the runner's proof of possession. */
export {
  AttestationAuthority,
  type AttestationAuthorityOptions,
  type AttestationResult,
  type AttestRequest,
  DEFAULT_TOKEN_TTL_SECONDS,
  EAR_PROFILE,
  MAX_TOKEN_TTL_SECONDS,
  type ReferenceValues,
  type RetiredSigningKey,
  type SigningKeyInput,
  TOKEN_AUDIENCE,
} from './authority.ts';
export {
  agentManifestDigest,
  type BaselineInputs,
  jobBindingDigest,
  type MeasuredBaseline,
  type MeasurementEvent,
  type MeasurementEventType,
  measureBaseline,
  PCR_ALLOCATION,
  type PcrValues,
  type SoftwareMeasurementEvidence,
  sandboxProfileDigest,
} from './measurement.ts';
export {
  type AttestationClaims,
  generateRunnerKey,
  type RunnerKeyPair,
  RunnerPrivateKey,
  SUBMISSION_JWS_TYPE,
  signSubmission,
  submissionDigest,
  type VerifyTokenOptions,
  verifyAttestationToken,
  verifyProofOfPossession,
} from './token.ts';
