import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { listenOnLoopback } from '../../test/helpers.ts';
import { sha256Hex } from '../common/encoding.ts';
import { isGatehouseError } from '../common/errors.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import { BUILD_CONFIG, reviewedAndSigned, sshKeyPair } from '../testing/source.ts';
import { addSigner } from './admin.ts';
import { parseCommitObject } from './git.ts';
import { GitHubProvider } from './github-provider.ts';
import { GitLabProvider } from './gitlab-provider.ts';
import type { HostedProviderOptions } from './hosted-provider.ts';
import { nextLink, rateLimitWait } from './rest-client.ts';

/**
 * The hosted providers against a loopback HTTP server that answers with recorded responses in the
 * shapes the GitHub and GitLab REST APIs document (testdata/*.json), including a rate-limit answer
 * before the real one and paginated lists. The commit signature in them is real: made here with a
 * throwaway SSH key, so gatehouse's own verification runs on it.
 */
const here = dirname(fileURLToPath(import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'gh-hosted-'));
const hex = (c: string) => c.repeat(40);
const MERGE = hex('1');
const HEAD = hex('2');
const BASE = hex('3');
const MAIN = hex('4');
const OLD = hex('5');

interface Route {
  status: number;
  headers?: Record<string, string>;
  body: unknown;
}

/** Serve routes keyed by raw request path; each key's answers are given in order, the last repeats. */
async function serve(
  file: string,
  values: Record<string, string>,
  prefix: string,
): Promise<{ server: Server; api: string; hits: Map<string, number>; auth: Set<string> }> {
  const hits = new Map<string, number>();
  const auth = new Set<string>();
  let api = '';
  let routes: Record<string, Route[]> = {};
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const key = req.url ?? '';
    auth.add(req.headers.authorization ?? '');
    const answers = routes[key];
    const n = hits.get(key) ?? 0;
    hits.set(key, n + 1);
    const a = answers?.[Math.min(n, answers.length - 1)];
    if (a === undefined) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ message: 'Not Found' }));
      return;
    }
    res.writeHead(a.status, { 'content-type': 'application/json', ...a.headers });
    res.end(typeof a.body === 'string' ? a.body : JSON.stringify(a.body));
  });
  api = `${(await listenOnLoopback(server)).url}${prefix}`;
  let text = readFileSync(join(here, 'testdata', file), 'utf8');
  for (const [k, v] of Object.entries({ ...values, API: api }))
    text = text.replaceAll(`@${k}@`, JSON.stringify(v).slice(1, -1));
  routes = (JSON.parse(text) as { routes: Record<string, Route[]> }).routes;
  return { server, api, hits, auth };
}

describe('hosted source providers (recorded API answers on loopback)', () => {
  const store = SqliteStore.open(':memory:');
  const values: Record<string, string> = {};
  const servers: Server[] = [];
  let aliceKey = '';
  const rule = reviewedAndSigned({ buildConfigUnchanged: true });

  before(async () => {
    // A real SSH-signed commit: its signature and payload are what GitHub returns in `verification`.
    const key = sshKeyPair(join(tmp, 'alice'));
    aliceKey = readFileSync(`${key}.pub`, 'utf8').trim();
    const repo = join(tmp, 'repo');
    execFileSync('git', ['init', '-q', repo]);
    writeFileSync(join(repo, 'gatehouse.yaml'), BUILD_CONFIG);
    const g = (...args: string[]) =>
      execFileSync(
        'git',
        ['-C', repo, '-c', 'user.name=Alice', '-c', 'user.email=alice@example.com', ...args],
        { encoding: 'utf8' },
      );
    g('add', '-A');
    g('-c', 'gpg.format=ssh', '-c', `user.signingkey=${key}`, 'commit', '-q', '-S', '-m', 'merge');
    const parsed = parseCommitObject(Buffer.from(g('cat-file', 'commit', 'HEAD'), 'utf8'));
    Object.assign(values, {
      MERGE,
      HEAD,
      BASE,
      MAIN,
      OLD,
      TREE: hex('6'),
      MERGE_SHORT: MERGE.slice(0, 8),
      MAIN_SHORT: MAIN.slice(0, 8),
      SIGNATURE: parsed.signature ?? '',
      PAYLOAD: parsed.payload.toString('utf8'),
      CONFIG_B64: Buffer.from(BUILD_CONFIG).toString('base64'),
      CONFIG_SHA: sha256Hex(BUILD_CONFIG),
      ALICE_KEY: aliceKey,
      RESET_NOW: String(Math.floor(Date.now() / 1000)),
    });
    await addSigner(store.source, { principal: 'alice@example.com', format: 'ssh', key: aliceKey });
    for (const repository of ['https://github.com/octo/app', 'https://gitlab.example/group/app']) {
      await store.source.protect({
        repository,
        ref: 'refs/heads/main',
        rule,
        createdAt: new Date().toISOString(),
      });
    }
  });

  after(async () => {
    for (const s of servers) s.close();
    await store.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  /** A GitHub provider (github.com) over the recorded GitHub answers, with `options` added. */
  const github = async (options: Partial<HostedProviderOptions> = {}, answers = values) => {
    const api = await serve('github-api.json', answers, '');
    servers.push(api.server);
    return {
      api,
      provider: new GitHubProvider({
        apiUrl: api.api,
        webUrl: 'https://github.com',
        store: store.source,
        ...options,
      }),
    };
  };

  it('GitHub: verifies a reviewed, signed merge commit on a protected branch', async () => {
    const { api: gh, provider } = await github({ token: 't0ken' });
    const v = await provider.verify({
      repository: 'https://github.com/octo/app',
      commit: MERGE,
      ref: 'refs/heads/main',
      ciIdentity: {
        repository: 'octo/app',
        sha: MERGE,
        ref: 'refs/heads/main',
        run_id: '42',
        workflow_ref: 'octo/app/.github/workflows/build.yml@refs/heads/main',
      },
    });
    assert.equal(v.verified, true, v.problems.join('; '));
    assert.deepEqual(v.violations, []);
    assert.equal(v.ciIdentity?.matched, true);
    assert.deepEqual(
      v.refs.map((r) => [r.ref, r.contains, r.rewritten]),
      [['refs/heads/main', true, false]],
    );
    assert.deepEqual(v.refs[0]?.host, { requiredApprovals: 2, signedCommits: true, forcePushAllowed: false });
    // bob's approval is of an older head (stale); erin's was dismissed; carol's is of the final head.
    assert.deepEqual(v.approvals.map((a) => [a.reviewer, a.exact]).sort(), [
      ['bob', false],
      ['carol', true],
    ]);
    assert.deepEqual(v.independentApprovals, { exact: 1, any: 2 });
    assert.equal(v.reviewedCommit, HEAD);
    assert.equal(v.signature.trusted, true);
    assert.equal(v.signature.signer, 'alice@example.com');
    assert.equal(v.buildConfig?.unchangedSinceReview, true);
    // The rate-limit answer was waited out, both review pages were read, the token was sent.
    assert.equal(gh.hits.get(`/repos/octo/app/commits/${MERGE}`), 2);
    assert.equal(gh.hits.get('/repos/octo/app/pulls/7/reviews?per_page=100&page=2'), 1);
    assert.deepEqual([...gh.auth], ['Bearer t0ken']);
  });

  it('GitHub: refuses a job whose CI identity token names another commit', async () => {
    const { provider } = await github();
    const v = await provider.verify({
      repository: 'https://github.com/octo/app',
      commit: MERGE,
      ciIdentity: { repository: 'octo/app', sha: OLD, ref: 'refs/heads/main' },
    });
    assert.equal(v.verified, false);
    assert.match(v.problems[0] ?? '', /CI identity token names sha 555555555555/);
    assert.deepEqual(
      v.violations.map((x) => x.requirement),
      ['verified'],
    );
  });

  it('GitHub: fails closed when the rate limit resets later than it may wait', async () => {
    const { provider } = await github(
      { maxRateLimitWaitSeconds: 1 },
      { ...values, RESET_NOW: String(Math.floor(Date.now() / 1000) + 3600) },
    );
    const v = await provider.verify({ repository: 'https://github.com/octo/app', commit: MERGE });
    assert.equal(v.verified, false);
    assert.match(v.problems[0] ?? '', /rate limited by 127\.0\.0\.1:\d+ for 3\d{3} s more/);
  });

  it('GitLab: reads a merge request approved by its own author and refuses it', async () => {
    const gl = await serve('gitlab-api.json', values, '/api/v4');
    servers.push(gl.server);
    const provider = new GitLabProvider({
      apiUrl: gl.api,
      webUrl: 'https://gitlab.example',
      token: 'glpat',
      store: store.source,
    });
    const v = await provider.verify({
      repository: 'https://gitlab.example/group/app',
      commit: MERGE,
      ciIdentity: {
        project_path: 'group/app',
        sha: MERGE,
        ref: 'main',
        ref_type: 'branch',
        pipeline_id: '77',
      },
    });
    assert.equal(v.verified, true, v.problems.join('; '));
    assert.equal(v.onProtectedRef, true);
    assert.deepEqual(
      v.approvals.map((a) => [a.reviewer, a.byAuthor]),
      [
        ['bob', false],
        ['alice', true],
      ],
    );
    assert.equal(v.signature.trusted, true);
    assert.equal(v.signature.signer, 'alice@example.com');
    assert.equal(v.refs[0]?.host?.requiredApprovals, 1);
    assert.deepEqual(
      v.violations.map((x) => x.requirement),
      ['self-approval'],
    );
    assert.equal(gl.hits.get(`/api/v4/projects/group%2Fapp/repository/commits/${MERGE}`), 2);
  });
});

describe('REST client edges', () => {
  const base = new URL('https://api.github.com/');
  it('follows only next links under the API base', () => {
    assert.equal(
      nextLink('<https://api.github.com/x?page=2>; rel="next"', base)?.href,
      'https://api.github.com/x?page=2',
    );
    assert.equal(nextLink('<https://api.github.com/x?page=1>; rel="prev"', base), undefined);
    assert.equal(nextLink(null, base), undefined);
    assert.throws(
      () => nextLink('<https://evil.example/steal>; rel="next"', base),
      (e) => isGatehouseError(e, 'SOURCE_UNAVAILABLE'),
    );
  });

  it('reads rate-limit answers of both hosts and ignores other refusals', () => {
    const h = (o: Record<string, string>) => new Headers(o);
    const now = 1_000_000_000_000;
    assert.equal(
      rateLimitWait(
        { status: 403, headers: h({ 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': '1000000030' }) },
        now,
      ),
      30,
    );
    assert.equal(rateLimitWait({ status: 429, headers: h({ 'retry-after': '7' }) }, now), 7);
    assert.equal(rateLimitWait({ status: 429, headers: h({ 'ratelimit-reset': '1000000005' }) }, now), 5);
    assert.equal(rateLimitWait({ status: 429, headers: h({}) }, now), Number.POSITIVE_INFINITY);
    assert.equal(
      rateLimitWait({ status: 403, headers: h({ 'x-ratelimit-remaining': '12' }) }, now),
      undefined,
    );
    assert.equal(rateLimitWait({ status: 500, headers: h({ 'retry-after': '1' }) }, now), undefined);
  });
});
