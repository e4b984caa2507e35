import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeProtectedHeader } from 'jose';
import { cli, tempDir } from '../../test/helpers.ts';
import { loadConfig } from '../home/config.ts';
import { homePaths, initHome, openHome } from '../home/home.ts';
import { openHomeKeys, rotateHomeKey } from '../signing/home-keys.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import { attestWithFreshKey, measuredSoftware, softwareEvidence } from '../testing/attestation.ts';
import { AttestationAuthority, type ReferenceValues } from './authority.ts';
import type { MeasuredBaseline } from './measurement.ts';
import { verifyAttestationToken } from './token.ts';

describe('attestation token key rotation, persisted in the home', () => {
  const tmp = tempDir('attestation-rotation');
  const root = join(tmp.path, 'home');
  const jobId = 'job-rotation';
  const nonce = Buffer.alloc(32, 7).toString('base64');
  let baseline: MeasuredBaseline;
  let reference: ReferenceValues;
  let store: SqliteStore;

  before(async () => {
    await initHome(root);
    store = SqliteStore.open(':memory:');
    ({ baseline, reference } = await measuredSoftware({
      toolchain: [],
      agentFiles: [join(root, 'config.json')],
      jobId,
      nonce,
    }));
  });
  after(async () => {
    await store?.close();
    tmp.cleanup();
  });

  /** The authority a server opening the home would run, as home.ts wires it. */
  async function authorityOfHome(): Promise<AttestationAuthority> {
    const p = homePaths(root);
    const keys = await openHomeKeys(root, p.keys, loadConfig(p.config).keys);
    keys.close();
    return new AttestationAuthority({
      signingKey: keys.attestationKey,
      keyId: keys.attestationKeyId,
      retiredKeys: keys.retiredAttestationKeys,
      issuer: 'https://gatehouse.test/attestation',
      referenceValues: reference,
      tokens: store.tokens,
    });
  }
  const attest = (a: AttestationAuthority) =>
    attestWithFreshKey(a, { jobId, nonce, evidence: softwareEvidence(baseline) });
  const verify = (token: string, a: AttestationAuthority) =>
    verifyAttestationToken(token, {
      jwks: a.jwks(),
      issuer: 'https://gatehouse.test/attestation',
      jobId,
      tokens: store.tokens,
    });

  it('signs with a new sealed key after `keys rotate attestation`, and a restarted server still publishes the old one', async () => {
    const before = await authorityOfHome();
    const issued = await attest(before);
    const oldKid = decodeProtectedHeader(issued.token).kid;

    const r = await cli(['keys', 'rotate', 'attestation', '--home', root]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      readFileSync(join(root, 'keys', 'attestation.key.pem'), 'utf8'),
      /^-----BEGIN GATEHOUSE ENCRYPTED PRIVATE KEY-----/,
    );
    const history = JSON.parse(readFileSync(join(root, 'keys', 'history.json'), 'utf8')) as {
      retired: { kind: string; keyId?: string; publishUntil?: string }[];
    };
    const entry = history.retired.find((e) => e.kind === 'attestation');
    assert.equal(entry?.keyId, oldKid);
    // Published at least as long as the token lifetime from the rotation.
    assert.ok(Date.parse(entry?.publishUntil ?? '') / 1000 >= issued.expiresAt - 1);

    const restarted = await authorityOfHome();
    const fresh = await attest(restarted);
    const newKid = decodeProtectedHeader(fresh.token).kid;
    assert.notEqual(newKid, oldKid);
    assert.deepEqual(
      restarted.jwks().keys.map((k) => k.kid),
      [newKid, oldKid],
    );
    await verify(issued.token, restarted);
    await verify(fresh.token, restarted);

    // The server as `gatehouse server` opens it publishes both at /.well-known/jwks.json.
    const home = await openHome(root);
    try {
      const jwks = (await home.controlPlane.jwks()) as { keys: { kid: string }[] };
      assert.deepEqual(
        jwks.keys.map((k) => k.kid),
        [newKid, oldKid],
      );
    } finally {
      await home.close();
    }
    const status = await cli(['keys', 'status', '--home', root, '--json']);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, new RegExp(`"keyId": "${oldKid}"`));
  });

  it('drops a retired key from the JWKS once every token it signed has expired', async () => {
    const p = homePaths(root);
    const current = decodeProtectedHeader((await attest(await authorityOfHome())).token).kid;
    // A rotation that happened long enough ago: its key's tokens are all expired.
    await rotateHomeKey(
      root,
      p.keys,
      loadConfig(p.config).keys,
      'attestation',
      new Date(Date.now() - 3_600_000),
      {
        tokenTtlSeconds: 300,
      },
    );
    const kids = (await authorityOfHome()).jwks().keys.map((k) => k.kid);
    assert.equal(kids.includes(current ?? ''), false);
    assert.equal(kids.length, 2, 'the new key and the first rotation’s key, still within its window');
  });
});
