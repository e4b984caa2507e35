import { createHash, createPublicKey, timingSafeEqual, verify, webcrypto } from 'node:crypto';
import { CompactSign, createLocalJWKSet, errors, type JSONWebKeySet, type JWK, jwtVerify } from 'jose';
import { z } from 'zod';
import { canonicalJson, sha256Hex } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import type { TokenStore } from '../store/store.ts';

/** The EAR profile gatehouse tokens follow (draft-ietf-rats-ear). */
export const EAR_PROFILE = 'tag:github.com,2023:veraison/ear';
/** The audience of every attestation token: the gate. */
export const TOKEN_AUDIENCE = 'gatehouse-gate';
/** The longest lifetime a token may have, in seconds. */
export const MAX_TOKEN_TTL_SECONDS = 900;

const b64url = (len: number) => z.string().regex(new RegExp(`^[A-Za-z0-9_-]{${len}}$`));

/** An EC P-256 public JWK, nothing else (no private part, no other curve or key type). */
export const runnerPublicJwkSchema = z
  .looseObject({ kty: z.literal('EC'), crv: z.literal('P-256'), x: b64url(43), y: b64url(43) })
  .refine((k) => k.d === undefined, 'must not contain the private key');

/** The `typ` of a runner's signed submission, so that no other JWS can pass for one. */
export const SUBMISSION_JWS_TYPE = 'gatehouse-submission+jws';
/** Tokens longer than this are refused unread. */
const MAX_TOKEN_CHARS = 16 * 1024;

const sha256Hex64 = z.string().regex(/^[0-9a-f]{64}$/);

const claimsSchema = z.object({
  iss: z.string(),
  sub: z.string().min(1),
  aud: z.union([z.string(), z.array(z.string())]),
  iat: z.number().int(),
  exp: z.number().int(),
  jti: z.string().min(1),
  eat_profile: z.literal(EAR_PROFILE),
  eat_nonce: z.string().optional(),
  'ear.verifier-id': z.object({ developer: z.string(), build: z.string() }),
  submods: z.record(
    z.string(),
    z.object({
      'ear.status': z.enum(['affirming', 'warning', 'contraindicated', 'none']),
      'ear.trustworthiness-vector': z.record(z.string(), z.number().int()).optional(),
      'ear.appraisal-policy-id': z.string().optional(),
    }),
  ),
  cnf: z.object({ jkt: z.string().regex(/^[A-Za-z0-9_-]{43}$/) }),
  gatehouse: z.object({
    evidence_types: z.array(z.string()),
    pcrs: z.record(z.string(), sha256Hex64),
    /** The enrolled runner host whose runner attested, and its pool. */
    runner: z.object({ host: z.string(), pool: z.string() }).optional(),
    /**
     * What kind of runner it was, from verified evidence (`gatehouse-ephemeral`,
     * `github-actions-hosted`, `gitlab-ci-self-hosted`, …); absent on tokens issued before it.
     */
    runner_kind: z.string().min(1).max(64).optional(),
    /** On the TPM path: the enrolled host whose TPM-resident key issued the vTPM's EK certificate. */
    tpm: z.object({ host: z.string().optional() }).optional(),
  }),
});

/** The verified claims of an attestation token. */
export type AttestationClaims = z.infer<typeof claimsSchema>;

/** What {@link verifyAttestationToken} checks a token against. */
export interface VerifyTokenOptions {
  /** The authority's public keys (its /.well-known/jwks.json). */
  readonly jwks: JSONWebKeySet;
  readonly issuer: string;
  /** The job the token must have been issued for. */
  readonly jobId: string;
  readonly tokens: TokenStore;
  readonly now?: () => Date;
}

function invalid(message: string, cause?: unknown): GatehouseError {
  return new GatehouseError('TOKEN_INVALID', message, cause === undefined ? {} : { cause });
}

/**
 * Verify an attestation token for a job and return its claims. Only ES256 is accepted, so `none`
 * and HMAC-with-the-public-key forgeries fail before any claim is read.
 * @throws GatehouseError TOKEN_MISSING, TOKEN_INVALID (signature, key, format, iss, aud, alg),
 *   TOKEN_EXPIRED, TOKEN_WRONG_JOB, TOKEN_REVOKED
 */
export async function verifyAttestationToken(
  token: string | undefined,
  options: VerifyTokenOptions,
): Promise<AttestationClaims> {
  if (token === undefined || token.trim() === '') {
    throw new GatehouseError('TOKEN_MISSING', 'no attestation token was presented');
  }
  if (token.length > MAX_TOKEN_CHARS) throw invalid('the attestation token is too long');
  let keys: ReturnType<typeof createLocalJWKSet>;
  try {
    keys = createLocalJWKSet(options.jwks);
  } catch (e) {
    throw new GatehouseError('BAD_CONFIG', 'the attestation authority JWKS is malformed', { cause: e });
  }
  const now = options.now?.() ?? new Date();
  let payload: unknown;
  try {
    ({ payload } = await jwtVerify(token, keys, {
      algorithms: ['ES256'],
      issuer: options.issuer,
      audience: TOKEN_AUDIENCE,
      currentDate: now,
      requiredClaims: ['iss', 'sub', 'aud', 'iat', 'exp', 'jti'],
    }));
  } catch (e) {
    if (e instanceof errors.JWTExpired)
      throw new GatehouseError('TOKEN_EXPIRED', 'the attestation token has expired', { cause: e });
    if (e instanceof errors.JWTClaimValidationFailed) {
      throw invalid(`the attestation token's ${e.claim} claim is not acceptable (${e.reason})`, e);
    }
    if (e instanceof errors.JOSEAlgNotAllowed)
      throw invalid('the attestation token is not signed with ES256', e);
    if (e instanceof errors.JWKSNoMatchingKey)
      throw invalid('the attestation token was not signed by a known key', e);
    if (e instanceof errors.JWSSignatureVerificationFailed)
      throw invalid('the attestation token signature is invalid', e);
    throw invalid('the attestation token is malformed', e);
  }
  const parsed = claimsSchema.safeParse(payload);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    throw invalid(
      `the attestation token's ${first?.path.join('.') || 'claims'} claim is malformed`,
      parsed.error,
    );
  }
  const claims = parsed.data;
  const nowSeconds = Math.floor(now.getTime() / 1000);
  // A token the authority would never have issued: too long-lived, or from the future.
  if (claims.exp - claims.iat > MAX_TOKEN_TTL_SECONDS)
    throw invalid('the attestation token lives longer than allowed');
  if (claims.iat > nowSeconds + 60) throw invalid('the attestation token was issued in the future');
  if (claims.sub !== options.jobId) {
    throw new GatehouseError(
      'TOKEN_WRONG_JOB',
      `the attestation token was issued for another job, not ${options.jobId}`,
    );
  }
  // Every appraised part (tpm, image, ci) must be affirmed; a token with none affirms nothing.
  const submods = Object.values(claims.submods);
  if (submods.length === 0 || submods.some((m) => m['ear.status'] !== 'affirming')) {
    throw invalid('the attestation token does not affirm the runner');
  }
  if (await options.tokens.isRevoked(claims.jti)) {
    throw new GatehouseError('TOKEN_REVOKED', 'the attestation token has been revoked');
  }
  return claims;
}

/**
 * The private half of a runner's ephemeral key: a non-extractable WebCrypto key in a #private
 * field. It can sign submissions; it cannot be exported, serialised or spread.
 */
export class RunnerPrivateKey {
  readonly #key: webcrypto.CryptoKey;
  readonly #publicJwk: Readonly<JWK>;

  /** Only {@link generateRunnerKey} makes these. */
  constructor(key: webcrypto.CryptoKey, publicJwk: JWK) {
    if (key.extractable || key.type !== 'private') {
      throw new GatehouseError('INTERNAL', 'a runner private key must be a non-extractable private key');
    }
    this.#key = key;
    this.#publicJwk = Object.freeze({ ...publicJwk });
  }

  /** Sign the canonical JSON of `payload` as a compact ES256 JWS carrying the public key. */
  async signSubmission(payload: object): Promise<string> {
    return this.signJws(new TextEncoder().encode(canonicalJson(payload)), SUBMISSION_JWS_TYPE);
  }

  /** Sign `payload` as a compact ES256 JWS of type `typ` carrying the public key. */
  async signJws(payload: Uint8Array, typ: string): Promise<string> {
    return new CompactSign(payload)
      .setProtectedHeader({ alg: 'ES256', typ, jwk: { ...this.#publicJwk } })
      .sign(this.#key);
  }

  toJSON(): string {
    return '[runner private key]';
  }
}

/** A runner's per-job key pair. */
export interface RunnerKeyPair {
  readonly privateKey: RunnerPrivateKey;
  /** EC P-256 public JWK (kty, crv, x, y only). */
  readonly publicJwk: Readonly<JWK>;
  /** RFC 7638 SHA-256 thumbprint of the public key: the token's `cnf.jkt`. */
  readonly thumbprint: string;
}

/** Make a fresh P-256 key pair for one runner; the private half never leaves this process. */
export async function generateRunnerKey(): Promise<RunnerKeyPair> {
  const pair = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, [
    'sign',
    'verify',
  ]);
  const full = (await webcrypto.subtle.exportKey('jwk', pair.publicKey)) as JWK;
  const publicJwk: JWK = Object.freeze({ kty: 'EC', crv: 'P-256', x: full.x ?? '', y: full.y ?? '' });
  return Object.freeze({
    privateKey: new RunnerPrivateKey(pair.privateKey, publicJwk),
    publicJwk,
    thumbprint: jwkThumbprint(publicJwk.x ?? '', publicJwk.y ?? ''),
  });
}

/** SHA-256 hex of the canonical JSON of a submission: what the gate expects a runner to have signed. */
export function submissionDigest(payload: object): string {
  return sha256Hex(canonicalJson(payload));
}

/** Sign a submission to the gate with the runner's key (proof of possession). */
export function signSubmission(payload: object, runnerPrivateKey: RunnerPrivateKey): Promise<string> {
  return runnerPrivateKey.signSubmission(payload);
}

/** RFC 7638 SHA-256 thumbprint of an EC P-256 public key: members in lexicographic order. */
export function jwkThumbprint(x: string, y: string): string {
  return createHash('sha256')
    .update(JSON.stringify({ crv: 'P-256', kty: 'EC', x, y }))
    .digest('base64url');
}

function popFailed(message: string, cause?: unknown): GatehouseError {
  return new GatehouseError('PROOF_OF_POSSESSION_FAILED', message, cause === undefined ? {} : { cause });
}

const B64URL = /^[A-Za-z0-9_-]*$/;

/**
 * Check that a submission was signed by the key the attestation token is bound to, and that it
 * signs exactly the expected payload (given as SHA-256 hex or raw bytes). Returns the signed
 * payload bytes. Synchronous on purpose: a verifier that returns a promise can be called without
 * `await` and silently check nothing.
 * @throws GatehouseError PROOF_OF_POSSESSION_FAILED
 */
export function verifyProofOfPossession(
  jws: string,
  claims: Pick<AttestationClaims, 'cnf'>,
  expectedPayloadDigest: string | Uint8Array,
): Uint8Array {
  if (typeof jws !== 'string' || jws.length === 0 || jws.length > 8 * 1024 * 1024) {
    throw popFailed('the submission signature is missing or too large');
  }
  const parts = jws.split('.');
  const [h, p, sig] = parts;
  if (
    parts.length !== 3 ||
    h === undefined ||
    p === undefined ||
    sig === undefined ||
    !parts.every((x) => B64URL.test(x))
  ) {
    throw popFailed('the submission signature is not a compact JWS');
  }
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8'));
  } catch (e) {
    throw popFailed('the submission signature header is not JSON', e);
  }
  const parsedHeader = z
    .strictObject({
      alg: z.literal('ES256'),
      typ: z.literal(SUBMISSION_JWS_TYPE),
      jwk: runnerPublicJwkSchema,
    })
    .safeParse(header);
  if (!parsedHeader.success) {
    // strictObject also refuses crit, b64 and jku/x5u: nothing may change how the bytes are read.
    throw popFailed(
      `the submission signature header must be exactly an ES256 ${SUBMISSION_JWS_TYPE} with a public EC P-256 jwk`,
    );
  }
  const { x, y } = parsedHeader.data.jwk;
  // The key in the header is trusted only because its thumbprint is the one the authority bound
  // the token to; check that before using it for anything.
  if (jwkThumbprint(x, y) !== claims.cnf.jkt) {
    throw popFailed(
      'the submission was signed by a key other than the one the attestation token is bound to',
    );
  }
  const signature = Buffer.from(sig, 'base64url');
  let ok = false;
  try {
    const key = createPublicKey({ key: { kty: 'EC', crv: 'P-256', x, y }, format: 'jwk' });
    ok =
      signature.length === 64 &&
      verify('sha256', Buffer.from(`${h}.${p}`, 'ascii'), { key, dsaEncoding: 'ieee-p1363' }, signature);
  } catch (e) {
    throw popFailed('the submission signature cannot be checked', e);
  }
  if (!ok) throw popFailed('the submission signature is invalid');
  const payload = Buffer.from(p, 'base64url');
  const digest = createHash('sha256').update(payload).digest();
  const expected =
    typeof expectedPayloadDigest === 'string'
      ? Buffer.from(expectedPayloadDigest, 'hex')
      : Buffer.from(expectedPayloadDigest);
  if (expected.length !== 32 || !timingSafeEqual(digest, expected)) {
    throw popFailed('the submission signature covers a different payload');
  }
  return new Uint8Array(payload);
}
