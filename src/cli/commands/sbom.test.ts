import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { cli } from '../../../test/helpers.ts';
import { readSbom } from '../../sbom/read.ts';

describe('gatehouse sbom', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-sbom-cli-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const project = join(dir, 'project');
  const testdata = new URL('../../sbom/testdata/', import.meta.url).pathname;
  const copies: [string, string][] = [
    ['package-lock.v3.json', 'web/package-lock.json'],
    ['Cargo.lock', 'Cargo.lock'],
    ['poetry.lock', 'py/poetry.lock'],
  ];
  for (const [from, to] of copies) cpSync(join(testdata, from), join(project, to), { recursive: true });

  it('writes one SPDX 2.3 document for every lockfile under DIR', async () => {
    const out = join(dir, 'sbom.spdx.json');
    const r = await cli(['sbom', project, '--format', 'spdx', '--output', out]);
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(readFileSync(out, 'utf8')) as { spdxVersion: string };
    assert.equal(doc.spdxVersion, 'SPDX-2.3');
    const ecosystems = new Set(readSbom(doc, out).components.map((c) => c.ecosystem));
    assert.deepEqual([...ecosystems].sort(), ['cargo', 'npm', 'pypi']);
  });

  it('exits 1 naming the file, line and column of a malformed lockfile, and writes nothing', async () => {
    writeFileSync(join(project, 'py/requirements.txt'), 'ok==1.0\nbad>=2\n');
    const out = join(dir, 'never.json');
    const r = await cli(['sbom', project, '--output', out]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr.trim(), /py\/requirements\.txt:2:1: .*'bad>=2' is not pinned/);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    assert.equal(existsSync(out), false);
  });
});
