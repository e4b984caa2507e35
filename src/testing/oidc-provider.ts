/**
 * Test support (not product code): an OpenID Connect provider on loopback, for the console's
 * login where no real issuer runs. It serves what OIDC Discovery 1.0, OAuth 2.0 (RFC 6749), PKCE
 * (RFC 7636) and OIDC Core document, in their shapes: the discovery document, an authorization
 * endpoint that logs in `user` at once and redirects back with a code (and `iss`, RFC 9207), a
 * token endpoint that checks the client, the redirect URI and the PKCE verifier and answers with
 * an ID token signed ES256, and the JWKS. `tamper` makes it misbehave as an attacker would.
 */
import { createHash, createPublicKey, generateKeyPairSync, type KeyObject, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, SignJWT } from 'jose';

/** How the provider lies, for the tests of the checks that catch it. */
export type OidcTamper =
  | 'wrong-nonce'
  | 'no-nonce'
  | 'wrong-audience'
  | 'wrong-issuer'
  | 'expired'
  | 'foreign-key'
  | 'alg-none'
  | 'hs256'
  | 'discovery-other-issuer'
  | 'no-s256';

interface Grant {
  clientId: string;
  redirectUri: string;
  challenge: string;
  nonce: string | undefined;
  claims: Record<string, unknown>;
}

/** An OIDC provider on 127.0.0.1 with an ephemeral port. */
export class LoopbackOidcProvider {
  readonly #server: Server;
  readonly #key: KeyObject;
  readonly #foreign: KeyObject;
  readonly #grants = new Map<string, Grant>();
  readonly #client: { id: string; secret: string | undefined };
  issuer = '';
  /** The claims of the user the next authorization logs in (besides iss, aud, exp, iat, nonce). */
  user: Record<string, unknown> = { sub: 'user-1' };
  tamper: OidcTamper | undefined;
  /** Token requests seen, with whether each carried a PKCE verifier that matched. */
  readonly tokenRequests: { pkce: boolean; clientAuth: boolean }[] = [];

  private constructor(client: { id: string; secret: string | undefined }) {
    this.#client = client;
    this.#key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    this.#foreign = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    this.#server = createServer((req, res) => {
      void this.#handle(req).then(
        (r) => {
          res.writeHead(r.status, r.headers).end(r.body ?? '');
        },
        (e: unknown) => res.writeHead(500).end(String(e)),
      );
    });
  }

  /** Start one for a client (`secret` undefined: a public client). */
  static async start(client: { id: string; secret?: string }): Promise<LoopbackOidcProvider> {
    const p = new LoopbackOidcProvider({ id: client.id, secret: client.secret });
    await new Promise<void>((r) => p.#server.listen(0, '127.0.0.1', r));
    p.issuer = `http://127.0.0.1:${(p.#server.address() as AddressInfo).port}`;
    return p;
  }

  async stop(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((r) => this.#server.close(() => r()));
  }

  async #handle(
    req: IncomingMessage,
  ): Promise<{ status: number; headers: Record<string, string>; body?: string }> {
    const url = new URL(req.url ?? '/', this.issuer);
    const json = (status: number, body: unknown) => ({
      status,
      headers: { 'content-type': 'application/json', 'cache-control': 'no-store' },
      body: JSON.stringify(body),
    });
    if (url.pathname === '/.well-known/openid-configuration')
      return json(200, {
        issuer: this.tamper === 'discovery-other-issuer' ? 'https://evil.example' : this.issuer,
        authorization_endpoint: `${this.issuer}/authorize`,
        token_endpoint: `${this.issuer}/token`,
        jwks_uri: `${this.issuer}/jwks`,
        response_types_supported: ['code'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['ES256'],
        code_challenge_methods_supported: this.tamper === 'no-s256' ? ['plain'] : ['S256'],
        token_endpoint_auth_methods_supported: ['client_secret_basic', 'none'],
        scopes_supported: ['openid', 'profile', 'email'],
        grant_types_supported: ['authorization_code'],
      });
    if (url.pathname === '/jwks')
      return json(200, {
        keys: [{ ...(await exportJWK(createPublicKey(this.#key))), kid: 'k1', alg: 'ES256', use: 'sig' }],
      });
    if (url.pathname === '/authorize') {
      const q = url.searchParams;
      const redirectUri = q.get('redirect_uri') ?? '';
      if (q.get('client_id') !== this.#client.id || redirectUri === '')
        return json(400, { error: 'invalid_request' });
      if (q.get('response_type') !== 'code' || !(q.get('scope') ?? '').split(' ').includes('openid'))
        return json(400, { error: 'invalid_request' });
      if (q.get('code_challenge_method') !== 'S256' || (q.get('code_challenge') ?? '').length !== 43)
        return json(400, { error: 'invalid_request', error_description: 'PKCE S256 required' });
      const code = randomBytes(16).toString('base64url');
      this.#grants.set(code, {
        clientId: this.#client.id,
        redirectUri,
        challenge: q.get('code_challenge') ?? '',
        nonce: q.get('nonce') ?? undefined,
        claims: { ...this.user },
      });
      const back = new URL(redirectUri);
      back.searchParams.set('code', code);
      back.searchParams.set('state', q.get('state') ?? '');
      back.searchParams.set('iss', this.issuer);
      return { status: 302, headers: { location: back.toString() } };
    }
    if (url.pathname === '/token' && req.method === 'POST') {
      let raw = '';
      for await (const c of req) raw += (c as Buffer).toString();
      const form = new URLSearchParams(raw);
      const basic = /^Basic (.+)$/.exec(req.headers.authorization ?? '')?.[1];
      const [id, secret] =
        basic === undefined
          ? [form.get('client_id'), undefined]
          : Buffer.from(basic, 'base64').toString().split(':').map(decodeURIComponent);
      const clientAuth =
        this.#client.secret === undefined
          ? id === this.#client.id
          : id === this.#client.id && secret === this.#client.secret;
      const code = form.get('code') ?? '';
      const grant = this.#grants.get(code);
      this.#grants.delete(code); // a code is good once
      const verifier = form.get('code_verifier') ?? '';
      const pkce =
        grant !== undefined && createHash('sha256').update(verifier).digest('base64url') === grant.challenge;
      this.tokenRequests.push({ pkce, clientAuth });
      if (!clientAuth) return json(401, { error: 'invalid_client' });
      if (form.get('grant_type') !== 'authorization_code' || grant === undefined)
        return json(400, { error: 'invalid_grant' });
      if (form.get('redirect_uri') !== grant.redirectUri) return json(400, { error: 'invalid_grant' });
      if (!pkce) return json(400, { error: 'invalid_grant' });
      return json(200, {
        access_token: randomBytes(16).toString('base64url'),
        token_type: 'Bearer',
        expires_in: 300,
        id_token: await this.idToken(grant),
      });
    }
    return json(404, { error: 'not_found' });
  }

  /** An ID token for a grant, as `tamper` says. */
  async idToken(grant: Pick<Grant, 'nonce' | 'claims'>): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    const t = this.tamper;
    const claims: Record<string, unknown> = { ...grant.claims };
    if (t === 'wrong-nonce') claims.nonce = 'another-nonce';
    else if (t !== 'no-nonce' && grant.nonce !== undefined) claims.nonce = grant.nonce;
    if (t === 'alg-none' || t === 'hs256') {
      const header = t === 'alg-none' ? { alg: 'none', typ: 'JWT' } : { alg: 'HS256', typ: 'JWT', kid: 'k1' };
      const body = { ...claims, iss: this.issuer, aud: this.#client.id, iat: now, exp: now + 300 };
      const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
      return `${enc(header)}.${enc(body)}.${t === 'alg-none' ? '' : 'c2lnbmF0dXJl'}`;
    }
    return new SignJWT(claims)
      .setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'JWT' })
      .setIssuer(t === 'wrong-issuer' ? 'https://evil.example' : this.issuer)
      .setAudience(t === 'wrong-audience' ? 'another-client' : this.#client.id)
      .setIssuedAt(t === 'expired' ? now - 7200 : now)
      .setExpirationTime(t === 'expired' ? now - 3600 : now + 300)
      .sign(t === 'foreign-key' ? this.#foreign : this.#key);
  }
}
