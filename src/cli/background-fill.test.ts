/**
 * The vTPM pool is kept filled in the background: a detached filler brings it to the configured
 * target and leaves; one filler at a time (a live holder keeps the lock, a dead one's is taken
 * over); what a killed filler half-made is removed. Real swtpm manufacturing, real processes.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { tempDir } from '../../test/helpers.ts';
import { homeVtpmPool, initHome } from '../home/home.ts';
import { tpmToolsMissing } from '../testing/attestation.ts';
import { fillPoolInBackground, releaseFillLock, takeFillLock } from './background-fill.ts';

describe('background vTPM pool filling', { skip: tpmToolsMissing() }, () => {
  const tmp = tempDir('fill');
  const root = join(tmp.path, 'home');
  const saved = process.env.GATEHOUSE_BACKGROUND_FILL;

  before(async () => {
    await initHome(root, { examples: false });
    const configPath = join(root, 'config.json');
    const config = JSON.parse(readFileSync(configPath, 'utf8'));
    config.runner.vtpmPool = { target: 2 };
    writeFileSync(configPath, JSON.stringify(config, null, 2));
  });
  after(() => {
    if (saved === undefined) delete process.env.GATEHOUSE_BACKGROUND_FILL;
    else process.env.GATEHOUSE_BACKGROUND_FILL = saved;
    tmp.cleanup();
  });

  it('brings the pool to its target in a detached process, and does nothing when it is full', async () => {
    const pooled = await homeVtpmPool(root);
    assert.ok(pooled !== undefined);
    assert.equal(pooled.target, 2);
    // A filler killed while manufacturing left a half-made state under its (dead) pid.
    const ready = join(pooled.pool.dir, 'ready');
    mkdirSync(join(ready, '.mfg-999999999-deadbeef'), { recursive: true });

    process.env.GATEHOUSE_BACKGROUND_FILL = '0';
    assert.equal(await fillPoolInBackground(root), false, 'switched off: no filler');
    process.env.GATEHOUSE_BACKGROUND_FILL = '1';
    assert.equal(await fillPoolInBackground(root), true);
    const deadline = Date.now() + 60_000;
    while ((await pooled.pool.size()) < 2 && Date.now() < deadline) await sleep(200);
    assert.equal(await pooled.pool.size(), 2);
    // The filler stops at the target, leaves nothing half-made and releases its lock.
    while (existsSync(join(pooled.pool.dir, 'fill.lock')) && Date.now() < deadline) await sleep(100);
    assert.deepEqual(
      readdirSync(ready).filter((n) => n.startsWith('.')),
      [],
    );
    assert.equal(await pooled.pool.size(), 2);
    assert.equal(await fillPoolInBackground(root), false, 'a full pool starts no filler');
  });

  it('lets one filler hold the pool and takes the lock over from a dead one', async () => {
    const pooled = await homeVtpmPool(root);
    assert.ok(pooled !== undefined);
    const lock = join(pooled.pool.dir, 'fill.lock');
    const holder = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      writeFileSync(lock, `${holder.pid}\n`);
      assert.equal(takeFillLock(pooled.pool), false, 'a live filler keeps the lock');
    } finally {
      holder.kill('SIGKILL');
      await new Promise((r) => holder.once('exit', r));
    }
    assert.equal(takeFillLock(pooled.pool), true, "a dead filler's lock is taken over");
    assert.equal(readFileSync(lock, 'utf8').trim(), String(process.pid));
    assert.equal(takeFillLock(pooled.pool), false, 'and then held: the same process does not take it twice');
    releaseFillLock(pooled.pool);
    assert.equal(existsSync(lock), false);
  });
});
