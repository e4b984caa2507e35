import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { isGatehouseError } from '../../common/errors.ts';
import { type ConsoleOidcConfig, consoleOidcSchema } from '../../home/config.ts';
import { LoopbackOidcProvider, type OidcTamper } from '../../testing/oidc-provider.ts';
import { OidcLogin } from './oidc-login.ts';

const CALLBACK = 'http://127.0.0.1:1/console/oidc/callback';

/** The config as config.json would give it, defaults filled in by the schema. */
function oidcConfig(issuer: string, extra: Partial<Record<string, unknown>> = {}): ConsoleOidcConfig {
  return consoleOidcSchema.parse({
    issuer,
    clientId: 'gatehouse-console',
    allowed: { groups: ['security', 'platform'] },
    triager: { groups: ['security'] },
    ...extra,
  });
}

/** The browser's part: follow the login to the issuer and back; the callback's query. */
async function authorize(location: string): Promise<URLSearchParams> {
  const r = await fetch(location, { redirect: 'manual' });
  assert.equal(r.status, 302, await r.text());
  return new URL(r.headers.get('location') ?? '').searchParams;
}

const refused = (pattern: RegExp) => (e: unknown) => {
  assert.ok(isGatehouseError(e, 'UNAUTHORIZED'), String(e));
  assert.match(e.message, pattern);
  return true;
};

describe('console login with OIDC (authorization code, PKCE)', () => {
  let provider: LoopbackOidcProvider;
  let login: OidcLogin;
  const key = randomBytes(32);

  before(async () => {
    provider = await LoopbackOidcProvider.start({ id: 'gatehouse-console' });
    login = new OidcLogin(oidcConfig(provider.issuer), key);
  });
  after(() => provider.stop());

  it('logs in an allowed user as a viewer, and a user of the triager claim as a triager', async () => {
    provider.tamper = undefined;
    provider.user = { sub: 'u-1', email: 'ana@example.org', groups: ['platform'] };
    const start = await login.start(CALLBACK);
    const to = new URL(start.location);
    assert.equal(to.origin, provider.issuer);
    assert.equal(to.searchParams.get('code_challenge_method'), 'S256');
    assert.equal(to.searchParams.get('redirect_uri'), CALLBACK);
    assert.ok(to.searchParams.get('nonce'));
    const who = await login.finish(await authorize(start.location), start.cookie);
    assert.deepEqual(who, { role: 'viewer', subject: 'u-1', who: 'ana@example.org (u-1)' });
    assert.equal(provider.tokenRequests.at(-1)?.pkce, true, 'the code was exchanged with its verifier');

    provider.user = { sub: 'u-2', groups: ['security'] };
    const s2 = await login.start(CALLBACK);
    assert.equal((await login.finish(await authorize(s2.location), s2.cookie)).role, 'triager');
  });

  it('keeps the PKCE verifier out of the URL and unreadable in the flow cookie', async () => {
    provider.tamper = undefined;
    const start = await login.start(CALLBACK);
    const query = await authorize(start.location);
    assert.ok(!start.location.includes('code_verifier'));
    assert.doesNotMatch(Buffer.from(start.cookie, 'base64url').toString('latin1'), /verifier|nonce|state/);
    await login.finish(query, start.cookie);
  });

  it('refuses a user whose claims are not allowed', async () => {
    provider.tamper = undefined;
    provider.user = { sub: 'u-3', groups: ['marketing'] };
    const s = await login.start(CALLBACK);
    await assert.rejects(login.finish(await authorize(s.location), s.cookie), refused(/claim groups/));
    provider.user = { sub: 'u-4' };
    const s2 = await login.start(CALLBACK);
    await assert.rejects(login.finish(await authorize(s2.location), s2.cookie), refused(/claim groups/));
  });

  const tampered: [OidcTamper, RegExp][] = [
    ['wrong-nonce', /nonce/],
    ['no-nonce', /nonce/],
    ['wrong-audience', /aud/],
    ['wrong-issuer', /iss/],
    ['expired', /expired/],
    ['foreign-key', /signature/],
    ['alg-none', /algorithm|does not verify/],
    ['hs256', /algorithm|does not verify/],
  ];
  for (const [tamper, why] of tampered)
    it(`refuses an ID token with ${tamper}`, async () => {
      provider.tamper = tamper;
      provider.user = { sub: 'u-5', groups: ['security'] };
      try {
        const s = await login.start(CALLBACK);
        await assert.rejects(login.finish(await authorize(s.location), s.cookie), refused(why));
      } finally {
        provider.tamper = undefined;
      }
    });

  it("refuses an answer for another browser's login (state), a forged or expired flow cookie, and a replayed code", async () => {
    provider.user = { sub: 'u-6', groups: ['security'] };
    const mine = await login.start(CALLBACK);
    const theirs = await login.start(CALLBACK);
    const theirQuery = await authorize(theirs.location);
    // Login CSRF: an attacker's code and state delivered to this browser's callback.
    await assert.rejects(login.finish(theirQuery, mine.cookie), refused(/state/));
    await assert.rejects(login.finish(theirQuery, undefined), refused(/no login/));
    const other = new OidcLogin(oidcConfig(provider.issuer), randomBytes(32));
    await assert.rejects(other.finish(theirQuery, theirs.cookie), refused(/not this server/));
    const late = new OidcLogin(oidcConfig(provider.issuer), key, { now: () => Date.now() + 3_600_000 });
    await assert.rejects(late.finish(theirQuery, theirs.cookie), refused(/too long/));
    await login.finish(theirQuery, theirs.cookie);
    await assert.rejects(login.finish(theirQuery, theirs.cookie), refused(/refused the code/));
    // The issuer's own error, and an answer that names another issuer (mix-up).
    const s = await login.start(CALLBACK);
    const q = await authorize(s.location);
    q.set('iss', 'https://evil.example');
    await assert.rejects(login.finish(q, s.cookie), refused(/another issuer/));
    const state = new URL(s.location).searchParams.get('state') ?? '';
    await assert.rejects(
      login.finish(new URLSearchParams({ state, error: 'access_denied' }), s.cookie),
      refused(/access_denied/),
    );
  });

  it('refuses an issuer whose discovery names another issuer or offers no PKCE S256', async () => {
    for (const tamper of ['discovery-other-issuer', 'no-s256'] as const) {
      provider.tamper = tamper;
      const fresh = new OidcLogin(oidcConfig(provider.issuer), key);
      await assert.rejects(fresh.start(CALLBACK), refused(/issuer|S256/));
    }
    provider.tamper = undefined;
  });

  it('authenticates a confidential client with its secret, and fails without it', async () => {
    const confidential = await LoopbackOidcProvider.start({ id: 'gatehouse-console', secret: 's3cret:/+' });
    try {
      confidential.user = { sub: 'u-7', groups: ['platform'] };
      const good = new OidcLogin(oidcConfig(confidential.issuer), key, { clientSecret: 's3cret:/+' });
      const s = await good.start(CALLBACK);
      assert.equal((await good.finish(await authorize(s.location), s.cookie)).role, 'viewer');
      const bad = new OidcLogin(oidcConfig(confidential.issuer), key);
      const s2 = await bad.start(CALLBACK);
      await assert.rejects(
        bad.finish(await authorize(s2.location), s2.cookie),
        refused(/refused the code \(401/),
      );
    } finally {
      await confidential.stop();
    }
  });

  it('refuses a config without an allowed claim, or with a plain-http issuer off loopback', () => {
    const schema = consoleOidcSchema;
    for (const bad of [
      { issuer: 'https://id.example', clientId: 'c', allowed: {} },
      { issuer: 'http://id.example', clientId: 'c', allowed: { groups: ['a'] } },
      { issuer: 'https://id.example', clientId: 'c', allowed: { groups: [] } },
      { issuer: 'https://id.example', clientId: 'c', allowed: { groups: ['a'] }, extra: 1 },
    ])
      assert.equal(schema.safeParse(bad).success, false, JSON.stringify(bad));
  });
});
