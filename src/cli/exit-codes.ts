import type { ErrorCode } from '../common/errors.ts';
import type { DecisionOutcome } from '../store/store.ts';

/** Exit codes of the gatehouse command (a contract: see the README). */
export const EXIT = { ok: 0, error: 1, usage: 2, denied: 3, quarantined: 4 } as const;

/**
 * The one table mapping error codes to exit codes: verification and gate refusals are 3
 * ("denied or verification failed"); everything else is an error, 1.
 */
export const exitCodeByCode: Readonly<Record<ErrorCode, number>> = {
  BAD_INPUT: 1,
  BAD_CONFIG: 1,
  BAD_PROJECT_CONFIG: 1,
  BAD_LOCKFILE: 1,
  BAD_SBOM: 1,
  BAD_OSV_RECORD: 1,
  BAD_BUNDLE: 1,
  BAD_POLICY: 1,
  NOT_FOUND: 1,
  CONFLICT: 1,
  HOME_NOT_INITIALIZED: 1,
  STORE_DAMAGED: 1,
  STORE_ERROR: 1,
  MIGRATION_FAILED: 1,
  SANDBOX_UNAVAILABLE: 1,
  BUILD_FAILED: 1,
  BUILD_TIMEOUT: 1,
  BUILD_LIMIT_EXCEEDED: 1,
  FETCH_FAILED: 1,
  IMAGE_UNVERIFIED: 1,
  CANCELLED: 1,
  OUTPUT_REJECTED: 1,
  ARTIFACT_REFUSED: 3,
  EVIDENCE_REJECTED: 3,
  TOKEN_MISSING: 3,
  TOKEN_INVALID: 3,
  TOKEN_EXPIRED: 3,
  TOKEN_WRONG_JOB: 3,
  TOKEN_REVOKED: 3,
  UNAUTHORIZED: 3,
  FORBIDDEN: 3,
  PROOF_OF_POSSESSION_FAILED: 3,
  TPM_UNAVAILABLE: 1,
  SIGNATURE_INVALID: 3,
  CERTIFICATE_INVALID: 3,
  IDENTITY_MISMATCH: 3,
  SUBJECT_MISMATCH: 3,
  LOG_PROOF_INVALID: 3,
  CHECKPOINT_INVALID: 3,
  TIMESTAMP_INVALID: 3,
  LOG_INCONSISTENT: 3,
  KEY_UNAVAILABLE: 1,
  VERIFICATION_FAILED: 3,
  ARTIFACT_REVOKED: 3,
  REGISTRY_ERROR: 1,
  REGISTRY_AUTH_FAILED: 1,
  SOURCE_UNAVAILABLE: 1,
  SOURCE_MISMATCH: 3,
  REVIEW_REJECTED: 3,
  UNREACHABLE: 1,
  INTERNAL: 1,
};

/** The one mapping of a decision to the exit code: 0 allowed, 3 denied, 4 quarantined. */
export function exitCodeOfOutcome(outcome: DecisionOutcome): number {
  switch (outcome) {
    case 'allow':
      return EXIT.ok;
    case 'quarantine':
      return EXIT.quarantined;
    case 'deny':
      return EXIT.denied;
  }
}
