import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  type JWTPayload,
  type JWTVerifyGetKey,
  jwtVerify,
} from 'jose';
import { z } from 'zod';
import { GatehouseError } from '../common/errors.ts';

/** Signature algorithms a CI issuer may be configured with (asymmetric only: never `none` or HMAC). */
const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'ES256', 'ES384', 'EdDSA'] as const;

/** Tokens larger than this are refused before they are parsed. */
const MAX_TOKEN_BYTES = 16 * 1024;

function isLoopback(u: URL): boolean {
  return u.hostname === '127.0.0.1' || u.hostname === 'localhost' || u.hostname === '[::1]';
}

/**
 * One trusted CI identity issuer in config.json (`attestation.ciIssuers`): GitHub Actions
 * (`https://token.actions.githubusercontent.com`) or GitLab CI (the instance URL).
 */
export const ciIssuerConfigSchema = z
  .strictObject({
    platform: z.enum(['github-actions', 'gitlab-ci']),
    /** The exact `iss` the platform's tokens carry. */
    issuer: z.url({ protocol: /^https?$/ }),
    /** Where the issuer publishes its keys (https, or http on loopback only)… */
    jwksUrl: z
      .url({ protocol: /^https?$/ })
      .refine((u) => {
        const url = new URL(u);
        return url.protocol === 'https:' || isLoopback(url);
      }, 'must be https (plain http only on loopback)')
      .optional(),
    /** …or a JWKS file (relative to the home) for hosts that cannot reach it. */
    jwksFile: z.string().min(1).optional(),
    /** The audience runners request their token for; tokens for anything else are refused. */
    audience: z.string().min(1).max(512),
    algorithms: z.array(z.enum(ALGORITHMS)).min(1).default(['RS256']),
    /**
     * Allowed values per claim, e.g. `{ "repository": ["acme/app"], "ref": ["refs/heads/main"],
     * "runner_environment": ["github-hosted"] }`. A value ending in `*` matches by prefix. A claim
     * listed here must be present in the token and match one value.
     */
    claims: z
      .record(z.string().regex(/^[a-z_]{1,64}$/), z.array(z.string().min(1).max(1024)).min(1))
      .default({}),
    /** The longest lifetime (exp − iat) a token may have; default one hour. */
    maxLifetimeSeconds: z.number().int().min(60).max(86_400).default(3600),
  })
  .refine(
    (c) => (c.jwksUrl === undefined) !== (c.jwksFile === undefined),
    'set exactly one of jwksUrl and jwksFile',
  );

export type CiIssuerConfig = z.infer<typeof ciIssuerConfigSchema>;

/** What a verified CI token contributes to the `ci` submod of an attestation token. */
export interface CiIdentity {
  platform: 'github-actions' | 'gitlab-ci';
  issuer: string;
  subject: string;
  /** `owner/repo` (GitHub `repository`) or `group/project` (GitLab `project_path`). */
  repository: string;
  /** Full ref name: `refs/heads/main`, `refs/tags/v1`. */
  ref: string;
  sha: string;
  /** GitHub `workflow_ref`; GitLab `ci_config_ref_uri`. */
  workflow_ref: string;
  /** `github-hosted` / `self-hosted` (GitHub), `gitlab-hosted` / `self-hosted` (GitLab). */
  runner_environment: string;
}

const str = z.string().min(1).max(2048);
/** The claims gatehouse needs from a GitHub Actions token (its documented names and types). */
const githubClaims = z.looseObject({
  sub: str,
  repository: str,
  ref: str,
  sha: z.string().regex(/^[0-9a-f]{40}$/, 'must be a 40-digit commit id'),
  workflow_ref: str,
  runner_environment: str,
});
/**
 * The claims gatehouse needs from a GitLab CI ID token, under the names of the GitHub ones:
 * `project_path` is the repository, `ci_config_ref_uri` the workflow, and the ref a full ref name.
 */
const gitlabClaims = z
  .looseObject({
    sub: str,
    project_path: str,
    ref: str,
    ref_type: z.enum(['branch', 'tag']),
    sha: z.string().regex(/^[0-9a-f]{40}$/, 'must be a 40-digit commit id'),
    ci_config_ref_uri: str,
    runner_environment: str,
  })
  .transform((c) => ({
    sub: c.sub,
    repository: c.project_path,
    // GitLab names the short ref and its kind; gatehouse speaks full ref names everywhere.
    ref: `${c.ref_type === 'branch' ? 'refs/heads/' : 'refs/tags/'}${c.ref}`,
    sha: c.sha,
    workflow_ref: c.ci_config_ref_uri,
    runner_environment: c.runner_environment,
  }));

function fail(message: string, cause?: unknown): GatehouseError {
  return new GatehouseError(
    'EVIDENCE_REJECTED',
    `CI token: ${message}`,
    cause === undefined ? {} : { cause },
  );
}

function matches(value: string, allowed: readonly string[]): boolean {
  return allowed.some((a) => (a.endsWith('*') ? value.startsWith(a.slice(0, -1)) : value === a));
}

function identityOf(platform: CiIssuerConfig['platform'], payload: JWTPayload, issuer: string): CiIdentity {
  const r = (platform === 'github-actions' ? githubClaims : gitlabClaims).safeParse(payload);
  if (!r.success) throw fail(`claim ${r.error.issues[0]?.path.join('.')}: ${r.error.issues[0]?.message}`);
  const c = r.data;
  return {
    platform,
    issuer,
    subject: c.sub,
    repository: c.repository,
    ref: c.ref,
    sha: c.sha,
    workflow_ref: c.workflow_ref,
    runner_environment: c.runner_environment,
  };
}

/**
 * Verifies CI platforms' OIDC identity tokens against the configured issuers: the signature with
 * the issuer's JWKS and an allowed asymmetric algorithm, the exact issuer and audience, expiry,
 * not-before, lifetime, the platform's required claims, and the configured allowed claim values.
 */
export class CiTokenVerifier {
  readonly #issuers: { config: CiIssuerConfig; keys: JWTVerifyGetKey }[];
  readonly #now: () => Date;

  /**
   * @param home the directory `jwksFile` paths are relative to
   * @throws GatehouseError BAD_CONFIG for a bad issuer entry or an unreadable JWKS file
   */
  constructor(issuers: readonly unknown[], options: { home?: string; now?: () => Date } = {}) {
    this.#now = options.now ?? (() => new Date());
    const seen = new Set<string>();
    this.#issuers = issuers.map((raw, i) => {
      const r = ciIssuerConfigSchema.safeParse(raw);
      if (!r.success)
        throw new GatehouseError(
          'BAD_CONFIG',
          `CI issuer ${i}: ${r.error.issues[0]?.path.join('.')} ${r.error.issues[0]?.message}`,
          { where: 'config.json attestation.ciIssuers' },
        );
      const config = r.data;
      if (seen.has(config.issuer))
        throw new GatehouseError('BAD_CONFIG', `CI issuer ${config.issuer} is configured twice`, {
          where: 'config.json attestation.ciIssuers',
        });
      seen.add(config.issuer);
      return { config, keys: keySet(config, options.home ?? '.') };
    });
  }

  /**
   * Verify a CI token and return the identity it proves.
   * @throws GatehouseError EVIDENCE_REJECTED naming the failed check (never echoing the token)
   */
  async verify(token: string): Promise<CiIdentity> {
    if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_BYTES)
      throw fail(`must be a compact JWT of at most ${MAX_TOKEN_BYTES} bytes`);
    let iss: unknown;
    let alg: unknown;
    try {
      alg = decodeProtectedHeader(token).alg;
      iss = decodeJwt(token).iss;
    } catch (e) {
      throw fail('is not a compact JWT', e);
    }
    // The unverified issuer only selects which configuration and keys to verify against; the
    // verification itself then checks the issuer again, signed.
    const entry = this.#issuers.find((x) => x.config.issuer === iss);
    if (entry === undefined)
      throw fail(`issuer ${JSON.stringify(String(iss)).slice(0, 200)} is not a configured CI issuer`);
    const { config } = entry;
    if (typeof alg !== 'string' || !(config.algorithms as readonly string[]).includes(alg))
      throw fail(`algorithm ${String(alg).slice(0, 16)} is not allowed for ${config.issuer}`);
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, entry.keys, {
        issuer: config.issuer,
        audience: config.audience,
        algorithms: [...config.algorithms],
        requiredClaims: ['iss', 'sub', 'aud', 'exp', 'iat'],
        currentDate: this.#now(),
        clockTolerance: 30,
      }));
    } catch (e) {
      const code = (e as { code?: string }).code ?? '';
      const why =
        code === 'ERR_JWT_EXPIRED'
          ? 'has expired'
          : code === 'ERR_JWT_CLAIM_VALIDATION_FAILED'
            ? `claim check failed (${(e as Error).message})`
            : code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED'
              ? 'signature does not verify'
              : code === 'ERR_JWKS_NO_MATCHING_KEY'
                ? 'no key of the issuer matches the token'
                : code === 'ERR_JWKS_TIMEOUT' || code === 'ERR_JOSE_GENERIC'
                  ? `the issuer's keys cannot be fetched (${(e as Error).message})`
                  : `does not verify (${(e as Error).message})`;
      throw fail(why, e);
    }
    const lifetime = Number(payload.exp) - Number(payload.iat);
    if (!(lifetime > 0 && lifetime <= config.maxLifetimeSeconds))
      throw fail(`lifetime ${lifetime} s is outside (0, ${config.maxLifetimeSeconds}] s`);
    const identity = identityOf(config.platform, payload, config.issuer);
    for (const [claim, allowed] of Object.entries(config.claims)) {
      const v = payload[claim];
      if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean')
        throw fail(`claim ${claim} is required by the issuer's configuration but missing`);
      if (!matches(String(v), allowed))
        throw fail(`claim ${claim} = ${JSON.stringify(String(v)).slice(0, 200)} is not allowed`);
    }
    return identity;
  }
}

function keySet(config: CiIssuerConfig, home: string): JWTVerifyGetKey {
  if (config.jwksUrl !== undefined)
    return createRemoteJWKSet(new URL(config.jwksUrl), { timeoutDuration: 5000, cooldownDuration: 30_000 });
  const path = resolve(home, config.jwksFile ?? '');
  try {
    return createLocalJWKSet(JSON.parse(readFileSync(path, 'utf8')) as never);
  } catch (e) {
    throw new GatehouseError('BAD_CONFIG', `the JWKS file of CI issuer ${config.issuer} cannot be read`, {
      where: path,
      cause: e,
    });
  }
}
