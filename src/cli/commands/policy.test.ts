import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cli, closeServer, examplesDir, listenOnLoopback, tempDir } from '../../../test/helpers.ts';
import { DEFAULT_POLICY } from '../../home/default-policy.ts';
import { openHome } from '../../home/home.ts';
import { loadSecuritySigner } from '../../home/security-role.ts';
import { policyAct } from '../../policy/policy-service.ts';
import { createApiServer } from '../../server/http-server.ts';
import { signSecurityAct } from '../../signing/security-act.ts';
import type { PolicyVersionRecord } from '../../store/store.ts';

describe('gatehouse policy, vulndb vex and triage, end to end', () => {
  const tmp = tempDir('policy-cli');
  const home = join(tmp.path, 'home');
  const h = ['--home', home];
  const sbom = join(tmp.path, 'sbom.json');

  before(async () => {
    const init = await cli(['init', ...h, '--json']);
    assert.equal(init.code, 0, init.stderr);
    const created: string[] = JSON.parse(init.stdout).created;
    assert.ok(created.includes('keys/security.key.pem'), created.join(', '));
    assert.ok(created.includes('policy default version 1'), created.join(', '));
    const imported = await cli(['vulndb', 'import', join(examplesDir, 'advisories'), ...h]);
    assert.equal(imported.code, 0, imported.stderr);
    writeFileSync(
      sbom,
      JSON.stringify({
        bomFormat: 'CycloneDX',
        specVersion: '1.6',
        version: 1,
        metadata: {
          timestamp: new Date().toISOString(),
          component: { type: 'application', name: 'vulnerable-app', 'bom-ref': 'app' },
        },
        components: [
          {
            type: 'library',
            name: 'minimist',
            version: '1.2.5',
            purl: 'pkg:npm/minimist@1.2.5',
            'bom-ref': 'pkg:npm/minimist@1.2.5',
          },
        ],
      }),
    );
  });
  after(() => tmp.cleanup());

  it('refuses a malformed policy at push, naming the line, and keeps the version in force', async () => {
    const bad = join(tmp.path, 'bad.yaml');
    writeFileSync(bad, DEFAULT_POLICY.replace('action: deny', 'action: block'));
    const r = await cli(['policy', 'push', bad, ...h]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /bad\.yaml: line \d+: rule 'no-high-or-critical-vulnerabilities' \(rules\[0\]\) field action/,
    );
    assert.equal(r.stderr.trim().split('\n').length, 1);
    const history = await cli(['policy', 'history', ...h, '--json']);
    assert.deepEqual(
      JSON.parse(history.stdout).versions.map((v: { version: number }) => v.version),
      [1],
    );
  });

  it('refuses a push signed with a key that is not a trusted security key', async () => {
    const keyDir = tempDir('foreign-key');
    const other = join(keyDir.path, 'home');
    assert.equal((await cli(['init', '--home', other])).code, 0);
    const good = join(tmp.path, 'good.yaml');
    writeFileSync(good, DEFAULT_POLICY);
    const r = await cli(['policy', 'push', good, '--key', join(other, 'keys', 'security.key.pem'), ...h]);
    keyDir.cleanup();
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /not a trusted security key/);
  });

  it('publishes a signed new version and shows it', async () => {
    const next = join(tmp.path, 'next.yaml');
    writeFileSync(next, DEFAULT_POLICY.replace('maxSeverity: medium', 'maxSeverity: low'));
    const r = await cli(['policy', 'push', next, ...h, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).version, 2);
    const show = await cli(['policy', 'show', ...h, '--json']);
    const doc = JSON.parse(show.stdout);
    assert.equal(doc.version, 2);
    assert.match(doc.text, /maxSeverity: low/);
  });

  it('publishes a policy that allows everything only when told so, locally and over the API', async () => {
    const open = join(tmp.path, 'open.yaml');
    const text = 'apiVersion: gatehouse.dev/v1\nkind: Policy\nname: wide-open\nrules: []\n';
    writeFileSync(open, text);
    const refused = await cli(['policy', 'push', open, ...h]);
    assert.equal(refused.code, 1);
    assert.match(
      refused.stderr,
      /open\.yaml: policy wide-open has no rules, so it would allow every build; .*--allow-empty/,
    );
    assert.equal((await cli(['policy', 'history', 'wide-open', ...h])).code, 1, 'nothing was published');
    // Over the API, a correctly signed empty policy is refused the same way without the flag.
    const opened = await openHome(home);
    const server = createApiServer({ controlPlane: opened.controlPlane, apiToken: opened.apiToken });
    const { url: base } = await listenOnLoopback(server);
    try {
      const signer = await loadSecuritySigner(join(home, 'keys', 'security.key.pem'));
      const sig = await signSecurityAct(policyAct('wide-open', 1, text), signer);
      const r = await fetch(`${base}/v1/policies`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${opened.apiToken}` },
        body: JSON.stringify({ text, version: 1, ...sig }),
        signal: AbortSignal.timeout(10_000),
      });
      assert.equal(r.status, 400);
      assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'BAD_POLICY');
    } finally {
      await closeServer(server);
      await opened.close();
    }
    const allowed = await cli(['policy', 'push', open, '--allow-empty', ...h, '--json']);
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.equal(JSON.parse(allowed.stdout).name, 'wide-open');
  });

  it('checks an SBOM and explains the deny (exit 3)', async () => {
    const r = await cli(['policy', 'check', '--sbom', sbom, ...h, '--json']);
    assert.equal(r.code, 3, r.stderr);
    const d = JSON.parse(r.stdout);
    assert.equal(d.outcome, 'deny');
    assert.deepEqual(
      [
        d.reasons[0].rule,
        d.reasons[0].purl,
        d.reasons[0].vulnId,
        d.reasons[0].aliases,
        d.reasons[0].severity,
        d.reasons[0].fixedVersions,
      ],
      [
        'no-high-or-critical-vulnerabilities',
        'pkg:npm/minimist@1.2.5',
        'GHSA-xvch-5gv4-984h',
        ['CVE-2021-44906'],
        'critical',
        ['1.2.6'],
      ],
    );
  });

  it('lets a central VEX statement suppress the finding, and says so (exit 0)', async () => {
    const vex = join(tmp.path, 'vex.json');
    writeFileSync(
      vex,
      JSON.stringify({
        '@context': 'https://openvex.dev/ns/v0.2.0',
        '@id': 'https://example.test/vex/minimist',
        author: 'security@example.test',
        timestamp: '2024-01-01T00:00:00Z',
        statements: [
          {
            vulnerability: { name: 'CVE-2021-44906' },
            products: [{ '@id': 'pkg:generic/vulnerable-app' }],
            subcomponents: [{ '@id': 'pkg:npm/minimist' }],
            status: 'not_affected',
            justification: 'vulnerable_code_not_in_execute_path',
          },
        ],
      }),
    );
    assert.equal((await cli(['vulndb', 'vex', vex, ...h])).code, 0);
    const r = await cli(['policy', 'check', '--sbom', sbom, ...h, '--json']);
    assert.equal(r.code, 0, r.stdout);
    const d = JSON.parse(r.stdout);
    assert.deepEqual(
      [d.suppressed[0].by, d.suppressed[0].vulnId, d.suppressed[0].reason],
      ['vex', 'GHSA-xvch-5gv4-984h', 'not_affected: vulnerable_code_not_in_execute_path'],
    );
  });

  it('lists quarantine and refuses to triage an unknown decision', async () => {
    const list = await cli(['triage', 'list', ...h, '--json']);
    await assert.equal(list.code, 0, list.stderr);
    assert.deepEqual(JSON.parse(list.stdout).quarantined, []);
    const r = await cli(['triage', 'release', 'dec-none', '--reason', 'checked', ...h]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no decision dec-none/);
    assert.equal(
      readFileSync(join(home, 'keys', 'security.pub.pem'), 'utf8').startsWith('-----BEGIN PUBLIC KEY-----'),
      true,
    );
  });

  it('publishes over the API only with the security signature, and serves policies and quarantine', async () => {
    const opened = await openHome(home);
    const server = createApiServer({ controlPlane: opened.controlPlane, apiToken: opened.apiToken });
    const { url: base } = await listenOnLoopback(server);
    const auth = { 'content-type': 'application/json', authorization: `Bearer ${opened.apiToken}` };
    try {
      const text = DEFAULT_POLICY.replace('maxSeverity: medium', 'maxSeverity: high');
      const signer = await loadSecuritySigner(join(home, 'keys', 'security.key.pem'));
      const sig = await signSecurityAct(policyAct('default', 3, text), signer);
      const post = (body: unknown, headers: Record<string, string> = auth) =>
        fetch(`${base}/v1/policies`, {
          method: 'POST',
          headers,
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(10_000),
        });
      assert.equal(
        (await post({ text, version: 3, ...sig }, { 'content-type': 'application/json' })).status,
        401,
      );
      const unsigned = await post({ text, version: 3, signature: sig.signature, keyId: 'f'.repeat(64) });
      assert.equal(unsigned.status, 422);
      assert.equal(((await unsigned.json()) as { error: { code: string } }).error.code, 'SIGNATURE_INVALID');
      const tampered = await post({ text: `${text}# more\n`, version: 3, ...sig });
      assert.equal(tampered.status, 422);
      const ok = await post({ text, version: 3, ...sig });
      assert.equal(ok.status, 201);
      assert.equal(((await ok.json()) as { version: number }).version, 3);
      const history = (await (await fetch(`${base}/v1/policies/default/history`)).json()) as {
        versions: { version: number }[];
      };
      assert.deepEqual(
        history.versions.map((v) => v.version),
        [3, 2, 1],
      );
      const v1 = (await (await fetch(`${base}/v1/policies/default?version=1`)).json()) as PolicyVersionRecord;
      assert.equal(v1.text, DEFAULT_POLICY);
      // The rollback attack: version 1, readable by anyone, posted again with its own signature.
      const replay = await post({ text: v1.text, version: 1, signature: v1.signature, keyId: v1.keyId });
      assert.equal(replay.status, 409);
      const relabelled = await post({ text: v1.text, version: 4, signature: v1.signature, keyId: v1.keyId });
      assert.equal(relabelled.status, 422);
      assert.equal(
        ((await (await fetch(`${base}/v1/policies/default`)).json()) as { version: number }).version,
        3,
      );
      const q = (await (await fetch(`${base}/v1/quarantine`)).json()) as { quarantined: unknown[] };
      assert.deepEqual(q.quarantined, []);
      const triage = await fetch(`${base}/v1/triage`, {
        method: 'POST',
        headers: auth,
        body: JSON.stringify({ decisionId: 'dec-x', action: 'release', reason: 'r', ...sig }),
        signal: AbortSignal.timeout(10_000),
      });
      assert.equal(triage.status, 422, 'a policy signature is not a triage signature');
      const metrics = await (await fetch(`${base}/metrics`)).text();
      assert.match(metrics, /gatehouse_reevaluation_detection_seconds_count 0/);
    } finally {
      await closeServer(server);
      await opened.close();
    }
  });
});
