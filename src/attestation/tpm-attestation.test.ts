import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import { tempDir } from '../../test/helpers.ts';
import { answerChallenge, challengeRequest } from '../agent/attester.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import type { Store } from '../store/store.ts';
import { refusedChecks, tpmToolsMissing } from '../testing/attestation.ts';
import { ensurePlatformCa, platformCaPaths } from '../tpm/platform-ca.ts';
import { manufactureVtpm, VirtualTpm } from '../tpm/swtpm.ts';
import { AttestationAuthority } from './authority.ts';
import type { ReferenceValues } from './baseline.ts';
import { jobBindingDigest, type MeasurementEvent } from './measurement.ts';
import { generateRunnerKey, verifyAttestationToken } from './token.ts';
import type { Challenge } from './tpm-verifier.ts';

const JOB = 'job-tpm-1';
const JOB_NONCE = randomBytes(32).toString('base64');
const d = (s: string) => createHash('sha256').update(s).digest('hex');
const EVENTS: MeasurementEvent[] = [
  { pcr: 8, type: 'sandbox-profile', name: 'bubblewrap', digest: d('profile') },
  { pcr: 9, type: 'toolchain', name: '/usr/bin/sh', digest: d('sh') },
  { pcr: 10, type: 'agent', name: 'agent', digest: d('agent') },
  { pcr: 11, type: 'job', name: JOB, digest: jobBindingDigest(JOB, JOB_NONCE) },
];
const REFERENCE: ReferenceValues = {
  sandboxProfile: [d('profile')],
  agent: [d('agent')],
  toolchain: { '/usr/bin/sh': [d('sh')] },
};

describe('TPM attestation with a real vTPM', { skip: tpmToolsMissing() }, () => {
  const tmp = tempDir('tpm-attest');
  const dir = tmp.path;
  let tpm: VirtualTpm;
  let other: VirtualTpm;
  let store: Store;
  let authority: AttestationAuthority;
  let clock = Date.now();
  const trusted: X509Certificate[] = [];
  const jobs = async (id: string) => {
    if (id !== JOB) throw new Error(`no job ${id}`);
    return { nonce: JOB_NONCE };
  };

  before(async () => {
    await ensurePlatformCa(join(dir, 'ca'));
    trusted.push(new X509Certificate(await readFile(platformCaPaths(join(dir, 'ca')).cert)));
    await Promise.all([
      manufactureVtpm(join(dir, 'a'), { platformCaDir: join(dir, 'ca') }),
      manufactureVtpm(join(dir, 'b'), { platformCaDir: join(dir, 'ca') }),
    ]);
    tpm = await VirtualTpm.start(join(dir, 'a'));
    other = await VirtualTpm.start(join(dir, 'b'));
    await tpm.extend(EVENTS);
    // The EK certificates were issued just now: the authority's clock starts after them.
    clock = Date.now();
    store = SqliteStore.open(join(dir, 'db.sqlite'));
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    authority = new AttestationAuthority({
      signingKey: privateKey,
      keyId: 'k1',
      issuer: 'https://gatehouse.test/attestation',
      referenceValues: REFERENCE,
      referencePolicyId: 'gatehouse:reference-values/v1',
      tokens: store.tokens,
      trustedEkCas: () => trusted,
      now: () => new Date(clock),
    });
  });

  after(async () => {
    await tpm?.destroy();
    await other?.destroy();
    await store?.close();
    tmp.cleanup();
  });

  async function fresh(
    t = tpm,
  ): Promise<{ key: Awaited<ReturnType<typeof generateRunnerKey>>; challenge: Challenge }> {
    const key = await generateRunnerKey();
    return { key, challenge: await authority.challenge(await challengeRequest(t, key.publicJwk, JOB)) };
  }

  it('accepts a genuine runner and issues a token with tpm and image submods', async () => {
    const { key, challenge } = await fresh();
    assert.deepEqual(challenge.pcr_selection, { sha256: [8, 9, 10, 11] });
    assert.equal(Buffer.from(challenge.nonce, 'base64').length, 32);
    const issued = await authority.evidence(
      await answerChallenge(tpm, challenge, key.publicJwk, EVENTS),
      jobs,
    );
    assert.equal(issued.jobId, JOB);
    const claims = await verifyAttestationToken(issued.token, {
      jwks: authority.jwks(),
      issuer: 'https://gatehouse.test/attestation',
      jobId: JOB,
      tokens: store.tokens,
      now: () => new Date(clock),
    });
    assert.equal(claims.cnf.jkt, key.thumbprint);
    assert.deepEqual(Object.keys(claims.submods).sort(), ['image', 'tpm']);
    assert.equal(claims.submods.tpm?.['ear.appraisal-policy-id'], 'gatehouse:reference-values/v1');
    assert.deepEqual(claims.gatehouse.evidence_types, ['tpm', 'software-measurement']);
    assert.equal(claims.eat_nonce, challenge.nonce);
    assert.equal((decodeJwt(issued.token).gatehouse as { tpm: { model: string } }).tpm.model, 'swtpm');
  });

  it('refuses a wrong nonce, a replayed and an expired challenge', async () => {
    const { key, challenge } = await fresh();
    const wrong = { ...challenge, nonce: randomBytes(32).toString('base64') };
    const body = await answerChallenge(tpm, wrong, key.publicJwk, EVENTS);
    assert.deepEqual(await refusedChecks(authority.evidence(body, jobs)), ['QUOTE_QUALIFYING_DATA']);
    assert.deepEqual(await refusedChecks(authority.evidence(body, jobs)), ['NONCE_REPLAYED']);
    assert.deepEqual(await refusedChecks(authority.evidence({ ...body, session: 'A'.repeat(24) }, jobs)), [
      'SESSION_UNKNOWN',
    ]);
    const late = await fresh();
    const lateBody = await answerChallenge(tpm, late.challenge, late.key.publicJwk, EVENTS);
    clock += 61_000;
    assert.deepEqual(await refusedChecks(authority.evidence(lateBody, jobs)), ['NONCE_EXPIRED']);
  });

  it('names the check a flipped byte in the quote, the signature or a PCR value breaks', async () => {
    const flip = (b64: string, at: (n: number) => number) => {
      const b = Buffer.from(b64, 'base64');
      const i = at(b.length);
      b[i] = (b[i] ?? 0) ^ 1;
      return b.toString('base64');
    };
    const cases: [string, (body: Record<string, unknown>) => Record<string, unknown>, string[]][] = [
      [
        'quote',
        (b) => ({ ...b, quote: flip(String(b.quote), (n) => n - 1) }),
        ['QUOTE_PCR_DIGEST', 'QUOTE_SIGNATURE'],
      ],
      [
        'signature',
        (b) => ({ ...b, signature: flip(String(b.signature), (n) => n - 1) }),
        ['QUOTE_SIGNATURE'],
      ],
      [
        'PCR value',
        (b) => {
          const pcrs = { ...(b.pcrs as { sha256: Record<string, string> }).sha256 };
          pcrs['9'] = `${pcrs['9']?.slice(0, 63)}${pcrs['9']?.endsWith('0') ? '1' : '0'}`;
          return { ...b, pcrs: { sha256: pcrs } };
        },
        ['QUOTE_PCR_DIGEST', 'EVENT_LOG_REPLAY'],
      ],
      [
        'trailing byte',
        (b) => ({
          ...b,
          quote: Buffer.concat([Buffer.from(String(b.quote), 'base64'), Buffer.from([0])]).toString('base64'),
        }),
        ['QUOTE_MALFORMED'],
      ],
      [
        'event log',
        (b) => ({
          ...b,
          event_log: EVENTS.map((e) => (e.pcr === 10 ? { ...e, digest: d('evil agent') } : e)),
        }),
        ['EVENT_LOG_REPLAY', 'REFERENCE_VALUES'],
      ],
    ];
    for (const [name, tamper, expected] of cases) {
      const { key, challenge } = await fresh();
      const body = tamper(await answerChallenge(tpm, challenge, key.publicJwk, EVENTS));
      assert.deepEqual(await refusedChecks(authority.evidence(body, jobs)), expected, name);
    }
  });

  it('refuses a quote that lacks a required PCR, and a token bound to another key', async () => {
    const { key, challenge } = await fresh();
    const body = await answerChallenge(
      tpm,
      { ...challenge, pcr_selection: { sha256: [8, 9, 10] } },
      key.publicJwk,
      EVENTS,
    );
    assert.ok((await refusedChecks(authority.evidence(body, jobs))).includes('QUOTE_PCR_SELECTION'));
    // The quote is made for another runner key than the challenge was bound to.
    const stranger = await generateRunnerKey();
    const c2 = await fresh();
    const b2 = await answerChallenge(tpm, c2.challenge, stranger.publicJwk, EVENTS);
    assert.deepEqual(await refusedChecks(authority.evidence(b2, jobs)), ['QUOTE_QUALIFYING_DATA']);
  });

  it('refuses an AK that is not a restricted signing key, an AK from another TPM and an untrusted EK certificate', async () => {
    const key = await generateRunnerKey();
    const req = await challengeRequest(tpm, key.publicJwk, JOB);
    const ekPub = join(dir, 'ek.pub');
    await tpm.tool('tpm2_readpublic', ['-c', '0x81010001', '-o', ekPub, '-f', 'tss']);
    assert.deepEqual(
      await refusedChecks(
        authority.challenge({ ...req, ak_public: (await readFile(ekPub)).toString('base64') }),
      ),
      ['AK_NOT_RESTRICTED_SIGNING'],
    );
    assert.deepEqual(
      await refusedChecks(
        authority.challenge({
          ...req,
          ak_public: Buffer.concat([await tpm.akPublic(), Buffer.from([0])]).toString('base64'),
        }),
      ),
      ['AK_MALFORMED'],
    );
    // This TPM's EK with the other TPM's AK: neither TPM can activate the credential.
    const mixed = await authority.challenge({
      ...req,
      ak_public: (await other.akPublic()).toString('base64'),
    });
    await assert.rejects(other.activateCredential(Buffer.from(mixed.credential, 'base64')));
    await assert.rejects(tpm.activateCredential(Buffer.from(mixed.credential, 'base64')));
    const { attest, signature } = await other.quote(randomBytes(32), [8, 9, 10, 11]);
    const forged = {
      session: mixed.session,
      secret: randomBytes(32).toString('base64'),
      quote: attest.toString('base64'),
      signature: signature.toString('base64'),
      pcrs: { sha256: await other.readPcrs([8, 9, 10, 11]) },
      event_log: EVENTS,
    };
    assert.ok((await refusedChecks(authority.evidence(forged, jobs))).includes('CREDENTIAL_MISMATCH'));
    const saved = trusted.splice(0);
    try {
      assert.deepEqual(await refusedChecks(authority.challenge(req)), ['EK_CERT_UNTRUSTED']);
    } finally {
      trusted.push(...saved);
    }
  });

  it('refuses a resetCount that went backwards for an AK', async () => {
    const first = await fresh(other);
    await other.extend(EVENTS);
    await authority.evidence(
      await answerChallenge(other, first.challenge, first.key.publicJwk, EVENTS),
      jobs,
    );
    // Restarting the vTPM (a TPM Reset) raises resetCount; the authority now remembers it.
    await other.tool('tpm2_shutdown', ['-c']);
    await other.stop();
    other = await VirtualTpm.start(join(dir, 'b'));
    await other.extend(EVENTS);
    const second = await fresh(other);
    await authority.evidence(
      await answerChallenge(other, second.challenge, second.key.publicJwk, EVENTS),
      jobs,
    );
    // A quote whose resetCount is lower than the one the authority saw, as an attacker replaying
    // an older TPM state would send: the signature breaks too, but the rollback is its own check.
    const stale = await fresh(other);
    const staleBody = await answerChallenge(other, stale.challenge, stale.key.publicJwk, EVENTS);
    const q = Buffer.from(String(staleBody.quote), 'base64');
    const signerLen = q.readUInt16BE(6);
    const extraLen = q.readUInt16BE(8 + signerLen);
    const resetOffset = 8 + signerLen + 2 + extraLen + 8;
    q.writeUInt32BE(0, resetOffset);
    const codes = await refusedChecks(
      authority.evidence({ ...staleBody, quote: q.toString('base64') }, jobs),
    );
    assert.ok(codes.includes('CLOCK_ROLLBACK'), codes.join(','));
  });
});
