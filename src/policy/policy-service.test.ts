import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it } from 'node:test';
import { isGatehouseError } from '../common/errors.ts';
import { DEFAULT_POLICY } from '../home/default-policy.ts';
import { EphemeralSigner } from '../signing/file-key-signer.ts';
import { keyIdOf, signSecurityAct, type TrustedKey } from '../signing/security-act.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import { PolicyService, policyAct } from './policy-service.ts';

const security = EphemeralSigner.generate();
const intruder = EphemeralSigner.generate();
const trusted: TrustedKey[] = [
  { keyId: keyIdOf(security.publicKeySpki()), publicKeyPem: security.publicKeyPem() },
];
const signPolicy = (text: string, version: number, signer = security, name = 'default') =>
  signSecurityAct(policyAct(name, version, text), signer);
const project = (name: string, version: number, policy: string) => ({
  kind: 'project' as const,
  name,
  version,
  content: { source: { kind: 'unverified-directory' }, policy, pools: ['local'] },
});

describe('central signed policies', () => {
  let dir: string;
  let path: string;
  let store: SqliteStore;
  let service: PolicyService;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gatehouse-policies-'));
    path = join(dir, 'db.sqlite');
    store = SqliteStore.open(path);
    service = new PolicyService({ store, trustedKeys: trusted });
    await service.publish(DEFAULT_POLICY, 1, await signPolicy(DEFAULT_POLICY, 1));
  });
  after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('publishes versions in order, each with its digest and signer', async () => {
    const text = DEFAULT_POLICY.replace('maxSeverity: medium', 'maxSeverity: high');
    const v2 = await service.publish(text, 2, await signPolicy(text, 2));
    assert.equal(v2.version, 2);
    assert.equal(v2.keyId, trusted[0]?.keyId);
    const history = await service.history('default');
    assert.deepEqual(
      history.map((h) => h.version),
      [2, 1],
    );
    assert.notEqual(history[0]?.digest, history[1]?.digest);
    assert.equal((await service.load('default', 1)).record.digest, history[1]?.digest);
  });

  const refusals: [string, () => Promise<unknown>, string, RegExp][] = [
    [
      'an unsigned policy',
      async () => service.publish(DEFAULT_POLICY, 3, { signature: '', keyId: trusted[0]?.keyId ?? '' }),
      'SIGNATURE_INVALID',
      /does not verify/,
    ],
    [
      'a policy signed by an untrusted key',
      async () => service.publish(DEFAULT_POLICY, 3, await signPolicy(DEFAULT_POLICY, 3, intruder)),
      'SIGNATURE_INVALID',
      /not a trusted security key/,
    ],
    [
      'a signature over other text',
      async () => service.publish(`${DEFAULT_POLICY}\n# changed`, 3, await signPolicy(DEFAULT_POLICY, 3)),
      'SIGNATURE_INVALID',
      /does not verify/,
    ],
    [
      'a malformed policy, naming the line',
      async () => {
        const bad = DEFAULT_POLICY.replace('maxSeverity: medium', 'maxSeverity: severe');
        return service.publish(bad, 3, await signPolicy(bad, 3), 'policy.yaml');
      },
      'BAD_POLICY',
      /^line 10: rule 'no-high-or-critical-vulnerabilities' \(rules\[0\]\) field maxSeverity/,
    ],
    [
      'an old version re-posted with its signature (a rollback)',
      async () => service.publish(DEFAULT_POLICY, 1, await signPolicy(DEFAULT_POLICY, 1)),
      'CONFLICT',
      /not the next version|cannot publish version 1/,
    ],
    [
      "an old version's signature claiming the next version",
      async () => service.publish(DEFAULT_POLICY, 3, await signPolicy(DEFAULT_POLICY, 1)),
      'SIGNATURE_INVALID',
      /does not verify/,
    ],
    [
      'a version that skips one',
      async () => service.publish(DEFAULT_POLICY, 5, await signPolicy(DEFAULT_POLICY, 5)),
      'CONFLICT',
      /cannot publish version 5/,
    ],
    [
      "another policy's signature over the same text",
      async () => service.publish(DEFAULT_POLICY, 3, await signPolicy(DEFAULT_POLICY, 3, security, 'strict')),
      'SIGNATURE_INVALID',
      /does not verify/,
    ],
  ];
  for (const [what, act, code, why] of refusals)
    it(`refuses ${what} and keeps the previous version in force`, async () => {
      const before = await service.history('default');
      await assert.rejects(
        act(),
        (e: unknown) => isGatehouseError(e) && e.code === code && why.test(e.message),
      );
      assert.deepEqual(await service.history('default'), before);
    });

  it('holds a project to the policy of its registration, registered only with the security signature', async () => {
    const strict = DEFAULT_POLICY.replace('name: default', 'name: strict');
    await service.publish(strict, 1, await signPolicy(strict, 1, security, 'strict'));
    const act = project('payments', 1, 'strict');
    await assert.rejects(
      service.projects.register('payments', 1, act.content, await signSecurityAct(act, intruder)),
      (e: unknown) => isGatehouseError(e, 'SIGNATURE_INVALID'),
    );
    await service.projects.register('payments', 1, act.content, await signSecurityAct(act, security));
    assert.equal(await service.policyNameOf('payments'), 'strict');
    assert.equal(await service.policyNameOf('other'), 'default');
    const d = await service.engine().evaluate({
      project: 'payments',
      components: [],
      findings: [],
      attestation: {
        verified: true,
        evidenceTypes: ['software-measurement'],
        submods: { image: 'affirming' },
      },
    });
    assert.equal(d.policyDigest, (await service.load('strict')).record.digest);
  });

  it('refuses a replayed project registration: an old signature changes nothing', async () => {
    const v2 = project('payments', 2, 'default');
    await service.projects.register('payments', 2, v2.content, await signSecurityAct(v2, security));
    const v1 = project('payments', 1, 'strict');
    await assert.rejects(
      service.projects.register('payments', 1, v1.content, await signSecurityAct(v1, security)),
      (e: unknown) => isGatehouseError(e, 'CONFLICT'),
    );
    // The version-1 signature presented as version 3 does not verify either.
    await assert.rejects(
      service.projects.register('payments', 3, v1.content, await signSecurityAct(v1, security)),
      (e: unknown) => isGatehouseError(e, 'SIGNATURE_INVALID'),
    );
    assert.equal(await service.policyNameOf('payments'), 'default');
  });

  it('refuses published history to be changed in the database itself', () => {
    const db = new DatabaseSync(path);
    assert.throws(() => db.exec("UPDATE policy_versions SET text = 'x'"), /immutable/);
    assert.throws(() => db.exec('DELETE FROM policy_versions'), /immutable/);
    db.close();
  });

  it('denies everything when the newest version no longer verifies, never falling back', async () => {
    const other = new PolicyService({
      store,
      trustedKeys: [{ keyId: trusted[0]?.keyId ?? '', publicKeyPem: intruder.publicKeyPem() }],
    });
    const d = await other.engine().evaluate({ project: 'x', components: [], findings: [] });
    assert.equal(d.outcome, 'deny');
    assert.match(d.reasons[0]?.message ?? '', /policy default cannot be used .*does not verify/);
  });
});
