import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { strToU8, zipSync } from 'fflate';
import { isGatehouseError } from '../common/errors.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import { importOsv } from './import.ts';

const GO_ZIP = new URL('../../../shared/data/osv/Go/all.zip', import.meta.url).pathname;
const PYPI_ZIP = new URL('../../../shared/data/osv/PyPI/all.zip', import.meta.url).pathname;
const SAMPLES = new URL('../../../shared/data/osv/samples', import.meta.url).pathname;
const skipUnless = (path: string) => ({
  skip: existsSync(path) ? false : 'reference data ../shared/data not present',
});

const rec = (id: string, modified: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    id,
    modified,
    affected: [
      {
        package: { ecosystem: 'npm', name: 'left-pad' },
        ranges: [{ type: 'SEMVER', events: [{ introduced: '0' }, { fixed: '1.3.0' }] }],
      },
    ],
    ...extra,
  });

describe('OSV import', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'gatehouse-osv-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('imports single files, folders (recursively) and zip archives', async () => {
    const store = SqliteStore.open(':memory:');
    writeFileSync(join(dir, 'a.json'), rec('GHSA-a', '2024-01-01T00:00:00Z'));
    mkdirSync(join(dir, 'tree', 'deep'), { recursive: true });
    writeFileSync(join(dir, 'tree', 'deep', 'b.json'), rec('GHSA-b', '2024-01-01T00:00:00Z'));
    writeFileSync(join(dir, 'tree', 'README.md'), 'not a record');
    writeFileSync(join(dir, 'c.zip'), zipSync({ 'c.json': strToU8(rec('GHSA-c', '2024-01-01T00:00:00Z')) }));
    const r = await importOsv([join(dir, 'a.json'), join(dir, 'tree'), join(dir, 'c.zip')], store);
    assert.deepEqual(r, { read: 3, added: 3, updated: 0, unchanged: 0, withdrawn: 0, refused: [] });
    assert.deepEqual(
      (await store.vulns.findByPackage('npm', 'left-pad')).map((v) => v.id),
      ['GHSA-a', 'GHSA-b', 'GHSA-c'],
    );
    await store.close();
  });

  it('updates only records whose modified is newer, and counts withdrawn ones', async () => {
    const store = SqliteStore.open(':memory:');
    const f = join(dir, 'v.json');
    writeFileSync(f, rec('GHSA-v', '2024-01-01T00:00:00Z'));
    await importOsv([f], store);
    writeFileSync(f, rec('GHSA-v', '2023-12-31T00:00:00Z', { summary: 'older' }));
    assert.equal((await importOsv([f], store)).unchanged, 1);
    writeFileSync(f, rec('GHSA-v', '2024-02-01T00:00:00Z', { withdrawn: '2024-02-01T00:00:00Z' }));
    assert.deepEqual(await importOsv([f], store), {
      read: 1,
      added: 0,
      updated: 1,
      unchanged: 0,
      withdrawn: 1,
      refused: [],
    });
    assert.equal((await store.vulns.get('GHSA-v'))?.withdrawn, '2024-02-01T00:00:00Z');
    assert.deepEqual(await store.vulns.findByPackage('npm', 'left-pad'), []);
    await store.close();
  });

  it('refuses a record modified in the future, so that it cannot block the real updates after it', async () => {
    const store = SqliteStore.open(':memory:');
    const now = new Date('2026-06-01T12:00:00Z');
    const f = join(dir, 'future.json');
    writeFileSync(f, rec('GHSA-f', '2024-01-01T00:00:00Z'));
    await importOsv([f], store, { now });
    writeFileSync(f, rec('GHSA-f', '2099-01-01T00:00:00Z', { summary: 'planted' }));
    const planted = await importOsv([f], store, { now });
    assert.equal(planted.updated, 0);
    assert.equal(planted.refused.length, 1);
    assert.match(planted.refused[0]?.reason ?? '', /GHSA-f: modified 2099-01-01T00:00:00Z is in the future/);
    assert.equal(planted.refused[0]?.where, f);
    // The real update that follows still lands.
    writeFileSync(f, rec('GHSA-f', '2026-06-01T11:00:00Z', { summary: 'real' }));
    assert.equal((await importOsv([f], store, { now })).updated, 1);
    assert.equal(JSON.parse((await store.vulns.get('GHSA-f'))?.json ?? '{}').summary, 'real');
    // A publisher's clock a few minutes ahead of ours is not an attack.
    writeFileSync(f, rec('GHSA-f', '2026-06-01T12:05:00Z', { summary: 'skewed' }));
    assert.equal((await importOsv([f], store, { now })).updated, 1);
    await store.close();
  });

  it('normalises PyPI names per PEP 503 for lookup', async () => {
    const store = SqliteStore.open(':memory:');
    const f = join(dir, 'py.json');
    writeFileSync(
      f,
      JSON.stringify({
        id: 'PYSEC-1',
        modified: '2024-01-01T00:00:00Z',
        affected: [{ package: { ecosystem: 'PyPI', name: 'Zope.Interface' }, versions: ['1'] }],
      }),
    );
    await importOsv([f], store);
    assert.equal((await store.vulns.findByPackage('PyPI', 'zope-interface')).length, 1);
    await store.close();
  });

  it('reports and skips a malformed record, naming the zip member and the problem, and imports the rest', async () => {
    const store = SqliteStore.open(':memory:');
    writeFileSync(join(dir, 'good.json'), rec('GHSA-good', '2024-01-01T00:00:00Z'));
    const zip = join(dir, 'bad.zip');
    writeFileSync(
      zip,
      zipSync({
        'ok.json': strToU8(rec('GHSA-ok', '2024-01-01T00:00:00Z')),
        'broken.json': strToU8(rec('GHSA-broken', 'not a date')),
        'latin1.json': new Uint8Array([0x7b, 0xff, 0x7d]),
      }),
    );
    const r = await importOsv([join(dir, 'good.json'), zip], store);
    assert.equal(r.added, 2);
    assert.deepEqual(
      r.refused.map((x) => x.where),
      [`${zip}!broken.json`, `${zip}!latin1.json`],
    );
    assert.match(r.refused[0]?.reason ?? '', /GHSA-broken' modified/);
    assert.match(r.refused[1]?.reason ?? '', /not UTF-8/);
    assert.deepEqual((await store.vulns.modifiedIndex()).size, 2);
    await store.close();
  });

  it(
    'refuses the malformed samples of shared/data/osv and imports every other sample',
    skipUnless(SAMPLES),
    async () => {
      const store = SqliteStore.open(':memory:');
      const r = await importOsv([SAMPLES], store);
      const refused = r.refused.map((x) => x.where.slice(SAMPLES.length + 1)).sort();
      // `nopackage-*` names a package that does not exist on PyPI, which only the registry could
      // tell: it is valid OSV and imported (docs/decisions.md, "Two readings of the OSV linter").
      assert.deepEqual(refused, ['nointroduced-CVE-2023-41045.json', 'nondistinct-CVE-2018-5407.json']);
      assert.match(r.refused[0]?.reason ?? '', /no 'introduced' event/);
      assert.match(r.refused[1]?.reason ?? '', /not distinct/);
      // Ten records read, two of them the same id (GHSA-9v2f-6vcg-3hgv and its nopackage copy).
      assert.equal(r.added, 9);
      await store.close();
    },
  );

  it('refuses a file that is not JSON as a record, and a corrupt zip and a missing path as errors', async () => {
    const store = SqliteStore.open(':memory:');
    writeFileSync(join(dir, 'x.json'), '{');
    writeFileSync(join(dir, 'x.zip'), 'PK not really');
    const r = await importOsv([join(dir, 'x.json')], store);
    assert.deepEqual(r.refused, [{ where: join(dir, 'x.json'), reason: 'OSV record is not valid JSON' }]);
    await assert.rejects(importOsv([join(dir, 'x.zip')], store), (e: unknown) =>
      isGatehouseError(e, 'BAD_OSV_RECORD'),
    );
    await assert.rejects(importOsv([join(dir, 'nope')], store), (e: unknown) =>
      isGatehouseError(e, 'NOT_FOUND'),
    );
    assert.equal(await store.vulns.count(), 0);
    await store.close();
  });

  it('keeps the newest copy when two inputs carry the same id', async () => {
    const store = SqliteStore.open(':memory:');
    writeFileSync(join(dir, 'd1.json'), rec('GHSA-d', '2024-03-01T00:00:00Z', { summary: 'new' }));
    writeFileSync(join(dir, 'd2.json'), rec('GHSA-d', '2024-01-01T00:00:00Z', { summary: 'old' }));
    const r = await importOsv([join(dir, 'd1.json'), join(dir, 'd2.json')], store);
    assert.equal(r.read, 1);
    assert.match((await store.vulns.get('GHSA-d'))?.json ?? '', /"new"/);
    await store.close();
  });

  it('writes nothing in a dry run', async () => {
    const store = SqliteStore.open(':memory:');
    writeFileSync(join(dir, 'dry.json'), rec('GHSA-dry', '2024-01-01T00:00:00Z'));
    assert.equal((await importOsv([join(dir, 'dry.json')], store, { dryRun: true })).added, 1);
    assert.equal(await store.vulns.count(), 0);
    await store.close();
  });

  it(
    'imports the real Go all.zip, and a second import finds everything unchanged',
    skipUnless(GO_ZIP),
    async () => {
      const store = SqliteStore.open(':memory:');
      const first = await importOsv([GO_ZIP], store);
      assert.deepEqual(first, {
        read: 4291,
        added: 4291,
        updated: 0,
        unchanged: 0,
        withdrawn: first.withdrawn,
        refused: [],
      });
      assert.equal(await store.vulns.count(), 4291);
      const second = await importOsv([GO_ZIP], store);
      assert.deepEqual(second, {
        read: 4291,
        added: 0,
        updated: 0,
        unchanged: 4291,
        withdrawn: first.withdrawn,
        refused: [],
      });
      assert.ok((await store.vulns.findByPackage('Go', 'github.com/gin-gonic/gin')).length > 0);
      await store.close();
    },
  );

  it('imports the real PyPI all.zip', skipUnless(PYPI_ZIP), async () => {
    const store = SqliteStore.open(':memory:');
    const r = await importOsv([PYPI_ZIP], store);
    assert.equal(r.read, 2661);
    assert.deepEqual(r.refused, []);
    assert.ok((await store.vulns.findByPackage('PyPI', 'requests')).length > 0);
    await store.close();
  });
});
