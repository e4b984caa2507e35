import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { isGatehouseError } from '../common/errors.ts';
import type { JobRecord, Store, VulnRecord } from './store.ts';

/**
 * The behaviour every Store adapter must show. Run it from each adapter's test file with a
 * factory that returns a fresh, empty, migrated store.
 */
export function describeStoreContract(name: string, makeStore: () => Promise<Store>): void {
  describe(`${name} store contract`, () => {
    let store: Store;
    before(async () => {
      store = await makeStore();
    });
    after(async () => {
      await store.close();
    });

    const job = (id: string, project = 'p'): JobRecord => ({
      id,
      project,
      state: 'queued',
      nonce: 'bm9uY2U=',
      createdAt: new Date().toISOString(),
      updatedAt: new Date().toISOString(),
      steps: [],
    });

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

    it('appends log entries at consecutive indices and returns them unchanged', async () => {
      const before = await store.log.size();
      const entries = [1, 2, 3].map((n) => ({
        body: new Uint8Array([n, n]),
        leafHash: new Uint8Array(32).fill(n),
        integratedTime: 1700000000 + n,
      }));
      const indices = await store.log.append(entries);
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

    it('rolls back every write of a failed transaction', async () => {
      const size = await store.log.size();
      await assert.rejects(
        store.transaction(async () => {
          await store.log.append([
            { body: new Uint8Array([9]), leafHash: new Uint8Array(32), integratedTime: 1 },
          ]);
          await store.jobs.create(job('j-tx'));
          throw new Error('boom');
        }),
        /boom/,
      );
      assert.equal(await store.log.size(), size);
      assert.equal(await store.jobs.get('j-tx'), undefined);
    });

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

    it('remembers revoked token ids', async () => {
      assert.equal(await store.tokens.isRevoked('t1'), false);
      await store.tokens.revoke('t1', Math.floor(Date.now() / 1000) + 300);
      await store.tokens.revoke('t1', Math.floor(Date.now() / 1000) + 300);
      assert.equal(await store.tokens.isRevoked('t1'), true);
    });
  });
}
