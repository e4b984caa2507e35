import assert from 'node:assert/strict';
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import { tempDir } from '../../../test/helpers.ts';
import { answerChallenge, challengeRequest } from '../../agent/attester.ts';
import { EmbeddedPolicyEngine } from '../../policy/embedded-engine.ts';
import { parsePolicy } from '../../policy/policy.ts';
import { SqliteStore } from '../../store/sqlite-store.ts';
import {
  measuredSoftware,
  newSigningKey,
  refusedChecks,
  softwareEvidence,
  tpmToolsMissing,
} from '../../testing/attestation.ts';
import {
  makeSnpChain,
  makeSnpReport,
  makeTdxChain,
  makeTdxQuote,
  type SnpChain,
  type TdxChain,
} from '../../testing/platform-evidence.ts';
import { ensurePlatformCa, platformCaPaths } from '../../tpm/platform-ca.ts';
import { manufactureVtpm, VirtualTpm } from '../../tpm/swtpm.ts';
import { AttestationAuthority, type ReferenceValues } from '../authority.ts';
import { jobBindingDigest, type MeasuredBaseline, type MeasurementEvent } from '../measurement.ts';
import { generateRunnerKey, jwkThumbprint, type RunnerKeyPair, verifyAttestationToken } from '../token.ts';
import { PlatformEvidenceAppraiser } from './platform-evidence.ts';
import { EVIDENCE_CHECKS as C, evidenceBinding, reportData64 } from './verifier.ts';

const ISSUER = 'https://gatehouse.test/attestation';

// Sample evidence only (test AMD and Intel chains, reports and quotes built to the published
// layouts); the authority, its token and the policy engine are the real ones.
describe('platform evidence in the attestation authority', () => {
  const tmp = tempDir('platform-evidence');
  const jobId = 'job-tee-1';
  const nonce = randomBytes(32).toString('base64');
  const measurement = createHash('sha384').update('guest').digest();
  const mrTd = createHash('sha384').update('td').digest();
  let store: SqliteStore;
  let baseline: MeasuredBaseline;
  let reference: ReferenceValues;
  let snp: SnpChain;
  let tdx: TdxChain;
  let runner: RunnerKeyPair;

  const authority = (over: { platform?: boolean; platforms?: ReferenceValues['platforms'] | null } = {}) =>
    new AttestationAuthority({
      signingKey: newSigningKey(),
      keyId: 'k1',
      issuer: ISSUER,
      referenceValues: {
        ...reference,
        ...(over.platforms === null
          ? {}
          : {
              platforms: over.platforms ?? {
                'sev-snp': { measurements: [measurement.toString('hex')] },
                tdx: { mrtd: [mrTd.toString('hex')] },
              },
            }),
      },
      tokens: store.tokens,
      ...(over.platform === false
        ? {}
        : {
            platformEvidence: new PlatformEvidenceAppraiser({
              anchors: (kind) => ({
                roots: kind === 'sev-snp' ? [snp.ark.cert] : kind === 'tdx' ? [tdx.root.cert] : [],
              }),
            }),
          }),
    });

  /** The binding a runner computes: the job nonce and its own key. */
  const bindingFor = (key: RunnerKeyPair) => evidenceBinding(Buffer.from(nonce, 'base64'), key.thumbprint);
  const snpEvidence = async (key: RunnerKeyPair, over: { measurement?: Buffer } = {}) => ({
    kind: 'sev-snp',
    report: (
      await makeSnpReport(snp, {
        reportData: reportData64(bindingFor(key)),
        measurement: over.measurement ?? measurement,
        chipId: snp.chipId,
        tcb: snp.tcb,
      })
    ).toString('base64'),
    vcek: snp.vcek.der.toString('base64'),
    chain: [snp.ask.der.toString('base64')],
  });
  const tdxEvidence = async (key: RunnerKeyPair) => ({
    kind: 'tdx',
    quote: (await makeTdxQuote(tdx, { reportData: reportData64(bindingFor(key)), mrTd })).toString('base64'),
  });
  const attest = (a: AttestationAuthority, platform: unknown, key = runner) =>
    a.attest({
      jobId,
      nonce,
      runnerKey: key.publicJwk,
      evidence: { ...softwareEvidence(baseline), platform_evidence: platform },
    });

  before(async () => {
    await writeFile(join(tmp.path, 'agent.ts'), 'export {};\n');
    store = SqliteStore.open(':memory:');
    ({ baseline, reference } = await measuredSoftware({
      toolchain: ['/bin/sh'],
      agentFiles: [join(tmp.path, 'agent.ts')],
      jobId,
      nonce,
    }));
    [snp, tdx, runner] = await Promise.all([makeSnpChain(), makeTdxChain(), generateRunnerKey()]);
  });
  after(async () => {
    await store.close();
    tmp.cleanup();
  });

  it('adds an affirming sev-snp and tdx submod, evidence types and measurements to the token', async () => {
    const a = authority();
    const { token } = await attest(a, [await snpEvidence(runner), await tdxEvidence(runner)]);
    const claims = await verifyAttestationToken(token, {
      jwks: a.jwks(),
      issuer: ISSUER,
      jobId,
      tokens: store.tokens,
    });
    assert.deepEqual(Object.keys(claims.submods).sort(), ['image', 'sev-snp', 'tdx']);
    assert.equal(claims.submods['sev-snp']?.['ear.status'], 'affirming');
    assert.equal(claims.submods['sev-snp']?.['ear.trustworthiness-vector']?.hardware, 2);
    assert.deepEqual(claims.gatehouse.evidence_types, ['software-measurement', 'sev-snp', 'tdx']);
    const raw = decodeJwt(token) as {
      gatehouse: { platform: Record<string, { measurements: Record<string, string> }> };
    };
    assert.equal(raw.gatehouse.platform['sev-snp']?.measurements.measurement, measurement.toString('hex'));
    assert.equal(raw.gatehouse.platform.tdx?.measurements.mrtd, mrTd.toString('hex'));
    assert.equal(jwkThumbprint(runner.publicJwk.x ?? '', runner.publicJwk.y ?? ''), claims.cnf.jkt);
  });

  it('meets attestation.require: [software-measurement, sev-snp] through the gate’s facts, and not [tpm, sev-snp]', async () => {
    const a = authority();
    const { token } = await attest(a, [await snpEvidence(runner)]);
    const claims = await verifyAttestationToken(token, {
      jwks: a.jwks(),
      issuer: ISSUER,
      jobId,
      tokens: store.tokens,
    });
    const facts = {
      project: 'app',
      components: [],
      findings: [],
      attestation: {
        verified: true,
        evidenceTypes: claims.gatehouse.evidence_types,
        submods: Object.fromEntries(Object.entries(claims.submods).map(([k, m]) => [k, m['ear.status']])),
      },
    };
    const policy = (require: string) =>
      new EmbeddedPolicyEngine({
        policy: parsePolicy(
          `apiVersion: gatehouse.dev/v1\nkind: Policy\nname: p\nrules:\n  - { id: hw, kind: attestation, require: ${require}, action: deny }\n`,
          'p',
        ),
      });
    assert.equal((await policy('[software-measurement, sev-snp]').evaluate(facts)).outcome, 'allow');
    const denied = await policy('[tpm, sev-snp]').evaluate(facts);
    assert.equal(denied.outcome, 'deny');
    assert.match(denied.reasons[0]?.message ?? '', /lacks required evidence: tpm/);
  });

  it('refuses a report made for another runner’s key (a relayed report)', async () => {
    const victim = await generateRunnerKey();
    const checks = await refusedChecks(attest(authority(), [await snpEvidence(victim)]));
    assert.deepEqual(checks, [C.binding]);
  });

  it('refuses the attestation when presented evidence fails, rather than leaving the submod out', async () => {
    const ev = await snpEvidence(runner, { measurement: randomBytes(48) });
    assert.deepEqual(await refusedChecks(attest(authority(), [ev])), [C.measurement]);
  });

  it('refuses platform evidence when no verifiers are configured, or no reference values are published', async () => {
    assert.deepEqual(
      await refusedChecks(attest(authority({ platform: false }), [await snpEvidence(runner)])),
      [C.kindUnsupported],
    );
    assert.deepEqual(
      await refusedChecks(attest(authority({ platforms: null }), [await snpEvidence(runner)])),
      [C.measurement],
    );
  });

  it('refuses an unknown kind, a kind presented twice, and a list that is not one', async () => {
    const ev = await snpEvidence(runner);
    assert.deepEqual(await refusedChecks(attest(authority(), [{ kind: 'sgx' }])), [C.kindUnsupported]);
    assert.deepEqual(await refusedChecks(attest(authority(), [ev, ev])), [C.kindUnsupported]);
    for (const bad of [null, {}, [], 'x', Array.from({ length: 9 }, () => ev)])
      assert.deepEqual(
        await refusedChecks(attest(authority(), bad)),
        [C.malformed],
        JSON.stringify(bad).slice(0, 40),
      );
  });

  it('issues the same token as before when no platform evidence is presented', async () => {
    const a = authority();
    const { token } = await a.attest({
      jobId,
      nonce,
      runnerKey: runner.publicJwk,
      evidence: softwareEvidence(baseline),
    });
    const claims = await verifyAttestationToken(token, {
      jwks: a.jwks(),
      issuer: ISSUER,
      jobId,
      tokens: store.tokens,
    });
    assert.deepEqual(Object.keys(claims.submods), ['image']);
    assert.deepEqual(claims.gatehouse.evidence_types, ['software-measurement']);
  });
});

describe('platform evidence beside a real vTPM quote', { skip: tpmToolsMissing() }, () => {
  const tmp = tempDir('platform-tpm');
  const JOB = 'job-tee-tpm';
  const JOB_NONCE = randomBytes(32).toString('base64');
  const d = (s: string) => createHash('sha256').update(s).digest('hex');
  const events: MeasurementEvent[] = [
    { pcr: 8, type: 'sandbox-profile', name: 'bubblewrap', digest: d('profile') },
    { pcr: 9, type: 'toolchain', name: '/usr/bin/sh', digest: d('sh') },
    { pcr: 10, type: 'agent', name: 'agent', digest: d('agent') },
    { pcr: 11, type: 'job', name: JOB, digest: jobBindingDigest(JOB, JOB_NONCE) },
  ];
  const measurement = createHash('sha384').update('guest').digest();
  let tpm: VirtualTpm;
  let store: SqliteStore;
  let snp: SnpChain;
  let authority: AttestationAuthority;
  const jobs = async () => ({ nonce: JOB_NONCE });

  before(async () => {
    await ensurePlatformCa(join(tmp.path, 'ca'));
    const ca = new X509Certificate(await readFile(platformCaPaths(join(tmp.path, 'ca')).cert));
    await manufactureVtpm(join(tmp.path, 'vtpm'), { platformCaDir: join(tmp.path, 'ca') });
    tpm = await VirtualTpm.start(join(tmp.path, 'vtpm'));
    await tpm.extend(events);
    store = SqliteStore.open(':memory:');
    snp = await makeSnpChain();
    authority = new AttestationAuthority({
      signingKey: newSigningKey(),
      keyId: 'k1',
      issuer: ISSUER,
      referenceValues: {
        sandboxProfile: [d('profile')],
        agent: [d('agent')],
        toolchain: { '/usr/bin/sh': [d('sh')] },
        platforms: { 'sev-snp': { measurements: [measurement.toString('hex')] } },
      },
      tokens: store.tokens,
      trustedEkCas: () => [ca],
      platformEvidence: new PlatformEvidenceAppraiser({ anchors: () => ({ roots: [snp.ark.cert] }) }),
    });
  });
  after(async () => {
    await tpm?.destroy();
    await store?.close();
    tmp.cleanup();
  });

  /** A report bound to the challenge's nonce and the runner key, as the quote is. */
  const report = async (nonce: string, key: RunnerKeyPair) => ({
    kind: 'sev-snp',
    report: (
      await makeSnpReport(snp, {
        reportData: reportData64(evidenceBinding(Buffer.from(nonce, 'base64'), key.thumbprint)),
        measurement,
        chipId: snp.chipId,
        tcb: snp.tcb,
      })
    ).toString('base64'),
    vcek: snp.vcek.der.toString('base64'),
    chain: [snp.ask.der.toString('base64')],
  });

  it('adds the sev-snp submod to the tpm and image ones, bound to the challenge nonce', async () => {
    const key = await generateRunnerKey();
    const challenge = await authority.challenge(await challengeRequest(tpm, key.publicJwk, JOB));
    const body = await answerChallenge(tpm, challenge, key.publicJwk, events);
    const issued = await authority.evidence(
      { ...body, platform_evidence: [await report(challenge.nonce, key)] },
      jobs,
    );
    const claims = await verifyAttestationToken(issued.token, {
      jwks: authority.jwks(),
      issuer: ISSUER,
      jobId: JOB,
      tokens: store.tokens,
    });
    assert.deepEqual(Object.keys(claims.submods).sort(), ['image', 'sev-snp', 'tpm']);
    assert.deepEqual(claims.gatehouse.evidence_types, ['tpm', 'software-measurement', 'sev-snp']);
  });

  it('refuses a report bound to the job nonce instead of the challenge nonce', async () => {
    const key = await generateRunnerKey();
    const challenge = await authority.challenge(await challengeRequest(tpm, key.publicJwk, JOB));
    const body = await answerChallenge(tpm, challenge, key.publicJwk, events);
    const checks = await refusedChecks(
      authority.evidence({ ...body, platform_evidence: [await report(JOB_NONCE, key)] }, jobs),
    );
    assert.deepEqual(checks, [C.binding]);
  });
});
