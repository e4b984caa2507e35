/**
 * A home never silently starts a new log: a database that is missing, empty, partly zeroed or
 * older than the log's anchor is refused, naming the file and the recovery; `init --new-log`
 * starts another log under a rotated key.
 */
import assert from 'node:assert/strict';
import { closeSync, copyFileSync, openSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { initHome, openHome } from '../../src/home/home.ts';
import { cli, tempDir } from '../helpers.ts';

describe('a home whose database does not match its log', () => {
  const tmp = tempDir('db-faults');
  const root = join(tmp.path, 'home');
  const db = join(root, 'gatehouse.db');
  const saved = join(tmp.path, 'saved.db');

  before(async () => {
    await initHome(root);
    const home = await openHome(root);
    try {
      for (let i = 0; i < 5; i++) await home.log.append(new TextEncoder().encode(`{"entry":${i}}`));
    } finally {
      await home.close();
    }
    copyFileSync(db, saved);
  });
  after(() => tmp.cleanup());

  const restore = () => {
    for (const suffix of ['-wal', '-shm']) rmSync(`${db}${suffix}`, { force: true });
    copyFileSync(saved, db);
  };

  const refused = async (what: string, damage: () => void, message: RegExp) => {
    damage();
    try {
      for (const args of [
        ['log', 'checkpoint'],
        ['policy', 'show'],
      ]) {
        const r = await cli([...args, '--home', root]);
        assert.equal(r.code, 1, `${what}: ${args.join(' ')} exited ${r.code}`);
        assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
        assert.match(r.stderr, message);
        assert.match(r.stderr, /gatehouse restore|--new-log/);
      }
      await assert.rejects(openHome(root), (e) => (e as { code?: string }).code === 'STORE_DAMAGED');
    } finally {
      restore();
    }
  };

  it('refuses a missing database instead of creating an empty one', async () => {
    await refused(
      'missing',
      () => rmSync(db),
      /database is missing but the log anchor .* records \d+ entries/,
    );
  });

  it('refuses an empty database', async () => {
    await refused('empty', () => writeFileSync(db, ''), /database is empty/);
  });

  it('refuses a database with zeroed pages', async () => {
    await refused(
      'zeroed',
      () => {
        const fd = openSync(db, 'r+');
        const size = statSync(db).size;
        writeSync(fd, Buffer.alloc(4096), 0, 4096, Math.max(4096, size - 8192));
        closeSync(fd);
      },
      /integrity check|tree cannot be read|rewritten|entries were lost/,
    );
  });

  it('refuses a database older than the log anchor (entries lost)', async () => {
    const home = await openHome(root);
    try {
      await home.log.append(new TextEncoder().encode('{"entry":"newer"}'));
    } finally {
      await home.close();
    }
    // The saved copy has fewer entries than the anchor now records.
    await refused('rolled back', () => restore(), /entries were lost/);
    copyFileSync(db, saved);
  });

  it('starts a new log under a rotated key only when told to, and the new home works', async () => {
    rmSync(db);
    const plain = await cli(['init', '--home', root]);
    assert.equal(plain.code, 1, plain.stdout);
    assert.match(plain.stderr, /database is missing/);
    const fresh = await cli(['init', '--new-log', '--home', root]);
    assert.equal(fresh.code, 0, fresh.stderr);
    assert.match(fresh.stdout, /a new log \(the log key rotated/);
    const checkpoint = await cli(['log', 'checkpoint', '--home', root]);
    assert.equal(checkpoint.code, 0, checkpoint.stderr);
    const keys = await cli(['keys', 'status', '--json', '--home', root]);
    assert.equal(keys.code, 0, keys.stderr);
    const generations = (
      JSON.parse(keys.stdout) as { generations: { kind: string; validTo: string | null }[] }
    ).generations.filter((g) => g.kind === 'log');
    assert.equal(generations.length, 2, 'the old log key is retired, a new one signs the new log');
    assert.equal(generations.filter((g) => g.validTo === null).length, 1);
  });
});
