import {
  createPrivateKey,
  createPublicKey,
  KeyObject,
  randomUUID,
  type webcrypto,
  type X509Certificate,
} from 'node:crypto';
import {
  calculateJwkThumbprint,
  compactVerify,
  createLocalJWKSet,
  type JSONWebKeySet,
  type JWK,
  SignJWT,
} from 'jose';
import { z } from 'zod';
import { canonicalJson, sha256Hex } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import type { TokenStore } from '../store/store.ts';
import { appraiseBaseline, type ReferenceValues } from './baseline.ts';
import { CHECKS, type CheckFailure, EvidenceRejectedError } from './checks.ts';
import {
  type PlatformEvidenceAppraiser,
  platformFacts,
  platformSubmod,
} from './evidence/platform-evidence.ts';
import { EVIDENCE_CHECKS, type EvidenceAppraisal, evidenceBinding } from './evidence/verifier.ts';
import {
  decodeNonce,
  jobBindingDigest,
  replayToRecord,
  softwareMeasurementEvidenceSchema,
} from './measurement.ts';
import {
  type AttestationClaims,
  EAR_PROFILE,
  jwkThumbprint,
  MAX_TOKEN_TTL_SECONDS,
  runnerPublicJwkSchema,
  TOKEN_AUDIENCE,
  verifyAttestationToken,
} from './token.ts';
import {
  type AkCounterStore,
  type AttestationSessions,
  type Challenge,
  TpmEvidenceVerifier,
  type VtpmHostChain,
} from './tpm-verifier.ts';

export type { ReferenceValues } from './baseline.ts';

/** Token lifetime when none is configured, in seconds. */
export const DEFAULT_TOKEN_TTL_SECONDS = 300;

/** A private key jose can sign ES256 with: a CryptoKey, a Node KeyObject, or a private JWK. */
export type SigningKeyInput = webcrypto.CryptoKey | KeyObject | JWK;

/** Options for {@link AttestationAuthority}. */
export interface AttestationAuthorityOptions {
  readonly signingKey: SigningKeyInput;
  readonly keyId: string;
  /** The authority's URL, the `iss` of its tokens. */
  readonly issuer: string;
  /** Fixed reference values (tests, tools); a home uses `referenceBundles`. */
  readonly referenceValues?: ReferenceValues;
  /**
   * The signed reference-value bundle in force, loaded (and its signature verified) for every
   * appraisal; when it cannot be loaded or verified, every attestation is refused.
   */
  readonly referenceBundles?: ReferenceSource;
  /** Default 300, at most 900. */
  readonly tokenTtlSeconds?: number;
  readonly tokens: TokenStore;
  readonly now?: () => Date;
  /** EAR verifier identity; default `{ developer: 'gatehouse', build: 'gatehouse-attestation/0.1.0' }`. */
  readonly verifierId?: { readonly developer: string; readonly build: string };
  /** The appraisal policy id tokens name: the signed reference-value bundle in force. */
  readonly referencePolicyId?: string;
  /** The CAs trusted to issue EK certificates (TPM vendors, the home's platform CA). */
  readonly trustedEkCas?: () => readonly X509Certificate[];
  /** Where the last TPM reset/restart counts of each AK are kept. */
  readonly akCounters?: AkCounterStore;
  /**
   * vTPM EK certificates issued by enrolled runner hosts' TPM-resident keys, and the hosts'
   * standing; a token of a host that lost its standing (revoked, quarantined) is refused.
   */
  readonly hostChain?: VtpmHostChain;
  /**
   * Where TPM challenges wait for their answer: the store, so that every instance may check an
   * answer to a challenge another issued (default: this process only).
   */
  readonly sessions?: AttestationSessions;
  /** Checks a CI platform's OIDC token; returns the ci submod's claims, or throws. */
  readonly verifyCiToken?: (token: string) => Promise<Record<string, unknown>>;
  /**
   * Signing keys rotated out before this authority started (from the home's key history): their
   * public keys stay in the JWKS until `until` (seconds since the epoch), when the last token they
   * signed has expired.
   */
  readonly retiredKeys?: readonly RetiredSigningKey[];
  /**
   * Cloud and TEE evidence (SEV-SNP, TDX, Azure Attestation, NitroTPM, GCP vTPM) a runner may
   * present beside its quote or baseline as `platform_evidence`; without it, such evidence is
   * refused.
   */
  readonly platformEvidence?: PlatformEvidenceAppraiser;
}

/** A token signing key rotated out, published until the tokens it signed have expired. */
export interface RetiredSigningKey {
  readonly keyId: string;
  /** The public key (a KeyObject, or DER SPKI). */
  readonly publicKey: KeyObject | Uint8Array;
  /** When it leaves the JWKS, in seconds since the epoch. */
  readonly until: number;
}

/** Where the authority gets the reference values in force and the policy id naming them. */
export interface ReferenceSource {
  /** @throws when none is published or the newest does not verify */
  current(): Promise<{ readonly values: ReferenceValues; readonly policyId: string }>;
}

/** The enrolled host a runner runs on, as the control plane verified it; named in the token. */
export interface RunnerIdentity {
  readonly host: string;
  readonly pool: string;
}

/** What the authority needs to know about the job a runner attests for. */
export interface AttestedJob {
  readonly nonce: string;
  /** The host that claimed the job (verified by the control plane). */
  readonly runner?: RunnerIdentity;
  /**
   * The job key an earlier attestation of the job bound (RFC 7638 thumbprint): a re-attestation
   * must present the same key, so that a second runner cannot take over the job.
   */
  readonly runnerKey?: string;
  /** The runner's host is a CI runner: a verified CI identity token is required. */
  readonly requireCi?: boolean;
  /** The CI identities the runner's host may build for (its enrollment's `ci.claims`). */
  readonly ciClaims?: Readonly<Partial<Record<string, readonly string[]>>>;
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
  /** The host that claimed the job (verified by the control plane). */
  readonly runner?: RunnerIdentity;
  /** The runner's host is a CI runner: a verified CI identity token is required. */
  readonly requireCi?: boolean;
  /** The CI identities the runner's host may build for (its enrollment's `ci.claims`). */
  readonly ciClaims?: Readonly<Partial<Record<string, readonly string[]>>>;
}

/** A successful appraisal: the token and when it expires. */
export interface AttestationResult {
  /** Compact JWS (ES256) of the EAR claims. */
  readonly token: string;
  /** Seconds since the epoch. */
  readonly expiresAt: number;
}

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

/** The `ci` submod of a verified CI identity token: the platform vouches for the workload. */
/**
 * What kind of runner earned a token, from verified evidence only: a CI platform's runner (hosted
 * by the platform or self-hosted, as its verified token says), else gatehouse's own ephemeral
 * runner. Provenance and policy read it (`build.runnerKind`); a runner never states it itself.
 */
export function runnerKindOf(ci: Record<string, unknown> | undefined): string {
  if (ci === undefined) return 'gatehouse-ephemeral';
  const platform = ci.platform === 'gitlab-ci' ? 'gitlab-ci' : 'github-actions';
  const env = ci.runner_environment;
  const where =
    env === 'github-hosted' || env === 'gitlab-hosted'
      ? 'hosted'
      : env === 'self-hosted'
        ? 'self-hosted'
        : 'unknown';
  return `${platform}-${where}`;
}

function ciSubmod(ci: Record<string, unknown>): Record<string, unknown> {
  return { 'ear.status': 'affirming', 'ear.trustworthiness-vector': { 'instance-identity': 2 }, ...ci };
}

/**
 * Appraises runner evidence against reference values and issues short-lived EAR tokens bound to
 * the runner's ephemeral key. Holds the signing key privately; publishes the public half as a JWKS.
 */
export class AttestationAuthority {
  #signingKey: KeyObject;
  #publicJwk: JWK;
  #keyId: string;
  /** Keys rotated out: published until the last token they signed has expired. */
  #retired: { kid: string; jwk: JWK; until: number }[] = [];
  readonly #issuer: string;
  readonly #reference: ReferenceSource;
  readonly #ttl: number;
  readonly #tokens: TokenStore;
  readonly #now: () => Date;
  readonly #verifierId: { developer: string; build: string };
  readonly #tpm: TpmEvidenceVerifier;
  readonly #verifyCi: ((token: string) => Promise<Record<string, unknown>>) | undefined;
  readonly #platform: PlatformEvidenceAppraiser | undefined;
  readonly #hosts: VtpmHostChain | undefined;

  /** @throws GatehouseError BAD_CONFIG for a key that is not EC P-256, a bad issuer URL, or a TTL over 900 s */
  constructor(options: AttestationAuthorityOptions) {
    this.#signingKey = toPrivateKeyObject(options.signingKey);
    const pub = createPublicKey(this.#signingKey).export({ format: 'jwk' });
    this.#publicJwk = { kty: 'EC', crv: 'P-256', x: pub.x ?? '', y: pub.y ?? '' };
    if (!/^[A-Za-z0-9._~:-]{1,128}$/.test(options.keyId))
      throw badConfig('keyId must be 1–128 URL-safe characters');
    this.#keyId = options.keyId;
    for (const r of options.retiredKeys ?? []) {
      if (!/^[A-Za-z0-9._~:-]{1,128}$/.test(r.keyId) || r.keyId === this.#keyId)
        throw badConfig(`retired key id '${r.keyId}' is malformed or reuses the current key id`);
      const key =
        r.publicKey instanceof Uint8Array
          ? createPublicKey({ key: Buffer.from(r.publicKey), format: 'der', type: 'spki' })
          : createPublicKey(r.publicKey);
      if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
        throw badConfig(`retired key '${r.keyId}' is not an EC P-256 key`);
      const jwk = key.export({ format: 'jwk' });
      this.#retired.push({
        kid: r.keyId,
        jwk: { kty: 'EC', crv: 'P-256', x: jwk.x ?? '', y: jwk.y ?? '' },
        until: r.until,
      });
    }
    if (!URL.canParse(options.issuer)) throw badConfig(`issuer '${options.issuer}' is not a URL`);
    this.#issuer = options.issuer;
    const ttl = options.tokenTtlSeconds ?? DEFAULT_TOKEN_TTL_SECONDS;
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TOKEN_TTL_SECONDS) {
      throw badConfig(`tokenTtlSeconds must be a whole number from 1 to ${MAX_TOKEN_TTL_SECONDS}`);
    }
    this.#ttl = ttl;
    if (options.referenceBundles !== undefined) this.#reference = options.referenceBundles;
    else if (options.referenceValues !== undefined) {
      const values = structuredClone(options.referenceValues);
      // The policy id names the exact reference values a token was appraised against.
      const policyId =
        options.referencePolicyId ?? `gatehouse:reference-values#sha256:${sha256Hex(canonicalJson(values))}`;
      this.#reference = { current: async () => ({ values, policyId }) };
    } else throw badConfig('referenceValues or referenceBundles is required');
    this.#tpm = new TpmEvidenceVerifier({
      trustedEkCas: options.trustedEkCas ?? (() => []),
      ...(options.akCounters === undefined ? {} : { counters: options.akCounters }),
      ...(options.sessions === undefined ? {} : { sessions: options.sessions }),
      ...(options.now === undefined ? {} : { now: options.now }),
      ...(options.hostChain === undefined ? {} : { hostChain: options.hostChain }),
    });
    this.#hosts = options.hostChain;
    this.#verifyCi = options.verifyCiToken;
    this.#platform = options.platformEvidence;
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
    const failures: CheckFailure[] = [];
    const jobId = typeof request.jobId === 'string' && request.jobId.length > 0 ? request.jobId : undefined;
    if (jobId === undefined) failures.push({ check: CHECKS.jobBinding, message: 'jobId is missing' });

    let expectedJobDigest: string | undefined;
    if (jobId !== undefined) {
      try {
        if (decodeNonce(String(request.nonce)).length < 16) throw new Error('short');
        expectedJobDigest = jobBindingDigest(jobId, String(request.nonce));
      } catch {
        // Without a real nonce there is no freshness: fail closed rather than bind to nothing.
        failures.push({
          check: CHECKS.jobBinding,
          message: 'the job nonce is not canonical base64 of at least 16 bytes',
        });
      }
    }

    const key = runnerPublicJwkSchema.safeParse(request.runnerKey);
    if (!key.success) {
      failures.push({
        check: CHECKS.runnerKeyInvalid,
        message: `runnerKey must be a public EC P-256 JWK (${key.error.issues[0]?.message})`,
      });
    }

    const reference = await this.#loadReference();
    if ('check' in reference) failures.push(reference);
    const { rest: evidenceBody, platform } = splitPlatformEvidence(request.evidence);
    const parsed = softwareMeasurementEvidenceSchema.safeParse(evidenceBody);
    if (!parsed.success) {
      failures.push(
        ...describeIssues(parsed.error, 'evidence').map((message) => ({
          check: CHECKS.requestMalformed,
          message,
        })),
      );
    } else {
      // The log must explain the claimed PCRs exactly: same PCRs, same values.
      const replayed = replayToRecord(parsed.data.events);
      for (const pcr of new Set([...Object.keys(replayed), ...Object.keys(parsed.data.pcrs)])) {
        if (replayed[pcr] !== parsed.data.pcrs[pcr]) {
          failures.push({
            check: CHECKS.eventLogReplay,
            message: `the event log does not replay to the claimed PCR ${pcr}`,
          });
        }
      }
      if (!('check' in reference))
        failures.push(...appraiseBaseline(parsed.data.events, reference.values, jobId, expectedJobDigest));
    }

    // A CI identity token is checked like on the TPM path; it adds the ci submod, never replaces one.
    const ci = parsed.success
      ? await this.#checkCiToken(parsed.data.ci_token, failures, request.requireCi === true, request.ciClaims)
      : undefined;
    const platforms =
      key.success && expectedJobDigest !== undefined
        ? await this.#appraisePlatform(
            platform,
            decodeNonce(String(request.nonce)),
            jwkThumbprint(key.data.x, key.data.y),
            reference,
            failures,
          )
        : [];
    if (
      failures.length > 0 ||
      jobId === undefined ||
      !key.success ||
      !parsed.success ||
      'check' in reference
    ) {
      throw new EvidenceRejectedError(failures, jobId === undefined ? 'attestation' : `job ${jobId}`, jobId);
    }
    return this.#issue({
      jobId,
      nonce: request.nonce,
      runnerJwk: { kty: 'EC', crv: 'P-256', x: key.data.x, y: key.data.y },
      pcrs: parsed.data.pcrs,
      // Software measurement appraises configuration (the sandbox profile) and executables
      // (toolchain, agent); with no hardware root of trust it claims nothing about hardware or
      // instance identity, and says so in its evidence type so that a policy can demand a TPM.
      evidenceTypes: [
        'software-measurement',
        ...(ci === undefined ? [] : ['ci-oidc']),
        ...platforms.map((a) => a.kind),
      ],
      submods: {
        image: this.#imageSubmod(reference.policyId),
        ...(ci === undefined ? {} : { ci: ciSubmod(ci) }),
        ...platformSubmods(platforms, reference.policyId),
      },
      extra: {
        runner_kind: runnerKindOf(ci),
        ...(request.runner === undefined ? {} : { runner: { ...request.runner } }),
        ...platformExtra(platforms),
      },
    });
  }

  /** Verify a presented CI token; a failure is added to `failures` (nothing presented: undefined). */
  async #checkCiToken(
    token: string | undefined,
    failures: CheckFailure[],
    required = false,
    allowed: Readonly<Partial<Record<string, readonly string[]>>> = {},
  ): Promise<Record<string, unknown> | undefined> {
    if (token === undefined) {
      // A CI runner's host key alone proves nothing about which pipeline runs: its identity is the
      // platform's token, so a CI host's attestation without one is refused.
      if (required)
        failures.push({
          check: CHECKS.ciTokenInvalid,
          message: 'the runner host is enrolled for CI attestation: a CI identity token is required',
        });
      return undefined;
    }
    if (this.#verifyCi === undefined) {
      failures.push({ check: CHECKS.ciTokenInvalid, message: 'no CI token issuers are configured' });
      return undefined;
    }
    let identity: Record<string, unknown>;
    try {
      identity = await this.#verifyCi(token);
    } catch (e) {
      failures.push({ check: CHECKS.ciTokenInvalid, message: e instanceof Error ? e.message : String(e) });
      return undefined;
    }
    // The host's enrollment names the pipelines its key may serve; a valid token of another
    // pipeline (another repository of the same issuer) is refused all the same.
    for (const [claim, values] of Object.entries(allowed)) {
      const v = identity[claim];
      if (values === undefined) continue;
      if (
        typeof v !== 'string' ||
        !values.some((a) => (a.endsWith('*') ? v.startsWith(a.slice(0, -1)) : v === a))
      ) {
        failures.push({
          check: CHECKS.ciTokenInvalid,
          message: `the CI token's ${claim} ${JSON.stringify(String(v)).slice(0, 200)} is not one the runner host is enrolled for`,
        });
        return undefined;
      }
    }
    return identity;
  }

  /**
   * Appraise the platform evidence presented (none: nothing to do); every failed check is added
   * to `failures`, so that presented evidence that fails refuses the attestation.
   */
  async #appraisePlatform(
    items: unknown,
    nonce: Uint8Array,
    jkt: string,
    reference: { values: ReferenceValues; policyId: string } | CheckFailure,
    failures: CheckFailure[],
  ): Promise<readonly EvidenceAppraisal[]> {
    if (items === undefined) return [];
    if (this.#platform === undefined) {
      failures.push({
        check: EVIDENCE_CHECKS.kindUnsupported,
        message: 'platform evidence was presented but no cloud or TEE verifiers are configured',
      });
      return [];
    }
    const result = await this.#platform.appraise(
      items,
      evidenceBinding(nonce, jkt),
      'check' in reference ? undefined : reference.values.platforms,
      this.#now(),
    );
    failures.push(...result.failures);
    return result.affirmed;
  }

  /** The reference values in force, or the failure that refuses the attestation (fail closed). */
  async #loadReference(): Promise<{ values: ReferenceValues; policyId: string } | CheckFailure> {
    try {
      return await this.#reference.current();
    } catch (e) {
      return {
        check: CHECKS.referenceBundleInvalid,
        message: `the reference values in force cannot be used: ${e instanceof Error ? e.message : String(e)}`,
      };
    }
  }

  #imageSubmod(policyId: string): Record<string, unknown> {
    return {
      'ear.status': 'affirming',
      'ear.trustworthiness-vector': { configuration: 2, executables: 2 },
      'ear.appraisal-policy-id': policyId,
    };
  }

  async #issue(t: {
    jobId: string;
    nonce: string;
    runnerJwk: { kty: string; crv: string; x: string; y: string };
    pcrs: Readonly<Record<string, string>>;
    evidenceTypes: string[];
    submods: Record<string, Record<string, unknown>>;
    extra?: Record<string, unknown>;
  }): Promise<AttestationResult> {
    const jkt = await calculateJwkThumbprint(t.runnerJwk, 'sha256');
    const iat = Math.floor(this.#now().getTime() / 1000);
    const exp = iat + this.#ttl;
    const token = await new SignJWT({
      eat_profile: EAR_PROFILE,
      eat_nonce: t.nonce,
      'ear.verifier-id': { ...this.#verifierId },
      submods: t.submods,
      cnf: { jkt },
      gatehouse: { evidence_types: t.evidenceTypes, pcrs: { ...t.pcrs }, ...(t.extra ?? {}) },
    })
      .setProtectedHeader({ alg: 'ES256', kid: this.#keyId, typ: 'JWT' })
      .setIssuer(this.#issuer)
      .setSubject(t.jobId)
      .setAudience(TOKEN_AUDIENCE)
      .setIssuedAt(iat)
      .setExpirationTime(exp)
      .setJti(randomUUID())
      .sign(this.#signingKey);
    return { token, expiresAt: exp };
  }

  /**
   * Start a TPM attestation: check the EK certificate and the AK, and return a nonce and a
   * credential for the TPM to activate (POST /v1/attestation/challenge).
   * @throws EvidenceRejectedError (EVIDENCE_REJECTED) listing every failed check
   */
  challenge(body: unknown): Promise<Challenge> {
    return this.#tpm.challenge(body);
  }

  /**
   * Finish a TPM attestation (POST /v1/attestation/evidence): verify the activated credential,
   * the quote, the event log and the counters, appraise the measurements against the reference
   * values and the job, and issue a token with `tpm`, `image` (and `ci`) submods.
   * @param job looks up the job the runner attests for (throws when it may not attest)
   * @throws EvidenceRejectedError listing every failed check
   */
  async evidence(
    body: unknown,
    job: (jobId: string) => Promise<AttestedJob>,
  ): Promise<AttestationResult & { jobId: string }> {
    const { rest: tpmBody, platform } = splitPlatformEvidence(body);
    const ev = await this.#tpm.verify(tpmBody);
    const failures = [...ev.failures];
    const jobEvents = ev.events.filter((e) => e.type === 'job');
    const jobId = ev.jobId ?? (jobEvents.length === 1 ? jobEvents[0]?.name : undefined);
    let expected: string | undefined;
    let attested: AttestedJob | undefined;
    if (jobId === undefined)
      failures.push({
        check: CHECKS.jobBinding,
        message: 'no job named by the challenge or a single job event',
      });
    else {
      try {
        attested = await job(jobId);
        expected = jobBindingDigest(jobId, attested.nonce);
        const jkt = jwkThumbprint(ev.runnerJwk.x ?? '', ev.runnerJwk.y ?? '');
        if (attested.runnerKey !== undefined && attested.runnerKey !== jkt)
          failures.push({
            check: CHECKS.jobBinding,
            message: `job ${jobId} is bound to another runner key; one job has one runner`,
          });
      } catch (e) {
        failures.push({
          check: CHECKS.jobBinding,
          message: `job ${jobId} cannot attest: ${e instanceof Error ? e.message : String(e)}`,
        });
      }
    }
    const reference = await this.#loadReference();
    if ('check' in reference) failures.push(reference);
    else failures.push(...appraiseBaseline(ev.events, reference.values, jobId, expected));
    const ci = await this.#checkCiToken(
      ev.ciToken,
      failures,
      attested?.requireCi === true,
      attested?.ciClaims,
    );
    // Platform evidence is bound like the quote: to the challenge's nonce and the runner's key.
    const platforms = await this.#appraisePlatform(
      platform,
      Buffer.from(ev.nonce, 'base64'),
      jwkThumbprint(ev.runnerJwk.x, ev.runnerJwk.y),
      reference,
      failures,
    );
    if (failures.length > 0 || jobId === undefined || 'check' in reference)
      throw new EvidenceRejectedError(failures, jobId === undefined ? 'attestation' : `job ${jobId}`, jobId);
    await this.#tpm.recordCounters(ev.akName, ev.quote);
    const submods: Record<string, Record<string, unknown>> = {
      tpm: {
        'ear.status': 'affirming',
        // The EK certificate chains to a trusted CA and credential activation tied the AK to
        // that EK: instance identity; the quoted PCRs carry the measured configuration.
        'ear.trustworthiness-vector': { 'instance-identity': 2, configuration: 2 },
        'ear.appraisal-policy-id': reference.policyId,
      },
      image: this.#imageSubmod(reference.policyId),
    };
    if (ci !== undefined) submods.ci = ciSubmod(ci);
    Object.assign(submods, platformSubmods(platforms, reference.policyId));
    const issued = await this.#issue({
      jobId,
      nonce: ev.nonce,
      runnerJwk: ev.runnerJwk,
      pcrs: ev.pcrs,
      // The quote roots the measured baseline in the TPM: both kinds of evidence were appraised.
      evidenceTypes: [
        'tpm',
        'software-measurement',
        ...(ci === undefined ? [] : ['ci-oidc']),
        ...platforms.map((a) => a.kind),
      ],
      submods,
      extra: {
        runner_kind: runnerKindOf(ci),
        ...(attested?.runner === undefined ? {} : { runner: { ...attested.runner } }),
        tpm: {
          ak_name: ev.akName,
          ek_issuer: ev.ek.issuer,
          ...(ev.ek.host === undefined ? {} : { host: ev.ek.host }),
          ...(ev.ek.tpm.model === undefined ? {} : { model: ev.ek.tpm.model }),
          reset_count: ev.quote.resetCount,
          restart_count: ev.quote.restartCount,
        },
        ...platformExtra(platforms),
      },
    });
    return { ...issued, jobId };
  }

  /** The authority's public keys, for /.well-known/jwks.json. */
  jwks(): JSONWebKeySet {
    const now = Math.floor(this.#now().getTime() / 1000);
    this.#retired = this.#retired.filter((r) => r.until > now);
    return {
      keys: [
        { ...this.#publicJwk, kid: this.#keyId, alg: 'ES256', use: 'sig' },
        ...this.#retired.map((r) => ({ ...r.jwk, kid: r.kid, alg: 'ES256', use: 'sig' })),
      ],
    };
  }

  /**
   * Rotate the token signing key: new tokens are signed with `signingKey`; the old public key
   * stays in the JWKS until every token it signed has expired (the longest lifetime a token can
   * have), so that tokens already issued keep verifying and none outlives its key's publication.
   * @returns the retired key's id and when it leaves the JWKS (seconds since the epoch)
   * @throws GatehouseError BAD_CONFIG for a key that is not EC P-256 or a reused key id
   */
  rotateSigningKey(signingKey: SigningKeyInput, keyId: string): { retiredKeyId: string; until: number } {
    const next = toPrivateKeyObject(signingKey);
    if (
      !/^[A-Za-z0-9._~:-]{1,128}$/.test(keyId) ||
      keyId === this.#keyId ||
      this.#retired.some((r) => r.kid === keyId)
    )
      throw badConfig('the new keyId must be 1–128 URL-safe characters and not reuse a published key id');
    const until = Math.floor(this.#now().getTime() / 1000) + this.#ttl;
    const retired = { kid: this.#keyId, jwk: this.#publicJwk, until };
    this.#retired.push(retired);
    const pub = createPublicKey(next).export({ format: 'jwk' });
    this.#signingKey = next;
    this.#publicJwk = { kty: 'EC', crv: 'P-256', x: pub.x ?? '', y: pub.y ?? '' };
    this.#keyId = keyId;
    return { retiredKeyId: retired.kid, until };
  }

  /**
   * Verify a token this authority issued for a job (against its current and retired keys, read
   * per call so that a rotation takes effect at once) and return its claims.
   * @throws GatehouseError TOKEN_MISSING, TOKEN_INVALID, TOKEN_EXPIRED, TOKEN_WRONG_JOB, TOKEN_REVOKED
   */
  async verifyToken(token: string | undefined, jobId: string): Promise<AttestationClaims> {
    const claims = await verifyAttestationToken(token, {
      jwks: this.jwks(),
      issuer: this.#issuer,
      jobId,
      tokens: this.#tokens,
      now: this.#now,
    });
    // A host revoked or quarantined since the token was issued takes its runners' tokens with it.
    if (this.#hosts !== undefined) {
      for (const host of new Set([claims.gatehouse.runner?.host, claims.gatehouse.tpm?.host])) {
        if (host === undefined) continue;
        const standing = await this.#hosts.standing(host);
        if (
          standing.check === CHECKS.hostUntrusted ||
          standing.check === CHECKS.hostQuarantined ||
          standing.check === CHECKS.hostUnknown
        ) {
          await this.#tokens.revoke(claims.jti, claims.exp);
          throw new GatehouseError(
            'TOKEN_REVOKED',
            `the attestation token is revoked: ${standing.problem ?? ''}`,
          );
        }
      }
    }
    return claims;
  }

  /** Revoke a token whose claims were verified, until it expires: a token is used once. */
  async revokeClaims(claims: AttestationClaims): Promise<void> {
    await this.#tokens.revoke(claims.jti, claims.exp);
  }

  /**
   * Revoke one of this authority's tokens until it expires.
   * @throws GatehouseError TOKEN_INVALID when the token is not one this authority signed
   */
  async revoke(token: string): Promise<void> {
    let payload: Uint8Array;
    try {
      // Tokens signed before a rotation are revocable too, for as long as they can be valid.
      ({ payload } = await compactVerify(token, createLocalJWKSet(this.jwks()), { algorithms: ['ES256'] }));
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

/** Take `platform_evidence` off an evidence body, so that the TPM and baseline schemas stay strict. */
function splitPlatformEvidence(body: unknown): { rest: unknown; platform: unknown } {
  if (
    typeof body !== 'object' ||
    body === null ||
    Array.isArray(body) ||
    !Object.hasOwn(body, 'platform_evidence')
  )
    return { rest: body, platform: undefined };
  const { platform_evidence: platform, ...rest } = body as Record<string, unknown>;
  // Present but null or undefined is still presented: it must parse, and it will not.
  return { rest, platform: platform ?? null };
}

/** Each affirmed platform appraisal as the EAR submod named by its kind. */
function platformSubmods(
  platforms: readonly EvidenceAppraisal[],
  policyId: string,
): Record<string, Record<string, unknown>> {
  return Object.fromEntries(platforms.map((a) => [a.kind, platformSubmod(a, policyId)]));
}

/** What the token names of the affirmed platform evidence (`gatehouse.platform`). */
function platformExtra(platforms: readonly EvidenceAppraisal[]): Record<string, unknown> {
  return platforms.length === 0
    ? {}
    : { platform: Object.fromEntries(platforms.map((a) => [a.kind, platformFacts(a)])) };
}

function parseJson(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return undefined;
  }
}
