import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AttestationAuthority, type ReferenceValues } from '../src/attestation/authority.ts';
import { generateRunnerKey, type RunnerKeyPair, signSubmission } from '../src/attestation/token.ts';
import { isGatehouseError } from '../src/common/errors.ts';
import type { JobTicket } from '../src/control-plane/control-plane.ts';
import type { SubmitRequest } from '../src/gate/submission.ts';
import { buildIdentity } from '../src/gate/submission.ts';
import { homePaths, initHome, type OpenHome, openHome } from '../src/home/home.ts';
import { registryFromConfig } from '../src/registry/registry-config.ts';
import { parseBundle } from '../src/signing/bundle.ts';
import { openHomeKeys } from '../src/signing/home-keys.ts';
import { parseTrustedRoot } from '../src/signing/trust-root.ts';
import {
  type AttestedJob,
  attestedJob,
  evidenceFor as evidenceForJob,
  openedJob,
  registerProject,
  seedVulnerabilityData,
  submitRequest,
} from '../src/testing/submission.ts';
import { verifyArtifactBundle } from '../src/verify/verify.ts';
import { tempDir } from './helpers.ts';

/** The registry the home promotes into, as the config names it. */
const registryOf = (home: OpenHome) => registryFromConfig(home.config.registry, home.root);

/**
 * The gate, driven the way a runner agent drives it but without a build, so that each
 * rejection can be produced on purpose: every one must end in a logged deny, never a signature.
 */
describe('the gate', () => {
  const tmp = tempDir('gate');
  let home: OpenHome;
  const artifact = new TextEncoder().encode('the build output\n');

  before(async () => {
    await initHome(tmp.path);
    home = await openHome(tmp.path);
    await registerProject(home, 'demo');
    await seedVulnerabilityData(home);
  });
  after(async () => {
    await home.close();
    tmp.cleanup();
  });

  const evidenceFor = (ticket: JobTicket) => evidenceForJob(home, ticket);
  const attested = (project = 'demo'): Promise<AttestedJob> => attestedJob(home, project);
  const request = (
    ticket: JobTicket,
    key: RunnerKeyPair,
    token: string | undefined,
    change: { artifact?: Uint8Array; signedAt?: number } = {},
  ): Promise<SubmitRequest> =>
    submitRequest(
      { ticket, key },
      {
        controlPlane: home.controlPlane,
        token,
        name: 'out',
        bytes: artifact,
        ...(change.artifact === undefined ? {} : { upload: change.artifact }),
        ...(change.signedAt === undefined ? {} : { signedAt: change.signedAt }),
      },
    );

  async function expectDeny(r: SubmitRequest, rule: string, code: RegExp): Promise<void> {
    const logSize = await home.log.size();
    const result = await home.controlPlane.submit(r);
    assert.equal(result.outcome, 'deny');
    assert.equal(result.bundle, undefined, 'a refused submission is never signed');
    assert.equal(result.placement.area, 'quarantine');
    assert.equal(result.reasons[0]?.rule, rule);
    assert.match(result.reasons[0]?.message ?? '', code);
    // The refusal is a decision like any other: in the store and in the log, with the policy digest.
    assert.equal(await home.log.size(), logSize + 1);
    const entry = await home.store.log.get(result.logIndex);
    const body = JSON.parse(new TextDecoder().decode(entry?.body));
    assert.equal(body.kind, 'gatehouse-decision');
    assert.equal(body.spec.decisionId, result.decisionId);
    assert.equal(body.spec.outcome, 'deny');
    assert.equal(body.spec.policyDigest, result.policyDigest);
    assert.equal((await home.controlPlane.getJob(r.submission.jobId)).state, 'denied');
  }

  it('signs and promotes a submission with a valid token and proof', async () => {
    const { ticket, key, token } = await attested();
    const result = await home.controlPlane.submit(await request(ticket, key, token));
    assert.equal(result.outcome, 'allow', JSON.stringify(result.reasons));
    assert.ok(result.bundle);
    assert.equal(result.placement.area, 'promoted');
  });

  it('decides submissions made at once: each allowed, promoted under its own tag and verifiable', async () => {
    const jobs: AttestedJob[] = [];
    for (let i = 0; i < 4; i++) jobs.push(await attested());
    // Distinct artifacts, submitted together: their log entries go in shared batches, their
    // promotions into one project's registry index at once.
    const outputs = jobs.map((_, i) => new TextEncoder().encode(`concurrent build ${i}\n`));
    const requests = await Promise.all(
      jobs.map(({ ticket, key, token }, i) =>
        submitRequest(
          { ticket, key },
          { controlPlane: home.controlPlane, token, name: 'out', bytes: outputs[i] as Uint8Array },
        ),
      ),
    );
    const results = await Promise.all(requests.map((r) => home.controlPlane.submit(r)));
    const root = parseTrustedRoot(await home.trustedRoot());
    for (const [i, result] of results.entries()) {
      assert.equal(result.outcome, 'allow', JSON.stringify(result.reasons));
      const jobId = jobs[i]?.ticket.jobId ?? '';
      const placed = await home.store.jobs.get(jobId);
      assert.equal(placed?.state, 'allowed');
      assert.ok(
        (await registryOf(home).inspect('promoted', 'demo', jobId)) !== undefined,
        `${jobId} is promoted under its tag`,
      );
      // Each of its three bundles proves its log entries against a signed checkpoint.
      for (const b of [result.bundle, result.sbomBundle, result.vsaBundle]) {
        verifyArtifactBundle({
          artifactDigest: createHash('sha256')
            .update(outputs[i] as Uint8Array)
            .digest(),
          bundle: parseBundle(b),
          trustedRoot: root,
          identity: buildIdentity(home.config.identityBase, 'demo'),
          issuer: home.config.issuer,
        });
      }
    }
    assert.equal(new Set(results.map((r) => r.logIndex)).size, results.length);
  });

  it('denies a submission without a token', async () => {
    const { ticket, key } = await attested();
    await expectDeny(await request(ticket, key, undefined), 'attestation-token', /token/i);
  });

  it('denies an expired token', async () => {
    const { ticket, key } = await attested();
    // A token from the real authority key, issued an hour ago with a five-minute lifetime.
    const p = homePaths(tmp.path);
    // The home's own attestation key, opened the way the home opens it (encrypted at rest).
    const keys = await openHomeKeys(tmp.path, p.keys, home.config.keys);
    after(() => keys.close());
    const past = new AttestationAuthority({
      signingKey: keys.attestationKey,
      keyId: ((await home.controlPlane.jwks()) as { keys: { kid: string }[] }).keys[0]?.kid ?? '',
      issuer: home.config.issuer,
      referenceValues: JSON.parse(readFileSync(p.referenceValues, 'utf8')) as ReferenceValues,
      tokenTtlSeconds: 300,
      tokens: home.store.tokens,
      now: () => new Date(Date.now() - 3600_000),
    });
    const job = await home.controlPlane.getJob(ticket.jobId);
    const { token } = await past.attest({
      jobId: ticket.jobId,
      nonce: job.nonce,
      runnerKey: key.publicJwk,
      evidence: await evidenceFor(ticket),
    });
    await expectDeny(await request(ticket, key, token), 'attestation-token', /expired/i);
  });

  it('denies a token issued for another job', async () => {
    const a = await attested();
    const b = await attested();
    await expectDeny(await request(b.ticket, a.key, a.token), 'attestation-token', /job/i);
  });

  it('denies a token signed by a key the authority does not hold', async () => {
    const { ticket, key, token } = await attested();
    const [h, p] = token.split('.');
    const forged = `${h}.${p}.${Buffer.alloc(64, 1).toString('base64url')}`;
    await expectDeny(await request(ticket, key, forged), 'attestation-token', /token/i);
  });

  it('denies a submission signed by a key other than the one the token is bound to', async () => {
    const { ticket, token } = await attested();
    const other = await generateRunnerKey();
    await expectDeny(await request(ticket, other, token), 'proof-of-possession', /key|thumbprint|proof/i);
  });

  it('denies an artifact that differs from the digest the runner reported', async () => {
    const { ticket, key, token } = await attested();
    await expectDeny(
      await request(ticket, key, token, { artifact: new TextEncoder().encode('swapped\n') }),
      'artifact-digest',
      /sha256/,
    );
  });

  it('denies a stale submission proof, signed longer ago than the gate accepts', async () => {
    const { ticket, key, token } = await attested();
    const tenMinutesAgo = Math.floor(Date.now() / 1000) - 600;
    await expectDeny(
      await request(ticket, key, token, { signedAt: tenMinutesAgo }),
      'proof-of-possession',
      /stale/,
    );
  });

  it('accepts a submission proof once: the same signed proof replayed on another job is refused', async () => {
    const a = await attested();
    const first = await request(a.ticket, a.key, a.token);
    assert.equal((await home.controlPlane.submit(first)).outcome, 'allow');
    // Another job's correctly signed submission that reuses the first proof's id.
    const b = await attested();
    const replay = await request(b.ticket, b.key, b.token);
    replay.submission.proof = { ...first.submission.proof };
    replay.proof = await signSubmission(replay.submission, b.key.privateKey);
    await expectDeny(replay, 'proof-of-possession', /already used/);
  });

  it('uses a token once: a second submission for a decided job is refused', async () => {
    const { ticket, key, token } = await attested();
    const r = await request(ticket, key, token);
    assert.equal((await home.controlPlane.submit(r)).outcome, 'allow');
    await assert.rejects(home.controlPlane.submit(r), (e) => isGatehouseError(e, 'CONFLICT'));
  });

  it('refuses evidence that does not match the reference values, and the job never runs', async () => {
    const cp = home.controlPlane;
    const { ticket, key, credentials } = await openedJob(home, 'demo');
    const evidence = JSON.parse(JSON.stringify(await evidenceFor(ticket))) as {
      events: { type: string; digest: string }[];
      pcrs: unknown;
    };
    const agent = evidence.events.find((e) => e.type === 'agent');
    assert.ok(agent);
    agent.digest = 'f'.repeat(64);
    const attest = { jobId: ticket.jobId, runnerKey: key.publicJwk, evidence };
    await assert.rejects(cp.attest(attest, await credentials.host('attest', ticket.jobId, attest)), (e) =>
      isGatehouseError(e, 'EVIDENCE_REJECTED'),
    );
    assert.equal((await cp.getJob(ticket.jobId)).state, 'queued');
  });

  it('keeps decisions in an append-only log whose checkpoint covers them all', async () => {
    const size = await home.log.size();
    assert.ok(size > 0);
    const note = await home.log.checkpoint();
    assert.match(note, new RegExp(`\\n${size}\\n`));
    assert.ok(existsSync(join(tmp.path, 'registry', 'quarantine', 'demo', 'index.json')));
  });
});
