import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { isGatehouseError } from '../common/errors.ts';
import type { JobRecord, Store, VulnRecord } from '../store/store.ts';
import { reviewedAndSigned } from './source.ts';

/**
 * The behaviour every Store adapter must show. Run it from each adapter's test file with a
 * factory that returns a fresh, empty, migrated store.
 */
export function describeStoreContract(name: string, makeStore: () => Promise<Store>): void {
  describe(`${name} store contract`, () => {
    let current: Store | undefined;
    before(async () => {
      current = await makeStore();
    });
    after(async () => {
      await current?.close();
    });
    const store = storeMadeBefore(() => current);
    // The cases share one store and build on each other's writes: keep them in this order.
    jobCases(store);
    decisionAndLogEntryCases(store);
    logNodeCases(store);
    logAppendCases(store);
    vulnAndTokenCases(store);
    sourceCases(store);
    refHeadAndPolicyVersionCases(store);
    triageCases(store);
    heldBuildAndReferenceValueCases(store);
    refusalCases(store);
    securityActCases(store);
    sharedStateCases(store);
    transparencyWitnessCases(store);
    buildLogCases(store);
  });
}

/**
 * A stand-in for the store the suite makes in `before`, which does not exist yet when the cases
 * are declared: every property is read from it when a case runs.
 */
function storeMadeBefore(get: () => Store | undefined): Store {
  return new Proxy({} as Store, {
    get(_target, key) {
      const s = get();
      if (s === undefined) throw new Error('the store contract ran a case before its store was made');
      const value: unknown = Reflect.get(s, key);
      return typeof value === 'function' ? value.bind(s) : value;
    },
  });
}

function job(id: string, project = 'p'): JobRecord {
  return {
    id,
    project,
    state: 'queued',
    nonce: 'bm9uY2U=',
    createdAt: new Date().toISOString(),
    updatedAt: new Date().toISOString(),
    steps: [],
  };
}

/** Jobs: create, read, update, list and count. */
function jobCases(store: Store): void {
  it('is migrated to the newest schema version', async () => {
    assert.ok((await store.schemaVersion()) >= 1);
  });

  it('stores a job and reads it back', async () => {
    await store.jobs.create(job('j1'));
    const got = await store.jobs.get('j1');
    assert.equal(got?.project, 'p');
    assert.deepEqual(got?.steps, []);
    assert.equal(got?.result, undefined);
  });

  it('refuses a second job with the same id and keeps the first', async () => {
    await assert.rejects(store.jobs.create({ ...job('j1'), project: 'other' }), (e) =>
      isGatehouseError(e, 'CONFLICT'),
    );
    assert.equal((await store.jobs.get('j1'))?.project, 'p');
  });

  it('updates a job state, steps and result', async () => {
    const step = { name: 'build', startedAt: new Date().toISOString(), durationMs: 12, ok: true };
    await store.jobs.update('j1', { state: 'allowed', steps: [step], result: { outcome: 'allow' } });
    const got = await store.jobs.get('j1');
    assert.equal(got?.state, 'allowed');
    assert.deepEqual(got?.steps, [step]);
    assert.deepEqual(got?.result, { outcome: 'allow' });
    assert.deepEqual(await store.jobs.countByState(), { allowed: 1 });
  });

  it('refuses to update a job that does not exist', async () => {
    await assert.rejects(store.jobs.update('nope', { state: 'failed' }), (e) =>
      isGatehouseError(e, 'NOT_FOUND'),
    );
  });

  it('lists jobs by project', async () => {
    await store.jobs.create(job('j2', 'q'));
    assert.deepEqual(
      (await store.jobs.list({ project: 'q' })).map((j) => j.id),
      ['j2'],
    );
  });
}

/** Decisions, and log entries appended at consecutive indices. */
function decisionAndLogEntryCases(store: Store): void {
  it('records decisions and counts them by outcome', async () => {
    await store.decisions.create({
      id: 'd1',
      jobId: 'j1',
      project: 'p',
      outcome: 'deny',
      policyDigest: 'ab'.repeat(32),
      subjects: [{ name: 'a', sha256: 'cd'.repeat(32) }],
      reasons: [{ rule: 'r', message: 'm', vulnId: 'GHSA-x' }],
      createdAt: new Date().toISOString(),
      logIndex: 0,
    });
    const got = await store.decisions.get('d1');
    assert.equal(got?.outcome, 'deny');
    assert.equal(got?.reasons[0]?.vulnId, 'GHSA-x');
    assert.deepEqual(await store.decisions.countByOutcome(), { deny: 1 });
    assert.equal((await store.decisions.list({ jobId: 'j1' })).length, 1);
  });

  it('stores a decision and its kept SBOM together, or neither when the decision is refused', async () => {
    const decision = {
      id: 'd-kept',
      jobId: 'j-kept',
      project: 'p',
      outcome: 'allow' as const,
      policyDigest: 'ab'.repeat(32),
      subjects: [{ name: 'a', sha256: 'cd'.repeat(32) }],
      reasons: [],
      createdAt: new Date().toISOString(),
      logIndex: 7,
    };
    const sbom = (decisionId: string) => ({
      decisionId,
      project: 'p',
      components: '[{"purl":"pkg:npm/x@1"}]',
      subjects: decision.subjects,
      createdAt: decision.createdAt,
    });
    await store.decisions.create(decision, { artifactSbom: sbom('d-kept') });
    assert.equal((await store.decisions.get('d-kept'))?.logIndex, 7);
    const kept = (await store.policies.artifactSboms()).filter((s) => s.decisionId === 'd-kept');
    assert.deepEqual(kept, [sbom('d-kept')]);
    // The same decision again, with an SBOM under another decision ID: refused as a whole, so the
    // second SBOM is not kept either.
    await assert.rejects(store.decisions.create(decision, { artifactSbom: sbom('d-kept-again') }), {
      code: 'CONFLICT',
    });
    const after = (await store.policies.artifactSboms()).filter((s) => s.decisionId === 'd-kept-again');
    assert.deepEqual(after, []);
  });

  it('appends log entries at consecutive indices and returns them unchanged', async () => {
    const before = await store.log.size();
    const entries = [1, 2, 3].map((n) => ({
      body: new Uint8Array([n, n]),
      leafHash: new Uint8Array(32).fill(n),
      integratedTime: 1700000000 + n,
    }));
    const indices = await store.log.append(before, entries, []);
    assert.deepEqual(indices, [before, before + 1, before + 2]);
    assert.equal(await store.log.size(), before + 3);
    const e = await store.log.get(before + 1);
    assert.deepEqual(e?.body, new Uint8Array([2, 2]));
    assert.equal(e?.integratedTime, 1700000002);
    const hashes = await store.log.leafHashes(before, before + 3);
    assert.deepEqual(
      hashes.map((h) => h[0]),
      [1, 2, 3],
    );
    assert.equal(await store.log.get(before + 3), undefined);
  });
}

/** Log node hashes kept as handed and read back by coordinates. */
function logNodeCases(store: Store): void {
  it('keeps the node hashes it is handed and reads them back by their coordinates', async () => {
    const size = await store.log.size();
    // Fill up to a multiple of 4 so that the next four leaves form one level-2 subtree.
    const pad = (4 - (size % 4)) % 4;
    const mk = (n: number) => ({
      body: new Uint8Array([n]),
      leafHash: new Uint8Array(32).fill(n),
      integratedTime: 1,
    });
    const base = (size + pad) / 4;
    // The store knows no Merkle arithmetic: any hashes at any coordinates are kept as handed.
    const nodes = [
      { level: 1, index: 2 * base, hash: new Uint8Array(32).fill(201) },
      { level: 1, index: 2 * base + 1, hash: new Uint8Array(32).fill(202) },
      { level: 2, index: base, hash: new Uint8Array(32).fill(203) },
    ];
    const counted = await store.log.nodeCount();
    await store.log.append(
      size,
      Array.from({ length: pad + 4 }, (_, i) => mk(10 + i)),
      nodes,
    );
    const [leaf, level2, level1] = await store.log.subtreeHashes([
      { level: 0, index: size + pad },
      { level: 2, index: base },
      { level: 1, index: 2 * base + 1 },
    ]);
    assert.deepEqual(leaf, new Uint8Array(32).fill(10 + pad));
    assert.equal(level2?.length, 32);
    assert.deepEqual(level2, nodes[2]?.hash);
    assert.deepEqual(level1, nodes[1]?.hash);
    assert.equal(await store.log.nodeCount(), counted + 3);
    await assert.rejects(store.log.subtreeHashes([{ level: 3, index: base + 1 }]), { code: 'NOT_FOUND' });
  });
}

/** Appends refused out of turn, nodes added outside appends, and rollback of a failed transaction. */
function logAppendCases(store: Store): void {
  it('refuses an append that does not start at the current size, and writes none of it', async () => {
    const size = await store.log.size();
    const counted = await store.log.nodeCount();
    const entry = { body: new Uint8Array([7]), leafHash: new Uint8Array(32).fill(7), integratedTime: 1 };
    const node = { level: 5, index: 1000, hash: new Uint8Array(32).fill(7) };
    for (const start of [size - 1, size + 1]) {
      await assert.rejects(store.log.append(start, [entry], [node]), (e) => isGatehouseError(e, 'CONFLICT'));
    }
    assert.equal(await store.log.size(), size);
    assert.equal(await store.log.nodeCount(), counted);
    await assert.rejects(store.log.subtreeHashes([node]), { code: 'NOT_FOUND' });
  });

  it('adds nodes outside an append, keeping the first hash at each coordinate', async () => {
    const counted = await store.log.nodeCount();
    const at = { level: 7, index: 1_000_000 };
    await store.log.addNodes([{ ...at, hash: new Uint8Array(32).fill(1) }]);
    await store.log.addNodes([
      { ...at, hash: new Uint8Array(32).fill(2) },
      { level: 7, index: 1_000_001, hash: new Uint8Array(32).fill(3) },
    ]);
    assert.deepEqual(await store.log.subtreeHashes([at]), [new Uint8Array(32).fill(1)]);
    assert.equal(await store.log.nodeCount(), counted + 2);
  });

  it('rolls back every write of a failed transaction', async () => {
    const size = await store.log.size();
    await assert.rejects(
      store.transaction(async () => {
        await store.log.append(
          size,
          [{ body: new Uint8Array([9]), leafHash: new Uint8Array(32), integratedTime: 1 }],
          [{ level: 9, index: 0, hash: new Uint8Array(32) }],
        );
        await store.jobs.create(job('j-tx'));
        throw new Error('boom');
      }),
      /boom/,
    );
    assert.equal(await store.log.size(), size);
    await assert.rejects(store.log.subtreeHashes([{ level: 9, index: 0 }]), { code: 'NOT_FOUND' });
    assert.equal(await store.jobs.get('j-tx'), undefined);
  });
}

/** Vulnerability records, their generation, and revoked token ids. */
function vulnAndTokenCases(store: Store): void {
  it('stores vulnerability records and finds them by package, leaving out withdrawn ones', async () => {
    const rec = (id: string, withdrawn: string | null): VulnRecord => ({
      id,
      modified: '2024-01-01T00:00:00Z',
      withdrawn,
      aliases: [`CVE-${id}`],
      json: JSON.stringify({ id }),
      packages: [{ ecosystem: 'npm', name: 'minimist' }],
    });
    await store.vulns.upsert([rec('A', null), rec('B', '2024-02-01T00:00:00Z')]);
    assert.deepEqual(
      (await store.vulns.findByPackage('npm', 'minimist')).map((v) => v.id),
      ['A'],
    );
    assert.equal(await store.vulns.count(), 2);
    assert.equal((await store.vulns.modifiedIndex()).get('B'), '2024-01-01T00:00:00Z');
    await store.vulns.upsert([{ ...rec('A', null), modified: '2025-01-01T00:00:00Z', packages: [] }]);
    assert.equal((await store.vulns.get('A'))?.modified, '2025-01-01T00:00:00Z');
    assert.deepEqual(await store.vulns.findByPackage('npm', 'minimist'), []);
  });

  it('moves the vulnerability generation on every write and only then', async () => {
    const before = await store.vulns.generation();
    assert.equal(await store.vulns.generation(), before);
    await store.vulns.upsert([
      {
        id: 'GEN-1',
        modified: '2024-01-01T00:00:00Z',
        withdrawn: null,
        aliases: [],
        json: JSON.stringify({ id: 'GEN-1' }),
        packages: [{ ecosystem: 'npm', name: 'gen' }],
      },
    ]);
    const after = await store.vulns.generation();
    assert.notEqual(after, before);
    await store.vulns.count();
    await store.vulns.findByPackage('npm', 'gen');
    assert.equal(await store.vulns.generation(), after);
  });

  it('remembers revoked token ids', async () => {
    assert.equal(await store.tokens.isRevoked('t1'), false);
    await store.tokens.revoke('t1', Math.floor(Date.now() / 1000) + 300);
    await store.tokens.revoke('t1', Math.floor(Date.now() / 1000) + 300);
    assert.equal(await store.tokens.isRevoked('t1'), true);
  });
}

/** Source protections, reviews and trusted signers. */
function sourceCases(store: Store): void {
  it('keeps source protections, replacing one per repository and ref', async () => {
    const rule = reviewedAndSigned();
    const at = new Date().toISOString();
    await store.source.protect({ repository: 'file:///r', ref: 'refs/heads/main', rule, createdAt: at });
    await store.source.protect({
      repository: 'file:///r',
      ref: 'refs/heads/main',
      rule: { ...rule, minApprovals: 2 },
      createdAt: at,
    });
    const got = await store.source.protections('file:///r');
    assert.equal(got.length, 1);
    assert.equal(got[0]?.rule.minApprovals, 2);
    assert.equal(await store.source.unprotect('file:///r', 'refs/heads/main'), true);
    assert.equal(await store.source.unprotect('file:///r', 'refs/heads/main'), false);
  });

  it('keeps reviews once and trusted signers per scope', async () => {
    const review = {
      id: 'ab'.repeat(32),
      repository: 'file:///r',
      commit: 'cd'.repeat(20),
      reviewer: 'a@example.com',
      record: '{}',
      signature: 'sig',
      createdAt: new Date().toISOString(),
    };
    await store.source.addReview(review);
    await assert.rejects(store.source.addReview(review), (e) => isGatehouseError(e, 'CONFLICT'));
    assert.deepEqual(await store.source.reviews('file:///r'), [review]);
    const signer = {
      id: 'SHA256:k',
      principal: 'a@example.com',
      format: 'ssh' as const,
      publicKey: 'ssh-ed25519 AAAA',
      createdAt: review.createdAt,
    };
    await store.source.addSigner(signer);
    await store.source.addSigner({ ...signer, repository: 'file:///only' });
    await assert.rejects(store.source.addSigner(signer), (e) => isGatehouseError(e, 'CONFLICT'));
    assert.equal((await store.source.signers('file:///r')).length, 1);
    assert.equal((await store.source.signers('file:///only')).length, 2);
    assert.equal(await store.source.removeSigner('SHA256:k', 'file:///only'), true);
    assert.equal((await store.source.signers()).length, 1);
  });
}

/** Accepted ref heads, and policy versions with project bindings. */
function refHeadAndPolicyVersionCases(store: Store): void {
  it('remembers accepted ref heads and rewrites', async () => {
    const at = new Date().toISOString();
    await store.source.setRefHead({
      repository: 'file:///r',
      ref: 'refs/heads/main',
      head: 'a',
      seenAt: at,
    });
    await store.source.setRefHead({
      repository: 'file:///r',
      ref: 'refs/heads/main',
      head: 'a',
      seenAt: at,
      rewrittenTo: 'b',
      rewrittenAt: at,
    });
    const got = await store.source.refHead('file:///r', 'refs/heads/main');
    assert.equal(got?.head, 'a');
    assert.equal(got?.rewrittenTo, 'b');
    assert.equal(await store.source.refHead('file:///r', 'refs/heads/other'), undefined);
  });

  it('keeps policy versions in order and refuses a version out of turn', async () => {
    const v = (version: number) => ({
      name: 'contract',
      version,
      digest: `d${version}`,
      text: `t${version}`,
      signature: 's',
      keyId: 'k',
      publishedAt: new Date().toISOString(),
    });
    await store.policies.publish(v(1));
    await store.policies.publish(v(2));
    await assert.rejects(store.policies.publish(v(2)), (e) => isGatehouseError(e, 'CONFLICT'));
    await assert.rejects(store.policies.publish(v(4)), (e) => isGatehouseError(e, 'CONFLICT'));
    assert.equal((await store.policies.latest('contract'))?.version, 2);
    assert.equal((await store.policies.get('contract', 1))?.text, 't1');
    const versions = (await store.policies.history('contract')).map((r) => r.version);
    assert.deepEqual(versions, [2, 1]);
    assert.ok((await store.policies.names()).includes('contract'));
    await store.policies.bindProject('p', 'contract');
    await store.policies.bindProject('p', 'other');
    assert.equal(await store.policies.projectPolicy('p'), 'other');
    assert.equal(await store.policies.projectPolicy('q'), undefined);
  });
}

/** Triage, re-evaluations, promoted SBOMs and VEX documents. */
function triageCases(store: Store): void {
  it('records one triage per decision, re-evaluations, promoted SBOMs and VEX documents', async () => {
    const t = {
      id: 'tri-1',
      decisionId: 'dec-contract',
      project: 'p',
      action: 'reject' as const,
      reason: 'r',
      actor: 'k',
      createdAt: new Date().toISOString(),
      logIndex: 3,
    };
    await store.policies.addTriage(t);
    const again = store.policies.addTriage({ ...t, id: 'tri-2' });
    await assert.rejects(again, (e) => isGatehouseError(e, 'CONFLICT'));
    assert.deepEqual(await store.policies.triageOf('dec-contract'), t);
    const rev = {
      id: 'rev-1',
      decisionId: 'dec-contract',
      project: 'p',
      outcome: 'deny' as const,
      policyDigest: 'd',
      reasons: [{ rule: 'r', message: 'm', vulnId: 'V' }],
      revoked: true,
      createdAt: new Date().toISOString(),
      detectionMs: 12.5,
    };
    await store.policies.addReevaluation(rev);
    assert.deepEqual(await store.policies.listReevaluations(), [rev]);
    const sbom = {
      decisionId: 'dec-contract',
      project: 'p',
      components: '[]',
      subjects: [{ name: 'a', sha256: 'b' }],
      createdAt: rev.createdAt,
    };
    await store.policies.keepArtifactSbom(sbom);
    assert.deepEqual(
      (await store.policies.artifactSboms()).filter((s) => s.decisionId === sbom.decisionId),
      [sbom],
    );
    await store.policies.addVex({ id: 'v', json: '{}', createdAt: rev.createdAt });
    await store.policies.addVex({ id: 'v', json: '{"a":1}', createdAt: rev.createdAt });
    const docs = (await store.policies.vexDocuments()).map((d) => d.json);
    assert.deepEqual(docs, ['{"a":1}']);
  });
}

/** Held builds and revocations, loading every vulnerability record, and reference-value bundles. */
function heldBuildAndReferenceValueCases(store: Store): void {
  it('holds refused builds for release and keeps revocations permanent and unique', async () => {
    const held = {
      decisionId: 'dec-held',
      project: 'p',
      facts: '{"a":1}',
      createdAt: new Date().toISOString(),
    };
    await store.policies.holdBuild(held);
    await store.policies.holdBuild({ ...held, facts: '{"a":2}' });
    assert.deepEqual(await store.policies.heldBuild('dec-held'), held, 'the first facts stay');
    assert.equal(await store.policies.heldBuild('dec-none'), undefined);
    const rev = {
      digest: `sha256:${'a'.repeat(64)}`,
      reason: 'r',
      actor: 'k',
      revokedAt: held.createdAt,
      logIndex: 7,
    };
    await store.policies.addRevocation(rev);
    await assert.rejects(store.policies.addRevocation({ ...rev, reason: 'again' }), (e) =>
      isGatehouseError(e, 'CONFLICT'),
    );
    assert.deepEqual(await store.policies.revocations(), [rev]);
  });

  it('returns every vulnerability record for loading into memory', async () => {
    const all = await store.vulns.all();
    assert.equal(all.length, await store.vulns.count());
  });

  it('publishes reference-value bundles only as the next version, and keeps their history', async () => {
    const bundle = (version: number) => ({
      version,
      digest: `d${version}`,
      payload: `{"version":${version}}`,
      signature: 'c2ln',
      keyId: 'k'.repeat(64),
      publishedAt: `2025-01-01T00:00:0${version}.000Z`,
    });
    assert.equal(await store.attestation.latestReferenceValues(), undefined);
    await assert.rejects(store.attestation.publishReferenceValues(bundle(2)), (e) =>
      isGatehouseError(e, 'CONFLICT'),
    );
    await store.attestation.publishReferenceValues(bundle(1));
    await store.attestation.publishReferenceValues(bundle(2));
    await assert.rejects(store.attestation.publishReferenceValues({ ...bundle(2), digest: 'x' }), (e) =>
      isGatehouseError(e, 'CONFLICT'),
    );
    assert.deepEqual(await store.attestation.latestReferenceValues(), bundle(2));
    assert.equal((await store.attestation.getReferenceValues(1))?.digest, 'd1');
    assert.equal(await store.attestation.getReferenceValues(3), undefined);
    assert.deepEqual(
      (await store.attestation.referenceValueHistory()).map((b) => b.version),
      [2, 1],
    );
  });
}

/** Attestation refusals. */
function refusalCases(store: Store): void {
  it('records attestation refusals with their failed checks, newest first', async () => {
    const failedChecks = [{ check: 'QUOTE_SIGNATURE', message: 'does not verify' }];
    await store.attestation.addRefusal({
      id: 'r1',
      stage: 'challenge',
      failedChecks,
      createdAt: '2025-01-01T00:00:00.000Z',
    });
    await store.attestation.addRefusal({
      id: 'r2',
      stage: 'evidence',
      jobId: 'job-1',
      failedChecks,
      createdAt: '2025-01-01T00:00:01.000Z',
    });
    const all = await store.attestation.listRefusals();
    assert.deepEqual(
      all.map((r) => r.id),
      ['r2', 'r1'],
    );
    assert.deepEqual(all[0]?.failedChecks, failedChecks);
    assert.equal(all[1]?.jobId, undefined);
    assert.deepEqual(
      (await store.attestation.listRefusals({ jobId: 'job-1' })).map((r) => r.id),
      ['r2'],
    );
  });
}

/** The security role's acts: exactly-next versions, the latest of each name, history. */
function securityActCases(store: Store): void {
  it('records security acts only as the next version of their name', async () => {
    const act = (name: string, version: number) => ({
      kind: 'project',
      name,
      version,
      content: `{"v":${version}}`,
      signature: 'c2ln',
      keyId: 'k',
      createdAt: new Date().toISOString(),
    });
    await assert.rejects(store.acts.append(act('a', 2)), (e) => isGatehouseError(e, 'CONFLICT'));
    await store.acts.append(act('a', 1));
    await store.acts.append(act('a', 2));
    await store.acts.append(act('b', 1));
    await assert.rejects(store.acts.append({ ...act('a', 2), content: '{}' }), (e) =>
      isGatehouseError(e, 'CONFLICT'),
    );
    assert.equal((await store.acts.latest('project', 'a'))?.content, '{"v":2}');
    assert.equal(await store.acts.latest('host', 'a'), undefined);
    assert.deepEqual(
      (await store.acts.listLatest('project')).map((a) => `${a.name}@${a.version}`),
      ['a@2', 'b@1'],
    );
    assert.deepEqual(
      (await store.acts.history('project', 'a')).map((a) => a.version),
      [2, 1],
    );
  });
}

/** What several instances share: single-use ids, job versions, challenges, AK counters, the sequencer. */
function sharedStateCases(store: Store): void {
  it('accepts a single-use id once', async () => {
    const exp = Math.floor(Date.now() / 1000) + 300;
    assert.equal(await store.tokens.useOnce('proof:once', exp), true);
    assert.equal(await store.tokens.useOnce('proof:once', exp), false);
    assert.equal(await store.tokens.isRevoked('proof:once'), true);
    const raced = await Promise.all(Array.from({ length: 8 }, () => store.tokens.useOnce('proof:race', exp)));
    assert.equal(raced.filter((x) => x).length, 1);
  });

  it('changes a job only from the version the writer read', async () => {
    await store.jobs.create(job('j-cas'));
    const read = await store.jobs.get('j-cas');
    assert.ok(read !== undefined);
    const first = await store.jobs.update('j-cas', { state: 'running' }, { expect: read });
    assert.ok(first.updatedAt > read.updatedAt, 'updatedAt moves forward');
    await assert.rejects(store.jobs.update('j-cas', { state: 'failed' }, { expect: read }), (e) =>
      isGatehouseError(e, 'CONFLICT'),
    );
    assert.equal((await store.jobs.get('j-cas'))?.state, 'running');
    const second = await store.jobs.update('j-cas', { state: 'submitted' }, { expect: first });
    assert.equal(second.state, 'submitted');
    assert.deepEqual(
      (await store.jobs.listUnfinished()).map((j) => j.id),
      ['j2', 'j-cas'],
      'unfinished jobs, oldest change first',
    );
  });

  it('claims a job for one host only', async () => {
    await store.jobs.create(job('j-claim'));
    const results = await Promise.allSettled(['h1', 'h2', 'h3'].map((h) => store.jobs.claim('j-claim', h)));
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    for (const r of results)
      if (r.status === 'rejected') assert.ok(isGatehouseError(r.reason, 'CONFLICT'), String(r.reason));
    await assert.rejects(store.jobs.claim('j-none', 'h1'), (e) => isGatehouseError(e, 'NOT_FOUND'));
  });

  it('hands an attestation session out once, and tells a replay from an unknown session', async () => {
    const session = {
      id: 'session-contract-1',
      jobId: 'j1',
      state: '{"nonce":"bm9uY2U="}',
      expiresAt: Date.now() + 60_000,
      createdAt: new Date().toISOString(),
    };
    await store.attestation.openSession(session, 100);
    const taken = await Promise.all([1, 2, 3].map(() => store.attestation.takeSession(session.id)));
    assert.deepEqual(taken.map((t) => t.status).sort(), ['spent', 'spent', 'taken']);
    assert.deepEqual(
      taken.find((t) => t.status === 'taken'),
      { status: 'taken', session },
    );
    assert.deepEqual(await store.attestation.takeSession('session-never'), { status: 'unknown' });
  });

  it('keeps at most the bound of open sessions, dropping the oldest, and forgets expired ones', async () => {
    const now = Date.now();
    const open = (id: string, expiresAt: number) =>
      store.attestation.openSession({ id, state: '{}', expiresAt, createdAt: new Date().toISOString() }, 2);
    await open('old-expired', now - 120_000);
    await open('s-a', now + 10_000);
    await open('s-b', now + 20_000);
    await open('s-c', now + 30_000);
    assert.equal((await store.attestation.takeSession('old-expired')).status, 'unknown');
    assert.equal((await store.attestation.takeSession('s-a')).status, 'unknown');
    assert.equal((await store.attestation.takeSession('s-b')).status, 'taken');
    assert.equal((await store.attestation.takeSession('s-c')).status, 'taken');
  });

  it('keeps AK counters that never go back', async () => {
    assert.equal(await store.attestation.akCounters('ak1'), undefined);
    await store.attestation.putAkCounters('ak1', { resetCount: 3, restartCount: 5 });
    await store.attestation.putAkCounters('ak1', { resetCount: 3, restartCount: 4 });
    await store.attestation.putAkCounters('ak1', { resetCount: 2, restartCount: 9 });
    assert.deepEqual(await store.attestation.akCounters('ak1'), { resetCount: 3, restartCount: 5 });
    await store.attestation.putAkCounters('ak1', { resetCount: 4, restartCount: 0 });
    assert.deepEqual(await store.attestation.akCounters('ak1'), { resetCount: 4, restartCount: 0 });
  });

  it("keeps each host's last boot-state appraisal, replacing the one before", async () => {
    assert.equal(await store.attestation.hostAttestation('h1'), undefined);
    const pcrs = { '0': 'a'.repeat(64), '7': 'b'.repeat(64) };
    await store.attestation.putHostAttestation({
      host: 'h1',
      enrollmentVersion: 1,
      status: 'trusted',
      quotedAt: 1000,
      pcrs,
    });
    assert.deepEqual(await store.attestation.hostAttestation('h1'), {
      host: 'h1',
      enrollmentVersion: 1,
      status: 'trusted',
      quotedAt: 1000,
      pcrs,
    });
    await store.attestation.putHostAttestation({
      host: 'h1',
      enrollmentVersion: 1,
      status: 'quarantined',
      quotedAt: 2000,
      reason: 'HOST_BOOT_STATE: PCR 0',
      pcrs,
    });
    const got = await store.attestation.hostAttestation('h1');
    assert.equal(got?.status, 'quarantined');
    assert.equal(got?.reason, 'HOST_BOOT_STATE: PCR 0');
    assert.equal(got?.quotedAt, 2000);
    assert.equal(await store.attestation.hostAttestation('h2'), undefined);
  });

  it('runs one log sequencer at a time, whose appends are never overtaken', async () => {
    const order: string[] = [];
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    const sequenced = (name: string) =>
      store.log.sequence(async () => {
        order.push(`${name}+`);
        const size = await store.log.size();
        await sleep(20);
        const [index] = await store.log.append(
          size,
          [{ body: new Uint8Array([1]), leafHash: new Uint8Array(32).fill(42), integratedTime: 1 }],
          [],
        );
        order.push(`${name}-`);
        return index;
      });
    const before = await store.log.size();
    const indices = await Promise.all(['a', 'b', 'c'].map(sequenced));
    assert.deepEqual(
      [...indices].sort((x, y) => (x ?? 0) - (y ?? 0)),
      [before, before + 1, before + 2],
    );
    // No sequencer started while another was running.
    for (let i = 0; i < order.length; i += 2) assert.equal(order[i]?.[0], order[i + 1]?.[0]);
    await assert.rejects(
      store.log.sequence(async () => {
        throw new Error('sequencer failed');
      }),
      /sequencer failed/,
    );
    assert.equal(await store.log.size(), before + 3);
  });
}

/** CT log shards and issuers, witness cosignatures, and a witness's state (migration 13). */
function transparencyWitnessCases(store: Store): void {
  it('keeps each CT shard its own tree, apart from the transparency log, and issuers once', async () => {
    const logSize = await store.log.size();
    const a = store.ct.shard('aa');
    const b = store.ct.shard('bb');
    const entry = (n: number) => ({
      body: new Uint8Array([n]),
      leafHash: new Uint8Array(32).fill(n),
      integratedTime: n,
    });
    assert.deepEqual(
      await a.append(0, [entry(1), entry(2)], [{ level: 1, index: 0, hash: new Uint8Array(32).fill(9) }]),
      [0, 1],
    );
    assert.deepEqual(await b.append(0, [entry(3)], []), [0]);
    assert.equal(await a.size(), 2);
    assert.equal(await b.size(), 1);
    assert.equal(await a.nodeCount(), 1);
    assert.equal(await b.nodeCount(), 0);
    assert.deepEqual((await b.get(0))?.body, new Uint8Array([3]));
    assert.deepEqual((await a.subtreeHashes([{ level: 1, index: 0 }]))[0]?.[0], 9);
    await assert.rejects(b.subtreeHashes([{ level: 1, index: 0 }]), { code: 'NOT_FOUND' });
    await assert.rejects(a.append(1, [entry(4)], []), { code: 'CONFLICT' });
    assert.equal(await store.log.size(), logSize);
    await store.ct.addIssuer('ab'.repeat(32), new Uint8Array([1, 2]));
    await store.ct.addIssuer('ab'.repeat(32), new Uint8Array([3]));
    assert.deepEqual(await store.ct.issuer('ab'.repeat(32)), new Uint8Array([1, 2]));
    assert.equal(await store.ct.issuer('cd'.repeat(32)), undefined);
  });

  it('keeps witness cosignatures by tree size and key, the first of each', async () => {
    const c = (treeSize: number, keyName: string, line: string) => ({
      treeSize,
      rootHash: new Uint8Array(32).fill(treeSize),
      keyName,
      keyId: new Uint8Array([1, 2, 3, 4]),
      timestamp: 1_700_000_000,
      line,
    });
    await store.cosignatures.add(c(5, 'w1', 'first'));
    await store.cosignatures.add(c(5, 'w1', 'second'));
    await store.cosignatures.add(c(5, 'w2', 'other'));
    await store.cosignatures.add(c(7, 'w1', 'later'));
    const five = await store.cosignatures.forTreeSize(5);
    assert.deepEqual(
      five.map((r) => [r.keyName, r.line]),
      [
        ['w1', 'first'],
        ['w2', 'other'],
      ],
    );
    assert.deepEqual(await store.cosignatures.forTreeSize(6), []);
    const latest = await store.cosignatures.latestByKey();
    assert.equal(latest.get('w1+01020304'), 7);
    assert.equal(latest.get('w2+01020304'), 5);
  });

  it('moves a witness state only from the size it holds', async () => {
    const rec = (treeSize: number) => ({
      origin: 'log.test/log',
      treeSize,
      rootHash: new Uint8Array(32).fill(treeSize),
      checkpoint: `cp ${treeSize}`,
      updatedAt: new Date().toISOString(),
    });
    assert.equal(await store.witness.get('log.test/log'), undefined);
    await assert.rejects(store.witness.advance(3, rec(4)), { code: 'CONFLICT' });
    await store.witness.advance(0, rec(4));
    await assert.rejects(store.witness.advance(0, rec(6)), { code: 'CONFLICT' });
    await store.witness.advance(4, rec(6));
    const got = await store.witness.get('log.test/log');
    assert.equal(got?.treeSize, 6);
    assert.equal(got?.checkpoint, 'cp 6');
  });
}

/** Build logs: kept once per job, byte for byte, never changed. */
function buildLogCases(store: Store): void {
  it('keeps a build log byte for byte, once per job, and its summary without the content', async () => {
    // Bytes a build may write that are not text: a NUL, an invalid UTF-8 sequence, a CR.
    const content = Buffer.concat([
      Buffer.from('line one\r\n'),
      Buffer.from([0, 0xff, 0xfe]),
      Buffer.from('\n'),
    ]);
    const record = {
      jobId: 'log-job',
      content: new Uint8Array(content),
      sha256: createHash('sha256').update(content).digest('hex'),
      size: content.length,
      truncated: true,
      createdAt: new Date().toISOString(),
    };
    assert.equal(await store.jobs.getLog('log-job'), undefined);
    assert.equal(await store.jobs.logSummary('log-job'), undefined);
    await store.jobs.putLog(record);
    const got = await store.jobs.getLog('log-job');
    assert.deepEqual(got && { ...got, content: Buffer.from(got.content) }, { ...record, content });
    const { content: _c, ...summary } = record;
    assert.deepEqual(await store.jobs.logSummary('log-job'), summary);
    // A second log for the job (a rewrite of what the provenance names) is refused; the first stays.
    await assert.rejects(
      store.jobs.putLog({ ...record, content: new Uint8Array([1]), sha256: '0'.repeat(64), size: 1 }),
      (e) => isGatehouseError(e, 'CONFLICT'),
    );
    assert.equal((await store.jobs.logSummary('log-job'))?.sha256, record.sha256);
  });
}

/** The alerts outbox: enqueue once per event and endpoint, claim due rows once, keep dead letters. */
export function describeAlertStoreContract(name: string, makeStore: () => Promise<Store>): void {
  describe(`${name} alert store contract`, () => {
    let store: Store;
    before(async () => {
      store = await makeStore();
    });
    after(async () => {
      await store.close();
    });
    const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();
    const delivery = (id: string, eventId: string, endpoint: string) => ({
      id,
      eventId,
      endpoint,
      type: 'dev.gatehouse.decision.denied',
      event: `{"id":"${eventId}"}`,
      state: 'pending' as const,
      attempts: 0,
      nextAttemptAt: at(0),
      createdAt: at(0),
      updatedAt: at(0),
    });

    it('records one delivery per event and endpoint', async () => {
      await store.alerts.enqueue([delivery('d1', 'e1', 'soc'), delivery('d2', 'e1', 'chat')]);
      await store.alerts.enqueue([delivery('d3', 'e1', 'soc')]);
      const all = await store.alerts.list({ limit: 10 });
      assert.deepEqual(all.map((d) => d.id).sort(), ['d1', 'd2']);
      assert.equal((await store.alerts.get('d1'))?.event, '{"id":"e1"}');
      assert.equal(await store.alerts.get('d3'), undefined);
    });

    it('leases a due delivery to one claimer until the lease ends', async () => {
      const first = await store.alerts.claimDue(at(1), at(30), 10);
      assert.deepEqual(first.map((d) => d.id).sort(), ['d1', 'd2']);
      assert.deepEqual(
        await store.alerts.claimDue(at(2), at(30), 10),
        [],
        'leased rows are not claimed twice',
      );
      const after = await store.alerts.claimDue(at(31), at(60), 1);
      assert.equal(after.length, 1, 'a lease that ran out is claimed again, up to the limit');
    });

    it('keeps dead letters to list by state, with the last error', async () => {
      await store.alerts.settle('d1', {
        state: 'dead',
        attempts: 5,
        nextAttemptAt: at(40),
        updatedAt: at(40),
        lastError: 'HTTP 500',
      });
      await store.alerts.settle('d2', {
        state: 'delivered',
        attempts: 1,
        nextAttemptAt: at(40),
        updatedAt: at(40),
      });
      const dead = await store.alerts.list({ state: 'dead', limit: 10 });
      assert.deepEqual(
        dead.map((d) => [d.id, d.attempts, d.lastError]),
        [['d1', 5, 'HTTP 500']],
      );
      assert.deepEqual(
        await store.alerts.claimDue(at(100), at(130), 10),
        [],
        'settled rows are never claimed',
      );
      assert.equal((await store.alerts.get('d2'))?.lastError, undefined);
    });
  });
}
