/**
 * Console login with OpenID Connect: the authorization code flow with PKCE (S256), against one
 * issuer configured in config.json `console.oidc`. The server is the client: the browser only
 * carries the state (an encrypted, HttpOnly cookie with the state, nonce and PKCE verifier) and
 * the code; the code is exchanged and the ID token verified here, and the page never sees a token.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { createRemoteJWKSet, type JWTPayload, type JWTVerifyGetKey, jwtVerify } from 'jose';
import { z } from 'zod';
import { readBoundedText } from '../../common/bounded-body.ts';
import { GatehouseError } from '../../common/errors.ts';
import type { ConsoleOidcConfig } from '../../home/config.ts';
import { type ConsoleRole, sameSecret } from './session.ts';

function isLoopback(u: URL): boolean {
  return u.hostname === '127.0.0.1' || u.hostname === 'localhost' || u.hostname === '[::1]';
}

/** https, or plain http on loopback only (a test's or a local issuer). */
function isSafeUrl(value: string): boolean {
  try {
    const u = new URL(value);
    return (u.protocol === 'https:' || (u.protocol === 'http:' && isLoopback(u))) && u.hash === '';
  } catch {
    return false;
  }
}

/** The parts of a discovery document the login uses, checked. */
const discoverySchema = z.looseObject({
  issuer: z.string(),
  authorization_endpoint: z.string().refine(isSafeUrl, 'must be https (http only on loopback)'),
  token_endpoint: z.string().refine(isSafeUrl, 'must be https (http only on loopback)'),
  jwks_uri: z.string().refine(isSafeUrl, 'must be https (http only on loopback)'),
  response_types_supported: z.array(z.string()).optional(),
  code_challenge_methods_supported: z.array(z.string()).optional(),
  id_token_signing_alg_values_supported: z.array(z.string()).optional(),
  token_endpoint_auth_methods_supported: z.array(z.string()).optional(),
});
type Discovery = z.infer<typeof discoverySchema>;

const tokenAnswer = z.looseObject({
  id_token: z
    .string()
    .min(1)
    .max(16 * 1024),
  token_type: z.string().regex(/^bearer$/i),
});

/** The flow state the browser carries between login and callback (encrypted: it holds the verifier). */
interface FlowState {
  state: string;
  nonce: string;
  verifier: string;
  redirectUri: string;
  exp: number;
}

/** The login flow's cookie. */
export const OIDC_COOKIE = 'gatehouse_oidc';
/** How long a login may take at the issuer. */
const FLOW_SECONDS = 600;
const DISCOVERY_SECONDS = 3600;
const MAX_ANSWER_BYTES = 256 * 1024;

function fail(message: string, cause?: unknown): GatehouseError {
  return new GatehouseError('UNAUTHORIZED', `OIDC login: ${message}`, cause === undefined ? {} : { cause });
}

function b64url(bytes: Buffer): string {
  return bytes.toString('base64url');
}

/** Whether a claim's value is one of `allowed` (for an array claim, one of its elements). */
function claimMatches(value: unknown, allowed: readonly string[]): boolean {
  const values = Array.isArray(value) ? value : [value];
  return values.some(
    (v) =>
      (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') &&
      allowed.includes(String(v)),
  );
}

function allMatch(payload: JWTPayload, rules: Record<string, string[]>): string | undefined {
  for (const [claim, allowed] of Object.entries(rules))
    if (!claimMatches(payload[claim], allowed)) return claim;
  return undefined;
}

/** Who a verified ID token names, and as which role. */
export interface OidcIdentity {
  role: ConsoleRole;
  subject: string;
  /** `sub`, with the name or e-mail when the token has one: what the page shows. */
  who: string;
}

/**
 * The console's OIDC client. Discovery is read on the first login (and again after an hour, or
 * after it failed), so the server starts while the issuer is down; logins then fail, closed.
 */
export class OidcLogin {
  readonly #config: ConsoleOidcConfig;
  readonly #key: Buffer;
  readonly #secret: string | undefined;
  readonly #now: () => number;
  #discovery: { doc: Discovery; keys: JWTVerifyGetKey; until: number } | undefined;

  /**
   * @param stateKey the 32-byte key the flow cookie is encrypted with
   * @param clientSecret the client secret (read from `clientSecretFile` by `loadOidcLogin`)
   */
  constructor(
    config: ConsoleOidcConfig,
    stateKey: Buffer,
    options: { clientSecret?: string; now?: () => number } = {},
  ) {
    this.#config = config;
    this.#key = stateKey;
    this.#secret = options.clientSecret;
    this.#now = options.now ?? Date.now;
  }

  get issuer(): string {
    return this.#config.issuer;
  }

  /** The discovery document, checked: the issuer exactly ours, PKCE S256 and the code flow offered. */
  async #discover(): Promise<{ doc: Discovery; keys: JWTVerifyGetKey }> {
    if (this.#discovery !== undefined && this.#discovery.until > this.#now()) return this.#discovery;
    const where = `${this.#config.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
    let raw: unknown;
    try {
      const res = await fetch(where, { redirect: 'error', signal: AbortSignal.timeout(10_000) });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      raw = JSON.parse(await readBoundedText(res, MAX_ANSWER_BYTES, 'OIDC discovery'));
    } catch (e) {
      throw new GatehouseError('UNREACHABLE', `OIDC login: the issuer's discovery document cannot be read`, {
        where,
        cause: e,
      });
    }
    const r = discoverySchema.safeParse(raw);
    if (!r.success)
      throw fail(`discovery document ${r.error.issues[0]?.path.join('.')}: ${r.error.issues[0]?.message}`);
    const doc = r.data;
    // The document must speak for the configured issuer, or its keys would be another's.
    if (doc.issuer !== this.#config.issuer)
      throw fail(
        `discovery names issuer ${JSON.stringify(doc.issuer.slice(0, 200))}, not ${this.#config.issuer}`,
      );
    if (doc.response_types_supported !== undefined && !doc.response_types_supported.includes('code'))
      throw fail('the issuer does not offer the authorization code flow');
    // Without S256 listed the issuer may ignore the challenge; PKCE would then protect nothing.
    if (!(doc.code_challenge_methods_supported ?? []).includes('S256'))
      throw fail('the issuer does not offer PKCE with S256');
    const keys = createRemoteJWKSet(new URL(doc.jwks_uri), {
      timeoutDuration: 5000,
      cooldownDuration: 30_000,
    });
    this.#discovery = { doc, keys, until: this.#now() + DISCOVERY_SECONDS * 1000 };
    return this.#discovery;
  }

  /**
   * Start a login: where to send the browser, and the flow cookie's value to set.
   * @param defaultRedirect `<this origin>/console/oidc/callback`, used when the config names none
   * @throws GatehouseError UNREACHABLE, UNAUTHORIZED (the issuer's discovery does not do)
   */
  async start(defaultRedirect: string): Promise<{ location: string; cookie: string }> {
    const { doc } = await this.#discover();
    const flow: FlowState = {
      state: b64url(randomBytes(24)),
      nonce: b64url(randomBytes(24)),
      verifier: b64url(randomBytes(32)),
      redirectUri: this.#config.redirectUri ?? defaultRedirect,
      exp: Math.floor(this.#now() / 1000) + FLOW_SECONDS,
    };
    const url = new URL(doc.authorization_endpoint);
    const params = {
      response_type: 'code',
      client_id: this.#config.clientId,
      redirect_uri: flow.redirectUri,
      scope: [...new Set(['openid', ...this.#config.scopes])].join(' '),
      state: flow.state,
      nonce: flow.nonce,
      code_challenge: b64url(createHash('sha256').update(flow.verifier).digest()),
      code_challenge_method: 'S256',
    };
    for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
    return { location: url.toString(), cookie: this.#seal(flow) };
  }

  /**
   * Finish a login at the callback: check the state against the flow cookie, exchange the code
   * with the PKCE verifier, verify the ID token (signature by the issuer's JWKS, iss, aud, azp,
   * exp, iat, nonce) and the allowed claims.
   * @throws GatehouseError UNAUTHORIZED naming the failed check (never echoing a token or code)
   */
  async finish(query: URLSearchParams, flowCookie: string | undefined): Promise<OidcIdentity> {
    const flow = this.#open(flowCookie);
    const state = query.get('state') ?? '';
    // The state binds the answer to the browser that started the login (no login CSRF).
    if (!sameSecret(state, flow.state)) throw fail('the state does not match this browser’s login');
    const error = query.get('error');
    if (error !== null)
      throw fail(`the issuer refused: ${error.replace(/[^\x20-\x7e]/g, '?').slice(0, 100)}`);
    // RFC 9207: an issuer that names itself in the answer must be ours (mix-up defence).
    const iss = query.get('iss');
    if (iss !== null && iss !== this.#config.issuer) throw fail('the answer names another issuer');
    const code = query.get('code');
    if (code === null || code.length === 0 || code.length > 4096) throw fail('the answer has no code');
    const { doc, keys } = await this.#discover();
    const idToken = await this.#exchange(doc, code, flow);
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(idToken, keys, {
        issuer: this.#config.issuer,
        audience: this.#config.clientId,
        algorithms: [...this.#config.algorithms],
        requiredClaims: ['iss', 'sub', 'aud', 'exp', 'iat', 'nonce'],
        currentDate: new Date(this.#now()),
        clockTolerance: 30,
      }));
    } catch (e) {
      const c = (e as { code?: string }).code ?? '';
      throw fail(
        c === 'ERR_JWT_EXPIRED'
          ? 'the ID token has expired'
          : c === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED'
            ? 'the ID token’s signature does not verify'
            : c === 'ERR_JWKS_NO_MATCHING_KEY'
              ? 'no key of the issuer matches the ID token'
              : c === 'ERR_JOSE_ALG_NOT_ALLOWED'
                ? 'the ID token’s algorithm is not allowed'
                : `the ID token does not verify (${(e as Error).message.slice(0, 200)})`,
        e,
      );
    }
    if (typeof payload.nonce !== 'string' || !sameSecret(payload.nonce, flow.nonce))
      throw fail('the ID token’s nonce is not this login’s');
    // With several audiences, the token must say it was issued to us (OIDC Core 3.1.3.7).
    const aud = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
    if ((aud.length > 1 || payload.azp !== undefined) && payload.azp !== this.#config.clientId)
      throw fail('the ID token was issued to another client (azp)');
    const subject = String(payload.sub);
    const refused = allMatch(payload, this.#config.allowed);
    if (refused !== undefined) throw fail(`claim ${refused} is not one allowed to log in`);
    const triager =
      this.#config.triager !== undefined && allMatch(payload, this.#config.triager) === undefined;
    const name = [payload.email, payload.name, payload.preferred_username].find((v) => typeof v === 'string');
    return {
      role: triager ? 'triager' : 'viewer',
      subject,
      who: name === undefined ? subject : `${String(name)} (${subject})`,
    };
  }

  /** POST the code and the verifier to the token endpoint; the ID token it answers with. */
  async #exchange(doc: Discovery, code: string, flow: FlowState): Promise<string> {
    const form = new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: flow.redirectUri,
      code_verifier: flow.verifier,
    });
    const headers: Record<string, string> = {
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
    };
    const methods = doc.token_endpoint_auth_methods_supported ?? ['client_secret_basic'];
    if (this.#secret === undefined) form.set('client_id', this.#config.clientId);
    else if (methods.includes('client_secret_basic'))
      headers.authorization = `Basic ${Buffer.from(
        `${encodeURIComponent(this.#config.clientId)}:${encodeURIComponent(this.#secret)}`,
      ).toString('base64')}`;
    else if (methods.includes('client_secret_post')) {
      form.set('client_id', this.#config.clientId);
      form.set('client_secret', this.#secret);
    } else throw fail('the issuer offers no client authentication this console does');
    let text: string;
    let status: number;
    try {
      const res = await fetch(doc.token_endpoint, {
        method: 'POST',
        headers,
        body: form.toString(),
        redirect: 'error',
        signal: AbortSignal.timeout(10_000),
      });
      status = res.status;
      text = await readBoundedText(res, MAX_ANSWER_BYTES, 'OIDC token endpoint');
    } catch (e) {
      throw new GatehouseError('UNREACHABLE', 'OIDC login: the token endpoint cannot be reached', {
        cause: e,
      });
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (e) {
      throw fail(`the token endpoint answered ${status} with no JSON`, e);
    }
    if (status !== 200) {
      const err = (body as { error?: unknown }).error;
      throw fail(
        `the token endpoint refused the code (${status}${typeof err === 'string' ? `, ${err.replace(/[^\x20-\x7e]/g, '?').slice(0, 80)}` : ''})`,
      );
    }
    const r = tokenAnswer.safeParse(body);
    if (!r.success)
      throw fail(`the token answer ${r.error.issues[0]?.path.join('.')}: ${r.error.issues[0]?.message}`);
    return r.data.id_token;
  }

  /** The flow cookie: AES-256-GCM, so the verifier is unreadable and the state unforgeable. */
  #seal(flow: FlowState): string {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.#key, iv);
    const body = Buffer.concat([c.update(JSON.stringify(flow), 'utf8'), c.final()]);
    return b64url(Buffer.concat([iv, c.getAuthTag(), body]));
  }

  #open(cookie: string | undefined): FlowState {
    if (cookie === undefined || !/^[A-Za-z0-9_-]{40,2000}$/.test(cookie))
      throw fail('no login is under way in this browser (start again)');
    let flow: FlowState;
    try {
      const raw = Buffer.from(cookie, 'base64url');
      const d = createDecipheriv('aes-256-gcm', this.#key, raw.subarray(0, 12));
      d.setAuthTag(raw.subarray(12, 28));
      flow = JSON.parse(Buffer.concat([d.update(raw.subarray(28)), d.final()]).toString('utf8')) as FlowState;
    } catch (e) {
      throw fail('the login state is not this server’s (start again)', e);
    }
    if (!(flow.exp > Math.floor(this.#now() / 1000))) throw fail('the login took too long (start again)');
    return flow;
  }
}

/**
 * The console OIDC client's secret, read from `clientSecretFile` (mode 0600, relative to the
 * home); undefined for a public client.
 * @throws GatehouseError BAD_CONFIG naming the file
 */
export async function loadOidcClientSecret(
  root: string,
  config: ConsoleOidcConfig,
): Promise<string | undefined> {
  if (config.clientSecretFile === undefined) return undefined;
  const path = resolve(root, config.clientSecretFile);
  const info = await stat(path).catch((e: unknown) => {
    throw new GatehouseError(
      'BAD_CONFIG',
      `cannot read the console OIDC client secret: ${(e as Error).message}`,
      {
        where: path,
        cause: e,
      },
    );
  });
  if ((info.mode & 0o077) !== 0)
    throw new GatehouseError(
      'BAD_CONFIG',
      'the console OIDC client secret file is readable by others: chmod 600 it',
      {
        where: path,
      },
    );
  const secret = (await readFile(path, 'utf8')).trim();
  if (secret.length === 0)
    throw new GatehouseError('BAD_CONFIG', 'the console OIDC client secret file is empty', { where: path });
  return secret;
}
