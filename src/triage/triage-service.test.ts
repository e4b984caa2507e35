import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isGatehouseError } from '../common/errors.ts';
import { DEFAULT_POLICY } from '../home/default-policy.ts';
import { addRevocations, mirrorRevocations } from '../home/revocations-file.ts';
import { PolicyService, policyAct } from '../policy/policy-service.ts';
import { npmPurl } from '../sbom/purl.ts';
import { EphemeralSigner } from '../signing/file-key-signer.ts';
import { keyIdOf, signSecurityAct, type TrustedKey } from '../signing/security-act.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import { decisionEntryBody, TransparencyLog } from '../tlog/transparency-log.ts';
import { importOsv } from '../vuln/import.ts';
import { type TriageEffects, TriageService, triageAct } from './triage-service.ts';

const security = EphemeralSigner.generate();
const intruder = EphemeralSigner.generate();
const trusted: TrustedKey[] = [
  { keyId: keyIdOf(security.publicKeySpki()), publicKeyPem: security.publicKeyPem() },
];
const signPolicy = (text: string, signer = security) =>
  signSecurityAct(policyAct('default', 1, text), signer);
const effects: TriageEffects = {
  release: async () => ({ bundle: {}, sbomBundle: {}, vsaBundle: {}, placement: undefined as never }),
  reject: async () => {},
};

describe('triage and re-evaluation', () => {
  let store: SqliteStore;
  let service: TriageService;
  let log: TransparencyLog;
  let dir: string;
  // The registry and signing side of a release is the gate's (tested end to end in
  // src/cli/commands/triage.test.ts); here it only records what it is handed.
  const released: unknown[] = [];
  const effects: TriageEffects = {
    release: async (_d, held, note) => {
      released.push({ held, note });
      return { bundle: {}, sbomBundle: {}, vsaBundle: {}, placement: undefined as never };
    },
    reject: async () => {},
  };
  const decision = (id: string, outcome: 'allow' | 'deny' | 'quarantine') => ({
    id,
    jobId: `job-${id}`,
    project: 'app',
    outcome,
    policyDigest: 'd',
    subjects: [{ name: 'app.tar', sha256: 'a'.repeat(64) }],
    reasons: [{ rule: 'r', message: 'm' }],
    createdAt: new Date().toISOString(),
    logIndex: 0,
  });
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gatehouse-triage-'));
    store = SqliteStore.open(':memory:');
    log = new TransparencyLog({
      store: store.log,
      signer: EphemeralSigner.generate(),
      origin: 'gatehouse.test/log',
    });
    const policies = new PolicyService({ store, trustedKeys: trusted });
    await policies.publish(DEFAULT_POLICY, 1, await signPolicy(DEFAULT_POLICY));
    service = new TriageService({
      store,
      policies,
      trustedKeys: trusted,
      effects,
      appendDecision: async (doc) => (await log.append(decisionEntryBody(doc))).index,
    });
    await store.decisions.create(decision('dec-q', 'quarantine'));
    await store.decisions.create(decision('dec-a', 'allow'));
  });
  after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const act = {
    decisionId: 'dec-q',
    action: 'release',
    reason: 'false positive, confirmed by the vendor',
  } as const;

  it('lists quarantined artifacts with their reasons', async () => {
    assert.deepEqual(
      (await service.quarantined()).map((d) => [d.id, d.reasons[0]?.message]),
      [['dec-q', 'm']],
    );
  });

  it('refuses a triage act not signed by the security role', async () => {
    await assert.rejects(service.triage(act, await signSecurityAct(triageAct(act), intruder)), (e: unknown) =>
      isGatehouseError(e, 'SIGNATURE_INVALID'),
    );
    const forged = await signSecurityAct(triageAct({ ...act, action: 'reject' }), security);
    await assert.rejects(service.triage(act, forged), (e: unknown) =>
      isGatehouseError(e, 'SIGNATURE_INVALID'),
    );
    assert.equal(await log.size(), 0);
  });

  it('records a release as a logged decision of its own, once', async () => {
    const sig = await signSecurityAct(triageAct(act), security);
    await assert.rejects(
      service.triage(act, sig),
      (e: unknown) => isGatehouseError(e, 'CONFLICT') && /never verified/.test((e as Error).message),
    );
    assert.equal(await log.size(), 0, 'nothing is logged for a release that cannot happen');
    await store.policies.holdBuild({
      decisionId: 'dec-q',
      project: 'p',
      facts: '{"components":[]}',
      createdAt: new Date().toISOString(),
    });
    const r = await service.triage(act, sig);
    assert.equal(released.length, 1);
    assert.deepEqual((released[0] as { note: { logIndex: number } }).note.logIndex, r.logIndex);
    assert.equal(r.action, 'release');
    assert.equal(r.actor, trusted[0]?.keyId);
    const entry = await store.log.get(r.logIndex);
    const body = JSON.parse(Buffer.from(entry?.body ?? []).toString('utf8'));
    assert.equal(body.kind, 'gatehouse-decision');
    assert.equal(body.spec.kind, 'triage');
    assert.equal(body.spec.decisionId, 'dec-q');
    assert.equal(body.spec.outcome, 'allow');
    assert.deepEqual(await service.quarantined(), []);
    await assert.rejects(service.triage(act, sig), (e: unknown) => isGatehouseError(e, 'CONFLICT'));
  });

  it('refuses to triage an allowed artifact or an unknown decision', async () => {
    for (const decisionId of ['dec-a', 'dec-nope']) {
      const a = { ...act, decisionId };
      await assert.rejects(service.triage(a, await signSecurityAct(triageAct(a), security)), (e: unknown) =>
        isGatehouseError(e, 'CONFLICT', 'NOT_FOUND'),
      );
    }
  });

  it('flags a promoted artifact once when a new advisory affects it, timing the detection', async () => {
    await service.keepPromoted(decision('dec-a', 'allow'), [
      {
        name: 'minimist',
        version: '1.2.5',
        purl: npmPurl('minimist', '1.2.5'),
        ecosystem: 'npm',
        hashes: [],
        dependencies: [],
      },
    ]);
    const empty = await service.reevaluate({ importedAt: Date.now() });
    assert.deepEqual([empty.evaluated, empty.flagged.length], [1, 0]);
    await importOsv([new URL('../../examples/advisories', import.meta.url).pathname], store);
    const importedAt = Date.now();
    const r = await service.reevaluate({ importedAt });
    assert.equal(r.flagged.length, 1);
    const f = r.flagged[0];
    assert.equal(f?.decisionId, 'dec-a');
    assert.equal(f?.outcome, 'deny');
    assert.equal(f?.revoked, false);
    assert.equal(f?.reasons[0]?.vulnId, 'GHSA-xvch-5gv4-984h');
    assert.ok((f?.detectionMs ?? -1) >= 0);
    assert.equal((await service.reevaluate({ importedAt })).flagged.length, 0);
    assert.equal((await store.policies.listReevaluations()).length, 1);
  });
});

describe('revocation on re-evaluation', () => {
  it('revokes the subjects of a newly affected artifact when the rule says so, in the revocation list', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-revoke-'));
    const store = SqliteStore.open(':memory:');
    try {
      const policies = new PolicyService({ store, trustedKeys: trusted });
      const text = DEFAULT_POLICY.replace(
        '    maxSeverity: medium\n',
        '    maxSeverity: medium\n    onReevaluation: revoke\n',
      );
      await policies.publish(text, 1, await signPolicy(text));
      const list = join(dir, 'revocations.json');
      const logged: Record<string, unknown>[] = [];
      const service = new TriageService({
        store,
        policies,
        trustedKeys: trusted,
        effects,
        appendDecision: async (doc) => logged.push(doc) - 1,
        onRevoked: (records) => mirrorRevocations(list, records),
      });
      await service.keepPromoted(
        { id: 'dec-r', project: 'app', subjects: [{ name: 'app.tar', sha256: 'b'.repeat(64) }] },
        [
          {
            name: 'minimist',
            version: '1.2.5',
            purl: npmPurl('minimist', '1.2.5'),
            ecosystem: 'npm',
            hashes: [],
            dependencies: [],
          },
        ],
      );
      await importOsv([new URL('../../examples/advisories', import.meta.url).pathname], store);
      const r = await service.reevaluate({ importedAt: Date.now() });
      assert.equal(r.flagged[0]?.revoked, true);
      // The same revoke path as the security role's: a logged `revoke` decision and a record.
      assert.equal(logged.length, 1);
      assert.equal(logged[0]?.kind, 'revoke');
      assert.equal(logged[0]?.actor, 're-evaluation');
      assert.equal(logged[0]?.digest, `sha256:${'b'.repeat(64)}`);
      assert.deepEqual(
        (await service.revocations()).map((x) => [x.digest, x.logIndex]),
        [[`sha256:${'b'.repeat(64)}`, 0]],
      );
      const doc = JSON.parse(readFileSync(list, 'utf8'));
      assert.deepEqual(
        doc.revoked.map((x: { digest: string }) => x.digest),
        [`sha256:${'b'.repeat(64)}`],
      );
      assert.match(doc.revoked[0].reason, /GHSA-xvch-5gv4-984h/);
      assert.equal(await addRevocations(list, ['b'.repeat(64)], 'again'), 0);
      writeFileSync(list, '{"version": 2}');
      await assert.rejects(addRevocations(list, ['c'.repeat(64)], 'x'), (e: unknown) =>
        isGatehouseError(e, 'BAD_INPUT'),
      );
      assert.equal(readFileSync(list, 'utf8'), '{"version": 2}');
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
