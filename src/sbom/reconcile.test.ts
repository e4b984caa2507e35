import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Component } from './model.ts';
import { npmPurl } from './purl.ts';
import {
  type FoundInArtifact,
  fetchedComponent,
  reconcile,
  reconciliationSummary,
  toolchainProvides,
} from './reconcile.ts';

const npm = (name: string, version: string): Component => ({
  name,
  version,
  purl: npmPurl(name, version),
  ecosystem: 'npm',
  hashes: [],
  dependencies: [],
});
const found = (c: Component, path: string, method = 'npm-package'): FoundInArtifact => ({
  ...c,
  evidence: { path, method },
});

describe('three SBOMs reconciled', () => {
  it('merges a component declared and found into one, with both origins', () => {
    const r = reconcile({
      declared: [npm('ms', '2.1.3')],
      fetched: [],
      found: [found(npm('ms', '2.1.3'), 'node_modules/ms/package.json')],
    });
    assert.equal(r.components.length, 1);
    assert.deepEqual(
      r.components[0]?.origins.map((o) => o.kind),
      ['declared', 'found'],
    );
    assert.deepEqual(r.undeclared, []);
  });

  it('reports a vendored package under any directory name, with its path', () => {
    const r = reconcile({
      declared: [npm('ms', '2.1.3')],
      fetched: [],
      found: [found(npm('minimist', '1.2.5'), 'dist/app.tar!third_party/mm/package.json')],
    });
    assert.deepEqual(r.undeclared, [
      {
        purl: npmPurl('minimist', '1.2.5'),
        name: 'minimist',
        version: '1.2.5',
        path: 'dist/app.tar!third_party/mm/package.json',
        method: 'npm-package',
        declaredVersions: [],
      },
    ]);
  });

  it('reports a package the declared SBOM names at another version (a decoy lockfile)', () => {
    const r = reconcile({
      declared: [npm('minimist', '1.2.6')],
      fetched: [],
      found: [found(npm('minimist', '1.2.5'), 'node_modules/minimist/package.json')],
    });
    assert.deepEqual(
      r.undeclared.map((u) => [u.version, u.declaredVersions]),
      [['1.2.5', ['1.2.6']]],
    );
    assert.deepEqual(
      r.components.map((c) => c.version),
      ['1.2.5', '1.2.6'],
      'the policy judges both: what was declared and what was found',
    );
  });

  it("judges the project's own package but does not count it as undeclared", () => {
    const r = reconcile({
      declared: [],
      fetched: [],
      found: [found(npm('hello-app', '1.0.0'), 'package.json')],
      own: [npmPurl('hello-app', '1.0.0')],
    });
    assert.deepEqual(r.undeclared, []);
    assert.deepEqual(
      r.components.map((c) => c.purl),
      [npmPurl('hello-app', '1.0.0')],
      'a project named after a vulnerable package is still matched against advisories',
    );
  });

  it('judges what the fetch phase downloaded, and reports it undeclared once it is found in the artifact', () => {
    const download = {
      uri: 'https://registry.npmjs.org/minimist/-/minimist-1.2.5.tgz',
      digest: { sha256: 'a'.repeat(64) },
    };
    const r = reconcile({
      declared: [],
      fetched: [download],
      found: [found(npm('minimist', '1.2.5'), 'vendor/minimist/package.json')],
    });
    assert.deepEqual(
      r.components[0]?.origins.map((o) => o.kind),
      ['fetched', 'found'],
    );
    assert.equal(r.undeclared.length, 1);
    assert.equal(reconciliationSummary(r), 'declared 0, fetched 1, found 1, undeclared 1');
  });

  it('names downloads by their registry file names, and anything else by digest', () => {
    const d = (uri: string) => fetchedComponent({ uri, digest: { sha256: 'b'.repeat(64) } });
    assert.equal(
      d('https://registry.npmjs.org/@scope/pkg/-/pkg-2.0.0.tgz').purl,
      'pkg:npm/%40scope/pkg@2.0.0',
    );
    assert.equal(
      d('https://proxy.golang.org/golang.org/x/text/@v/v0.3.7.zip').purl,
      'pkg:golang/golang.org/x/text@v0.3.7',
    );
    assert.equal(
      d('https://files.pythonhosted.org/packages/x/requests-2.31.0-py3-none-any.whl').purl,
      'pkg:pypi/requests@2.31.0',
    );
    const generic = d('https://downloads.example/tool.bin');
    assert.equal(generic.ecosystem, 'generic');
    assert.match(generic.purl, /^pkg:generic\/tool\.bin\?checksum=sha256:b{64}&download_url=/);
  });
});

describe('the build environment toolchain', () => {
  const deb = (name: string, version: string): Component => ({
    name,
    version,
    purl: `pkg:deb/debian/${name}@${version}?arch=amd64`,
    ecosystem: 'deb',
    hashes: [],
    dependencies: [],
  });
  const stdlib = (version: string): FoundInArtifact => ({
    name: 'stdlib',
    version,
    purl: `pkg:golang/stdlib@${version}`,
    ecosystem: 'golang',
    hashes: [],
    dependencies: [],
    evidence: { path: 'app.oci.tar!blobs/sha256/x!app', method: 'go-buildinfo' },
  });

  it("provides the Go standard library at the Debian compiler's upstream version", () => {
    assert.deepEqual(toolchainProvides([deb('golang-1.19-go', '1.19.8-2'), deb('golang-go', '2:1.19~1')]), [
      'pkg:golang/stdlib@1.19.8',
    ]);
  });

  it('judges a binary built by that compiler without an undeclared finding, and no other version', () => {
    const toolchain = toolchainProvides([deb('golang-1.19-go', '1.19.8-2')]);
    const same = reconcile({ declared: [], fetched: [], found: [stdlib('1.19.8')], toolchain });
    assert.deepEqual(same.undeclared, []);
    assert.equal(same.components.length, 1, 'still judged');
    // A binary compiled elsewhere (another Go) and smuggled in is not the toolchain's.
    const other = reconcile({ declared: [], fetched: [], found: [stdlib('1.22.1')], toolchain });
    assert.equal(other.undeclared[0]?.purl, 'pkg:golang/stdlib@1.22.1');
  });
});
