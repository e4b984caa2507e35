/**
 * The CI platform's OIDC identity token, for a runner agent that runs inside a CI job
 * (`gatehouse run --server` in GitHub Actions or GitLab CI): the attestation authority verifies it
 * and adds a `ci` submod to the runner's token (src/attestation/ci-token.ts). The token is a
 * credential: it is sent to the control plane and nowhere else, never printed, never passed to
 * the build.
 *
 * - GitHub Actions: the job's token service, `GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=AUD` with
 *   `Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN`, answering `{"value": "<jwt>"}`. The
 *   variables exist only in jobs with `permissions: id-token: write`. A fresh token is asked for at
 *   each attestation (they live minutes).
 * - GitLab CI: an ID token the pipeline declares with `id_tokens:` (its `aud` is set there),
 *   read from the variable it names (default `GATEHOUSE_ID_TOKEN`).
 */
import { z } from 'zod';
import { readBoundedText } from '../common/bounded-body.ts';
import { GatehouseError } from '../common/errors.ts';

/** Gives a CI identity token for one attestation. */
export interface CiTokenSource {
  readonly platform: 'github-actions' | 'gitlab-ci';
  /** @throws GatehouseError UNREACHABLE when the platform's token service fails */
  token(): Promise<string>;
}

/** The variable a GitLab pipeline's `id_tokens:` entry for gatehouse is named, by default. */
export const GITLAB_ID_TOKEN_VARIABLE = 'GATEHOUSE_ID_TOKEN';

const MAX_ANSWER_BYTES = 64 * 1024;
const TIMEOUT_MS = 15_000;
/** A compact JWS: three base64url parts. */
const COMPACT_JWT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/** The documented answer of the GitHub Actions token service. */
const githubAnswerSchema = z.looseObject({ value: z.string().min(1).max(16_384).regex(COMPACT_JWT) });

/** The token service failed (UNREACHABLE), or the job was given none (BAD_CONFIG). */
function unavailable(
  message: string,
  cause?: unknown,
  code: 'UNREACHABLE' | 'BAD_CONFIG' = 'UNREACHABLE',
): GatehouseError {
  return new GatehouseError(code, `CI identity token: ${message}`, cause === undefined ? {} : { cause });
}

function isLoopback(u: URL): boolean {
  return u.hostname === '127.0.0.1' || u.hostname === 'localhost' || u.hostname === '[::1]';
}

/**
 * The CI token source of the environment this process runs in: GitHub Actions
 * (`GITHUB_ACTIONS=true`), GitLab CI (`GITLAB_CI=true`), or none outside CI.
 * @param audience what a GitHub token is asked for (the `audience` of the control plane's
 *   configured issuer); GitLab's audience is fixed by the pipeline's `id_tokens:`
 * @throws GatehouseError BAD_CONFIG inside CI when the platform gives the job no token
 *   (GitHub: no `id-token: write` permission; GitLab: no `id_tokens:` entry), so that a job never
 *   silently attests without the identity its control plane may require
 */
export function ciTokenSourceFromEnv(
  env: NodeJS.ProcessEnv,
  options: { audience: string; gitlabVariable?: string },
): CiTokenSource | undefined {
  if (env.GITHUB_ACTIONS === 'true') {
    const url = env.ACTIONS_ID_TOKEN_REQUEST_URL;
    const bearer = env.ACTIONS_ID_TOKEN_REQUEST_TOKEN;
    if (url === undefined || url === '' || bearer === undefined || bearer === '')
      throw unavailable(
        'this GitHub Actions job has no OIDC token service (ACTIONS_ID_TOKEN_REQUEST_URL is unset): give the job `permissions: id-token: write`',
        undefined,
        'BAD_CONFIG',
      );
    return new GithubActionsTokenSource({
      requestUrl: url,
      requestToken: bearer,
      audience: options.audience,
    });
  }
  if (env.GITLAB_CI === 'true') {
    const name = options.gitlabVariable ?? GITLAB_ID_TOKEN_VARIABLE;
    const value = env[name];
    if (value === undefined || value === '')
      throw unavailable(
        `this GitLab CI job has no ID token in $${name}: declare it with \`id_tokens: ${name}: aud: <audience>\``,
        undefined,
        'BAD_CONFIG',
      );
    if (!COMPACT_JWT.test(value) || value.length > 16_384)
      throw unavailable(`$${name} does not hold a compact JWT`, undefined, 'BAD_CONFIG');
    return { platform: 'gitlab-ci', token: () => Promise.resolve(value) };
  }
  return undefined;
}

/** GitHub Actions' job token service (the documented request and answer). */
export class GithubActionsTokenSource implements CiTokenSource {
  readonly platform = 'github-actions' as const;
  readonly #url: URL;
  readonly #bearer: string;

  /** @throws GatehouseError BAD_CONFIG for a request URL that is not https (http on loopback) */
  constructor(o: { requestUrl: string; requestToken: string; audience: string }) {
    let url: URL;
    try {
      url = new URL(o.requestUrl);
    } catch (cause) {
      throw unavailable('ACTIONS_ID_TOKEN_REQUEST_URL is not a URL', cause, 'BAD_CONFIG');
    }
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopback(url)))
      throw unavailable(`the token service ${url.origin} must be https`, undefined, 'BAD_CONFIG');
    if (o.audience === '' || o.audience.length > 512)
      throw unavailable('the audience must be 1 to 512 characters', undefined, 'BAD_CONFIG');
    // The service's URL already carries a query; the audience is one more parameter of it.
    url.searchParams.set('audience', o.audience);
    this.#url = url;
    this.#bearer = o.requestToken;
  }

  /** Ask for a fresh token. @throws GatehouseError UNREACHABLE */
  async token(): Promise<string> {
    const url = this.#url;
    let res: Response;
    try {
      res = await fetch(url, {
        headers: {
          authorization: `bearer ${this.#bearer}`,
          accept: 'application/json; api-version=2.0',
          'user-agent': 'gatehouse-agent',
        },
        // A redirect could carry the request token elsewhere: none is followed.
        redirect: 'error',
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
    } catch (cause) {
      throw unavailable(`the token service at ${url.origin} cannot be reached`, cause);
    }
    let text: string;
    try {
      text = await readBoundedText(res, MAX_ANSWER_BYTES, 'CI identity token: the token service');
    } catch (cause) {
      throw unavailable(
        cause instanceof GatehouseError
          ? `the token service answered more than ${MAX_ANSWER_BYTES} bytes`
          : 'the token service answer broke off',
        cause,
      );
    }
    // Neither the status text nor the body is echoed: an answer may carry a credential.
    if (res.status !== 200) throw unavailable(`the token service answered HTTP ${res.status}`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      throw unavailable('the token service did not answer JSON', e);
    }
    const r = githubAnswerSchema.safeParse(parsed);
    if (!r.success) throw unavailable('the token service answer has no `value` holding a compact JWT');
    return r.data.value;
  }
}
