import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { isGatehouseError } from '../common/errors.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import type { VulnRecord } from '../store/store.ts';
import { component } from '../testing/components.ts';
import { importOsv, packagesOf } from './import.ts';
import { LiveVulnIndex } from './live-index.ts';
import { matchVulnerabilities } from './match.ts';
import { parseOsvRecord } from './osv.ts';
import { VulnIndex } from './vuln-index.ts';

const run = promisify(execFile);

type Events = Record<string, string>[];
function osv(id: string, ecosystem: string, name: string, ranges: { type: string; events: Events }[]) {
  return { id, modified: '2024-01-01T00:00:00Z', affected: [{ package: { ecosystem, name }, ranges }] };
}

function stored(record: { id: string }): VulnRecord {
  return {
    id: record.id,
    modified: '2024-01-01T00:00:00Z',
    withdrawn: null,
    aliases: [],
    json: JSON.stringify(record),
    packages: packagesOf(parseOsvRecord(record, record.id)),
  };
}

// Ranges whose events cannot all be read, or read unusually: the in-memory index must decide
// (and refuse) exactly as the store path does, message for message.
const TRICKY = [
  osv('T-unreadable-fixed', 'npm', 'a', [
    { type: 'SEMVER', events: [{ introduced: '0' }, { fixed: 'soon' }] },
  ]),
  osv('T-unreadable-limit', 'npm', 'b', [
    { type: 'SEMVER', events: [{ introduced: '1.0.0' }, { limit: 'later' }] },
  ]),
  osv('T-limit-star', 'npm', 'c', [
    { type: 'SEMVER', events: [{ introduced: '1.0.0' }, { fixed: '1.5.0' }, { limit: '*' }] },
  ]),
  osv('T-limit', 'npm', 'd', [
    { type: 'ECOSYSTEM', events: [{ introduced: '0' }, { limit: '2.0.0' }, { limit: '3.0.0' }] },
  ]),
  osv('T-last-affected', 'npm', 'e', [
    { type: 'SEMVER', events: [{ introduced: '1.0.0' }, { last_affected: '1.2.0' }] },
  ]),
  osv('T-reintroduced', 'npm', 'f', [
    {
      type: 'SEMVER',
      events: [{ fixed: '1.1.0' }, { introduced: '0' }, { introduced: '2.0.0' }, { fixed: '2.3.0' }],
    },
  ]),
  osv('T-pypi-semver-range', 'PyPI', 'g', [
    { type: 'SEMVER', events: [{ introduced: '0' }, { fixed: '2.0.0' }] },
  ]),
  osv('T-debian-unreadable', 'Debian:12', 'h', [
    { type: 'ECOSYSTEM', events: [{ introduced: '0' }, { fixed: 'not:a:version!' }] },
  ]),
];
const TRICKY_COMPONENTS = [
  ...['0.5.0', '1.0.0', '1.2.0', '1.4.9', '1.5.0', '2.1.0', '2.5.0', '3.0.0', 'latest'].flatMap((v) =>
    ['a', 'b', 'c', 'd', 'e', 'f'].map((n) => `pkg:npm/${n}@${v}`),
  ),
  'pkg:pypi/g@1.0',
  'pkg:pypi/g@1.0.post1',
  'pkg:pypi/g@3',
  'pkg:deb/debian/h@1.0-1?distro=debian-12',
  'pkg:deb/debian/h@1.0-1?distro=debian-11',
].map((purl) => component(purl));

describe('live vulnerability index', () => {
  let dir: string;
  let path: string;
  let store: SqliteStore;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'gatehouse-live-index-'));
    path = join(dir, 'store.db');
    store = SqliteStore.open(path);
  });
  after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('decides unreadable and unusual ranges exactly as the store path does', async () => {
    const s = SqliteStore.open(':memory:');
    await s.vulns.upsert(TRICKY.map(stored));
    const fromStore = await matchVulnerabilities(TRICKY_COMPONENTS, s.vulns);
    const fromIndex = await matchVulnerabilities(TRICKY_COMPONENTS, await VulnIndex.load(s.vulns));
    assert.deepEqual(fromIndex, fromStore);
    // The table exercises both outcomes: refusals naming the record, and findings.
    assert.ok(
      fromStore.unmatched.some((u) => u.code === 'BAD_OSV_RECORD' && /T-unreadable-fixed/.test(u.reason)),
    );
    assert.ok(fromStore.unmatched.some((u) => u.code === 'BAD_INPUT'));
    assert.ok(fromStore.findings.some((f) => f.vulnId === 'T-last-affected'));
    await s.close();
  });

  it('keeps the loaded index while the database is unchanged and reloads after an import here', async () => {
    const live = new LiveVulnIndex(store.vulns);
    const first = await live.current();
    assert.equal(await live.current(), first);
    writeFileSync(join(dir, 'here.json'), JSON.stringify(TRICKY[2]));
    await importOsv([join(dir, 'here.json')], store);
    const second = await live.current();
    assert.notEqual(second, first);
    const r = await matchVulnerabilities([component('pkg:npm/c@1.2.0')], live);
    assert.deepEqual(
      r.findings.map((f) => f.vulnId),
      ['T-limit-star'],
    );
  });

  it("sees another process's import on its next decision", async () => {
    const live = new LiveVulnIndex(store.vulns);
    const probe = [component('pkg:npm/from-elsewhere@1.0.0')];
    assert.deepEqual((await matchVulnerabilities(probe, live)).findings, []);
    const file = join(dir, 'elsewhere.json');
    writeFileSync(
      file,
      JSON.stringify(
        osv('T-elsewhere', 'npm', 'from-elsewhere', [
          { type: 'SEMVER', events: [{ introduced: '0' }, { fixed: '2.0.0' }] },
        ]),
      ),
    );
    const script = [
      `const { SqliteStore } = await import(${JSON.stringify(new URL('../store/sqlite-store.ts', import.meta.url).href)});`,
      `const { importOsv } = await import(${JSON.stringify(new URL('./import.ts', import.meta.url).href)});`,
      `const s = SqliteStore.open(${JSON.stringify(path)});`,
      `await importOsv([${JSON.stringify(file)}], s);`,
      'await s.close();',
    ].join('\n');
    await run(
      process.execPath,
      ['--disable-warning=ExperimentalWarning', '--input-type=module', '-e', script],
      {
        timeout: 30_000,
      },
    );
    assert.deepEqual(
      (await matchVulnerabilities(probe, live)).findings.map((f) => f.vulnId),
      ['T-elsewhere'],
    );
  });

  it('fails closed while the database cannot be loaded, and recovers once it can', async () => {
    const s = SqliteStore.open(':memory:');
    const live = new LiveVulnIndex(s.vulns);
    await live.current();
    await s.vulns.upsert([{ ...stored(TRICKY[0] as { id: string }), json: '{"id": "T-unreadable-fixed"' }]);
    await assert.rejects(matchVulnerabilities([component('pkg:npm/a@1.0.0')], live), (e: unknown) =>
      isGatehouseError(e, 'BAD_OSV_RECORD'),
    );
    // No fallback to the index loaded before: every call until the data reads again refuses.
    await assert.rejects(live.current(), (e: unknown) => isGatehouseError(e, 'BAD_OSV_RECORD'));
    await s.vulns.upsert([
      stored(TRICKY[4] as { id: string }),
      { ...stored(TRICKY[0] as { id: string }), withdrawn: '2024-02-01T00:00:00Z' },
    ]);
    const r = await matchVulnerabilities([component('pkg:npm/e@1.1.0')], live);
    assert.deepEqual(
      r.findings.map((f) => f.vulnId),
      ['T-last-affected'],
    );
    await s.close();
    await assert.rejects(live.current(), (e: unknown) => isGatehouseError(e));
  });
});
