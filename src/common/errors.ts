/**
 * The one error type every part throws. The code is stable and typed; the message names what was
 * wrong and with what input, never a token, key or secret. HTTP statuses and exit codes are mapped
 * from the code in `server` and `cli`, never here.
 */
export const ERROR_CODES = [
  // input that a user or a build handed us
  'BAD_INPUT',
  'BAD_CONFIG',
  'BAD_PROJECT_CONFIG',
  'BAD_LOCKFILE',
  'BAD_SBOM',
  'BAD_OSV_RECORD',
  'BAD_BUNDLE',
  'BAD_POLICY',
  'NOT_FOUND',
  'CONFLICT',
  // the home and its stores
  'HOME_NOT_INITIALIZED',
  'STORE_ERROR',
  'STORE_DAMAGED',
  'MIGRATION_FAILED',
  // runner
  'SANDBOX_UNAVAILABLE',
  'BUILD_FAILED',
  'BUILD_TIMEOUT',
  'BUILD_LIMIT_EXCEEDED',
  'FETCH_FAILED',
  'IMAGE_UNVERIFIED',
  'OUTPUT_REJECTED',
  'CANCELLED',
  // an artifact too large, too deep or too compressed to catalogue within the limits
  'ARTIFACT_REFUSED',
  // attestation and tokens
  'EVIDENCE_REJECTED',
  'TOKEN_MISSING',
  'TOKEN_INVALID',
  'TOKEN_EXPIRED',
  'TOKEN_WRONG_JOB',
  'TOKEN_REVOKED',
  'PROOF_OF_POSSESSION_FAILED',
  // a request about a job without the credential that may make it
  'UNAUTHORIZED',
  // an authenticated party asking for what its role may not do
  'FORBIDDEN',
  'TPM_UNAVAILABLE',
  // verification at deploy time
  'SIGNATURE_INVALID',
  'CERTIFICATE_INVALID',
  'IDENTITY_MISMATCH',
  'SUBJECT_MISMATCH',
  'LOG_PROOF_INVALID',
  'CHECKPOINT_INVALID',
  'TIMESTAMP_INVALID',
  'LOG_INCONSISTENT',
  'KEY_UNAVAILABLE',
  'VERIFICATION_FAILED',
  'ARTIFACT_REVOKED',
  // registries
  'REGISTRY_ERROR',
  'REGISTRY_AUTH_FAILED',
  // source origin
  'SOURCE_UNAVAILABLE',
  'SOURCE_MISMATCH',
  'REVIEW_REJECTED',
  // transport
  'UNREACHABLE',
  'INTERNAL',
] as const;

/** A stable, typed error code. */
export type ErrorCode = (typeof ERROR_CODES)[number];

/** True when `value` is one of the error codes (e.g. read back from an HTTP answer). */
export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && (ERROR_CODES as readonly string[]).includes(value);
}

export interface GatehouseErrorOptions {
  cause?: unknown;
  /** Where the problem is: a file path, a URL, a field. Shown before the message. */
  where?: string;
}

export class GatehouseError<C extends ErrorCode = ErrorCode> extends Error {
  readonly code: C;
  readonly where: string | undefined;

  constructor(code: C, message: string, options: GatehouseErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GatehouseError';
    this.code = code;
    this.where = options.where;
  }

  /** One line for a person: `where: message`. */
  describe(): string {
    return this.where === undefined ? this.message : `${this.where}: ${this.message}`;
  }
}

/** True when `e` is a GatehouseError, optionally with one of the given codes. */
export function isGatehouseError(e: unknown, ...codes: ErrorCode[]): e is GatehouseError {
  return e instanceof GatehouseError && (codes.length === 0 || codes.includes(e.code));
}

/** A message for any thrown value, safe to print. */
export function describeError(e: unknown): string {
  if (e instanceof GatehouseError) return e.describe();
  if (e instanceof Error) return e.message;
  return String(e);
}
