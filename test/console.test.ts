/**
 * The console and alerts end to end, against a real `gatehouse server` with real jobs from the
 * examples (bubblewrap runners, vTPM attestation): what a security engineer sees after a
 * demo-style run, the page's own verifiers (merkle.js, note.js, act.js, under Node's WebCrypto)
 * on what the server serves, a triage release signed in the page's way with a security key the
 * server never holds, and a signed CloudEvent for each deny at a webhook receiver on loopback.
 *
 * The page itself runs in headless Chromium (Debian's, driven by playwright-core): it renders,
 * logs in (with the viewer token, and with OIDC against a loopback provider the test starts),
 * shows the builds, their build logs as text with the digest checked against the signed
 * provenance, charts and proofs, refuses a viewer's triage write and releases a build as a
 * triager with a key file the person loads, with no console error and by keyboard.
 * GATEHOUSE_CONSOLE_SCREENSHOTS=DIR saves screenshots of the main pages there (docs/console/
 * holds the committed ones).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Browser, chromium, type Locator, type Page } from 'playwright-core';
import { verifyWebhook, webhookKey } from '../src/alerts/webhook-signature.ts';
import { signHostRequest } from '../src/attestation/request-proof.ts';
import { loadSigningKey, signAct, triageAct } from '../src/server/console/assets/act.js';
import {
  fromBase64,
  fromHex,
  leafHash,
  verifyConsistency,
  verifyInclusion,
} from '../src/server/console/assets/merkle.js';
import { verifyCheckpoint } from '../src/server/console/assets/note.js';
import { buildLogOfBundle, entryRecordsPayload, sha256Hex } from '../src/server/console/assets/provenance.js';
import { EphemeralSigner } from '../src/signing/file-key-signer.ts';
import { LoopbackOidcProvider } from '../src/testing/oidc-provider.ts';
import { cli, copyExample, examplesDir, missingTools, repoRoot, tempDir } from './helpers.ts';

/** What hello-app's build prints besides its own line: markup the page must show as text. */
const INJECTION = `<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2"><b>bold</b>`;

/** The text of an element as a person sees it (rendered, with cell and line breaks). */
function shown(l: Locator): Promise<string> {
  // biome-ignore lint/performance/useDomNodeTextContent: Playwright's innerText is the rendered text, on purpose
  return l.innerText();
}

interface Hook {
  headers: IncomingMessage['headers'];
  body: string;
}

describe('the console and alerts, end to end', () => {
  const tmp = tempDir('console');
  const home = join(tmp.path, 'home');
  const h = ['--home', home];
  const secret = 'a webhook secret of at least sixteen bytes';
  const hooks: Hook[] = [];
  const receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => {
      body += c.toString();
    });
    req.on('end', () => {
      hooks.push({ headers: req.headers, body });
      res.writeHead(204).end();
    });
  });
  let server: ChildProcess | undefined;
  let url = '';
  let viewerToken = '';
  const triagerToken = 'the triager token of this console, for tests';
  let cookie = '';
  let csrf = '';
  let oidc: LoopbackOidcProvider;
  const oidcSecret = 'the OIDC client secret of the console';
  const triagePem = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const runs: Record<string, { code: number; doc: { jobId: string; decision?: { decisionId: string } } }> =
    {};

  before(async () => {
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    const hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks/gatehouse`;
    assert.equal((await cli(['init', ...h])).code, 0);
    assert.equal((await cli(['vulndb', 'import', join(examplesDir, 'advisories'), ...h])).code, 0);
    // A security key of the team, trusted by the control plane, that only the person holds.
    mkdirSync(join(home, 'keys', 'security-trusted'), { recursive: true });
    writeFileSync(
      join(home, 'keys', 'security-trusted', 'triager.pem'),
      triagePem.publicKey.export({ format: 'pem', type: 'spki' }),
    );
    writeFileSync(join(home, 'keys', 'webhook-secret'), secret, { mode: 0o600 });
    // The identity provider: a confidential client, platform engineers view, security triages.
    oidc = await LoopbackOidcProvider.start({ id: 'gatehouse-console', secret: oidcSecret });
    writeFileSync(join(home, 'keys', 'oidc-client-secret'), oidcSecret, { mode: 0o600 });
    writeFileSync(join(home, 'keys', 'triager-token'), triagerToken, { mode: 0o600 });
    const configPath = join(home, 'config.json');
    const config = JSON.parse(readFileSync(configPath, 'utf8'));
    config.alerts = { webhooks: [{ name: 'soc', url: hookUrl, secretFile: 'keys/webhook-secret' }] };
    config.console = {
      triagerTokenFile: 'keys/triager-token',
      oidc: {
        issuer: oidc.issuer,
        clientId: 'gatehouse-console',
        clientSecretFile: 'keys/oidc-client-secret',
        allowed: { groups: ['platform', 'security'] },
        triager: { groups: ['security'] },
      },
    };
    writeFileSync(configPath, JSON.stringify(config, null, 2));

    const child = spawn(join(repoRoot, 'bin', 'gatehouse'), ['server', '--listen', '127.0.0.1:0', ...h], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    server = child;
    url = await new Promise<string>((resolve, reject) => {
      let seen = '';
      child.stdout?.on('data', (d: Buffer) => {
        seen += d.toString();
        const m = /listening on (http:\/\/\S+)/.exec(seen);
        if (m?.[1] !== undefined) resolve(m[1]);
      });
      child.on('exit', (code) => reject(new Error(`server exited with ${code}`)));
      setTimeout(() => reject(new Error('server did not start')), 30_000).unref();
    });
    viewerToken = readFileSync(join(home, 'keys', 'viewer-token'), 'utf8').trim();
    // One allowed build (that prints markup into its log) and two denied ones: one to release
    // over HTTP, one in the browser.
    const hello = copyExample('hello-app', tmp.path);
    appendFileSync(join(hello, 'build.sh'), `echo '${INJECTION}'\n`);
    for (const [name, dir] of [
      ['hello-app', hello],
      ['vulnerable-app', join(examplesDir, 'vulnerable-app')],
      ['vulnerable-app-2', join(examplesDir, 'vulnerable-app')],
    ] as const) {
      const r = await cli(['run', dir, '--server', url, '--json', ...h], {
        timeoutMs: 240_000,
      });
      runs[name] = { code: r.code, doc: JSON.parse(r.stdout) };
    }
  });
  after(async () => {
    server?.kill('SIGTERM');
    await oidc?.stop();
    receiver.closeAllConnections();
    await new Promise<void>((r) => receiver.close(() => r()));
    tmp.cleanup();
  });

  const get = (path: string, headers: Record<string, string> = {}) =>
    fetch(`${url}${path}`, { headers: { cookie, ...headers } });
  const getJson = async <T>(path: string): Promise<T> => {
    const r = await get(path);
    assert.equal(r.status, 200, `${path}: ${r.status}`);
    return (await r.json()) as T;
  };

  it('ran one allowed and one denied build', () => {
    assert.equal(runs['hello-app']?.code, 0);
    assert.equal(runs['vulnerable-app']?.code, 3);
    assert.equal(runs['vulnerable-app-2']?.code, 3);
  });

  it('serves the page with a strict CSP, security headers, and no secret in it', async () => {
    const r = await fetch(`${url}/console/`);
    assert.equal(r.status, 200);
    const csp = r.headers.get('content-security-policy') ?? '';
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(r.headers.get('x-frame-options'), 'DENY');
    assert.equal(r.headers.get('referrer-policy'), 'no-referrer');
    const html = await r.text();
    assert.ok(!html.includes(viewerToken));
    assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, 'no inline script');
    assert.doesNotMatch(html, /<style|\sstyle=/, 'no inline style');
    for (const asset of ['app.js', 'merkle.js', 'note.js', 'act.js', 'charts.js', 'console.css']) {
      const a = await fetch(`${url}/console/assets/${asset}`);
      assert.equal(a.status, 200, asset);
      assert.ok(!(await a.text()).includes(viewerToken));
    }
    // Only shipped assets: nothing else of the folder or the home.
    for (const path of [
      '/console/assets/act.d.ts',
      '/console/assets/..%2F..%2Fsession.ts',
      '/console/assets/page-verifiers.test.ts',
    ])
      assert.equal((await fetch(`${url}${path}`)).status, 404, path);
  });

  it('lets no one read without logging in, and refuses a wrong token and a cross-site login', async () => {
    assert.equal((await fetch(`${url}/console/api/jobs`)).status, 401);
    assert.equal(
      (
        await fetch(`${url}/console/api/jobs`, {
          headers: {
            cookie:
              'gatehouse_console=v1.9999999999.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
          },
        })
      ).status,
      401,
    );
    const login = (token: string, headers: Record<string, string> = {}) =>
      fetch(`${url}/console/api/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ token }),
      });
    assert.equal((await login('not-the-token')).status, 401);
    assert.equal((await login(viewerToken, { origin: 'https://evil.example' })).status, 401);
    assert.equal((await login(viewerToken, { 'sec-fetch-site': 'cross-site' })).status, 401);
    const r = await login(viewerToken, { origin: url });
    assert.equal(r.status, 200);
    const setCookie = r.headers.get('set-cookie') ?? '';
    assert.match(setCookie, /HttpOnly/);
    assert.match(setCookie, /SameSite=Strict/);
    assert.match(setCookie, /Path=\/console/);
    assert.ok(!setCookie.includes(viewerToken), 'the cookie is a session, not the token');
    cookie = setCookie.split(';')[0] ?? '';
    csrf = ((await r.json()) as { csrf: string }).csrf;
    assert.equal(
      ((await (await get('/console/api/session')).json()) as { loggedIn: boolean }).loggedIn,
      true,
    );
    assert.equal(
      ((await (await fetch(`${url}/console/api/session`)).json()) as { loggedIn: boolean }).loggedIn,
      false,
    );
    // Scripts may send the viewer token as a bearer token instead.
    assert.equal(
      (await fetch(`${url}/console/api/jobs`, { headers: { authorization: `Bearer ${viewerToken}` } }))
        .status,
      200,
    );
  });

  it('logs in with OIDC over HTTP only with this browser’s state and an allowed user, never showing a secret', async () => {
    const start = async () => {
      const r = await fetch(`${url}/console/oidc/login`, { redirect: 'manual' });
      assert.equal(r.status, 302);
      const setCookie = r.headers.get('set-cookie') ?? '';
      assert.match(setCookie, /^gatehouse_oidc=[^;]+; Path=\/console\/oidc; HttpOnly; SameSite=Lax/);
      const location = r.headers.get('location') ?? '';
      assert.ok(location.startsWith(`${oidc.issuer}/authorize?`));
      assert.equal(new URL(location).searchParams.get('code_challenge_method'), 'S256');
      assert.ok(!location.includes(oidcSecret) && !setCookie.includes(oidcSecret));
      const back = await fetch(location, { redirect: 'manual' });
      return { flow: setCookie.split(';')[0] ?? '', callback: back.headers.get('location') ?? '' };
    };
    oidc.user = { sub: 'u-http', groups: ['platform'] };
    const a = await start();
    assert.equal((await fetch(a.callback, { redirect: 'manual' })).status, 401, 'no flow cookie');
    const b = await start();
    assert.equal(
      (await fetch(a.callback, { redirect: 'manual', headers: { cookie: b.flow } })).status,
      401,
      "another login's state",
    );
    oidc.user = { sub: 'u-other', groups: ['marketing'] };
    const c = await start();
    assert.equal((await fetch(c.callback, { redirect: 'manual', headers: { cookie: c.flow } })).status, 401);
    oidc.user = { sub: 'u-http', groups: ['platform'] };
    const d = await start();
    const ok = await fetch(d.callback, { redirect: 'manual', headers: { cookie: d.flow } });
    assert.equal(ok.status, 303);
    assert.equal(ok.headers.get('location'), '/console/#/jobs');
    const session = ok.headers.getSetCookie().find((x) => x.startsWith('gatehouse_console=')) ?? '';
    assert.match(session, /HttpOnly; SameSite=Strict/);
    const who = (await (
      await fetch(`${url}/console/api/session`, { headers: { cookie: session.split(';')[0] ?? '' } })
    ).json()) as { role: string; who: string };
    assert.deepEqual([who.role, who.who], ['viewer', 'u-http']);
    // The code was good once.
    assert.equal((await fetch(d.callback, { redirect: 'manual', headers: { cookie: d.flow } })).status, 401);
  });

  it('shows the allowed and the denied build, with the lifecycle and the reasons', async () => {
    const { jobs } = await getJson<{ jobs: { id: string; project: string; state: string }[] }>(
      '/console/api/jobs',
    );
    const states = Object.fromEntries(jobs.map((j) => [j.project, j.state]));
    assert.equal(states['hello-app'], 'allowed');
    assert.equal(states['vulnerable-app'], 'denied');
    const denied = jobs.find((j) => j.project === 'vulnerable-app');
    const detail = await getJson<{
      job: { steps: { name: string; ok: boolean }[] };
      decisions: {
        outcome: string;
        reasons: { rule: string; message: string }[];
        policyDigest: string;
        logIndex: number;
      }[];
    }>(`/console/api/jobs/${denied?.id}`);
    for (const step of ['provision', 'attest', 'build', 'destroy'])
      assert.ok(
        detail.job.steps.some((s) => s.name === step),
        `lifecycle has ${step}`,
      );
    const [d] = detail.decisions;
    assert.equal(d?.outcome, 'deny');
    assert.ok((d?.reasons.length ?? 0) > 0);
    assert.match(d?.policyDigest ?? '', /^(sha256:)?[0-9a-f]{64}$/, `policy digest ${d?.policyDigest}`);
    assert.ok(Number.isInteger(d?.logIndex));
  });

  it("serves each job's build log as text, with the digest its signed provenance names", async () => {
    const allowed = runs['hello-app']?.doc.jobId ?? '';
    assert.equal((await fetch(`${url}/console/api/jobs/${allowed}/log`)).status, 401);
    const r = await get(`/console/api/jobs/${allowed}/log`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'text/plain; charset=utf-8');
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
    assert.match(r.headers.get('content-security-policy') ?? '', /sandbox/);
    const bytes = new Uint8Array(await r.arrayBuffer());
    assert.ok(new TextDecoder().decode(bytes).includes(INJECTION), 'kept as the build printed it');
    const digest = await sha256Hex(bytes);
    assert.equal(r.headers.get('gatehouse-log-sha256'), digest);
    const { bundle } = await getJson<{ bundle: unknown }>(`/console/api/jobs/${allowed}/provenance`);
    const named = await buildLogOfBundle(bundle);
    assert.equal(named.digest, digest, "the provenance's build.log is the served log");
    const e = await getJson<{ body: string }>(`/console/api/log/entries/${named.logIndex}`);
    assert.ok(entryRecordsPayload(fromBase64(e.body), named.payloadSha256));
    assert.ok(!entryRecordsPayload(fromBase64(e.body), '0'.repeat(64)));
    // A provenance whose statement was altered no longer matches its log entry.
    const altered = structuredClone(bundle) as { dsseEnvelope: { payload: string } };
    const statement = JSON.parse(Buffer.from(altered.dsseEnvelope.payload, 'base64').toString());
    statement.predicate.runDetails.byproducts[0].digest.sha256 = 'f'.repeat(64);
    altered.dsseEnvelope.payload = Buffer.from(JSON.stringify(statement)).toString('base64');
    const forged = await buildLogOfBundle(altered);
    assert.ok(!entryRecordsPayload(fromBase64(e.body), forged.payloadSha256));
    // A denied build was never signed: its log is there, its provenance is not.
    const denied = runs['vulnerable-app']?.doc.jobId ?? '';
    assert.equal((await get(`/console/api/jobs/${denied}/log`)).status, 200);
    assert.equal((await getJson<{ bundle: unknown }>(`/console/api/jobs/${denied}/provenance`)).bundle, null);
  });

  it("shows each artifact's SBOM with its findings and whether VEX settles them", async () => {
    const id = runs['vulnerable-app']?.doc.decision?.decisionId ?? '';
    const s = await getJson<{
      known: boolean;
      components: { purl: string }[];
      findings: { vulnId: string; purl: string; vex: unknown }[];
    }>(`/console/api/decisions/${id}/sbom`);
    assert.ok(s.known);
    assert.ok(s.components.length > 0);
    assert.ok(s.findings.length > 0, 'the vulnerable app has findings');
    assert.ok(
      s.findings.every((f) => s.components.some((c) => c.purl === f.purl) || f.purl.startsWith('pkg:deb')),
    );
    assert.ok(
      s.findings.some((f) => f.vex === null),
      'no VEX settles what denied it',
    );
    const allowed = await getJson<{ known: boolean }>(
      `/console/api/decisions/${runs['hello-app']?.doc.decision?.decisionId}/sbom`,
    );
    assert.ok(allowed.known);
    assert.equal((await get('/console/api/decisions/no-such/sbom')).status, 404);
  });

  it('charts the four seed metrics with the measured values', async () => {
    const m = await getJson<{
      series: { name: string; current: number | null; points: { v: number | null }[] }[];
    }>('/console/api/metrics');
    const by = Object.fromEntries(m.series.map((s) => [s.name, s]));
    assert.deepEqual(Object.keys(by).sort(), [
      'artifacts_blocked',
      'attestation_success',
      'ephemeral_share',
      'time_to_detect',
    ]);
    assert.equal(by.ephemeral_share?.current, 1);
    assert.equal(by.attestation_success?.current, 1);
    assert.equal(by.artifacts_blocked?.current, 2);
    assert.ok((by.time_to_detect?.current ?? 0) > 0);
    assert.equal(
      by.artifacts_blocked?.points.reduce((s, p) => s + (p.v ?? 0), 0),
      2,
    );
    const prom = await (await fetch(`${url}/metrics`)).text();
    assert.match(prom, /^gatehouse_artifacts_blocked 2$/m, 'the same count as /metrics');
  });

  it('proves the decisions in the log with the page verifier: checkpoint, inclusion, consistency', async () => {
    const { checkpoint, logKeys } = await getJson<{ checkpoint: string; logKeys: { spki: string }[] }>(
      '/console/api/log/checkpoint',
    );
    const cp = await verifyCheckpoint(
      checkpoint,
      logKeys.map((k) => k.spki),
    );
    const { decisions } = await getJson<{ decisions: { logIndex: number; id: string }[] }>(
      '/console/api/decisions',
    );
    for (const d of decisions) {
      const e = await getJson<{ body: string; inclusionProof: { treeSize: number; hashes: string[] } }>(
        `/console/api/log/entries/${d.logIndex}?treeSize=${cp.treeSize}`,
      );
      const body = fromBase64(e.body);
      await verifyInclusion(
        d.logIndex,
        cp.treeSize,
        await leafHash(body),
        e.inclusionProof.hashes.map(fromHex),
        cp.rootHash,
      );
      assert.equal(JSON.parse(new TextDecoder().decode(body)).spec.decisionId, d.id);
      // The same proof does not place another entry there.
      await assert.rejects(
        verifyInclusion(
          d.logIndex,
          cp.treeSize,
          await leafHash(new TextEncoder().encode('forged')),
          e.inclusionProof.hashes.map(fromHex),
          cp.rootHash,
        ),
      );
    }
    const older = await getJson<{ inclusionProof: { rootHash: string } }>(
      `/console/api/log/entries/0?treeSize=1`,
    );
    const c = await getJson<{ hashes: string[] }>(
      `/console/api/log/consistency?first=1&second=${cp.treeSize}`,
    );
    await verifyConsistency(
      1,
      cp.treeSize,
      fromHex(older.inclusionProof.rootHash),
      cp.rootHash,
      c.hashes.map(fromHex),
    );
  });

  it('sends one signed CloudEvent for each deny, with a valid HMAC', async () => {
    const denies = hooks.filter((k) => JSON.parse(k.body).type === 'dev.gatehouse.decision.denied');
    const expected = [runs['vulnerable-app'], runs['vulnerable-app-2']].map(
      (r) => r?.doc.decision?.decisionId,
    );
    assert.deepEqual(denies.map((k) => JSON.parse(k.body).data.decisionId).sort(), expected.sort());
    for (const hook of denies) {
      const event = JSON.parse(hook.body);
      assert.equal(event.specversion, '1.0');
      assert.equal(event.data.project, 'vulnerable-app');
      assert.ok(event.data.reasons.length > 0);
      assert.equal(verifyWebhook(webhookKey(secret), hook.headers, hook.body), event.id);
      assert.throws(() => verifyWebhook(webhookKey('another secret of sixteen+'), hook.headers, hook.body));
    }
  });

  it('releases the denied build with a security key loaded the page way, and refuses forged or replayed acts', async () => {
    const { held } = await getJson<{ held: { id: string; releasable: boolean }[] }>(
      '/console/api/quarantine',
    );
    const target = held.find((d) => d.id === runs['vulnerable-app']?.doc.decision?.decisionId);
    assert.ok(target?.releasable);
    const reason = 'accepted risk: the vulnerable path is not reachable';
    const act = triageAct(target.id, 'release', reason);
    const { key, keyId } = await loadSigningKey(
      triagePem.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    );
    const signature = await signAct(act, key);
    const body = JSON.stringify({ decisionId: target.id, action: 'release', reason, signature, keyId });
    const post = (headers: Record<string, string>, b = body) =>
      fetch(`${url}/console/api/triage`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', cookie, origin: url, ...headers },
        body: b,
      });
    // A viewer's write is refused for its role, though the act is validly signed.
    const viewerPost = await post({ 'x-gatehouse-csrf': csrf });
    assert.equal(viewerPost.status, 403, await viewerPost.clone().text());
    assert.equal(((await viewerPost.json()) as { error: { code: string } }).error.code, 'FORBIDDEN');
    assert.equal(
      (
        await fetch(`${url}/console/api/triage`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${viewerToken}` },
          body,
        })
      ).status,
      403,
      'a bearer viewer token',
    );
    // A triager logs in with the static triager token; from here its session makes the writes.
    const login = await fetch(`${url}/console/api/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: url },
      body: JSON.stringify({ token: triagerToken }),
    });
    assert.equal(login.status, 200);
    const triagerSession = (await login.json()) as { csrf: string; role: string };
    assert.equal(triagerSession.role, 'triager');
    const viewerCookie = cookie;
    cookie = (login.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
    csrf = triagerSession.csrf;
    // A viewer's cookie with the role changed to triager is no session at all.
    const forgedRole = viewerCookie.replace('.viewer.', '.triager.');
    assert.equal((await post({ 'x-gatehouse-csrf': csrf, cookie: forgedRole })).status, 401);
    assert.equal((await post({})).status, 401, 'no CSRF token');
    assert.equal((await post({ 'x-gatehouse-csrf': 'x'.repeat(32) })).status, 401, 'a wrong CSRF token');
    assert.equal(
      (await post({ 'x-gatehouse-csrf': csrf, origin: 'https://evil.example' })).status,
      401,
      'another origin',
    );
    // A signature by a key the control plane does not trust, and one over another act.
    const stranger = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const s2 = await loadSigningKey(stranger.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString());
    const forged = JSON.stringify({
      decisionId: target.id,
      action: 'release',
      reason,
      signature: await signAct(act, s2.key),
      keyId: s2.keyId,
    });
    assert.equal((await post({ 'x-gatehouse-csrf': csrf }, forged)).status, 422);
    const otherReason = JSON.stringify({
      decisionId: target.id,
      action: 'release',
      reason: 'another reason',
      signature,
      keyId,
    });
    assert.equal((await post({ 'x-gatehouse-csrf': csrf }, otherReason)).status, 422);

    const r = await post({ 'x-gatehouse-csrf': csrf });
    assert.equal(r.status, 201, await r.clone().text());
    const out = (await r.json()) as { action: string; placement?: string; logIndex: number };
    assert.equal(out.action, 'release');
    assert.ok(out.placement !== undefined, 'signed and promoted');
    assert.equal((await post({ 'x-gatehouse-csrf': csrf })).status, 409, 'a replayed act is refused');
    assert.equal(
      (
        await fetch(`${url}/console/api/triage`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${triagerToken}` },
          body,
        })
      ).status,
      409,
      'a bearer triager token passes the role check; the act itself is still refused as replayed',
    );
    const after = await getJson<{ held: { id: string }[] }>('/console/api/quarantine');
    assert.ok(!after.held.some((d) => d.id === target.id));
    // The release is told too.
    const deadline = Date.now() + 10_000;
    while (
      !hooks.some((k) => JSON.parse(k.body).type === 'dev.gatehouse.triage.released') &&
      Date.now() < deadline
    )
      await new Promise((res) => setTimeout(res, 100));
    assert.ok(hooks.some((k) => JSON.parse(k.body).type === 'dev.gatehouse.triage.released'));
  });

  it('tells of a runner host that is not enrolled, and still refuses it', async () => {
    const request = { project: 'hello-app' };
    const proof = await signHostRequest(EphemeralSigner.generate(), 'rogue-host', { act: 'create', request });
    const r = await fetch(`${url}/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'gatehouse-proof': proof },
      body: JSON.stringify(request),
    });
    assert.equal(r.status, 401);
    const deadline = Date.now() + 10_000;
    const told = () => hooks.filter((k) => JSON.parse(k.body).type === 'dev.gatehouse.runner.unenrolled');
    while (told().length === 0 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 100));
    assert.equal(told().length, 1);
    assert.match(JSON.parse(told()[0]?.body ?? '{}').data.refusal, /rogue-host/);
  });

  it('lists the deliveries with gatehouse alerts', async () => {
    const r = await cli(['alerts', 'list', '--all', '--json', ...h]);
    assert.equal(r.code, 0, r.stderr);
    const { deliveries } = JSON.parse(r.stdout) as { deliveries: { state: string; type: string }[] };
    assert.ok(deliveries.some((d) => d.type === 'dev.gatehouse.decision.denied' && d.state === 'delivered'));
    const dead = await cli(['alerts', 'list', '--json', ...h]);
    assert.deepEqual(JSON.parse(dead.stdout).deliveries, []);
  });

  describe('in a real browser', { skip: missingTools('chromium') }, () => {
    let browser: Browser;
    let page: Page;
    const errors: string[] = [];
    const shots = process.env.GATEHOUSE_CONSOLE_SCREENSHOTS;
    const shot = async (name: string) => {
      if (shots !== undefined && shots !== '') await page.screenshot({ path: join(shots, `${name}.png`) });
    };
    before(async () => {
      browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
      page = await browser.newPage({ viewport: { width: 1100, height: 720 } });
      page.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warning') errors.push(`${m.type()}: ${m.text()}`);
      });
      page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
    });
    after(async () => {
      await browser?.close();
    });

    it('asks for the viewer token and logs in from the keyboard', async () => {
      await page.goto(`${url}/console/`);
      await page.locator('#token').waitFor();
      assert.equal(await page.evaluate('document.activeElement?.id'), 'token', 'the token field has focus');
      assert.ok(await page.locator('#nav').isHidden());
      assert.ok(await page.locator('#oidc-login').isVisible(), 'OIDC is offered beside the token');
      await shot('login');
      await page.keyboard.type(viewerToken);
      await page.keyboard.press('Enter');
      await page.locator('h1', { hasText: 'Jobs' }).waitFor();
      assert.equal(await page.inputValue('#token'), '', 'the token does not stay in the page');
      const cookies = await page.context().cookies();
      const session = cookies.find((c) => c.name === 'gatehouse_console');
      assert.equal(session?.httpOnly, true);
      assert.equal(session?.sameSite, 'Strict');
      assert.equal(await page.evaluate('document.cookie'), '', "the session is out of the page's reach");
    });

    it("shows the allowed and the denied builds, and a job's lifecycle timeline", async () => {
      await page.locator('td', { hasText: 'allowed' }).first().waitFor();
      const text = await shown(page.locator('#view'));
      assert.match(text, /hello-app\s+allowed/);
      assert.match(text, /vulnerable-app\s+denied/);
      await shot('jobs');
      await page.locator('tr', { hasText: 'denied' }).first().locator('a').click();
      await page.locator('svg.timeline rect').first().waitFor();
      assert.ok((await page.locator('svg.timeline rect').count()) >= 4, 'one bar per step');
      assert.match(await shown(page.locator('#view')), /deny/);
      await page.locator('#log-provenance:not(:empty)').waitFor();
      assert.equal(await page.getAttribute('#log-digest', 'data-state'), 'ok');
      assert.match(await shown(page.locator('#log-provenance')), /No signed provenance/);
      await shot('job');
    });

    it('shows a build log as text, its digest checked in the page against the signed provenance', async () => {
      const jobId = runs['hello-app']?.doc.jobId ?? '';
      await page.goto(`${url}/console/#/jobs/${jobId}`);
      await page.locator('#log-provenance[data-state]').waitFor();
      assert.equal(
        await page.getAttribute('#log-provenance', 'data-state'),
        'ok',
        await shown(page.locator('#log-provenance')),
      );
      assert.match(
        await shown(page.locator('#log-provenance')),
        /log entry #\d+, included in the verified checkpoint/,
      );
      const served = await (await get(`/console/api/jobs/${jobId}/log`)).arrayBuffer();
      assert.equal(await shown(page.locator('#log-sha256')), await sha256Hex(new Uint8Array(served)));
      // The build's markup is shown as the text it printed, and none of it became an element.
      assert.ok((await page.locator('#build-log').textContent())?.includes(INJECTION));
      assert.equal(await page.locator('#build-log *').count(), 0);
      assert.equal(await page.evaluate('typeof window.pwned'), 'undefined');
      await page.locator('#build-log').scrollIntoViewIfNeeded();
      await shot('build-log');
    });

    it('shows the decisions with their reasons, policy digest and log index', async () => {
      await page.goto(`${url}/console/#/decisions`);
      // The view is replaced as a whole: wait for this page's heading, not a cell the last page had.
      await page.locator('#view h1', { hasText: 'Decisions' }).waitFor();
      await page.locator('td .state-deny').first().waitFor();
      const row = await shown(page.locator('tr', { has: page.locator('.state-deny') }).first());
      assert.match(row, /vuln|CVE|GHSA/i, 'the reason is shown');
      assert.match(row, /#\d+/, 'the log index is shown');
      assert.equal(await page.locator('tbody tr').count(), 3);
      await shot('decisions');
    });

    it('charts the four seed metrics with the measured values', async () => {
      await page.goto(`${url}/console/#/metrics`);
      await page.locator('svg.chart').first().waitFor();
      const values = await page.$$eval('.card', (cards) =>
        cards.map((c) => [c.getAttribute('data-metric'), c.querySelector('.value')?.textContent]),
      );
      assert.deepEqual(Object.fromEntries(values), {
        ephemeral_share: '100.0 %',
        attestation_success: '100.0 %',
        time_to_detect: values.find(([n]) => n === 'time_to_detect')?.[1],
        artifacts_blocked: '2',
      });
      assert.match(values.find(([n]) => n === 'time_to_detect')?.[1] ?? '', /^\d+(\.\d+)? (s|min)$/);
      assert.equal(
        (await page.locator('svg.chart[data-metric="artifacts_blocked"] rect.bar').count()) > 0,
        true,
      );
      await shot('metrics');
    });

    it('verifies the checkpoint and an inclusion proof in the page', async () => {
      const decisionLog = (await getJson<{ decisions: { logIndex: number }[] }>('/console/api/decisions'))
        .decisions[0]?.logIndex;
      await page.goto(`${url}/console/#/log/${decisionLog}`);
      await page.locator('#inclusion-status[data-state]').waitFor();
      assert.equal(await page.getAttribute('#checkpoint-status', 'data-state'), 'ok');
      assert.equal(await page.getAttribute('#inclusion-status', 'data-state'), 'ok');
      assert.match(await shown(page.locator('.entry-body')), /gatehouse-decision/);
      await shot('log');
    });

    /** Log out, then log in at the loopback identity provider as `user`. */
    const oidcLogin = async (user: Record<string, unknown>) => {
      await page.goto(`${url}/console/#/jobs`);
      await page.locator('#logout').click();
      await page.locator('#oidc-login').waitFor();
      oidc.user = user;
      await page.locator('#oidc-login').click();
      await page.locator('h1', { hasText: 'Jobs' }).waitFor();
      const cookies = await page.context().cookies();
      assert.equal(cookies.find((c) => c.name === 'gatehouse_console')?.httpOnly, true);
      assert.equal(
        cookies.find((c) => c.name === 'gatehouse_oidc'),
        undefined,
        'the flow state is gone',
      );
    };

    it('logs in with OIDC as a viewer, who sees no signing form and whose write is refused', async () => {
      await oidcLogin({ sub: 'u-view', email: 'vera@example.org', groups: ['platform'] });
      assert.match(await shown(page.locator('#whoami')), /vera@example\.org \(u-view\) · viewer/);
      const html = await page.content();
      assert.ok(!html.includes(oidcSecret) && !html.includes(viewerToken), 'no secret in the page');
      const id = runs['vulnerable-app-2']?.doc.decision?.decisionId ?? '';
      await page.goto(`${url}/console/#/quarantine`);
      const card = page.locator(`article[data-decision="${id}"]`);
      await card.waitFor();
      assert.equal(await card.locator('button[type="submit"]').count(), 0);
      assert.ok(await card.locator('.viewer-note').isVisible());
      await shot('quarantine-viewer');
      // The page's own request with the session's CSRF token: refused for the role.
      const before = errors.length;
      const status = await page.evaluate(async (decisionId) => {
        const s = (await (await fetch('/console/api/session')).json()) as { csrf: string };
        const r = await fetch('/console/api/triage', {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-gatehouse-csrf': s.csrf },
          body: JSON.stringify({
            decisionId,
            action: 'release',
            reason: 'a viewer tries',
            signature: 'AAAA',
            keyId: '0'.repeat(64),
          }),
        });
        return r.status;
      }, id);
      assert.equal(status, 403);
      // Chromium reports the refused request on its console; that one is expected.
      const seen = errors.splice(before);
      assert.ok(
        seen.every((e) => /status of 403/.test(e)),
        seen.join('\n'),
      );
    });

    it('releases a denied build as a triager logged in with OIDC, with a security key file loaded into the page', async () => {
      await oidcLogin({ sub: 'u-sec', email: 'sam@example.org', groups: ['security'] });
      assert.match(await shown(page.locator('#whoami')), /· triager$/);
      const id = runs['vulnerable-app-2']?.doc.decision?.decisionId ?? '';
      await page.goto(`${url}/console/#/quarantine`);
      const card = page.locator(`article[data-decision="${id}"]`);
      await card.waitFor();
      await card.locator('select').selectOption('release');
      await card.locator('textarea').fill('accepted risk, reviewed in the browser');
      await card.locator('button', { hasText: 'Prepare act' }).click();
      await card.locator('.act-digest').waitFor();
      assert.match(await shown(card.locator('.act-digest')), /^[0-9a-f]{64}$/);
      assert.match(await shown(card.locator('.act-json')), new RegExp(id));
      await shot('quarantine');
      await card.locator('input[type="file"]').setInputFiles({
        name: 'triager.pem',
        mimeType: 'application/x-pem-file',
        buffer: Buffer.from(triagePem.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()),
      });
      await card.locator('button[type="submit"]').click();
      await card.locator('.verified[data-state]').waitFor();
      assert.equal(
        await card.locator('.verified').getAttribute('data-state'),
        'ok',
        await shown(card.locator('.verified')),
      );
      assert.match(await shown(card.locator('.verified')), /Released: logged as entry #\d+, promoted to /);
      const { held } = await getJson<{ held: { id: string }[] }>('/console/api/quarantine');
      assert.ok(!held.some((d) => d.id === id));
    });

    it('proves on the next visit that the log only grew', async () => {
      await page.goto(`${url}/console/#/log`);
      await page.locator('#consistency-status[data-state]').waitFor();
      assert.equal(await page.getAttribute('#consistency-status', 'data-state'), 'ok');
    });

    it('is usable by keyboard: the heading takes focus, the menu and the skip link are reachable', async () => {
      const focused = async () => String(await page.evaluate('document.activeElement?.textContent ?? ""'));
      await page.goto(`${url}/console/#/jobs`);
      await page.locator('h1', { hasText: 'Jobs' }).waitFor();
      assert.equal(
        await page.evaluate('document.activeElement?.tagName'),
        'H1',
        'a new page announces its heading',
      );
      const back: string[] = [];
      for (let i = 0; i < 8; i++) {
        await page.keyboard.press('Shift+Tab');
        back.push(await focused());
      }
      assert.deepEqual(back, [
        'Log out',
        'Transparency log',
        'Metrics',
        'Attestation refusals',
        'Quarantine',
        'Decisions',
        'Jobs',
        'Skip to content',
      ]);
      for (let i = 0; i < 5; i++) await page.keyboard.press('Tab');
      assert.equal(await focused(), 'Metrics');
      await page.keyboard.press('Enter');
      await page.locator('h1', { hasText: 'Metrics' }).waitFor();
      assert.equal(await page.evaluate('document.activeElement?.tagName'), 'H1');
      assert.equal(await page.getAttribute('nav a[href="#/metrics"]', 'aria-current'), 'page');
    });

    it('shows the refusals page and logs out', async () => {
      await page.goto(`${url}/console/#/refusals`);
      await page.locator('h1', { hasText: 'Attestation refusals' }).waitFor();
      await shot('refusals');
      await page.locator('#logout').click();
      await page.locator('#token').waitFor();
      assert.equal(
        (await page.context().cookies()).find((c) => c.name === 'gatehouse_console'),
        undefined,
      );
    });

    it('logged no console error, CSP violation or page error', () => {
      assert.deepEqual(errors, []);
    });
  });
});
