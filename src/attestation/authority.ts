import { createPrivateKey, createPublicKey, KeyObject, randomUUID, type webcrypto } from 'node:crypto';
import { calculateJwkThumbprint, compactVerify, type JSONWebKeySet, type JWK, SignJWT } from 'jose';
import { z } from 'zod';
import { canonicalJson, sha256Hex } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import type { TokenStore } from '../store/store.ts';
import {
  decodeNonce,
  jobBindingDigest,
  type MeasurementEvent,
  PCR_ALLOCATION,
  replayToRecord,
  softwareMeasurementEvidenceSchema,
} from './measurement.ts';

/** The EAR profile gatehouse tokens follow (draft-ietf-rats-ear). */
export const EAR_PROFILE = 'tag:github.com,2023:veraison/ear';
/** The audience of every attestation token: the gate. */
export const TOKEN_AUDIENCE = 'gatehouse-gate';
/** The longest lifetime a token may have, in seconds. */
export const MAX_TOKEN_TTL_SECONDS = 900;
/** Token lifetime when none is configured, in seconds. */
export const DEFAULT_TOKEN_TTL_SECONDS = 300;

/** Known-good digests a runner's measurements are appraised against. */
export interface ReferenceValues {
  /** Allowed agent manifest digests. */
  readonly agent: readonly string[];
  /** Allowed sandbox-profile digests. */
  readonly sandboxProfile: readonly string[];
  /** Absolute binary path → allowed digests. Every listed path must be measured. */
  readonly toolchain: Readonly<Record<string, readonly string[]>>;
}

/** A private key jose can sign ES256 with: a CryptoKey, a Node KeyObject, or a private JWK. */
export type SigningKeyInput = webcrypto.CryptoKey | KeyObject | JWK;

/** Options for {@link AttestationAuthority}. */
export interface AttestationAuthorityOptions {
  readonly signingKey: SigningKeyInput;
  readonly keyId: string;
  /** The authority's URL, the `iss` of its tokens. */
  readonly issuer: string;
  readonly referenceValues: ReferenceValues;
  /** Default 300, at most 900. */
  readonly tokenTtlSeconds?: number;
  readonly tokens: TokenStore;
  readonly now?: () => Date;
  /** EAR verifier identity; default `{ developer: 'gatehouse', build: 'gatehouse-attestation/0.1.0' }`. */
  readonly verifierId?: { readonly developer: string; readonly build: string };
}

/** What a runner hands the authority to get a token. */
export interface AttestRequest {
  readonly jobId: string;
  /** The job's nonce, base64, as the control plane issued it. */
  readonly nonce: string;
  /** The runner's ephemeral public key (EC P-256 JWK) the token will be bound to. */
  readonly runnerKey: unknown;
  /** Evidence as received; parsed here. */
  readonly evidence: unknown;
}

/** A successful appraisal: the token and when it expires. */
export interface AttestationResult {
  /** Compact JWS (ES256) of the EAR claims. */
  readonly token: string;
  /** Seconds since the epoch. */
  readonly expiresAt: number;
}

const b64url = (len: number) => z.string().regex(new RegExp(`^[A-Za-z0-9_-]{${len}}$`));

/** An EC P-256 public JWK, nothing else (no private part, no other curve or key type). */
export const runnerPublicJwkSchema = z
  .looseObject({ kty: z.literal('EC'), crv: z.literal('P-256'), x: b64url(43), y: b64url(43) })
  .refine((k) => k.d === undefined, 'must not contain the private key');

const verifierIdSchema = z.strictObject({ developer: z.string().min(1), build: z.string().min(1) });

function badConfig(message: string): GatehouseError {
  return new GatehouseError('BAD_CONFIG', `attestation authority: ${message}`);
}

function toPrivateKeyObject(key: SigningKeyInput): KeyObject {
  let obj: KeyObject;
  try {
    if (key instanceof KeyObject) obj = key;
    else if ('kty' in key && typeof key.kty === 'string')
      obj = createPrivateKey({ key: { ...key, kty: key.kty }, format: 'jwk' });
    else obj = KeyObject.from(key as webcrypto.CryptoKey);
  } catch (e) {
    throw new GatehouseError('BAD_CONFIG', 'attestation authority: the signing key cannot be read', {
      cause: e,
    });
  }
  if (
    obj.type !== 'private' ||
    obj.asymmetricKeyType !== 'ec' ||
    obj.asymmetricKeyDetails?.namedCurve !== 'prime256v1'
  ) {
    throw badConfig('the signing key must be an EC P-256 private key (ES256)');
  }
  return obj;
}

function describeIssues(error: z.ZodError, prefix: string): string[] {
  return error.issues.map((i) => `${prefix}${i.path.length ? `.${i.path.join('.')}` : ''} ${i.message}`);
}

/**
 * Appraises runner evidence against reference values and issues short-lived EAR tokens bound to
 * the runner's ephemeral key. Holds the signing key privately; publishes the public half as a JWKS.
 */
export class AttestationAuthority {
  readonly #signingKey: KeyObject;
  readonly #publicJwk: JWK;
  readonly #keyId: string;
  readonly #issuer: string;
  readonly #reference: ReferenceValues;
  readonly #policyId: string;
  readonly #ttl: number;
  readonly #tokens: TokenStore;
  readonly #now: () => Date;
  readonly #verifierId: { developer: string; build: string };

  /** @throws GatehouseError BAD_CONFIG for a key that is not EC P-256, a bad issuer URL, or a TTL over 900 s */
  constructor(options: AttestationAuthorityOptions) {
    this.#signingKey = toPrivateKeyObject(options.signingKey);
    const pub = createPublicKey(this.#signingKey).export({ format: 'jwk' });
    this.#publicJwk = { kty: 'EC', crv: 'P-256', x: pub.x ?? '', y: pub.y ?? '' };
    if (!/^[A-Za-z0-9._~:-]{1,128}$/.test(options.keyId))
      throw badConfig('keyId must be 1–128 URL-safe characters');
    this.#keyId = options.keyId;
    if (!URL.canParse(options.issuer)) throw badConfig(`issuer '${options.issuer}' is not a URL`);
    this.#issuer = options.issuer;
    const ttl = options.tokenTtlSeconds ?? DEFAULT_TOKEN_TTL_SECONDS;
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TOKEN_TTL_SECONDS) {
      throw badConfig(`tokenTtlSeconds must be a whole number from 1 to ${MAX_TOKEN_TTL_SECONDS}`);
    }
    this.#ttl = ttl;
    this.#reference = structuredClone(options.referenceValues);
    // The policy id names the exact reference values a token was appraised against.
    this.#policyId = `policy:gatehouse/software-measurement#sha256:${sha256Hex(canonicalJson(this.#reference))}`;
    this.#tokens = options.tokens;
    this.#now = options.now ?? (() => new Date());
    const vid = verifierIdSchema.safeParse(
      options.verifierId ?? { developer: 'gatehouse', build: 'gatehouse-attestation/0.1.0' },
    );
    if (!vid.success) throw badConfig('verifierId needs a developer and a build');
    this.#verifierId = vid.data;
  }

  /**
   * Appraise a runner's evidence and, if every check passes, issue an ES256 EAR token for the job,
   * bound to the runner's key.
   * @throws GatehouseError EVIDENCE_REJECTED listing every failed check
   */
  async attest(request: AttestRequest): Promise<AttestationResult> {
    const failures: string[] = [];
    const jobId = typeof request.jobId === 'string' && request.jobId.length > 0 ? request.jobId : undefined;
    if (jobId === undefined) failures.push('jobId is missing');

    let expectedJobDigest: string | undefined;
    if (jobId !== undefined) {
      try {
        if (decodeNonce(String(request.nonce)).length < 16) throw new Error('short');
        expectedJobDigest = jobBindingDigest(jobId, String(request.nonce));
      } catch {
        // Without a real nonce there is no freshness: fail closed rather than bind to nothing.
        failures.push('the job nonce is not canonical base64 of at least 16 bytes');
      }
    }

    const key = runnerPublicJwkSchema.safeParse(request.runnerKey);
    if (!key.success)
      failures.push(`runnerKey must be a public EC P-256 JWK (${key.error.issues[0]?.message})`);

    const parsed = softwareMeasurementEvidenceSchema.safeParse(request.evidence);
    if (!parsed.success) {
      failures.push(...describeIssues(parsed.error, 'evidence'));
    } else {
      failures.push(...this.#appraise(parsed.data.events, parsed.data.pcrs, jobId, expectedJobDigest));
    }

    if (failures.length > 0 || jobId === undefined || !key.success || !parsed.success) {
      throw new GatehouseError(
        'EVIDENCE_REJECTED',
        `evidence rejected (${failures.length} failed check${failures.length === 1 ? '' : 's'}): ${failures.join('; ')}`,
        { where: jobId === undefined ? 'attestation' : `job ${jobId}` },
      );
    }

    const runnerJwk = { kty: 'EC', crv: 'P-256', x: key.data.x, y: key.data.y };
    const jkt = await calculateJwkThumbprint(runnerJwk, 'sha256');
    const iat = Math.floor(this.#now().getTime() / 1000);
    const exp = iat + this.#ttl;
    const token = await new SignJWT({
      eat_profile: EAR_PROFILE,
      eat_nonce: request.nonce,
      'ear.verifier-id': { ...this.#verifierId },
      submods: {
        runner: {
          'ear.status': 'affirming',
          // AR4SI: 2 = affirming. Software measurement appraises configuration (the sandbox
          // profile) and executables (toolchain, agent); with no hardware root of trust it makes
          // no claim about hardware, instance identity, or opaque runtime and storage.
          'ear.trustworthiness-vector': { configuration: 2, executables: 2 },
          'ear.appraisal-policy-id': this.#policyId,
        },
      },
      cnf: { jkt },
      gatehouse: { evidence_types: ['software-measurement'], pcrs: { ...parsed.data.pcrs } },
    })
      .setProtectedHeader({ alg: 'ES256', kid: this.#keyId, typ: 'JWT' })
      .setIssuer(this.#issuer)
      .setSubject(jobId)
      .setAudience(TOKEN_AUDIENCE)
      .setIssuedAt(iat)
      .setExpirationTime(exp)
      .setJti(randomUUID())
      .sign(this.#signingKey);
    return { token, expiresAt: exp };
  }

  #appraise(
    events: readonly MeasurementEvent[],
    pcrs: Readonly<Record<string, string>>,
    jobId: string | undefined,
    expectedJobDigest: string | undefined,
  ): string[] {
    const failures: string[] = [];
    // 1. The log must explain the claimed PCRs exactly: same PCRs, same values.
    const replayed = replayToRecord(events);
    for (const pcr of new Set([...Object.keys(replayed), ...Object.keys(pcrs)])) {
      if (replayed[pcr] !== pcrs[pcr])
        failures.push(`the event log does not replay to the claimed PCR ${pcr}`);
    }
    // 2. Each event sits in its allocated PCR, and each singleton appears exactly once, so that a
    //    second, unappraised agent or profile cannot hide next to an approved one.
    for (const [i, e] of events.entries()) {
      if (e.pcr !== PCR_ALLOCATION[e.type]) {
        failures.push(`event ${i} (${e.type}) is in PCR ${e.pcr}, not PCR ${PCR_ALLOCATION[e.type]}`);
      }
    }
    const ofType = (t: MeasurementEvent['type']) => events.filter((e) => e.type === t);
    for (const t of ['sandbox-profile', 'agent', 'job'] as const) {
      const n = ofType(t).length;
      if (n !== 1) failures.push(`expected exactly one ${t} event, got ${n}`);
    }
    // 3. Reference values.
    for (const e of ofType('sandbox-profile')) {
      if (!this.#reference.sandboxProfile.includes(e.digest)) {
        failures.push(`sandbox profile digest ${e.digest} is not a reference value`);
      }
    }
    for (const e of ofType('agent')) {
      if (!this.#reference.agent.includes(e.digest))
        failures.push(`agent digest ${e.digest} is not a reference value`);
    }
    const toolchain = ofType('toolchain');
    const seen = new Set<string>();
    for (const e of toolchain) {
      if (seen.has(e.name)) failures.push(`toolchain ${e.name} is measured more than once`);
      seen.add(e.name);
      const allowed = Object.hasOwn(this.#reference.toolchain, e.name)
        ? this.#reference.toolchain[e.name]
        : undefined;
      if (allowed === undefined) failures.push(`toolchain ${e.name} has no reference value`);
      else if (!allowed.includes(e.digest))
        failures.push(`toolchain ${e.name} digest ${e.digest} is not a reference value`);
    }
    for (const path of Object.keys(this.#reference.toolchain)) {
      if (!seen.has(path))
        failures.push(`toolchain ${path} is required by the reference values but was not measured`);
    }
    // 4. Freshness and binding: the job event commits to this job's nonce.
    for (const e of ofType('job')) {
      if (jobId !== undefined && e.name !== jobId)
        failures.push(`the job event names job '${e.name}', not '${jobId}'`);
      if (expectedJobDigest !== undefined && e.digest !== expectedJobDigest) {
        failures.push('the job event digest does not bind this job and nonce');
      }
    }
    return failures;
  }

  /** The authority's public keys, for /.well-known/jwks.json. */
  jwks(): JSONWebKeySet {
    return { keys: [{ ...this.#publicJwk, kid: this.#keyId, alg: 'ES256', use: 'sig' }] };
  }

  /**
   * Revoke one of this authority's tokens until it expires.
   * @throws GatehouseError TOKEN_INVALID when the token is not one this authority signed
   */
  async revoke(token: string): Promise<void> {
    let payload: Uint8Array;
    try {
      ({ payload } = await compactVerify(token, createPublicKey(this.#signingKey), {
        algorithms: ['ES256'],
      }));
    } catch (e) {
      throw new GatehouseError('TOKEN_INVALID', 'cannot revoke: the token was not signed by this authority', {
        cause: e,
      });
    }
    const claims = z
      .object({ jti: z.string().min(1), exp: z.number().int(), iss: z.literal(this.#issuer) })
      .safeParse(parseJson(payload));
    if (!claims.success)
      throw new GatehouseError('TOKEN_INVALID', 'cannot revoke: the token lacks jti, exp or iss');
    await this.#tokens.revoke(claims.data.jti, claims.data.exp);
  }
}

function parseJson(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return undefined;
  }
}
