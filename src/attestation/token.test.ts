import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { SignJWT } from 'jose';
import { sha256Hex } from '../common/encoding.ts';
import { type ErrorCode, isGatehouseError } from '../common/errors.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import { newSigningKey } from '../testing/attestation.ts';
import { AttestationAuthority } from './authority.ts';
import { jobBindingDigest, PCR_ALLOCATION, replayToRecord } from './measurement.ts';
import {
  type AttestationClaims,
  generateRunnerKey,
  type RunnerKeyPair,
  signSubmission,
  submissionDigest,
  verifyAttestationToken,
  verifyProofOfPossession,
} from './token.ts';

const ISSUER = 'https://gatehouse.test/attestation';
const JOB = 'job-7';
const NONCE = randomBytes(32).toString('base64');
const D = (c: string) => c.repeat(64);

/** Evidence that passes against {@link REFERENCE}, built by hand (no files needed). */
function goodEvidence(jobId = JOB, nonce = NONCE) {
  const events = [
    {
      pcr: PCR_ALLOCATION['sandbox-profile'],
      type: 'sandbox-profile' as const,
      name: 'bubblewrap',
      digest: D('a'),
    },
    { pcr: PCR_ALLOCATION.toolchain, type: 'toolchain' as const, name: '/bin/sh', digest: D('b') },
    { pcr: PCR_ALLOCATION.agent, type: 'agent' as const, name: 'agent', digest: D('c') },
    { pcr: PCR_ALLOCATION.job, type: 'job' as const, name: jobId, digest: jobBindingDigest(jobId, nonce) },
  ];
  return { type: 'software-measurement', events, pcrs: replayToRecord(events) };
}
const REFERENCE = { agent: [D('c')], sandboxProfile: [D('a')], toolchain: { '/bin/sh': [D('b')] } };

function b64url(s: string | Buffer): string {
  return Buffer.from(s).toString('base64url');
}

describe('attestation token verification', () => {
  let store: SqliteStore;
  let authority: AttestationAuthority;
  let runner: RunnerKeyPair;
  let token: string;
  const signingKey = newSigningKey();
  const t0 = new Date('2030-01-01T00:00:00Z');
  /** An authority signing with `key` under the kid `k1`, at `t0`. */
  const authorityAtT0 = (key = newSigningKey()) =>
    new AttestationAuthority({
      signingKey: key,
      keyId: 'k1',
      issuer: ISSUER,
      referenceValues: REFERENCE,
      tokens: store.tokens,
      now: () => t0,
    });

  before(async () => {
    store = SqliteStore.open(':memory:');
    authority = authorityAtT0(signingKey);
    runner = await generateRunnerKey();
    ({ token } = await authority.attest({
      jobId: JOB,
      nonce: NONCE,
      runnerKey: runner.publicJwk,
      evidence: goodEvidence(),
    }));
  });
  after(() => store.close());

  const options = (over: Partial<Parameters<typeof verifyAttestationToken>[1]> = {}) => ({
    jwks: authority.jwks(),
    issuer: ISSUER,
    jobId: JOB,
    tokens: store.tokens,
    now: () => new Date(t0.getTime() + 10_000),
    ...over,
  });

  async function refused(t: string | undefined, code: ErrorCode, over: Parameters<typeof options>[0] = {}) {
    await assert.rejects(verifyAttestationToken(t, options(over)), (e: unknown) => {
      assert.ok(isGatehouseError(e, code), `expected ${code}, got ${String(e)}`);
      // Never echo the token back.
      assert.ok(t === undefined || t === '' || !e.message.includes(t));
      return true;
    });
  }

  it('verifies a token and returns its typed claims', async () => {
    const claims = await verifyAttestationToken(token, options());
    assert.equal(claims.sub, JOB);
    assert.equal(claims.cnf.jkt, runner.thumbprint);
    assert.equal(claims.submods.image?.['ear.status'], 'affirming');
    assert.deepEqual(claims.gatehouse.evidence_types, ['software-measurement']);
  });

  it('refuses a missing or empty token', async () => {
    await refused(undefined, 'TOKEN_MISSING');
    await refused('', 'TOKEN_MISSING');
    await refused('   ', 'TOKEN_MISSING');
  });

  it('refuses an expired token', async () => {
    await refused(token, 'TOKEN_EXPIRED', { now: () => new Date(t0.getTime() + 301_000) });
  });

  it('refuses a token issued for another job', async () => {
    await refused(token, 'TOKEN_WRONG_JOB', { jobId: 'job-8' });
  });

  it('refuses a revoked token', async () => {
    const r = await generateRunnerKey();
    const { token: t } = await authority.attest({
      jobId: JOB,
      nonce: NONCE,
      runnerKey: r.publicJwk,
      evidence: goodEvidence(),
    });
    await verifyAttestationToken(t, options());
    await authority.revoke(t);
    await refused(t, 'TOKEN_REVOKED');
  });

  it('refuses a token with one payload byte flipped', async () => {
    const [h, p, s] = token.split('.') as [string, string, string];
    const bytes = Buffer.from(p, 'base64url');
    const i = bytes.indexOf('job-7');
    bytes[i + 4] = '8'.charCodeAt(0);
    await refused(`${h}.${b64url(bytes)}.${s}`, 'TOKEN_INVALID', { jobId: 'job-8' });
  });

  it('refuses a token signed by a foreign key, even with the right kid', async () => {
    const foreign = authorityAtT0();
    const { token: t } = await foreign.attest({
      jobId: JOB,
      nonce: NONCE,
      runnerKey: runner.publicJwk,
      evidence: goodEvidence(),
    });
    await refused(t, 'TOKEN_INVALID');
  });

  it('refuses an unsigned token (alg none)', async () => {
    const [, p] = token.split('.') as [string, string];
    await refused(`${b64url(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${p}.`, 'TOKEN_INVALID');
    await refused(`${b64url(JSON.stringify({ alg: 'none', kid: 'k1' }))}.${p}.`, 'TOKEN_INVALID');
  });

  it('refuses an HS256 token keyed with the public key', async () => {
    const [, p] = token.split('.') as [string, string];
    const jwk = authority.jwks().keys[0];
    for (const secret of [JSON.stringify(jwk), jwk?.x ?? '']) {
      const h = b64url(JSON.stringify({ alg: 'HS256', kid: 'k1', typ: 'JWT' }));
      const sig = createHmac('sha256', secret).update(`${h}.${p}`).digest('base64url');
      await refused(`${h}.${p}.${sig}`, 'TOKEN_INVALID');
    }
  });

  it('refuses a token for another issuer or audience', async () => {
    await refused(token, 'TOKEN_INVALID', { issuer: 'https://elsewhere.test' });
    const forged = await new SignJWT({ sub: JOB })
      .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
      .setIssuer(ISSUER)
      .setAudience('someone-else')
      .setIssuedAt(Math.floor(t0.getTime() / 1000))
      .setExpirationTime(Math.floor(t0.getTime() / 1000) + 60)
      .setJti('x')
      .sign(signingKey);
    await refused(forged, 'TOKEN_INVALID');
  });

  it('refuses a well-signed token that lacks the EAR claims or lives too long', async () => {
    const iat = Math.floor(t0.getTime() / 1000);
    const bare = await new SignJWT({ sub: JOB })
      .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
      .setIssuer(ISSUER)
      .setAudience('gatehouse-gate')
      .setIssuedAt(iat)
      .setExpirationTime(iat + 60)
      .setJti('y')
      .sign(signingKey);
    await refused(bare, 'TOKEN_INVALID');
    const claims = await verifyAttestationToken(token, options());
    const { iss: _i, aud: _a, iat: _t, exp: _e, jti: _j, sub: _s, ...rest } = claims;
    const long = await new SignJWT(rest)
      .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
      .setIssuer(ISSUER)
      .setSubject(JOB)
      .setAudience('gatehouse-gate')
      .setIssuedAt(iat)
      .setExpirationTime(iat + 86_400)
      .setJti('z')
      .sign(signingKey);
    await refused(long, 'TOKEN_INVALID');
  });

  const malformed: [string, (t: string) => string][] = [
    ['garbage', () => 'not a token'],
    ['two segments', () => 'a.b'],
    ['four segments', (t) => `${t}.x`],
    ['a header that is not JSON', (t) => `${b64url('{')}.${t.split('.')[1]}.${t.split('.')[2]}`],
    ['an oversized token', (t) => `${t}${'A'.repeat(20_000)}`],
    ['a JWE-shaped token', () => 'a.b.c.d.e'],
  ];
  for (const [name, make] of malformed) {
    it(`refuses ${name}`, () => refused(make(token), 'TOKEN_INVALID'));
  }
});

describe('proof of possession', () => {
  let runner: RunnerKeyPair;
  let claims: Pick<AttestationClaims, 'cnf'>;
  const payload = { jobId: JOB, subjects: [{ name: 'dist/app.tgz', sha256: D('1') }], project: 'p' };

  before(async () => {
    runner = await generateRunnerKey();
    claims = { cnf: { jkt: runner.thumbprint } };
  });

  function refusedPop(fn: () => unknown, message: RegExp): void {
    assert.throws(fn, (e: unknown) => {
      assert.ok(isGatehouseError(e, 'PROOF_OF_POSSESSION_FAILED'), String(e));
      assert.match(e.message, message);
      return true;
    });
  }

  it('accepts a submission signed by the bound key over the expected payload', async () => {
    const jws = await signSubmission(payload, runner.privateKey);
    const bytes = verifyProofOfPossession(jws, claims, submissionDigest(payload));
    assert.deepEqual(JSON.parse(Buffer.from(bytes).toString()), payload);
    // The payload is signed as canonical JSON, so key order does not matter to the digest.
    const reordered = { project: 'p', subjects: payload.subjects, jobId: JOB };
    verifyProofOfPossession(jws, claims, Buffer.from(submissionDigest(reordered), 'hex'));
  });

  it('refuses a submission signed with another key', async () => {
    const other = await generateRunnerKey();
    const jws = await signSubmission(payload, other.privateKey);
    refusedPop(() => verifyProofOfPossession(jws, claims, submissionDigest(payload)), /key other than/);
  });

  it('refuses a submission over another payload', async () => {
    const jws = await signSubmission(payload, runner.privateKey);
    refusedPop(
      () => verifyProofOfPossession(jws, claims, submissionDigest({ ...payload, project: 'q' })),
      /different payload/,
    );
  });

  it('refuses a header key swapped for the bound one over another signer', async () => {
    const other = await generateRunnerKey();
    const jws = await signSubmission(payload, other.privateKey);
    const [, p, s] = jws.split('.') as [string, string, string];
    const h = b64url(
      JSON.stringify({ alg: 'ES256', typ: 'gatehouse-submission+jws', jwk: runner.publicJwk }),
    );
    refusedPop(
      () => verifyProofOfPossession(`${h}.${p}.${s}`, claims, submissionDigest(payload)),
      /signature is invalid/,
    );
  });

  it('refuses a tampered payload', async () => {
    const jws = await signSubmission(payload, runner.privateKey);
    const [h, , s] = jws.split('.') as [string, string, string];
    const evil = { ...payload, subjects: [{ name: 'dist/app.tgz', sha256: D('2') }] };
    refusedPop(
      () =>
        verifyProofOfPossession(
          `${h}.${b64url(JSON.stringify(evil))}.${s}`,
          claims,
          sha256Hex(JSON.stringify(evil)),
        ),
      /signature is invalid/,
    );
  });

  const badHeaders: [string, object][] = [
    ['alg none', { alg: 'none', typ: 'gatehouse-submission+jws' }],
    ['HS256', { alg: 'HS256', typ: 'gatehouse-submission+jws' }],
    ['a JWT typ', { alg: 'ES256', typ: 'JWT' }],
    ['a crit header', { alg: 'ES256', typ: 'gatehouse-submission+jws', crit: ['b64'], b64: false }],
    ['a jku header', { alg: 'ES256', typ: 'gatehouse-submission+jws', jku: 'https://evil.test/jwks' }],
  ];
  for (const [name, header] of badHeaders) {
    it(`refuses a submission with ${name}`, async () => {
      const jws = await signSubmission(payload, runner.privateKey);
      const [, p, s] = jws.split('.') as [string, string, string];
      const h = b64url(JSON.stringify({ ...header, jwk: runner.publicJwk }));
      refusedPop(
        () => verifyProofOfPossession(`${h}.${p}.${s}`, claims, submissionDigest(payload)),
        /header/,
      );
    });
  }

  it('refuses a header jwk carrying a private key', async () => {
    const jws = await signSubmission(payload, runner.privateKey);
    const [, p, s] = jws.split('.') as [string, string, string];
    const h = b64url(
      JSON.stringify({
        alg: 'ES256',
        typ: 'gatehouse-submission+jws',
        jwk: { ...runner.publicJwk, d: 'A'.repeat(43) },
      }),
    );
    refusedPop(() => verifyProofOfPossession(`${h}.${p}.${s}`, claims, submissionDigest(payload)), /header/);
  });

  for (const [name, jws] of [
    ['an empty string', ''],
    ['garbage', 'garbage'],
    ['a JWS with non-base64url parts', 'a+b.c.d'],
  ] as const) {
    it(`refuses ${name} as a signature`, () => {
      refusedPop(() => verifyProofOfPossession(jws, claims, submissionDigest(payload)), /./);
    });
  }

  it('keeps the private key out of JSON and spreads', () => {
    assert.equal(JSON.stringify(runner.privateKey), '"[runner private key]"');
    assert.deepEqual(Object.keys({ ...runner.privateKey }), []);
    assert.deepEqual(Object.keys(runner.publicJwk).sort(), ['crv', 'kty', 'x', 'y']);
  });
});
