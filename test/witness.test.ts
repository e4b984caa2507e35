/**
 * Two real homes on loopback: home B runs `gatehouse log witness` for home A's log; A names B in
 * its config, so every bundle of a run carries B's cosignature; verify requires it. A copy of A
 * that then appends differently (a fork under the genuine key) is refused by B.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bundleFromJSON } from '@sigstore/bundle';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import { toSignedEntity, toTrustMaterial, Verifier } from '@sigstore/verify';
import { formatVkey } from '../src/tlog/cosignature.ts';
import { originHash } from '../src/tlog/witness.ts';
import { cli, examplesDir, repoRoot, tempDir } from './helpers.ts';

describe('a second home witnesses the first', () => {
  const tmp = tempDir('witness');
  const a = join(tmp.path, 'a');
  const b = join(tmp.path, 'b');
  const out = join(tmp.path, 'out');
  const rootFile = join(tmp.path, 'a-root.json');
  let witness: ChildProcess | undefined;
  let witnessUrl = '';
  let vkey = '';
  // A witness nobody runs: a key that never cosigned anything of A's.
  const stranger = formatVkey(
    'stranger.test/witness',
    createPublicKey(generateKeyPairSync('ed25519').privateKey),
  );

  before(async () => {
    for (const home of [a, b]) {
      const r = await cli(['init', '--home', home]);
      assert.equal(r.code, 0, r.stderr);
    }
    assert.equal((await cli(['vulndb', 'import', join(examplesDir, 'advisories'), '--home', a])).code, 0);
    assert.equal((await cli(['trust-root', '--output', rootFile, '--home', a])).code, 0);
    const key = await cli(['log', 'witness-key', '--home', b, '--json']);
    assert.equal(key.code, 0, key.stderr);
    vkey = JSON.parse(key.stdout).key;
    witness = spawn(
      join(repoRoot, 'bin', 'gatehouse'),
      ['log', 'witness', '--home', b, '--listen', '127.0.0.1:0', '--trusted-root', rootFile],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } },
    );
    witnessUrl = await new Promise<string>((resolve, reject) => {
      let text = '';
      const timer = setTimeout(() => reject(new Error(`the witness did not start: ${text}`)), 30_000);
      witness?.stdout?.on('data', (d: Buffer) => {
        text += d.toString();
        const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(text);
        if (m !== null && text.includes(vkey)) {
          clearTimeout(timer);
          resolve(m[1] ?? '');
        }
      });
      witness?.on('exit', (code) => reject(new Error(`the witness exited ${code}: ${text}`)));
    });
    // A names B as its witness.
    const configPath = join(a, 'config.json');
    const config = JSON.parse(readFileSync(configPath, 'utf8'));
    config.witnesses = [{ url: witnessUrl, key: vkey }];
    writeFileSync(configPath, `${JSON.stringify(config, null, 2)}\n`);
  });
  after(async () => {
    if (witness !== undefined && witness.exitCode === null) {
      const exited = new Promise((r) => witness?.once('exit', r));
      witness.kill('SIGTERM');
      await exited;
    }
    tmp.cleanup();
  });

  const verifyArgs = (suffix = 'sigstore.json') => [
    'verify',
    join(out, 'hello-app.tar'),
    '--bundle',
    join(out, `hello-app.tar.${suffix}`),
    '--project',
    'hello-app',
    '--trusted-root',
    rootFile,
    '--home',
    a,
  ];

  it('a passing run: every bundle’s checkpoint carries the witness’s cosignature, and verify requiring it passes', async () => {
    const run = await cli(['run', join(examplesDir, 'hello-app'), '--out', out, '--home', a, '--json']);
    assert.equal(run.code, 0, run.stderr);
    for (const suffix of ['sigstore.json', 'sbom.sigstore.json', 'vsa.sigstore.json']) {
      const r = await cli([...verifyArgs(suffix), '--witness', vkey]);
      assert.equal(r.code, 0, `${suffix}: ${r.stderr}`);
      assert.match(r.stdout, /witnessed {2}\S+\/witness \(1 required\)/);
    }
    // The extra signature line changes nothing for sigstore-js at its defaults.
    const root = JSON.parse(readFileSync(rootFile, 'utf8'));
    const entity = toSignedEntity(
      bundleFromJSON(JSON.parse(readFileSync(join(out, 'hello-app.tar.sigstore.json'), 'utf8'))),
      readFileSync(join(out, 'hello-app.tar')),
    );
    new Verifier(toTrustMaterial(TrustedRoot.fromJSON(root))).verify(entity);
  });

  it('refuses a verify that requires a witness the bundle does not have (exit 3)', async () => {
    const r = await cli([...verifyArgs(), '--witness', stranger]);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /0 of the 1 required witness cosignatures \(missing: stranger\.test\/witness\)/);
    const both = await cli([...verifyArgs(), '--witness', vkey, '--witness', stranger]);
    assert.equal(both.code, 3, both.stderr);
    const one = await cli([
      ...verifyArgs(),
      '--witness',
      vkey,
      '--witness',
      stranger,
      '--witness-threshold',
      '1',
    ]);
    assert.equal(one.code, 0, one.stderr);
    const bad = await cli([...verifyArgs(), '--witness', 'not-a-key']);
    assert.equal(bad.code, 1, bad.stderr);
    const over = await cli([...verifyArgs(), '--witness', vkey, '--witness-threshold', '2']);
    assert.equal(over.code, 2, over.stderr);
  });

  it('serves the cosignature on the log’s checkpoint, and the witness serves its view', async () => {
    const co = await cli(['log', 'cosign', '--home', a, '--json']);
    assert.equal(co.code, 0, co.stderr);
    const round = JSON.parse(co.stdout);
    const cp = await cli(['log', 'checkpoint', '--home', a]);
    assert.equal(cp.code, 0, cp.stderr);
    const lines = cp.stdout.trimEnd().split('\n');
    assert.equal(Number(lines[1]), round.treeSize);
    assert.ok(
      lines.some((l) => l.startsWith(`\u2014 ${vkey.split('+')[0]} `)),
      cp.stdout,
    );
    const origin = lines[0] ?? '';
    const r = await fetch(`${witnessUrl}/${originHash(origin)}/checkpoint`);
    assert.equal(r.status, 200);
    assert.equal((await r.text()).split('\n')[1], String(round.treeSize));
  });

  it('refuses a fork: a copy of home A that appends something else, under the genuine log key', async () => {
    const fork = join(tmp.path, 'a-fork');
    cpSync(a, fork, { recursive: true });
    // A grows one way, the copy another: both sign with the same key and origin.
    const grow = await cli(['run', join(examplesDir, 'vulnerable-app'), '--home', a]);
    assert.equal(grow.code, 3, grow.stderr);
    assert.equal((await cli(['log', 'cosign', '--home', a])).code, 0);
    const diverge = await cli(['run', join(examplesDir, 'hello-app'), '--home', fork]);
    assert.equal(diverge.code, 0, diverge.stderr);
    const refused = await cli(['log', 'cosign', '--home', fork, '--json']);
    assert.equal(refused.code, 1);
    const round = JSON.parse(refused.stdout);
    assert.equal(round.results[0].cosigned, false);
    assert.match(round.results[0].problem, /422.*fork/);
  });
});
