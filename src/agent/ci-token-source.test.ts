/**
 * The runner agent's CI identity token, end to end from the CI job to the attestation authority.
 * GitHub's token service cannot run here: a loopback HTTP server plays it in its documented
 * request and answer shapes (`GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=AUD` with
 * `Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN`, answering `{"value": "<jwt>"}`), minting
 * tokens in GitHub's documented claim shape with an RSA key this test generates, and serving that
 * key as the issuer's JWKS. The agent's SoftwareAttester then attests through an authority that
 * verifies the token against that JWKS, as a control plane with `attestation.ciIssuers` does.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, exportJWK, type JWK, jwtVerify } from 'jose';
import { closeServer, listenOnLoopback, tempDir } from '../../test/helpers.ts';
import { AttestationAuthority, runnerKindOf } from '../attestation/authority.ts';
import { CiTokenVerifier } from '../attestation/ci-token.ts';
import type { MeasuredBaseline } from '../attestation/measurement.ts';
import { generateRunnerKey } from '../attestation/token.ts';
import { isGatehouseError } from '../common/errors.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import { measuredSoftware, newSigningKey, refusedChecks } from '../testing/attestation.ts';
import { GITHUB_ACTIONS_ISSUER as GITHUB, githubActionsToken } from '../testing/github-oidc.ts';
import { SoftwareAttester } from './attester.ts';
import { ciTokenSourceFromEnv, GithubActionsTokenSource } from './ci-token-source.ts';

const AUDIENCE = 'https://gatehouse.test';
const REQUEST_TOKEN = 'ghs_request-token-of-this-job';

describe('CI identity token: from the CI job to the attestation authority', () => {
  const tmp = tempDir('ci-token');
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  let server: Server;
  let url = '';
  /** How the token service answers the next request. */
  let mode: 'ok' | 'unauthorized' | 'no-value' | 'not-jwt' | 'huge' = 'ok';
  let repository = 'octo-org/octo-repo';
  let runnerEnvironment = 'github-hosted';
  const asked: { audience: string | null; auth: string | undefined; accept: string | undefined }[] = [];
  let store: SqliteStore;
  let baseline: MeasuredBaseline;
  let authority: AttestationAuthority;
  const jobId = 'job-ci-1';
  const nonce = randomBytes(32).toString('base64');

  /** A GitHub Actions OIDC token in the documented claim shape, for the requested audience. */
  const mint = (audience: string): Promise<string> =>
    githubActionsToken(rsa.privateKey, { audience, repository, runnerEnvironment });

  before(async () => {
    const jwk: JWK = { ...(await exportJWK(rsa.publicKey)), kid: 'gh-1', alg: 'RS256', use: 'sig' };
    server = createServer(async (req: IncomingMessage, res) => {
      const u = new URL(req.url ?? '/', 'http://127.0.0.1');
      if (u.pathname === '/.well-known/jwks') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
        return;
      }
      if (u.pathname !== '/_apis/pipelines/workflows/5678/idtoken') {
        res.writeHead(404).end();
        return;
      }
      asked.push({
        audience: u.searchParams.get('audience'),
        auth: req.headers.authorization,
        accept: req.headers.accept,
      });
      if (req.headers.authorization !== `bearer ${REQUEST_TOKEN}` || mode === 'unauthorized') {
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"message":"Bad credentials"}');
        return;
      }
      const value = await mint(u.searchParams.get('audience') ?? 'api://default');
      const body =
        mode === 'no-value'
          ? { count: 1 }
          : mode === 'not-jwt'
            ? { value: 'not a token' }
            : mode === 'huge'
              ? { value: 'a'.repeat(70_000) }
              : { count: 1, value };
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
    ({ url } = await listenOnLoopback(server));
    await writeFile(join(tmp.path, 'agent.ts'), 'export {};\n');
    store = SqliteStore.open(':memory:');
    let reference: Awaited<ReturnType<typeof measuredSoftware>>['reference'];
    ({ baseline, reference } = await measuredSoftware({
      toolchain: ['/bin/sh'],
      agentFiles: [join(tmp.path, 'agent.ts')],
      jobId,
      nonce,
    }));
    // The control plane's configured issuer: GitHub, its keys at the loopback JWKS, our audience,
    // and only this repository's workflows.
    const verifier = new CiTokenVerifier([
      {
        platform: 'github-actions',
        issuer: GITHUB,
        jwksUrl: `${url}/.well-known/jwks`,
        audience: AUDIENCE,
        claims: { repository: ['octo-org/octo-repo'] },
      },
    ]);
    authority = new AttestationAuthority({
      signingKey: newSigningKey(),
      keyId: 'test-key',
      issuer: 'https://gatehouse.test/attestation',
      referenceValues: reference,
      tokens: store.tokens,
      verifyCiToken: async (t) => ({ ...(await verifier.verify(t)) }),
    });
  });
  after(async () => {
    await closeServer(server);
    await store.close();
    tmp.cleanup();
  });

  /** The environment of a GitHub Actions job with `permissions: id-token: write`. */
  const githubEnv = (): NodeJS.ProcessEnv => ({
    GITHUB_ACTIONS: 'true',
    ACTIONS_ID_TOKEN_REQUEST_URL: `${url}/_apis/pipelines/workflows/5678/idtoken?api-version=2.0`,
    ACTIONS_ID_TOKEN_REQUEST_TOKEN: REQUEST_TOKEN,
  });

  /** Attest as the agent does for a CI host: software evidence, the CI token fetched just now. */
  const attestFromCi = async (audience: string, requireCi = true) => {
    const source = ciTokenSourceFromEnv(githubEnv(), { audience });
    assert.ok(source);
    const key = await generateRunnerKey();
    return new SoftwareAttester().attest({
      jobId,
      baseline,
      runnerKey: key.publicJwk,
      ciToken: () => source.token(),
      endpoints: {
        attest: (r) => authority.attest({ ...r, nonce, requireCi }),
      },
    });
  };

  it('fetches the token for the audience with the job\u2019s request token, and the authority accepts it', async () => {
    mode = 'ok';
    repository = 'octo-org/octo-repo';
    runnerEnvironment = 'github-hosted';
    asked.length = 0;
    const { token } = await attestFromCi(AUDIENCE);
    assert.deepEqual(asked, [
      { audience: AUDIENCE, auth: `bearer ${REQUEST_TOKEN}`, accept: 'application/json; api-version=2.0' },
    ]);
    const { payload } = await jwtVerify(token, createLocalJWKSet(authority.jwks()), {
      algorithms: ['ES256'],
    });
    const gatehouse = payload.gatehouse as { evidence_types: string[]; runner_kind: string };
    assert.deepEqual(gatehouse.evidence_types, ['software-measurement', 'ci-oidc']);
    assert.equal(gatehouse.runner_kind, 'github-actions-hosted');
    const ci = (payload.submods as Record<string, Record<string, unknown>>).ci;
    assert.equal(ci?.repository, 'octo-org/octo-repo');
    assert.equal(ci?.workflow_ref, 'octo-org/octo-repo/.github/workflows/build.yml@refs/heads/main');
    // The CI token itself is not copied into the runner's token.
    assert.ok(!token.includes(REQUEST_TOKEN));
  });

  it('names a self-hosted runner as self-hosted, never as GitHub-hosted', async () => {
    mode = 'ok';
    repository = 'octo-org/octo-repo';
    runnerEnvironment = 'self-hosted';
    const { token } = await attestFromCi(AUDIENCE);
    const { payload } = await jwtVerify(token, createLocalJWKSet(authority.jwks()), {
      algorithms: ['ES256'],
    });
    assert.equal((payload.gatehouse as { runner_kind: string }).runner_kind, 'github-actions-self-hosted');
    assert.equal(
      runnerKindOf({ platform: 'gitlab-ci', runner_environment: 'gitlab-hosted' }),
      'gitlab-ci-hosted',
    );
    assert.equal(
      runnerKindOf({ platform: 'github-actions', runner_environment: 'mars' }),
      'github-actions-unknown',
    );
    assert.equal(runnerKindOf(undefined), 'gatehouse-ephemeral');
    runnerEnvironment = 'github-hosted';
  });

  it('refuses a token minted for another audience', async () => {
    mode = 'ok';
    repository = 'octo-org/octo-repo';
    assert.deepEqual(await refusedChecks(attestFromCi('https://other-service.example')), [
      'CI_TOKEN_INVALID',
    ]);
  });

  it('refuses a token of another repository', async () => {
    mode = 'ok';
    repository = 'mallory/octo-repo';
    try {
      assert.deepEqual(await refusedChecks(attestFromCi(AUDIENCE)), ['CI_TOKEN_INVALID']);
    } finally {
      repository = 'octo-org/octo-repo';
    }
  });

  it('refuses a valid token of a pipeline the CI host was not enrolled for', async () => {
    mode = 'ok';
    repository = 'octo-org/octo-repo';
    const attestFor = async (ciClaims: Record<string, string[]>) => {
      const source = ciTokenSourceFromEnv(githubEnv(), { audience: AUDIENCE });
      assert.ok(source);
      return new SoftwareAttester().attest({
        jobId,
        baseline,
        runnerKey: (await generateRunnerKey()).publicJwk,
        ciToken: () => source.token(),
        endpoints: { attest: (r) => authority.attest({ ...r, nonce, requireCi: true, ciClaims }) },
      });
    };
    // The issuer allows the repository; this host's enrollment names another one.
    assert.deepEqual(await refusedChecks(attestFor({ repository: ['octo-org/other-app'] })), [
      'CI_TOKEN_INVALID',
    ]);
    assert.deepEqual(
      await refusedChecks(
        attestFor({ workflow_ref: ['octo-org/octo-repo/.github/workflows/release.yml@*'] }),
      ),
      ['CI_TOKEN_INVALID'],
    );
    // Its own pipeline, by exact value and by prefix, is accepted.
    await attestFor({ repository: ['octo-org/octo-repo'], ref: ['refs/heads/*'] });
  });

  it('refuses a CI host that presents no CI token, and a token signed by another key', async () => {
    const key = await generateRunnerKey();
    const noToken = new SoftwareAttester().attest({
      jobId,
      baseline,
      runnerKey: key.publicJwk,
      endpoints: { attest: (r) => authority.attest({ ...r, nonce, requireCi: true }) },
    });
    assert.deepEqual(await refusedChecks(noToken), ['CI_TOKEN_INVALID']);
    // A token of the right shape and claims, signed by an attacker's key under GitHub's kid.
    const attacker = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const forged = await githubActionsToken(attacker.privateKey, { audience: AUDIENCE });
    const withForged = new SoftwareAttester().attest({
      jobId,
      baseline,
      runnerKey: key.publicJwk,
      ciToken: () => Promise.resolve(forged),
      endpoints: { attest: (r) => authority.attest({ ...r, nonce, requireCi: true }) },
    });
    assert.deepEqual(await refusedChecks(withForged), ['CI_TOKEN_INVALID']);
  });

  it('fails closed, without echoing a credential, when the token service fails', async () => {
    for (const m of ['unauthorized', 'no-value', 'not-jwt', 'huge'] as const) {
      mode = m;
      const source = ciTokenSourceFromEnv(githubEnv(), { audience: AUDIENCE });
      await assert.rejects(
        source?.token() ?? Promise.resolve(),
        (e: unknown) =>
          isGatehouseError(e, 'UNREACHABLE') &&
          !e.message.includes(REQUEST_TOKEN) &&
          /CI identity token/.test(e.message),
        m,
      );
    }
    mode = 'ok';
    // A service that is not there.
    const gone = new GithubActionsTokenSource({
      requestUrl: 'http://127.0.0.1:1/idtoken?api-version=2.0',
      requestToken: REQUEST_TOKEN,
      audience: AUDIENCE,
    });
    await assert.rejects(gone.token(), (e: unknown) => isGatehouseError(e, 'UNREACHABLE'));
  });

  it('tells a CI job that was given no token how to get one, and finds none outside CI', () => {
    assert.equal(ciTokenSourceFromEnv({}, { audience: AUDIENCE }), undefined);
    assert.throws(
      () => ciTokenSourceFromEnv({ GITHUB_ACTIONS: 'true' }, { audience: AUDIENCE }),
      (e: unknown) => isGatehouseError(e, 'BAD_CONFIG') && /id-token: write/.test(e.message),
    );
    assert.throws(
      () => ciTokenSourceFromEnv({ GITLAB_CI: 'true' }, { audience: AUDIENCE }),
      (e: unknown) => isGatehouseError(e, 'BAD_CONFIG') && /id_tokens: GATEHOUSE_ID_TOKEN/.test(e.message),
    );
    assert.throws(
      () =>
        ciTokenSourceFromEnv({ GITLAB_CI: 'true', GATEHOUSE_ID_TOKEN: 'not-a-jwt' }, { audience: AUDIENCE }),
      (e: unknown) => isGatehouseError(e, 'BAD_CONFIG') && !e.message.includes('not-a-jwt'),
    );
    // The token service over plain http off loopback would hand the request token to the network.
    assert.throws(
      () =>
        ciTokenSourceFromEnv(
          {
            GITHUB_ACTIONS: 'true',
            ACTIONS_ID_TOKEN_REQUEST_URL: 'http://pipelines.example/idtoken?api-version=2.0',
            ACTIONS_ID_TOKEN_REQUEST_TOKEN: REQUEST_TOKEN,
          },
          { audience: AUDIENCE },
        ),
      (e: unknown) => isGatehouseError(e, 'BAD_CONFIG'),
    );
  });

  it('reads a GitLab ID token from the variable the pipeline declared', async () => {
    const jwt = await mint(AUDIENCE);
    const source = ciTokenSourceFromEnv(
      { GITLAB_CI: 'true', GATEHOUSE_ID_TOKEN: jwt },
      { audience: AUDIENCE },
    );
    assert.equal(source?.platform, 'gitlab-ci');
    assert.equal(await source?.token(), jwt);
    const named = ciTokenSourceFromEnv(
      { GITLAB_CI: 'true', MY_TOKEN: jwt },
      { audience: AUDIENCE, gitlabVariable: 'MY_TOKEN' },
    );
    assert.equal(await named?.token(), jwt);
  });
});
