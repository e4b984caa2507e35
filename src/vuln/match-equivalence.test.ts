import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { Component } from '../sbom/model.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import { component } from '../testing/components.ts';
import { importOsv } from './import.ts';
import { LiveVulnIndex } from './live-index.ts';
import { matchVulnerabilities } from './match.ts';
import { parseOsvJson } from './osv.ts';

const GO_ZIP = new URL('../../../shared/data/osv/Go/all.zip', import.meta.url).pathname;
const PYPI_ZIP = new URL('../../../shared/data/osv/PyPI/all.zip', import.meta.url).pathname;
const DEMO = new URL('../../examples/advisories', import.meta.url).pathname;
const PER_PACKAGE = 7;
const PURL_TYPE: Record<string, string> = { Go: 'golang', PyPI: 'pypi', npm: 'npm' };

/** The purl of a package named as OSV names it (each path segment of the name encoded). */
function purlOf(type: string, name: string, version: string): string {
  return `pkg:${type}/${name.split('/').map(encodeURIComponent).join('/')}@${encodeURIComponent(version)}`;
}

/**
 * Components at the boundaries the database names: the first events' versions and listed
 * versions of each package (at most {@link PER_PACKAGE}, to keep the reference path quick), ones
 * below and above them all, and a version no scheme reads.
 */
async function boundaryComponents(store: SqliteStore): Promise<Component[]> {
  const versions = new Map<string, Set<string>>();
  for (const row of await store.vulns.all()) {
    const record = parseOsvJson(row.json, row.id);
    for (const a of record.affected) {
      const type = a.package === undefined ? undefined : PURL_TYPE[a.package.ecosystem];
      if (a.package === undefined || type === undefined) continue;
      const key = `${type}\u0000${a.package.name}`;
      let set = versions.get(key);
      if (set === undefined) {
        set = new Set(['0.0.1', '99999.0.0', 'not a version']);
        versions.set(key, set);
      }
      for (const v of a.versions.slice(0, 2)) if (set.size < PER_PACKAGE) set.add(v);
      for (const r of a.ranges)
        for (const e of r.events) if (e.version !== '0' && set.size < PER_PACKAGE) set.add(e.version);
    }
  }
  const out: Component[] = [];
  for (const [key, set] of versions) {
    const [type, name] = key.split('\u0000') as [string, string];
    for (const v of set)
      out.push(component(purlOf(type, name, type === 'golang' && /^\d/.test(v) ? `v${v}` : v)));
  }
  return out;
}

describe('in-memory vulnerability index', () => {
  const absent = !existsSync(GO_ZIP) || !existsSync(PYPI_ZIP);
  let store: SqliteStore;
  before(async () => {
    if (absent) return;
    store = SqliteStore.open(':memory:');
    await importOsv([GO_ZIP, PYPI_ZIP, DEMO], store);
  });
  after(async () => {
    if (!absent) await store.close();
  });

  it('gives exactly the findings of per-package SQLite lookups on the real Go and PyPI data and the demo advisory', {
    skip: absent ? 'reference data ../shared/data not present' : false,
  }, async () => {
    const components = await boundaryComponents(store);
    const live = new LiveVulnIndex(store.vulns);
    const fromIndex = await matchVulnerabilities(components, live);
    const fromStore = await matchVulnerabilities(components, store.vulns);
    // The comparison means something only if it covers findings, fixed versions and refusals.
    assert.ok(fromStore.findings.length > 10_000, `${fromStore.findings.length} findings`);
    assert.ok(fromStore.findings.some((f) => f.fixedVersions.length > 1));
    assert.ok(fromStore.findings.some((f) => f.vulnId === 'GHSA-xvch-5gv4-984h'));
    assert.ok(fromStore.unmatched.length > 0);
    assert.deepEqual(fromIndex, fromStore);
  });
});
