import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, describe, it } from 'node:test';
import { isGatehouseError } from '../common/errors.ts';
import { describeAlertStoreContract, describeStoreContract } from '../testing/store-contract.ts';
import { sqliteMigrations } from './migrations.ts';
import { SqliteStore } from './sqlite-store.ts';

describeStoreContract('SQLite', async () => SqliteStore.open(':memory:'));
describeAlertStoreContract('SQLite', async () => SqliteStore.open(':memory:'));

describe('SQLite store', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-store-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps its data across a reopen and does not migrate twice', async () => {
    const path = join(dir, 'a.db');
    const s1 = SqliteStore.open(path);
    await s1.log.append(
      0,
      [{ body: new Uint8Array([1]), leafHash: new Uint8Array(32), integratedTime: 1 }],
      [],
    );
    await s1.close();
    const s2 = SqliteStore.open(path);
    assert.equal(await s2.log.size(), 1);
    assert.equal(await s2.schemaVersion(), Math.max(...sqliteMigrations.map((m) => m.version)));
    await s2.close();
  });

  it('refuses to change or delete a log entry, even with SQL from outside', async () => {
    const path = join(dir, 'b.db');
    const s = SqliteStore.open(path);
    await s.log.append(
      0,
      [{ body: new Uint8Array([1]), leafHash: new Uint8Array(32), integratedTime: 1 }],
      [],
    );
    await s.close();
    const raw = new DatabaseSync(path);
    assert.throws(() => raw.exec("UPDATE log_entries SET body = x'02'"), /immutable/);
    assert.throws(() => raw.exec('DELETE FROM log_entries'), /immutable/);
    raw.close();
  });

  it('refuses a database from a newer gatehouse', async () => {
    const path = join(dir, 'c.db');
    await SqliteStore.open(path).close();
    const raw = new DatabaseSync(path);
    raw
      .prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, ?, ?)')
      .run('future', 'x');
    raw.close();
    assert.throws(
      () => SqliteStore.open(path),
      (e) => isGatehouseError(e, 'MIGRATION_FAILED'),
    );
  });
});
