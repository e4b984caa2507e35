/**
 * `gatehouse run --server` inside a CI job, end to end: a real `gatehouse server` whose config
 * trusts GitHub Actions' OIDC issuer (its keys at a loopback JWKS), a runner host the security
 * role enrolled `--attestation ci` with its key in a file (as a CI secret would be written), and a
 * loopback server playing GitHub's job token service in its documented shapes
 * (`GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=AUD`, bearer `$ACTIONS_ID_TOKEN_REQUEST_TOKEN`,
 * answering `{"value": "<jwt>"}`). No GitHub runs here: the tokens are minted by this test in
 * GitHub's documented claim shape with an RSA key it generates. Checked: the build is attested in
 * software with the CI identity, the policy sees the runner kind, the signed provenance names the
 * CI runner as its builder; and the attacks — no token, a token for another audience, a
 * self-hosted runner where only GitHub-hosted ones are allowed — fail.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { exportJWK, type JWK } from 'jose';
import { DEFAULT_POLICY } from '../src/home/default-policy.ts';
import { initHome, openHome } from '../src/home/home.ts';
import { GITHUB_ACTIONS_ISSUER as GITHUB, githubActionsToken } from '../src/testing/github-oidc.ts';
import { seedVulnerabilityData } from '../src/testing/submission.ts';
import { cli, closeServer, examplesDir, listenOnLoopback, startServer, tempDir } from './helpers.ts';

const AUDIENCE = 'https://gatehouse.test';
const REQUEST_TOKEN = 'ghs_job-request-token';
const CI_HOST = 'ci-github-octo-repo';
const OTHER_HOST = 'ci-github-other-org';

/** A policy that accepts GitHub-hosted CI builds at Build L2 and nothing else of CI. */
const CI_POLICY = DEFAULT_POLICY.replace('require: [tpm]', 'require: [ci-oidc]')
  .replace('minLevel: 3', 'minLevel: 2')
  .concat(`  - id: github-hosted-only
    kind: cel
    when: 'build.runnerKind != "github-actions-hosted"'
    message: only GitHub-hosted runners may build outside gatehouse's own runners
    action: deny
`);

describe('gatehouse run --server inside a GitHub Actions job', () => {
  const tmp = tempDir('ci-runner');
  const root = join(tmp.path, 'home');
  const hostKey = join(tmp.path, 'host.key.pem');
  const otherKey = join(tmp.path, 'other-host.key.pem');
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  let runnerEnvironment = 'github-hosted';
  let tokens: Server;
  let tokensUrl = '';
  let server: { url: string; child: ChildProcess } | undefined;

  before(async () => {
    const jwk: JWK = { ...(await exportJWK(rsa.publicKey)), kid: 'gh-1', alg: 'RS256', use: 'sig' };
    tokens = createServer(async (req, res) => {
      const u = new URL(req.url ?? '/', 'http://127.0.0.1');
      if (u.pathname === '/.well-known/jwks') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
        return;
      }
      if (u.pathname !== '/idtoken' || req.headers.authorization !== `bearer ${REQUEST_TOKEN}`) {
        res.writeHead(401).end();
        return;
      }
      const value = await githubActionsToken(rsa.privateKey, {
        audience: u.searchParams.get('audience') ?? 'none',
        runnerEnvironment,
      });
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ count: 1, value }));
    });
    ({ url: tokensUrl } = await listenOnLoopback(tokens));

    await initHome(root);
    const configPath = join(root, 'config.json');
    const config = JSON.parse(await readFile(configPath, 'utf8')) as Record<string, unknown>;
    config.attestation = {
      ciIssuers: [
        {
          platform: 'github-actions',
          issuer: GITHUB,
          jwksUrl: `${tokensUrl}/.well-known/jwks`,
          audience: AUDIENCE,
          claims: { repository: ['octo-org/octo-repo'] },
        },
      ],
    };
    await writeFile(configPath, JSON.stringify(config, null, 2));
    const home = await openHome(root);
    try {
      await seedVulnerabilityData(home);
    } finally {
      await home.close();
    }
    // The CI hosts' keys, as the workflow writes them from a secret; the security role enrolls
    // each for the pipelines it may serve: this repository's, and (for the attack) another's.
    for (const [name, file, repository] of [
      [CI_HOST, hostKey, 'octo-org/octo-repo'],
      [OTHER_HOST, otherKey, 'other-org/*'],
    ] as const) {
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      await writeFile(file, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
      await writeFile(`${file}.pub`, publicKey.export({ format: 'pem', type: 'spki' }));
      const enrolled = await cli([
        'host',
        'enroll',
        name,
        '--public-key',
        `${file}.pub`,
        '--pool',
        'local',
        '--attestation',
        'ci',
        '--ci-claim',
        `repository=${repository}`,
        '--home',
        root,
      ]);
      assert.equal(enrolled.code, 0, enrolled.stderr);
    }
    const policy = join(tmp.path, 'ci-policy.yaml');
    await writeFile(policy, CI_POLICY);
    const pushed = await cli(['policy', 'push', policy, '--home', root]);
    assert.equal(pushed.code, 0, pushed.stderr);
    server = await startServer(root);
  });
  after(async () => {
    server?.child.kill('SIGTERM');
    await closeServer(tokens);
    tmp.cleanup();
  });

  const githubEnv = (): Record<string, string> => ({
    GITHUB_ACTIONS: 'true',
    ACTIONS_ID_TOKEN_REQUEST_URL: `${tokensUrl}/idtoken?api-version=2.0`,
    ACTIONS_ID_TOKEN_REQUEST_TOKEN: REQUEST_TOKEN,
    GATEHOUSE_API_TOKEN: '',
  });
  /** `gatehouse run --server` in the job, as the action runs it, as a CI host. */
  const runInCi = (
    o: {
      extra?: string[];
      env?: Record<string, string>;
      host?: string;
      key?: string;
      audience?: string;
    } = {},
  ) =>
    cli(
      [
        'run',
        join(examplesDir, 'hello-app'),
        '--server',
        server?.url ?? '',
        '--host',
        o.host ?? CI_HOST,
        '--host-key',
        o.key ?? hostKey,
        '--ci-audience',
        o.audience ?? AUDIENCE,
        '--json',
        ...(o.extra ?? []),
      ],
      { env: o.env ?? githubEnv(), timeoutMs: 240_000 },
    );

  it('attests with the CI identity, and signs provenance that names the GitHub-hosted runner', async () => {
    runnerEnvironment = 'github-hosted';
    const out = join(tmp.path, 'out');
    const r = await runInCi({ extra: ['--out', out] });
    assert.equal(r.code, 0, `${r.stderr}\n${r.stdout}`);
    const doc = JSON.parse(r.stdout) as { outcome: string; steps: { name: string; detail?: string }[] };
    assert.equal(doc.outcome, 'allow');
    assert.equal(doc.steps.find((s) => s.name === 'attest')?.detail, 'software-measurement + ci-oidc');
    const bundle = JSON.parse(await readFile(join(out, 'hello-app.tar.sigstore.json'), 'utf8')) as {
      dsseEnvelope: { payload: string };
    };
    const statement = JSON.parse(Buffer.from(bundle.dsseEnvelope.payload, 'base64').toString('utf8')) as {
      predicate: {
        runDetails: { builder: { id: string } };
        buildDefinition: { internalParameters: { runnerKind: string; slsaBuildLevel: number } };
      };
    };
    assert.match(statement.predicate.runDetails.builder.id, /\/runners\/github-actions-hosted$/);
    assert.equal(statement.predicate.buildDefinition.internalParameters.runnerKind, 'github-actions-hosted');
    assert.equal(statement.predicate.buildDefinition.internalParameters.slsaBuildLevel, 2);
  });

  it('lets the policy refuse a self-hosted runner it did not allow', async () => {
    runnerEnvironment = 'self-hosted';
    try {
      const r = await runInCi();
      assert.equal(r.code, 3, r.stderr);
      const doc = JSON.parse(r.stdout) as { decision: { reasons: { rule: string }[] } };
      assert.deepEqual(
        doc.decision.reasons.map((x) => x.rule),
        ['github-hosted-only'],
      );
    } finally {
      runnerEnvironment = 'github-hosted';
    }
  });

  it('refuses the CI host without a CI token, and with a token for another audience', async () => {
    const { GITHUB_ACTIONS: _g, ...outsideCi } = githubEnv();
    const none = await runInCi({ env: { ...outsideCi, GITHUB_ACTIONS: '' } });
    assert.equal(none.code, 3, none.stdout); // refused, like any failed verification
    assert.match(none.stderr, /CI_TOKEN_INVALID.*a CI identity token is required/);
    const other = await runInCi({ audience: 'https://another-service.example' });
    assert.equal(other.code, 3, other.stdout);
    assert.match(other.stderr, /CI_TOKEN_INVALID/);
    assert.doesNotMatch(other.stderr + other.stdout, new RegExp(REQUEST_TOKEN));
  });

  it('refuses a CI host enrolled for other pipelines, even with a token the issuer allows', async () => {
    const r = await runInCi({ host: OTHER_HOST, key: otherKey });
    assert.equal(r.code, 3, r.stdout);
    assert.match(
      r.stderr,
      /CI_TOKEN_INVALID.*repository "octo-org\/octo-repo" is not one the runner host is enrolled for/,
    );
  });

  it('tells a job without `id-token: write` what is missing, before any job is opened', async () => {
    const r = await runInCi({ env: { GITHUB_ACTIONS: 'true', GATEHOUSE_API_TOKEN: '' } });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /id-token: write/);
  });
});
