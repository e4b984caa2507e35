/**
 * CI identity tokens. GitHub's and GitLab's token services cannot run here, so the fixtures are
 * tokens in exactly the claim shapes the platforms document (GitHub: "OpenID Connect reference",
 * OIDC token claims and example token; GitLab: "OpenID Connect (OIDC) Authentication Using ID
 * Tokens", token payload), signed by RSA keys this test generates and served as a JWKS from a
 * loopback HTTP server the test opens and closes.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { exportJWK, type JWTPayload, SignJWT, UnsecuredJWT } from 'jose';
import { closeServer, listenOnLoopback } from '../../test/helpers.ts';
import { isGatehouseError } from '../common/errors.ts';
import { CiTokenVerifier } from './ci-token.ts';

const GITHUB_ISS = 'https://token.actions.githubusercontent.com';
const GITLAB_ISS = 'https://gitlab.example.com';
const NOW = 1_760_000_000;

/** A GitHub Actions OIDC token's claims, in the documented shape (all custom claims are strings). */
function githubClaims(over: Record<string, unknown> = {}): JWTPayload {
  return {
    jti: 'example-id',
    sub: 'repo:octo-org/octo-repo:environment:prod',
    environment: 'prod',
    aud: 'https://gatehouse.example.com',
    ref: 'refs/heads/main',
    sha: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4',
    repository: 'octo-org/octo-repo',
    repository_owner: 'octo-org',
    actor_id: '12',
    repository_visibility: 'private',
    repository_id: '74',
    repository_owner_id: '65',
    run_id: '5678',
    run_number: '10',
    run_attempt: '2',
    runner_environment: 'github-hosted',
    actor: 'octocat',
    workflow: 'build',
    head_ref: '',
    base_ref: '',
    event_name: 'push',
    ref_type: 'branch',
    ref_protected: 'true',
    workflow_ref: 'octo-org/octo-repo/.github/workflows/build.yml@refs/heads/main',
    workflow_sha: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4',
    job_workflow_ref: 'octo-org/octo-repo/.github/workflows/build.yml@refs/heads/main',
    job_workflow_sha: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4',
    iss: GITHUB_ISS,
    nbf: NOW - 5,
    iat: NOW,
    exp: NOW + 300,
    ...over,
  };
}

/** A GitLab CI ID token's claims, in the documented shape (runner_id is a number there). */
function gitlabClaims(over: Record<string, unknown> = {}): JWTPayload {
  return {
    namespace_id: '72',
    namespace_path: 'my-group',
    project_id: '20',
    project_path: 'my-group/my-project',
    user_id: '1',
    user_login: 'sample-user',
    user_email: 'sample-user@example.com',
    user_access_level: 'developer',
    user_identities: [],
    pipeline_id: '574',
    pipeline_source: 'push',
    job_id: '302',
    ref: 'main',
    ref_type: 'branch',
    ref_path: 'refs/heads/main',
    ref_protected: 'true',
    groups_direct: ['my-group'],
    runner_id: 27,
    runner_environment: 'gitlab-hosted',
    sha: '714a629c0b401fdce83e847fc9589983fc6f46bc',
    project_visibility: 'private',
    ci_config_ref_uri: 'gitlab.example.com/my-group/my-project//.gitlab-ci.yml@refs/heads/main',
    ci_config_sha: '714a629c0b401fdce83e847fc9589983fc6f46bc',
    jti: '235b3a54-b797-45c7-ae9a-f72d7bc6ef5b',
    iss: GITLAB_ISS,
    iat: NOW,
    nbf: NOW - 5,
    exp: NOW + 3600,
    sub: 'project_path:my-group/my-project:ref_type:branch:ref:main',
    aud: 'https://gatehouse.example.com',
    ...over,
  };
}

describe('CI identity tokens', () => {
  const github = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const gitlab = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  let server: Server;
  let base: string;
  let verifier: CiTokenVerifier;

  before(async () => {
    const jwks = async (k: KeyObject, kid: string) => ({
      keys: [{ ...(await exportJWK(k)), kid, alg: 'RS256', use: 'sig' }],
    });
    const bodies: Record<string, string> = {
      '/github/jwks': JSON.stringify(await jwks(github.publicKey, 'gh-1')),
      '/gitlab/jwks': JSON.stringify(await jwks(gitlab.publicKey, 'gl-1')),
    };
    server = createServer((req, res) => {
      const body = bodies[req.url ?? ''];
      res.writeHead(body === undefined ? 404 : 200, { 'content-type': 'application/json' });
      res.end(body ?? '{}');
    });
    ({ url: base } = await listenOnLoopback(server));
    verifier = new CiTokenVerifier(
      [
        {
          platform: 'github-actions',
          issuer: GITHUB_ISS,
          jwksUrl: `${base}/github/jwks`,
          audience: 'https://gatehouse.example.com',
          claims: {
            repository: ['octo-org/octo-repo'],
            ref: ['refs/heads/main', 'refs/tags/v*'],
            runner_environment: ['github-hosted'],
          },
        },
        {
          platform: 'gitlab-ci',
          issuer: GITLAB_ISS,
          jwksUrl: `${base}/gitlab/jwks`,
          audience: 'https://gatehouse.example.com',
          claims: { project_path: ['my-group/*'], ref_protected: ['true'] },
        },
      ],
      { now: () => new Date(NOW * 1000) },
    );
  });
  after(() => closeServer(server));

  const sign = (claims: JWTPayload, key: KeyObject = github.privateKey, kid = 'gh-1', alg = 'RS256') =>
    new SignJWT(claims).setProtectedHeader({ alg, kid, typ: 'JWT' }).sign(key);

  it('accepts a GitHub Actions token and names its repository, ref, sha, workflow and runner', async () => {
    const id = await verifier.verify(await sign(githubClaims()));
    assert.deepEqual(id, {
      platform: 'github-actions',
      issuer: GITHUB_ISS,
      subject: 'repo:octo-org/octo-repo:environment:prod',
      repository: 'octo-org/octo-repo',
      ref: 'refs/heads/main',
      sha: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4',
      workflow_ref: 'octo-org/octo-repo/.github/workflows/build.yml@refs/heads/main',
      runner_environment: 'github-hosted',
    });
  });

  it('accepts a GitLab CI ID token, with its short ref made a full ref name', async () => {
    const id = await verifier.verify(await sign(gitlabClaims(), gitlab.privateKey, 'gl-1'));
    assert.equal(id.platform, 'gitlab-ci');
    assert.equal(id.repository, 'my-group/my-project');
    assert.equal(id.ref, 'refs/heads/main');
    assert.equal(id.runner_environment, 'gitlab-hosted');
    assert.equal(id.workflow_ref, 'gitlab.example.com/my-group/my-project//.gitlab-ci.yml@refs/heads/main');
    const tag = await verifier.verify(
      await sign(gitlabClaims({ ref: 'v1.0', ref_type: 'tag' }), gitlab.privateKey, 'gl-1'),
    );
    assert.equal(tag.ref, 'refs/tags/v1.0');
  });

  it('refuses every forged, stale or disallowed token with a reason', async () => {
    const hmacKey = new TextEncoder().encode('a shared secret that no CI platform uses');
    const table: [string, () => Promise<string>, RegExp][] = [
      [
        'an expired token',
        () => sign(githubClaims({ iat: NOW - 900, nbf: NOW - 900, exp: NOW - 60 })),
        /expired/,
      ],
      ['a token not yet valid', () => sign(githubClaims({ nbf: NOW + 600 })), /claim check failed/],
      ['another audience', () => sign(githubClaims({ aud: 'sts.amazonaws.com' })), /claim check failed.*aud/],
      [
        'an issuer not configured',
        () => sign(githubClaims({ iss: 'https://evil.example' })),
        /not a configured/,
      ],
      ['a key the issuer does not publish', () => sign(githubClaims(), stranger.privateKey), /signature/],
      ["GitLab's key for a GitHub issuer", () => sign(githubClaims(), gitlab.privateKey, 'gl-1'), /no key/],
      [
        'an unsigned token (alg none)',
        async () => new UnsecuredJWT(githubClaims()).encode(),
        /algorithm none/,
      ],
      [
        'an HMAC token (algorithm confusion)',
        () => new SignJWT(githubClaims()).setProtectedHeader({ alg: 'HS256', kid: 'gh-1' }).sign(hmacKey),
        /algorithm HS256/,
      ],
      [
        'an algorithm not configured',
        () => sign(githubClaims(), ec.privateKey, 'gh-1', 'ES256'),
        /algorithm ES256/,
      ],
      [
        'another repository',
        () => sign(githubClaims({ repository: 'mallory/fork' })),
        /repository.*not allowed/,
      ],
      ['an unprotected branch', () => sign(githubClaims({ ref: 'refs/heads/dev' })), /ref.*not allowed/],
      [
        'a self-hosted runner',
        () => sign(githubClaims({ runner_environment: 'self-hosted' })),
        /runner_environment.*not allowed/,
      ],
      ['no sha', () => sign(githubClaims({ sha: undefined })), /claim sha/],
      ['a short sha', () => sign(githubClaims({ sha: 'abc123' })), /claim sha/],
      ['no workflow_ref', () => sign(githubClaims({ workflow_ref: undefined })), /claim workflow_ref/],
      ['no exp', () => sign(githubClaims({ exp: undefined })), /exp/],
      ['a lifetime over the limit', () => sign(githubClaims({ exp: NOW + 7200 })), /lifetime/],
      [
        'a GitLab project outside the allowed group',
        () => sign(gitlabClaims({ project_path: 'other/app' }), gitlab.privateKey, 'gl-1'),
        /project_path.*not allowed/,
      ],
      [
        'a GitLab token from an unprotected ref',
        () => sign(gitlabClaims({ ref_protected: 'false' }), gitlab.privateKey, 'gl-1'),
        /ref_protected.*not allowed/,
      ],
      [
        'a GitLab ref_type that is neither branch nor tag',
        () => sign(gitlabClaims({ ref_type: 'merge_request' }), gitlab.privateKey, 'gl-1'),
        /ref_type/,
      ],
      ['not a JWT', async () => 'not-a-jwt', /not a compact JWT/],
      ['a huge token', async () => `${'a'.repeat(20_000)}.b.c`, /at most/],
      [
        'a payload altered after signing',
        async () => {
          const [h, , s] = (await sign(githubClaims())).split('.');
          const p = Buffer.from(
            JSON.stringify(githubClaims({ repository: 'octo-org/octo-repo', ref: 'refs/tags/v9' })),
          ).toString('base64url');
          return `${h}.${p}.${s}`;
        },
        /signature/,
      ],
    ];
    for (const [name, make, why] of table) {
      const token = await make();
      await assert.rejects(
        verifier.verify(token),
        (e) => isGatehouseError(e, 'EVIDENCE_REJECTED') && why.test(e.message) && !e.message.includes(token),
        name,
      );
    }
  });

  it("fails closed when the issuer's keys cannot be fetched", async () => {
    const v = new CiTokenVerifier(
      [
        {
          platform: 'github-actions',
          issuer: GITHUB_ISS,
          jwksUrl: `${base}/missing/jwks`,
          audience: 'https://gatehouse.example.com',
        },
      ],
      { now: () => new Date(NOW * 1000) },
    );
    await assert.rejects(v.verify(await sign(githubClaims())), (e) =>
      isGatehouseError(e, 'EVIDENCE_REJECTED'),
    );
  });

  it('refuses a bad issuer configuration', () => {
    const bad: unknown[] = [
      { platform: 'github-actions', issuer: GITHUB_ISS, audience: 'a' },
      { platform: 'github-actions', issuer: GITHUB_ISS, jwksUrl: 'http://jwks.example.com/k', audience: 'a' },
      { platform: 'jenkins', issuer: GITHUB_ISS, jwksUrl: `${base}/k`, audience: 'a' },
      {
        platform: 'github-actions',
        issuer: GITHUB_ISS,
        jwksUrl: `${base}/k`,
        audience: 'a',
        algorithms: ['HS256'],
      },
    ];
    for (const b of bad)
      assert.throws(
        () => new CiTokenVerifier([b]),
        (e) => isGatehouseError(e, 'BAD_CONFIG'),
      );
  });
});
