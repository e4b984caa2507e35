/**
 * Backup and restore: a backup taken while the home is in use restores into a home that opens,
 * holds the same log, and audits against checkpoints taken before the backup.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { initHome, openHome } from '../../src/home/home.ts';
import { cli, tempDir } from '../helpers.ts';

describe('backup and restore', () => {
  const tmp = tempDir('backup');
  const root = join(tmp.path, 'home');
  const backup = join(tmp.path, 'backup');
  const state = join(tmp.path, 'audit-state.json');
  const h = ['--home', root];

  before(async () => {
    await initHome(root);
    const home = await openHome(root);
    try {
      for (let i = 0; i < 7; i++) await home.log.append(new TextEncoder().encode(`{"n":${i}}`));
    } finally {
      await home.close();
    }
  });
  after(() => tmp.cleanup());

  it('backs up a home in use, and a lost database is restored from it', async () => {
    assert.equal((await cli(['log', 'audit', '--state', state, ...h])).code, 0);
    // The backup runs while a handle on the home is open and appending.
    const busy = await openHome(root);
    let backedUp: { code: number; stdout: string; stderr: string };
    try {
      const appending = busy.log.append(new TextEncoder().encode('{"n":"during"}'));
      backedUp = await cli(['backup', backup, '--json', ...h]);
      await appending;
    } finally {
      await busy.close();
    }
    assert.equal(backedUp.code, 0, backedUp.stderr);
    const manifest = JSON.parse(backedUp.stdout) as { log: { treeSize: number }; files: { path: string }[] };
    assert.ok(manifest.log.treeSize >= 7);
    assert.ok(
      manifest.files.some((f) => f.path === 'keys/log.key.pem'),
      'the sealed keys are in the backup',
    );
    assert.ok(manifest.files.some((f) => f.path === 'gatehouse.db'));

    rmSync(join(root, 'gatehouse.db'));
    assert.equal(
      (await cli(['log', 'checkpoint', ...h])).code,
      1,
      'a home without its database refuses to open',
    );
    const refused = await cli(['restore', backup, ...h]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /--replace/);
    const restored = await cli(['restore', backup, '--replace', ...h]);
    assert.equal(restored.code, 0, restored.stderr);
    const audit = await cli(['log', 'audit', '--state', state, ...h]);
    assert.equal(audit.code, 0, audit.stderr);
    assert.equal((await cli(['policy', 'show', ...h])).code, 0);
  });

  it('refuses a backup whose files were changed, and changes nothing', async () => {
    const config = join(backup, 'config.json');
    const original = readFileSync(config, 'utf8');
    writeFileSync(config, original.replace('"version": 1', '"version": 1 '));
    const before = readFileSync(join(root, 'config.json'), 'utf8');
    const r = await cli(['restore', backup, '--replace', ...h]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /config\.json is missing or changed/);
    assert.equal(readFileSync(join(root, 'config.json'), 'utf8'), before);
    writeFileSync(config, original);
  });
});
