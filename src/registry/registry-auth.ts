/**
 * Authentication to a registry, following its challenge (`WWW-Authenticate`): anonymous until
 * asked, then HTTP Basic with the configured credentials, or a bearer token from the token service
 * the challenge names (https://distribution.github.io/distribution/spec/auth/token/). Tokens are
 * cached per scope, in memory only.
 */
import { GatehouseError } from '../common/errors.ts';
import { isLoopback, parseJson, readLimited } from './registry-http.ts';

/** Credentials; they are used for Basic challenges and for the token service of Bearer ones. */
export interface RegistryCredentials {
  username: string;
  password: string;
}

/** One challenge of a `WWW-Authenticate` header: its scheme (lowercase) and parameters. */
export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** The token scope to read a repository. */
export function pullScope(repo: string): string {
  return `repository:${repo}:pull`;
}

/** The token scope to write a repository (which includes reading it). */
export function pushScope(repo: string): string {
  return `repository:${repo}:pull,push`;
}

/** The token scope to delete from a repository. */
export function deleteScope(repo: string): string {
  return `repository:${repo}:delete`;
}

/**
 * Parse a `WWW-Authenticate` header into challenges (RFC 9110 §11.6.1): a scheme followed by
 * comma-separated `name=value` pairs, values optionally quoted.
 */
export function parseChallenges(header: string): Challenge[] {
  const out: Challenge[] = [];
  let current: Challenge | undefined;
  let i = 0;
  const n = header.length;
  const token = (): string => {
    const m = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+/.exec(header.slice(i));
    i += m?.[0].length ?? 0;
    return m?.[0] ?? '';
  };
  while (i < n) {
    while (i < n && (header[i] === ' ' || header[i] === ',' || header[i] === '\t')) i++;
    if (i >= n) break;
    const name = token();
    if (name === '') break; // not a token: stop rather than guess
    let j = i;
    while (header[j] === ' ') j++;
    if (header[j] !== '=') {
      current = { scheme: name.toLowerCase(), params: {} };
      out.push(current);
      continue;
    }
    i = j + 1;
    while (header[i] === ' ') i++;
    let value = '';
    if (header[i] === '"') {
      i++;
      while (i < n && header[i] !== '"') {
        if (header[i] === '\\' && i + 1 < n) i++;
        value += header[i];
        i++;
      }
      i++;
    } else {
      value = token();
    }
    if (current !== undefined) current.params[name.toLowerCase()] = value;
  }
  return out;
}

/** Scopes asked for: the challenge's, plus the ones this request needs. */
function mergeScopes(fromChallenge: string | undefined, needed: string): string {
  const all = new Set([...(fromChallenge ?? '').split(' '), ...needed.split(' ')].filter((s) => s !== ''));
  return [...all].join(' ');
}

export interface RegistryAuthOptions {
  /** The registry's base URL, whose origin errors name. */
  registry: URL;
  credentials?: RegistryCredentials | undefined;
  /** Timeout of a token-service request. */
  timeoutMs: number;
  fetch: typeof fetch;
}

/**
 * The `Authorization` a registry asked for, per scope. Credentials never go over plain HTTP to
 * anything but loopback, and the token service must be https (or loopback).
 */
export class RegistryAuth {
  readonly #registry: URL;
  readonly #credentials: RegistryCredentials | undefined;
  readonly #timeoutMs: number;
  readonly #fetch: typeof fetch;
  /** Bearer tokens by scope string; Basic when the registry asked for Basic. */
  readonly #tokens = new Map<string, string>();
  #basic = false;

  constructor(options: RegistryAuthOptions) {
    this.#registry = options.registry;
    this.#credentials = options.credentials;
    this.#timeoutMs = options.timeoutMs;
    this.#fetch = options.fetch;
  }

  /** The `Authorization` header for a request needing `scope`, as the last challenge asked; none before one. */
  authorization(scope: string): string | undefined {
    if (this.#basic) return this.#basicHeader(this.#registry);
    return this.#tokens.get(scope);
  }

  /**
   * Answer the challenge of a 401 to a request needing `scope`, and remember the answer for the
   * next requests.
   * @throws GatehouseError REGISTRY_AUTH_FAILED for a scheme other than Basic or Bearer, missing credentials or a refused token
   */
  async answer(header: string, scope: string): Promise<string> {
    const challenges = parseChallenges(header);
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    const basic = challenges.find((c) => c.scheme === 'basic');
    if (bearer !== undefined) {
      const auth = `Bearer ${await this.#fetchToken(bearer.params, mergeScopes(bearer.params.scope, scope))}`;
      this.#tokens.set(scope, auth);
      return auth;
    }
    if (basic !== undefined) {
      const auth = this.#basicHeader(this.#registry);
      this.#basic = true;
      return auth;
    }
    throw new GatehouseError(
      'REGISTRY_AUTH_FAILED',
      `the registry asked for an unsupported authentication '${header.slice(0, 80)}'`,
      {
        where: this.#registry.origin,
      },
    );
  }

  #basicHeader(to: URL): string {
    if (this.#credentials === undefined) {
      throw new GatehouseError(
        'REGISTRY_AUTH_FAILED',
        'the registry requires credentials and none are configured',
        {
          where: this.#registry.origin,
        },
      );
    }
    // Never send a password in clear over the network.
    if (to.protocol !== 'https:' && !isLoopback(to.hostname)) {
      throw new GatehouseError(
        'REGISTRY_AUTH_FAILED',
        `refusing to send credentials over plain HTTP to ${to.origin}`,
      );
    }
    const { username, password } = this.#credentials;
    return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
  }

  /** The token-service flow: GET realm?service=…&scope=…, with Basic credentials when we have them. */
  async #fetchToken(params: Record<string, string>, scope: string): Promise<string> {
    const url = this.#tokenUrl(params, scope);
    const headers: Record<string, string> = {};
    if (this.#credentials !== undefined) headers.authorization = this.#basicHeader(url);
    let res: Response;
    try {
      res = await this.#fetch(url, {
        headers,
        redirect: 'error',
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
    } catch (e) {
      throw new GatehouseError('UNREACHABLE', `cannot reach the token service: ${(e as Error).message}`, {
        where: url.origin,
        cause: e,
      });
    }
    return readToken(res, url);
  }

  /** The token request's URL: the challenge's realm, which must be https (or loopback). */
  #tokenUrl(params: Record<string, string>, scope: string): URL {
    const realm = params.realm;
    let url: URL;
    try {
      url = new URL(realm ?? '');
    } catch (e) {
      throw new GatehouseError('REGISTRY_AUTH_FAILED', 'the bearer challenge names no valid token realm', {
        where: this.#registry.origin,
        cause: e,
      });
    }
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopback(url.hostname))) {
      throw new GatehouseError('REGISTRY_AUTH_FAILED', `refusing the token realm ${url.origin}: not https`);
    }
    if (params.service !== undefined) url.searchParams.set('service', params.service);
    for (const s of scope.split(' ').filter((x) => x !== '')) url.searchParams.append('scope', s);
    return url;
  }
}

/** The token of a token service's answer (`token`, or OAuth's `access_token`). @throws REGISTRY_AUTH_FAILED */
async function readToken(res: Response, url: URL): Promise<string> {
  if (res.status !== 200) {
    await res.body?.cancel();
    throw new GatehouseError('REGISTRY_AUTH_FAILED', `the token service answered ${res.status}`, {
      where: url.origin,
    });
  }
  const body = parseJson(await readLimited(res, 64 * 1024, url.origin), url.origin) as {
    token?: unknown;
    access_token?: unknown;
  };
  const token = typeof body.token === 'string' ? body.token : body.access_token;
  if (typeof token !== 'string' || token === '' || !/^[\x21-\x7e]+$/.test(token)) {
    throw new GatehouseError('REGISTRY_AUTH_FAILED', 'the token service returned no usable token', {
      where: url.origin,
    });
  }
  return token;
}
