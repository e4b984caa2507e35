import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bundleFromJSON } from '@sigstore/bundle';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import { toSignedEntity, toTrustMaterial, Verifier } from '@sigstore/verify';
import { cli, copyExample, examplesDir, tempDir } from './helpers.ts';

const ISSUER = 'https://gatehouse.internal/attestation';
const identityOf = (project: string): string => `https://gatehouse.internal/projects/${project}`;

/** sha256 of every file under `dir`, to show that a failed command changed nothing. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (!name.endsWith('-wal') && !name.endsWith('-shm')) {
        out[p] = createHash('sha256').update(readFileSync(p)).digest('hex');
      }
    }
  };
  walk(dir);
  return out;
}

function sqliteCount(db: string, table: string): number {
  return Number(execFileSync('sqlite3', [db, `SELECT COUNT(*) FROM ${table}`], { encoding: 'utf8' }).trim());
}

describe('gatehouse CLI, end to end', () => {
  const tmp = tempDir('cli');
  const home = join(tmp.path, 'home');
  const out = join(tmp.path, 'out');
  const h = ['--home', home];

  before(async () => {
    const init = await cli(['init', ...h]);
    assert.equal(init.code, 0, init.stderr);
    const imported = await cli(['vulndb', 'import', join(examplesDir, 'advisories'), ...h]);
    assert.equal(imported.code, 0, imported.stderr);
  });
  after(() => tmp.cleanup());

  it('init is idempotent: a second run creates nothing and changes nothing', async () => {
    const before = snapshot(join(home, 'keys'));
    const r = await cli(['init', ...h, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).created, []);
    assert.deepEqual(snapshot(join(home, 'keys')), before);
  });

  it('keeps key files private to their owner', () => {
    for (const f of [
      'keys/log.key.pem',
      'keys/attestation.key.pem',
      'keys/api-token',
      'keys/ca/root.key.pem',
    ]) {
      assert.equal(statSync(join(home, f)).mode & 0o077, 0, f);
    }
  });

  let artifact = '';
  let bundle = '';
  it('runs the passing example: allowed, signed, promoted, outputs written (exit 0)', async () => {
    const r = await cli(['run', join(examplesDir, 'hello-app'), '--out', out, '--json', ...h]);
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout);
    assert.equal(doc.outcome, 'allow');
    // The lifecycle, in order (other steps such as source and sbom may sit between).
    const names: string[] = doc.steps.map((s: { name: string }) => s.name);
    const lifecycle = [
      'provision',
      'measure',
      'attest',
      'fetch',
      'build',
      'collect',
      'gate',
      'destroy',
      'revoke',
    ];
    const positions = lifecycle.map((n) => names.indexOf(n));
    assert.ok(
      positions.every((p, i) => p >= 0 && (i === 0 || p > (positions[i - 1] ?? -1))),
      names.join(','),
    );
    assert.ok(doc.steps.every((s: { ok: boolean }) => s.ok));
    artifact = join(out, 'hello-app.tar');
    bundle = join(out, 'hello-app.tar.sigstore.json');
    assert.ok(existsSync(artifact) && existsSync(bundle));
    const layout = join(home, 'registry', 'promoted', 'hello-app');
    const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'));
    const tagged = index.manifests.find(
      (m: { annotations?: Record<string, string> }) =>
        m.annotations?.['org.opencontainers.image.ref.name'] === doc.jobId,
    );
    assert.ok(tagged, 'the artifact manifest is tagged with the job id');
    // bundles (provenance, SBOM, VSA), SBOM, build-environment SBOM, decision: six referrers of
    // the artifact, and the cosign tags sha256-<hex>.sig and .att
    assert.equal(index.manifests.length, 9);
  });

  it('writes an OCI layout that skopeo reads', {
    skip: existsSync('/usr/bin/skopeo') ? false : 'skopeo not installed',
  }, () => {
    const layout = join(home, 'registry', 'promoted', 'hello-app');
    const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'));
    const tag = index.manifests[0].annotations['org.opencontainers.image.ref.name'];
    const raw = execFileSync('skopeo', ['inspect', '--raw', `oci:${layout}:${tag}`], { encoding: 'utf8' });
    const manifest = JSON.parse(raw);
    assert.equal(manifest.artifactType, 'application/vnd.gatehouse.artifact.v1');
    const digest = createHash('sha256').update(readFileSync(artifact)).digest('hex');
    assert.equal(manifest.layers[0].digest, `sha256:${digest}`);
  });

  it('verifies the promoted artifact offline with the right identity (exit 0)', async () => {
    const r = await cli([
      'verify',
      artifact,
      '--bundle',
      bundle,
      '--identity',
      identityOf('hello-app'),
      '--issuer',
      ISSUER,
      ...h,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /VERIFIED/);
  });

  it('verifies against an exported trusted root without the home', async () => {
    const rootFile = join(tmp.path, 'trusted_root.json');
    assert.equal((await cli(['trust-root', '--output', rootFile, ...h])).code, 0);
    const r = await cli([
      'verify',
      artifact,
      '--bundle',
      bundle,
      '--trusted-root',
      rootFile,
      '--identity',
      identityOf('hello-app'),
      '--issuer',
      ISSUER,
      '--home',
      join(tmp.path, 'nowhere'),
    ]);
    assert.equal(r.code, 0, r.stderr);
  });

  it('produces bundles that sigstore-js verifies at its default settings against `gatehouse trust-root`', async () => {
    const r = await cli(['trust-root', ...h]);
    assert.equal(r.code, 0, r.stderr);
    const root = JSON.parse(r.stdout);
    assert.equal(root.ctlogs.length, 1, 'the CT log key is in the exported root');
    // No options: sigstore-js requires one SCT from a trusted CT log and one tlog entry.
    const verifier = new Verifier(toTrustMaterial(TrustedRoot.fromJSON(root)));
    // Every bundle of the run: provenance, SBOM attestation and the gate's VSA.
    for (const suffix of ['sigstore.json', 'sbom.sigstore.json', 'vsa.sigstore.json']) {
      const file = join(out, `hello-app.tar.${suffix}`);
      const entity = toSignedEntity(bundleFromJSON(JSON.parse(readFileSync(file, 'utf8'))));
      const signer = verifier.verify(entity, {
        subjectAlternativeName: identityOf('hello-app'),
        extensions: { issuer: ISSUER },
      });
      assert.equal(signer.identity?.subjectAlternativeName, identityOf('hello-app'), suffix);
    }
    const entity = toSignedEntity(
      bundleFromJSON(JSON.parse(readFileSync(bundle, 'utf8'))),
      readFileSync(artifact),
    );
    verifier.verify(entity, { subjectAlternativeName: identityOf('hello-app') });
    assert.throws(() => verifier.verify(entity, { subjectAlternativeName: identityOf('other-app') }), {
      code: 'UNTRUSTED_SIGNER_ERROR',
    });
    // The same root without its CT log: sigstore-js at its defaults refuses the leaf.
    const noCt = new Verifier(toTrustMaterial(TrustedRoot.fromJSON({ ...root, ctlogs: [] })));
    assert.throws(() => noCt.verify(entity), { code: 'CERTIFICATE_ERROR' });
  });

  it('refuses the wrong identity (exit 3)', async () => {
    const r = await cli([
      'verify',
      artifact,
      '--bundle',
      bundle,
      '--identity',
      identityOf('other-app'),
      '--issuer',
      ISSUER,
      ...h,
    ]);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /identity/i);
  });

  it('refuses to verify without an expected signer: any identity would accept any project (exit 2)', async () => {
    const r = await cli(['verify', artifact, '--bundle', bundle, ...h]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--identity URI --issuer URI, or --project NAME/);
    const other = await cli(['verify', artifact, '--bundle', bundle, '--project', 'vulnerable-app', ...h]);
    assert.equal(other.code, 3, 'the bundle of hello-app is not a bundle of another project');
    assert.equal(
      (await cli(['verify', artifact, '--bundle', bundle, '--project', 'hello-app', ...h])).code,
      0,
    );
  });

  it('refuses an artifact changed after signing (exit 3)', async () => {
    const changed = join(tmp.path, 'changed.tar');
    const bytes = readFileSync(artifact);
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 1;
    writeFileSync(changed, bytes);
    const r = await cli(['verify', changed, '--bundle', bundle, '--project', 'hello-app', ...h]);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /digest|subject/i);
  });

  it('refuses a bundle whose log entry was changed (exit 3)', async () => {
    const b = JSON.parse(readFileSync(bundle, 'utf8'));
    const entry = b.verificationMaterial.tlogEntries[0];
    const body = JSON.parse(Buffer.from(entry.canonicalizedBody, 'base64').toString());
    body.spec.payloadHash.value = '0'.repeat(64);
    entry.canonicalizedBody = Buffer.from(JSON.stringify(body)).toString('base64');
    const tampered = join(tmp.path, 'tampered-body.json');
    writeFileSync(tampered, JSON.stringify(b));
    const r = await cli(['verify', artifact, '--bundle', tampered, '--project', 'hello-app', ...h]);
    assert.equal(r.code, 3, r.stderr);
  });

  it('refuses a bundle whose inclusion proof was changed (exit 3)', async () => {
    const b = JSON.parse(readFileSync(bundle, 'utf8'));
    const proof = b.verificationMaterial.tlogEntries[0].inclusionProof;
    proof.rootHash = Buffer.alloc(32, 7).toString('base64');
    const tampered = join(tmp.path, 'tampered-proof.json');
    writeFileSync(tampered, JSON.stringify(b));
    const r = await cli(['verify', artifact, '--bundle', tampered, '--project', 'hello-app', ...h]);
    assert.equal(r.code, 3, r.stderr);
  });

  it('refuses a malformed bundle with exit 1 and one line naming the file', async () => {
    const bad = join(tmp.path, 'bad-bundle.json');
    writeFileSync(bad, '{"mediaType": 42');
    const r = await cli(['verify', artifact, '--bundle', bad, '--project', 'hello-app', ...h]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    assert.ok(r.stderr.includes(bad));
  });

  it('blocks the example with a vulnerable dependency, naming the advisory (exit 3)', async () => {
    const r = await cli(['run', join(examplesDir, 'vulnerable-app'), '--json', ...h]);
    assert.equal(r.code, 3, r.stderr);
    const doc = JSON.parse(r.stdout);
    assert.equal(doc.outcome, 'deny');
    const reason = doc.decision.reasons.find((x: { vulnId?: string }) => x.vulnId === 'GHSA-xvch-5gv4-984h');
    assert.ok(reason, JSON.stringify(doc.decision.reasons));
    assert.ok(reason.aliases.includes('CVE-2021-44906'));
    assert.match(reason.purl, /minimist@1\.2\.5/);
    assert.ok(existsSync(join(home, 'registry', 'quarantine', 'vulnerable-app', 'index.json')));
    assert.ok(!existsSync(join(home, 'registry', 'promoted', 'vulnerable-app')));
  });

  it('blocks a denied component (exit 3)', async () => {
    const dir = copyExample('hello-app', tmp.path);
    const lock = JSON.parse(readFileSync(join(dir, 'package-lock.json'), 'utf8'));
    lock.packages['node_modules/event-stream'] = {
      version: '3.3.6',
      integrity:
        'sha512-dGXNg4F/FgVzlApjzItL+7naHutA3fDqbV/zAZqDDlXTjiMnQmZKu+prImWKszeBM5UV9DmWbbvxkrbzoSTZhQ==',
    };
    writeFileSync(join(dir, 'package-lock.json'), JSON.stringify(lock));
    const r = await cli(['run', dir, '--json', ...h]);
    assert.equal(r.code, 3, r.stderr);
    const doc = JSON.parse(r.stdout);
    assert.ok(doc.decision.reasons.some((x: { rule: string }) => x.rule === 'known-malicious-releases'));
  });

  it('refuses a malformed gatehouse.yaml with exit 1, one line naming the file, and no job', async () => {
    const dir = copyExample('hello-app', join(tmp.path, 'badyaml'));
    writeFileSync(join(dir, 'gatehouse.yaml'), 'project: hello-app\nbuild: [unclosed\n');
    const jobs = sqliteCount(join(home, 'gatehouse.db'), 'jobs');
    const r = await cli(['run', dir, ...h]);
    assert.equal(r.code, 1);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.ok(lines[0]?.includes(join(dir, 'gatehouse.yaml')));
    assert.equal(sqliteCount(join(home, 'gatehouse.db'), 'jobs'), jobs);
  });

  it('fails a job whose lockfile is malformed with exit 1, naming the lockfile', async () => {
    const dir = copyExample('hello-app', join(tmp.path, 'badlock'));
    writeFileSync(
      join(dir, 'package-lock.json'),
      '{"lockfileVersion": 3, "packages": {"node_modules/x": {}}}',
    );
    const r = await cli(['run', dir, ...h]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /package-lock\.json/);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  });

  it('refuses a malformed OSV record with exit 1, naming the file, and imports the rest', async () => {
    const dir = join(tmp.path, 'osv');
    copyExample('advisories', tmp.path);
    const good = JSON.parse(
      readFileSync(join(examplesDir, 'advisories', 'GHSA-xvch-5gv4-984h.json'), 'utf8'),
    );
    execFileSync('mkdir', ['-p', dir]);
    writeFileSync(
      join(dir, 'a-good.json'),
      JSON.stringify({
        ...good,
        id: 'GHSA-test-good-0001',
        modified: new Date(Date.now() - 60_000).toISOString(),
      }),
    );
    writeFileSync(join(dir, 'b-bad.json'), JSON.stringify({ id: 'GHSA-test-bad', affected: 'nope' }));
    const before = sqliteCount(join(home, 'gatehouse.db'), 'vulns');
    const r = await cli(['vulndb', 'import', dir, ...h]);
    assert.equal(r.code, 1);
    assert.ok(r.stderr.includes('b-bad.json'), r.stderr);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    assert.equal(sqliteCount(join(home, 'gatehouse.db'), 'vulns'), before + 1);
  });

  it('builds exactly the commit given with --commit, whatever the work tree holds', async () => {
    const repo = copyExample('hello-app', join(tmp.path, 'commit-repo'));
    const g = (...args: string[]): string =>
      execFileSync('git', ['-C', repo, '-c', 'user.name=t', '-c', 'user.email=t@example.test', ...args], {
        encoding: 'utf8',
      }).trim();
    g('init', '-q', '-b', 'main');
    g('add', '-A');
    g('commit', '-q', '-m', 'first');
    const first = g('rev-parse', 'HEAD');
    writeFileSync(join(repo, 'src', 'index.js'), 'console.log("second");\n');
    g('commit', '-q', '-am', 'second');
    writeFileSync(join(repo, 'src', 'index.js'), 'console.log("uncommitted");\n');

    const r = await cli(['run', repo, '--commit', first, '--json', ...h]);
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout);
    const source = doc.steps.find((s: { name: string }) => s.name === 'source');
    assert.match(source.detail, new RegExp(first.slice(0, 12)));
    // The same commit builds the same bytes: the archive of the first commit, not the work tree.
    const again = JSON.parse(
      (await cli(['run', repo, '--commit', first.slice(0, 10), '--json', ...h])).stdout,
    );
    assert.equal(again.outputs[0].sha256, doc.outputs[0].sha256);

    const missing = await cli(['run', repo, '--commit', 'f'.repeat(40), ...h]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no commit/);
  });

  it('prints usage with exit 2 for an unknown option', async () => {
    const r = await cli(['run', '--no-such-flag', ...h]);
    assert.equal(r.code, 2);
  });

  describe('server', () => {
    let server: ReturnType<typeof spawn> | undefined;
    let url = '';
    before(async () => {
      const child = spawn(
        join(examplesDir, '..', 'bin', 'gatehouse'),
        ['server', '--listen', '127.0.0.1:0', ...h],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      server = child;
      url = await new Promise<string>((resolve, reject) => {
        let seen = '';
        child.stdout?.on('data', (d: Buffer) => {
          seen += d.toString();
          const m = /listening on (http:\/\/\S+)/.exec(seen);
          if (m?.[1] !== undefined) resolve(m[1]);
        });
        child.on('exit', (code) => reject(new Error(`server exited with ${code}`)));
        setTimeout(() => reject(new Error('server did not start')), 20_000).unref();
      });
    });
    after(() => {
      server?.kill('SIGTERM');
    });

    it('answers health, metrics and the signed checkpoint', async () => {
      assert.deepEqual(await (await fetch(`${url}/healthz`)).json(), { status: 'ok' });
      const metrics = await (await fetch(`${url}/metrics`)).text();
      assert.match(metrics, /^gatehouse_decisions\{outcome="allow"\} [1-9]/m);
      assert.match(metrics, /^gatehouse_artifacts_blocked [1-9]/m);
      const note = await (await fetch(`${url}/v1/log/checkpoint`)).text();
      assert.match(note, /^gatehouse\.internal\/log\n\d+\n[A-Za-z0-9+/=]+\n\n— /);
    });

    it('refuses writes without the API token', async () => {
      const r = await fetch(`${url}/v1/jobs`, { method: 'POST', body: '{"project":"x"}' });
      assert.equal(r.status, 401);
    });

    it('refuses a malformed submission with 400 naming the field', async () => {
      const token = readFileSync(join(home, 'keys', 'api-token'), 'utf8').trim();
      const r = await fetch(`${url}/v1/jobs/job-x/submit`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ proof: 'x', artifacts: [], submission: { jobId: 'job-x', subjects: 'all' } }),
      });
      assert.equal(r.status, 400);
      const body = (await r.json()) as { error: { code: string; message: string } };
      assert.equal(body.error.code, 'BAD_INPUT');
      assert.match(body.error.message, /submission/);
    });

    it('serves decisions and log inclusion proofs', async () => {
      const { decisions } = (await (await fetch(`${url}/v1/decisions`)).json()) as {
        decisions: { logIndex: number }[];
      };
      assert.ok(decisions.length >= 2);
      const entry = (await (await fetch(`${url}/v1/log/entries/${decisions[0]?.logIndex}`)).json()) as {
        inclusionProof: { hashes: string[] };
      };
      assert.ok(Array.isArray(entry.inclusionProof.hashes));
    });

    it('runs a job through the server with --server (exit 0)', async () => {
      const r = await cli(['run', join(examplesDir, 'hello-app'), '--server', url, '--json', ...h]);
      assert.equal(r.code, 0, r.stderr);
      const doc = JSON.parse(r.stdout);
      const job = (await (await fetch(`${url}/v1/jobs/${doc.jobId}`)).json()) as {
        state: string;
        steps: { name: string }[];
      };
      assert.equal(job.state, 'allowed');
      assert.ok(job.steps.some((s) => s.name === 'destroy'));
    });
  });
});
