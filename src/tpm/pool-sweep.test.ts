import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { VtpmPool } from './swtpm.ts';

const hasSwtpm = spawnSync('swtpm', ['--version']).status === 0;

describe('vTPM pool sweep', { skip: hasSwtpm ? false : 'swtpm is not installed' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-sweep-'));
  let swtpm: ChildProcess | undefined;
  after(() => {
    // Should the sweep miss it, the test still stops its own swtpm.
    swtpm?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('kills the swtpm of an agent killed before it recorded the swtpm pid, and removes the state', async () => {
    const pool = new VtpmPool(join(dir, 'pool'), {});
    const inUse = join(dir, 'pool', 'in-use');
    const state = join(inUse, '0123456789abcdef');
    mkdirSync(state, { recursive: true });
    const sock = join(dir, 'tpm.sock');
    // What an agent killed between starting swtpm and recording it leaves: a running swtpm and an
    // owner file naming only the (dead) agent.
    swtpm = spawn(
      'swtpm',
      [
        'socket',
        '--tpm2',
        '--tpmstate',
        `dir=${state}`,
        '--server',
        `type=unixio,path=${sock}`,
        '--flags',
        'startup-clear',
      ],
      { stdio: 'ignore' },
    );
    const child = swtpm;
    const gone = new Promise((resolve) => child.once('exit', resolve));
    for (let i = 0; i < 200 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 10));
    const dead = spawnSync('true').pid;
    writeFileSync(`${state}.owner`, `${dead} 0 -\n`);
    assert.match(readFileSync(`/proc/${child.pid}/cmdline`, 'utf8'), /swtpm/);
    const removed = await pool.sweep();
    assert.deepEqual(removed, [state]);
    await Promise.race([
      gone,
      new Promise((_, reject) => setTimeout(() => reject(new Error('swtpm still runs')), 5000)),
    ]);
    assert.equal(existsSync(state), false);
  });
});
