import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { SqliteStore } from '../store/sqlite-store.ts';
import { ProvisioningWatch } from './provisioning-watch.ts';

describe('unexpected provisioning', () => {
  const store = SqliteStore.open(':memory:');
  after(() => store.close());
  let now = Date.UTC(2026, 0, 2);
  const watch = new ProvisioningWatch({ jobs: store.jobs, now: () => now });
  let n = 0;
  const jobAt = async (project: string, msAgo: number) => {
    const at = new Date(now - msAgo).toISOString();
    await store.jobs.create({
      id: `j${n++}`,
      project,
      state: 'queued',
      nonce: 'x',
      createdAt: at,
      updatedAt: at,
      steps: [],
    });
  };

  it('stays quiet at a project’s usual pace', async () => {
    // 6 jobs every ten minutes through the day before, and 25 in the last ten minutes.
    for (let w = 1; w < 144; w++)
      for (let i = 0; i < 6; i++) await jobAt('busy', w * 600_000 + 1000 + i * 1000);
    for (let i = 0; i < 25; i++) await jobAt('busy', i * 1000);
    assert.equal(await watch.afterCreate('busy'), undefined);
  });

  it('tells a surge far above the baseline, once per hour', async () => {
    for (let i = 0; i < 25; i++) await jobAt('quiet', i * 1000);
    const e = await watch.afterCreate('quiet');
    assert.equal(e?.type, 'dev.gatehouse.provisioning.surge');
    assert.equal(e?.data.jobsLast10Minutes, 25);
    assert.equal(e?.data.baselinePer10Minutes, 0);
    assert.equal(await watch.afterCreate('quiet'), undefined, 'told once');
    now += 3601_000;
    for (let i = 0; i < 25; i++) await jobAt('quiet', i * 1000);
    assert.equal((await watch.afterCreate('quiet'))?.type, 'dev.gatehouse.provisioning.surge');
  });

  it('tells unenrolled hosts, but cannot be made to flood the channel', () => {
    assert.equal(
      watch.unenrolled('create', "runner host 'rogue' is not enrolled")?.type,
      'dev.gatehouse.runner.unenrolled',
    );
    assert.equal(watch.unenrolled('create', "runner host 'rogue' is not enrolled"), undefined);
    let told = 1;
    for (let i = 0; i < 100; i++)
      if (watch.unenrolled('claim', `runner host 'h${i}' is not enrolled`) !== undefined) told++;
    assert.equal(told, 20);
  });
});
