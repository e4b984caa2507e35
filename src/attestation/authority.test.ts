import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, decodeProtectedHeader, exportJWK, jwtVerify, SignJWT } from 'jose';
import { tempDir } from '../../test/helpers.ts';
import { isGatehouseError } from '../common/errors.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import {
  attestWithFreshKey,
  measuredSoftware,
  newSigningKey,
  softwareEvidence,
} from '../testing/attestation.ts';
import { extendPcr, PCR_RESET_VALUE } from '../tpm/pcr.ts';
import { AttestationAuthority, type AttestationAuthorityOptions, type ReferenceValues } from './authority.ts';
import { CiTokenVerifier } from './ci-token.ts';
import type { MeasuredBaseline } from './measurement.ts';
import { EAR_PROFILE, generateRunnerKey, verifyAttestationToken } from './token.ts';

const ISSUER = 'https://gatehouse.test/attestation';

describe('attestation authority', () => {
  const tmp = tempDir('authority');
  const dir = tmp.path;
  let store: SqliteStore;
  let baseline: MeasuredBaseline;
  let reference: ReferenceValues;
  let authority: AttestationAuthority;
  const jobId = 'job-42';
  const nonce = randomBytes(32).toString('base64');
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });

  /** An authority over the measured reference values; `options` changes any of its options. */
  const authorityWith = (options: Partial<AttestationAuthorityOptions> = {}) =>
    new AttestationAuthority({
      signingKey: privateKey,
      keyId: 'test-key',
      issuer: ISSUER,
      referenceValues: reference,
      tokens: store.tokens,
      ...options,
    });

  before(async () => {
    await writeFile(join(dir, 'agent.ts'), 'export {};\n');
    store = SqliteStore.open(':memory:');
    ({ baseline, reference } = await measuredSoftware({
      toolchain: ['/bin/sh'],
      agentFiles: [join(dir, 'agent.ts')],
      jobId,
      nonce,
    }));
    authority = authorityWith();
  });
  after(async () => {
    await store.close();
    tmp.cleanup();
  });

  const evidence = (b: { events: readonly object[]; pcrs: object } = baseline) => softwareEvidence(b);
  const attestOnce = (a: AttestationAuthority, e: unknown = evidence()) =>
    attestWithFreshKey(a, { jobId, nonce, evidence: e });

  it('issues an ES256 EAR token bound to the runner key for good evidence', async () => {
    const key = await generateRunnerKey();
    const { token, expiresAt } = await authority.attest({
      jobId,
      nonce,
      runnerKey: key.publicJwk,
      evidence: evidence(),
    });
    assert.deepEqual(decodeProtectedHeader(token), { alg: 'ES256', kid: 'test-key', typ: 'JWT' });
    const { payload } = await jwtVerify(token, createLocalJWKSet(authority.jwks()), {
      algorithms: ['ES256'],
    });
    assert.equal(payload.iss, ISSUER);
    assert.equal(payload.sub, jobId);
    assert.equal(payload.aud, 'gatehouse-gate');
    assert.equal(payload.exp, expiresAt);
    assert.equal((payload.exp ?? 0) - (payload.iat ?? 0), 300);
    assert.match(String(payload.jti), /^[0-9a-f-]{36}$/);
    assert.equal(payload.eat_profile, EAR_PROFILE);
    assert.deepEqual(payload['ear.verifier-id'], {
      developer: 'gatehouse',
      build: 'gatehouse-attestation/0.1.0',
    });
    const runner = (payload.submods as Record<string, Record<string, unknown>>).image;
    assert.equal(runner?.['ear.status'], 'affirming');
    assert.deepEqual(runner?.['ear.trustworthiness-vector'], { configuration: 2, executables: 2 });
    assert.match(
      String(runner?.['ear.appraisal-policy-id']),
      /^gatehouse:reference-values#sha256:[0-9a-f]{64}$/,
    );
    assert.deepEqual(payload.cnf, { jkt: key.thumbprint });
    assert.deepEqual(payload.gatehouse, {
      evidence_types: ['software-measurement'],
      pcrs: { ...baseline.pcrs },
      runner_kind: 'gatehouse-ephemeral',
    });
  });

  it('publishes only the public key in its JWKS', () => {
    const jwks = authority.jwks();
    assert.equal(jwks.keys.length, 1);
    const [key] = jwks.keys;
    assert.deepEqual(Object.keys(key ?? {}).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
    assert.ok(!JSON.stringify(authority).includes('"d"'));
  });

  async function rejection(request: Parameters<AttestationAuthority['attest']>[0]): Promise<string> {
    try {
      await authority.attest(request);
    } catch (e) {
      assert.ok(isGatehouseError(e, 'EVIDENCE_REJECTED'), String(e));
      return e.message;
    }
    assert.fail('the evidence was accepted');
  }

  it('names a toolchain binary whose digest is not a reference value', async () => {
    const key = await generateRunnerKey();
    const events = baseline.events.map((e) =>
      e.type === 'toolchain' ? { ...e, digest: 'ab'.repeat(32) } : e,
    );
    const pcrs: Record<string, string> = {};
    for (const e of events) pcrs[e.pcr] = extendPcr(pcrs[e.pcr] ?? PCR_RESET_VALUE, e.digest);
    const message = await rejection({
      jobId,
      nonce,
      runnerKey: key.publicJwk,
      evidence: evidence({ events, pcrs }),
    });
    assert.match(message, /toolchain \/bin\/sh digest abab\S* is not a reference value/);
    assert.doesNotMatch(message, /replay/);
  });

  it('refuses an event log that does not replay to the claimed PCRs', async () => {
    const key = await generateRunnerKey();
    const pcrs = { ...baseline.pcrs, 9: 'cd'.repeat(32) };
    const message = await rejection({
      jobId,
      nonce,
      runnerKey: key.publicJwk,
      evidence: evidence({ events: baseline.events, pcrs }),
    });
    assert.match(message, /does not replay to the claimed PCR 9/);
  });

  it('refuses evidence made for another job or nonce', async () => {
    const key = await generateRunnerKey();
    const otherNonce = randomBytes(32).toString('base64');
    const message = await rejection({
      jobId,
      nonce: otherNonce,
      runnerKey: key.publicJwk,
      evidence: evidence(),
    });
    assert.match(message, /job event digest does not bind this job and nonce/);
    const forOtherJob = await rejection({
      jobId: 'job-43',
      nonce,
      runnerKey: key.publicJwk,
      evidence: evidence(),
    });
    assert.match(forOtherJob, /names job 'job-42', not 'job-43'/);
  });

  it('lists every failed check at once', async () => {
    const key = await generateRunnerKey();
    const events = baseline.events.map((e) => ({ ...e, digest: 'ef'.repeat(32) }));
    const message = await rejection({
      jobId,
      nonce,
      runnerKey: key.publicJwk,
      evidence: evidence({ events, pcrs: baseline.pcrs }),
    });
    for (const check of [
      /replay/,
      /sandbox profile digest/,
      /agent digest/,
      /toolchain \/bin\/sh/,
      /job event digest/,
    ]) {
      assert.match(message, check);
    }
  });

  const tamper: [string, (ev: Record<string, unknown>[]) => Record<string, unknown>[], RegExp][] = [
    [
      'a second agent event',
      (ev) => [...ev, { ...ev.find((e) => e.type === 'agent') }],
      /exactly one agent event, got 2/,
    ],
    ['a missing job event', (ev) => ev.filter((e) => e.type !== 'job'), /exactly one job event, got 0/],
    [
      'an event in the wrong PCR',
      (ev) => ev.map((e) => (e.type === 'agent' ? { ...e, pcr: 16 } : e)),
      /in PCR 16, not PCR 10/,
    ],
    [
      'an unmeasured required toolchain',
      (ev) => ev.filter((e) => e.type !== 'toolchain'),
      /\/bin\/sh is required/,
    ],
    [
      'an unknown toolchain binary',
      (ev) => [...ev, { pcr: 9, type: 'toolchain', name: '/tmp/evil', digest: '0'.repeat(64) }],
      /\/tmp\/evil has no reference value/,
    ],
    [
      'an unknown event type',
      (ev) => [...ev, { pcr: 12, type: 'kernel', name: 'x', digest: '0'.repeat(64) }],
      /evidence\.events\.\d+\.type/,
    ],
    ['an extra event field', (ev) => ev.map((e) => ({ ...e, note: 'hi' })), /Unrecognized key/i],
  ];
  for (const [name, change, expected] of tamper) {
    it(`refuses evidence with ${name}`, async () => {
      const key = await generateRunnerKey();
      const events = change(baseline.events.map((e) => ({ ...e })));
      // Claim exactly what the tampered log replays to, so that only the named check can fail.
      const pcrs: Record<string, string> = {};
      for (const e of events) {
        if (typeof e.pcr === 'number' && typeof e.digest === 'string') {
          pcrs[e.pcr] = extendPcr(pcrs[e.pcr] ?? PCR_RESET_VALUE, e.digest);
        }
      }
      assert.match(
        await rejection({
          jobId,
          nonce,
          runnerKey: key.publicJwk,
          evidence: { type: 'software-measurement', events, pcrs },
        }),
        expected,
      );
    });
  }

  const badRequests: [string, Record<string, unknown>, RegExp][] = [
    ['no evidence', { evidence: undefined }, /evidence/],
    ['another evidence type', { evidence: { type: 'tpm-quote', events: [], pcrs: {} } }, /evidence\.type/],
    ['a runner key with its private part', { runnerKey: 'private' }, /runnerKey/],
    ['an RSA runner key', { runnerKey: { kty: 'RSA', n: 'x', e: 'AQAB' } }, /runnerKey/],
    [
      'a P-384 runner key',
      { runnerKey: { kty: 'EC', crv: 'P-384', x: 'a'.repeat(64), y: 'a'.repeat(64) } },
      /runnerKey/,
    ],
    ['a short nonce', { nonce: Buffer.alloc(8).toString('base64') }, /nonce/],
    ['a non-canonical nonce', { nonce: `${nonce.slice(0, -1)}` }, /nonce/],
    ['no job id', { jobId: '' }, /jobId is missing/],
  ];
  for (const [name, change, expected] of badRequests) {
    it(`refuses a request with ${name}`, async () => {
      const key = await generateRunnerKey();
      const runnerKey =
        change.runnerKey === 'private' ? { ...key.publicJwk, d: 'A'.repeat(43) } : key.publicJwk;
      const request = {
        jobId,
        nonce,
        evidence: evidence(),
        ...change,
        runnerKey:
          change.runnerKey === undefined || change.runnerKey === 'private' ? runnerKey : change.runnerKey,
      };
      assert.match(await rejection(request as Parameters<AttestationAuthority['attest']>[0]), expected);
    });
  }

  it('revokes a token so that the gate refuses it', async () => {
    const key = await generateRunnerKey();
    const { token } = await authority.attest({
      jobId,
      nonce,
      runnerKey: key.publicJwk,
      evidence: evidence(),
    });
    const options = { jwks: authority.jwks(), issuer: ISSUER, jobId, tokens: store.tokens };
    await verifyAttestationToken(token, options);
    await authority.revoke(token);
    await assert.rejects(verifyAttestationToken(token, options), (e) => isGatehouseError(e, 'TOKEN_REVOKED'));
  });

  it('rotates its signing key, publishing the old key until the tokens it signed have expired', async () => {
    let now = new Date();
    const rotating = authorityWith({ signingKey: newSigningKey(), keyId: 'old', now: () => now });
    const before = await attestOnce(rotating);
    const { retiredKeyId, until } = rotating.rotateSigningKey(newSigningKey(), 'new');
    assert.equal(retiredKeyId, 'old');
    assert.ok(until >= before.expiresAt);
    const after = await attestOnce(rotating);
    assert.equal(decodeProtectedHeader(after.token).kid, 'new');
    assert.deepEqual(
      rotating.jwks().keys.map((k) => k.kid),
      ['new', 'old'],
    );
    const verify = (token: string) =>
      verifyAttestationToken(token, {
        jwks: rotating.jwks(),
        issuer: ISSUER,
        jobId,
        tokens: store.tokens,
        now: () => now,
      });
    await verify(before.token);
    await verify(after.token);
    assert.throws(
      () => rotating.rotateSigningKey(newSigningKey(), 'old'),
      (e) => isGatehouseError(e, 'BAD_CONFIG'),
    );
    // Once every token of the old key has expired, the old key leaves the JWKS.
    now = new Date((until + 1) * 1000);
    assert.deepEqual(
      rotating.jwks().keys.map((k) => k.kid),
      ['new'],
    );
  });

  it('keeps publishing keys rotated out before it started, until their tokens have expired', async () => {
    const oldKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const old = authorityWith({ signingKey: oldKey.privateKey, keyId: 'gen-1' });
    const issued = await attestOnce(old);
    const spki = new Uint8Array(oldKey.publicKey.export({ format: 'der', type: 'spki' }));
    const restarted = (until: number) =>
      authorityWith({
        signingKey: newSigningKey(),
        keyId: 'gen-2',
        retiredKeys: [{ keyId: 'gen-1', publicKey: spki, until }],
      });
    const live = restarted(issued.expiresAt);
    assert.deepEqual(
      live.jwks().keys.map((k) => k.kid),
      ['gen-2', 'gen-1'],
    );
    await verifyAttestationToken(issued.token, {
      jwks: live.jwks(),
      issuer: ISSUER,
      jobId,
      tokens: store.tokens,
    });
    const fresh = await attestOnce(live);
    assert.equal(decodeProtectedHeader(fresh.token).kid, 'gen-2');
    // A retired key whose tokens have all expired is not published again.
    const late = restarted(Math.floor(Date.now() / 1000) - 1);
    assert.deepEqual(
      late.jwks().keys.map((k) => k.kid),
      ['gen-2'],
    );
    for (const bad of [
      { keyId: 'gen-2', publicKey: spki, until: issued.expiresAt },
      { keyId: 'x', publicKey: new Uint8Array([1, 2, 3]), until: issued.expiresAt },
    ]) {
      assert.throws(() => authorityWith({ signingKey: newSigningKey(), keyId: 'gen-2', retiredKeys: [bad] }));
    }
  });

  it('adds a ci submod for a CI identity token on the software path, and refuses a bad one', async () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    await writeFile(
      join(dir, 'ci-jwks.json'),
      JSON.stringify({
        keys: [{ ...(await exportJWK(rsa.publicKey)), kid: 'ci-1', alg: 'RS256', use: 'sig' }],
      }),
    );
    const GITHUB = 'https://token.actions.githubusercontent.com';
    const verifier = new CiTokenVerifier(
      [
        {
          platform: 'github-actions',
          issuer: GITHUB,
          jwksFile: 'ci-jwks.json',
          audience: 'https://gatehouse.test',
          claims: { repository: ['octo-org/octo-repo'] },
        },
      ],
      { home: dir },
    );
    const withCi = authorityWith({ verifyCiToken: async (t) => ({ ...(await verifier.verify(t)) }) });
    const now = Math.floor(Date.now() / 1000);
    // A GitHub Actions OIDC token in the documented claim shape.
    const ciToken = (repository: string) =>
      new SignJWT({
        sub: `repo:${repository}:ref:refs/heads/main`,
        ref: 'refs/heads/main',
        ref_type: 'branch',
        sha: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4',
        repository,
        repository_owner: repository.split('/')[0],
        run_id: '5678',
        runner_environment: 'github-hosted',
        event_name: 'push',
        workflow_ref: `${repository}/.github/workflows/build.yml@refs/heads/main`,
        job_workflow_ref: `${repository}/.github/workflows/build.yml@refs/heads/main`,
      })
        .setProtectedHeader({ alg: 'RS256', kid: 'ci-1', typ: 'JWT' })
        .setIssuer(GITHUB)
        .setAudience('https://gatehouse.test')
        .setIssuedAt(now)
        .setNotBefore(now - 5)
        .setExpirationTime(now + 300)
        .sign(rsa.privateKey);
    const { token } = await attestOnce(withCi, {
      ...evidence(),
      ci_token: await ciToken('octo-org/octo-repo'),
    });
    const { payload } = await jwtVerify(token, createLocalJWKSet(withCi.jwks()), { algorithms: ['ES256'] });
    const submods = payload.submods as Record<string, Record<string, unknown>>;
    assert.equal(submods.ci?.['ear.status'], 'affirming');
    assert.equal(submods.ci?.repository, 'octo-org/octo-repo');
    assert.deepEqual((payload.gatehouse as { evidence_types: string[] }).evidence_types, [
      'software-measurement',
      'ci-oidc',
    ]);
    const refusedCheck = async (auth: AttestationAuthority, ci: string) =>
      attestOnce(auth, { ...evidence(), ci_token: ci }).then(
        () => assert.fail('accepted'),
        (e: unknown) => (e as { failedChecks?: { check: string }[] }).failedChecks?.map((f) => f.check),
      );
    // Another repository, a tampered token, and no configured issuers: refused with CI_TOKEN_INVALID.
    assert.deepEqual(await refusedCheck(withCi, await ciToken('mallory/app')), ['CI_TOKEN_INVALID']);
    const good = await ciToken('octo-org/octo-repo');
    assert.deepEqual(await refusedCheck(withCi, `${good.slice(0, -4)}AAAA`), ['CI_TOKEN_INVALID']);
    assert.deepEqual(await refusedCheck(authority, good), ['CI_TOKEN_INVALID']);
  });

  it('refuses to revoke a token it did not sign', async () => {
    await assert.rejects(authority.revoke('eyJhbGciOiJub25lIn0.e30.'), (e) =>
      isGatehouseError(e, 'TOKEN_INVALID'),
    );
  });

  const badOptions: [string, Record<string, unknown>][] = [
    ['a TTL over 900 seconds', { tokenTtlSeconds: 901 }],
    ['a zero TTL', { tokenTtlSeconds: 0 }],
    ['an issuer that is not a URL', { issuer: 'not a url' }],
    ['an RSA signing key', { signingKey: generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey }],
    ['a P-384 signing key', { signingKey: generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey }],
    ['a public key', { signingKey: generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey }],
  ];
  for (const [name, change] of badOptions) {
    it(`refuses to start with ${name}`, () => {
      assert.throws(
        () => authorityWith({ keyId: 'k', ...change } as Partial<AttestationAuthorityOptions>),
        (e) => isGatehouseError(e, 'BAD_CONFIG'),
      );
    });
  }
});
