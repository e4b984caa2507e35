import { GatehouseError } from '../common/errors.ts';
import type { CheckFailure } from '../tpm/quote.ts';

export type { CheckFailure } from '../tpm/quote.ts';

/**
 * Every check code the attestation authority reports in `failed_checks` (documented in
 * docs/attestation.md). Quote checks come from src/tpm/quote.ts.
 */
export const CHECKS = {
  requestMalformed: 'REQUEST_MALFORMED',
  ekCertMalformed: 'EK_CERT_MALFORMED',
  ekCertUntrusted: 'EK_CERT_UNTRUSTED',
  akMalformed: 'AK_MALFORMED',
  akNotRestrictedSigning: 'AK_NOT_RESTRICTED_SIGNING',
  runnerKeyInvalid: 'RUNNER_KEY_INVALID',
  sessionUnknown: 'SESSION_UNKNOWN',
  nonceExpired: 'NONCE_EXPIRED',
  nonceReplayed: 'NONCE_REPLAYED',
  credentialMismatch: 'CREDENTIAL_MISMATCH',
  pcrValues: 'PCR_VALUES',
  eventLogMalformed: 'EVENT_LOG_MALFORMED',
  eventLogReplay: 'EVENT_LOG_REPLAY',
  referenceValues: 'REFERENCE_VALUES',
  referenceBundleInvalid: 'REFERENCE_BUNDLE_INVALID',
  jobBinding: 'JOB_BINDING',
  clockRollback: 'CLOCK_ROLLBACK',
  ciTokenInvalid: 'CI_TOKEN_INVALID',
  attestationMode: 'ATTESTATION_MODE',
  hostUnknown: 'HOST_UNKNOWN',
  hostNotClaimer: 'HOST_NOT_CLAIMER',
  hostUntrusted: 'HOST_UNTRUSTED',
  hostQuarantined: 'HOST_QUARANTINED',
  hostQuoteStale: 'HOST_QUOTE_STALE',
  hostBootState: 'HOST_BOOT_STATE',
  vtpmCaKey: 'VTPM_CA_KEY',
} as const;

/**
 * Evidence refused: the error carries every failed check, so that the API can list them as
 * `failed_checks` and metrics can count failures by check.
 */
export class EvidenceRejectedError extends GatehouseError<'EVIDENCE_REJECTED'> {
  readonly failedChecks: readonly CheckFailure[];
  /** The job the refused runner attested for, when known (for the audit record). */
  readonly jobId: string | undefined;

  constructor(failedChecks: readonly CheckFailure[], where?: string, jobId?: string) {
    const n = failedChecks.length;
    super(
      'EVIDENCE_REJECTED',
      `evidence rejected (${n} failed check${n === 1 ? '' : 's'}): ${failedChecks.map((f) => `${f.check}: ${f.message}`).join('; ')}`,
      where === undefined ? {} : { where },
    );
    this.jobId = jobId;
    this.failedChecks = Object.freeze(failedChecks.map((f) => Object.freeze({ ...f })));
  }
}

/** The failed checks of an error, when it is an evidence refusal. */
export function failedChecksOf(e: unknown): readonly CheckFailure[] | undefined {
  return e instanceof EvidenceRejectedError ? e.failedChecks : undefined;
}

/** The job a refused attestation was for, when the refusal names one. */
export function refusedJobOf(e: unknown): string | undefined {
  return e instanceof EvidenceRejectedError ? e.jobId : undefined;
}
