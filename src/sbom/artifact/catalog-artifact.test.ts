import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { catalogArtifact } from './catalog-artifact.ts';
import {
  auditableBinary,
  buildGoBinary,
  DEBIAN_OS_RELEASE,
  dpkgParagraph,
  have,
  layerTarGz,
  pairs,
  pkg,
  pyMetadata,
  sh,
  writeOciLayout,
  writeTree,
} from './fixtures.test-helper.ts';

let work: string;
const haveGo = await have('go', ['version']);
const haveObjcopy = await have('objcopy');

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'gatehouse-artifact-test-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Build an npm package tarball with a bundled dependency (and its own dependency) by `npm pack`. */
async function npmPackFixture(): Promise<string> {
  const dir = join(work, 'npm-app');
  await writeTree(dir, {
    'package.json': pkg('bundling-app', '1.0.0', {
      dependencies: { 'left-pad': '1.3.0' },
      bundleDependencies: ['left-pad'],
    }),
    'index.js': 'module.exports = 1;\n',
    'node_modules/left-pad/package.json': pkg('left-pad', '1.3.0', {
      license: 'WTFPL',
      dependencies: { '@scope/tiny': '2.0.1' },
    }),
    'node_modules/left-pad/index.js': 'module.exports = 2;\n',
    'node_modules/left-pad/node_modules/@scope/tiny/package.json': pkg('@scope/tiny', '2.0.1'),
  });
  const out =
    (await sh('npm', ['pack', '--silent', '--pack-destination', work], dir)).trim().split('\n').pop() ?? '';
  return join(work, out);
}

/** A wheel assembled by hand (a wheel is a zip with a .dist-info folder) with `zip`. */
async function wheelFixture(): Promise<string> {
  const dir = join(work, 'wheel');
  await writeTree(dir, {
    'tiny_lib/__init__.py': 'x = 1\n',
    'Tiny_Lib-0.4.2.dist-info/METADATA': pyMetadata('Tiny_Lib', '0.4.2'),
    'Tiny_Lib-0.4.2.dist-info/WHEEL': 'Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n',
    'Tiny_Lib-0.4.2.dist-info/RECORD': '',
  });
  const out = join(work, 'Tiny_Lib-0.4.2-py3-none-any.whl');
  await sh('zip', ['-qr', out, '.'], dir);
  return out;
}

/** A Debian-like image: a base layer, then a layer that installs and one that deletes. */
async function debianLayout(): Promise<string> {
  const base = await layerTarGz(work, 'base', {
    'etc/os-release': DEBIAN_OS_RELEASE,
    'var/lib/dpkg/status': `${dpkgParagraph('libc6', '2.36-9+deb12u4')}\n${dpkgParagraph('bash', '5.2.15-2+b2')}`,
    'app/node_modules/left-pad/package.json': pkg('left-pad', '1.3.0'),
    'app/node_modules/doomed/package.json': pkg('doomed', '0.0.1'),
    'opt/old/node_modules/hidden/package.json': pkg('hidden', '1.0.0'),
  });
  const upper = await layerTarGz(work, 'upper', {
    'var/lib/dpkg/status': `${dpkgParagraph('libc6', '2.36-9+deb12u4')}\n${dpkgParagraph('bash', '5.2.15-2+b2')}\n${dpkgParagraph('curl', '7.88.1-10+deb12u5')}`,
    'app/node_modules/.wh.doomed': '',
    'opt/old/.wh..wh..opq': '',
    'opt/old/node_modules/kept/package.json': pkg('kept', '2.0.0'),
  });
  const layout = join(work, 'debian-layout');
  await writeOciLayout(layout, [base, upper]);
  return layout;
}

const DEBIAN_EXPECTED = [
  'bash@5.2.15-2+b2',
  'curl@7.88.1-10+deb12u5',
  'kept@2.0.0',
  'left-pad@1.3.0',
  'libc6@2.36-9+deb12u4',
];

describe('cataloguing an artifact from its bytes', () => {
  it('finds every package of an npm pack tarball, bundled dependencies included', async () => {
    const tgz = await npmPackFixture();
    const r = await catalogArtifact({ name: 'bundling-app-1.0.0.tgz', path: tgz });
    assert.deepEqual(pairs(r.components), ['@scope/tiny@2.0.1', 'bundling-app@1.0.0', 'left-pad@1.3.0']);
    const lp = r.components.find((c) => c.name === 'left-pad');
    assert.equal(lp?.purl, 'pkg:npm/left-pad@1.3.0');
    assert.deepEqual(lp?.licenses, ['WTFPL']);
    assert.deepEqual(lp?.evidence, {
      path: 'package/node_modules/left-pad/package.json',
      method: 'npm-package',
      archive: ['bundling-app-1.0.0.tgz'],
    });
    assert.equal(r.components.find((c) => c.name === '@scope/tiny')?.purl, 'pkg:npm/%40scope/tiny@2.0.1');
  });

  it('reads a wheel as a zip and its dist-info METADATA, with the PEP 503 name', async () => {
    const whl = await wheelFixture();
    const r = await catalogArtifact({ name: 'tiny.whl', path: whl });
    assert.deepEqual(pairs(r.components), ['tiny-lib@0.4.2']);
    assert.equal(r.components[0]?.purl, 'pkg:pypi/tiny-lib@0.4.2');
    assert.equal(r.components[0]?.evidence.method, 'python-metadata');
  });

  it('reads the Go build info of a binary the Go toolchain built', {
    skip: haveGo ? false : 'go is not installed',
  }, async () => {
    const bin = await buildGoBinary(work);
    const r = await catalogArtifact({ name: 'app', path: bin });
    const names = pairs(r.components);
    assert.ok(names.includes('example.com/greet@v1.2.3'), names.join(', '));
    const greet = r.components.find((c) => c.name === 'example.com/greet');
    assert.equal(greet?.purl, 'pkg:golang/example.com/greet@v1.2.3');
    assert.deepEqual(greet?.evidence, { path: 'app', method: 'go-buildinfo' });
    // The standard library at the toolchain's version; the (devel) main module is not a version.
    assert.ok(r.components.some((c) => c.purl.startsWith('pkg:golang/stdlib@1.')));
    assert.ok(!r.components.some((c) => c.name === 'example.com/app'));
  });

  it('reads Go build info in the pointer format of Go before 1.18, by its sentinels', async () => {
    const start = Buffer.from('3077af0c9274080241e1c107e6d618e6', 'hex');
    const end = Buffer.from('f932433186182072008242104116d8f2', 'hex');
    const modinfo =
      'path\texample.com/old\nmod\texample.com/old\tv0.9.0\th1:x=\ndep\tgithub.com/pkg/errors\tv0.9.1\th1:y=\n';
    const header = Buffer.concat([
      Buffer.from('\xff Go buildinf:', 'latin1'),
      Buffer.from([8, 0]),
      Buffer.alloc(16),
    ]);
    // An ELF-looking file: rodata (with the module text) before the buildinfo header, as a linker lays them out.
    const bytes = Buffer.concat([
      Buffer.from([0x7f, 0x45, 0x4c, 0x46]),
      Buffer.alloc(300_000, 7),
      start,
      Buffer.from(modinfo),
      end,
      Buffer.alloc(300_001, 9),
      header,
      Buffer.alloc(1000),
    ]);
    const path = join(work, 'old-go');
    await writeFile(path, bytes);
    const r = await catalogArtifact({ name: 'old-go', path });
    assert.deepEqual(pairs(r.components), ['example.com/old@v0.9.0', 'github.com/pkg/errors@v0.9.1']);
  });

  it('reads cargo auditable data from the .dep-v0 section of an ELF', {
    skip: haveObjcopy ? false : 'objcopy is not installed',
  }, async () => {
    const bin = await auditableBinary(work, [
      { name: 'rust-app', version: '0.1.0', source: 'local', dependencies: [1, 2], root: true },
      { name: 'serde', version: '1.0.200', source: 'crates.io' },
      { name: 'cc', version: '1.0.90', source: 'crates.io', kind: 'build' },
    ]);
    const r = await catalogArtifact({ name: 'rust-app', path: bin });
    assert.deepEqual(pairs(r.components), ['cc@1.0.90', 'rust-app@0.1.0', 'serde@1.0.200']);
    const app = r.components.find((c) => c.name === 'rust-app');
    assert.deepEqual(app?.dependencies, ['pkg:cargo/cc@1.0.90', 'pkg:cargo/serde@1.0.200']);
    assert.equal(r.components.find((c) => c.name === 'cc')?.scope, 'dev');
    assert.equal(app?.evidence.method, 'cargo-auditable');
  });

  it('reads pom.properties in jars inside a war inside a tar.gz, and a manifest only for a jar without one', async () => {
    const d = join(work, 'java');
    await writeTree(join(d, 'lib-a'), {
      'META-INF/MANIFEST.MF': 'Manifest-Version: 1.0\nImplementation-Version: 9.9.9\n',
      'META-INF/maven/org.example/lib-a/pom.properties':
        '#Generated\ngroupId=org.example\nartifactId=lib-a\nversion=1.4.0\n',
      'META-INF/maven/org.example/lib-a/pom.xml':
        '<project><dependencies><dependency><groupId>x</groupId><artifactId>y</artifactId><version>\u0024{nope}</version></dependency></dependencies></project>',
      'org/example/A.class': Buffer.from([0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 52]),
    });
    await writeTree(join(d, 'lib-b'), {
      'META-INF/MANIFEST.MF':
        'Manifest-Version: 1.0\nBundle-SymbolicName: com.acme.lib-b;singleton:=true\nBundle-Version: 3.2.1\nImplementation-Vendor-Id: com.acme\n',
    });
    await mkdir(join(d, 'war/WEB-INF/lib'), { recursive: true });
    await sh('zip', ['-qr', join(d, 'war/WEB-INF/lib/lib-a-1.4.0.jar'), '.'], join(d, 'lib-a'));
    // Stored (zip -0) so that the nested jar is read in place, and deflated to be spilled.
    await sh('zip', ['-qr0', join(d, 'war/WEB-INF/lib/lib-b-3.2.1.jar'), '.'], join(d, 'lib-b'));
    await writeTree(join(d, 'war'), { 'WEB-INF/web.xml': '<web-app/>' });
    await mkdir(join(d, 'out'));
    await sh('zip', ['-qr', join(d, 'out/app.war'), '.'], join(d, 'war'));
    await sh('tar', ['-czf', join(d, 'dist.tar.gz'), '-C', join(d, 'out'), '.'], d);
    const r = await catalogArtifact({ name: 'dist.tar.gz', path: join(d, 'dist.tar.gz') });
    assert.deepEqual(pairs(r.components), ['com.acme:lib-b@3.2.1', 'org.example:lib-a@1.4.0']);
    const a = r.components.find((c) => c.name === 'org.example:lib-a');
    assert.equal(a?.purl, 'pkg:maven/org.example/lib-a@1.4.0');
    assert.deepEqual(a?.evidence, {
      path: 'META-INF/maven/org.example/lib-a/pom.properties',
      method: 'java-pom-properties',
      archive: ['dist.tar.gz', 'app.war', 'WEB-INF/lib/lib-a-1.4.0.jar'],
    });
    assert.equal(r.components.find((c) => c.name === 'com.acme:lib-b')?.evidence.method, 'java-manifest');
  });

  it('reads dpkg status with its distribution, distroless status.d, and apk installed', async () => {
    const d = join(work, 'os-trees');
    await writeTree(d, {
      'debian/etc/os-release': DEBIAN_OS_RELEASE,
      'debian/var/lib/dpkg/status': `${dpkgParagraph('zlib1g', '1:1.2.13.dfsg-1')}\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1.0\n`,
      'distroless/etc/os-release': DEBIAN_OS_RELEASE,
      'distroless/var/lib/dpkg/status.d/tzdata':
        'Package: tzdata\nVersion: 2024a-0+deb12u1\nArchitecture: all\n',
      'distroless/var/lib/dpkg/status.d/tzdata.md5sums': 'abc  usr/share/zoneinfo/UTC\n',
      'alpine/etc/os-release': 'ID=alpine\nVERSION_ID=3.19.1\n',
      'alpine/lib/apk/db/installed': 'P:musl\nV:1.2.4_git20230717-r4\nA:x86_64\nL:MIT\no:musl\n\n',
    });
    const r = await catalogArtifact({ name: 'trees', path: d });
    assert.deepEqual(
      r.components.map((c) => c.purl),
      [
        'pkg:apk/alpine/musl@1.2.4_git20230717-r4?arch=x86_64&distro=alpine-3.19.1',
        'pkg:deb/debian/tzdata@2024a-0%2Bdeb12u1?arch=all&distro=debian-12',
        'pkg:deb/debian/zlib1g@1%3A1.2.13.dfsg-1?arch=amd64&distro=debian-12',
      ],
    );
    assert.equal(r.components[0]?.evidence.method, 'apk-installed');
    assert.deepEqual(r.components[1]?.evidence, {
      path: 'distroless/var/lib/dpkg/status.d/tzdata',
      method: 'dpkg-status',
    });
  });

  it('reads an OCI layout layer by layer: a whiteout removes a package, an opaque directory hides the lower ones', async () => {
    const layout = await debianLayout();
    const r = await catalogArtifact({ name: 'image', path: layout });
    assert.deepEqual(pairs(r.components), DEBIAN_EXPECTED);
    const curl = r.components.find((c) => c.name === 'curl');
    assert.equal(curl?.evidence.path, 'var/lib/dpkg/status');
    assert.match(curl?.evidence.archive?.[0] ?? '', /^blobs\/sha256\/[0-9a-f]{64}$/);
    assert.match(curl?.purl ?? '', /distro=debian-12/);
  });

  it('reads the same layout as a tar on disk and as a tar.gz stream', async () => {
    const layout = join(work, 'debian-layout');
    await sh('tar', ['-cf', join(work, 'image.tar'), '-C', layout, '.'], work);
    await sh('tar', ['-czf', join(work, 'image.tar.gz'), '-C', layout, '.'], work);
    for (const f of ['image.tar', 'image.tar.gz']) {
      const r = await catalogArtifact({ name: f, path: join(work, f) });
      assert.deepEqual(pairs(r.components), DEBIAN_EXPECTED, f);
      assert.equal(r.components.find((c) => c.name === 'kept')?.evidence.archive?.[0], f);
    }
  });

  it('reads a docker save archive (manifest.json and layer tars)', async () => {
    const d = join(work, 'docker-save');
    await writeTree(join(d, 'l1'), { 'usr/lib/node_modules/npm/package.json': pkg('npm', '10.8.2') });
    await writeTree(join(d, 'l2'), {
      'usr/lib/node_modules/.wh.npm': '',
      'srv/package.json': pkg('srv', '0.3.0'),
    });
    await mkdir(join(d, 'img/aaaa'), { recursive: true });
    await mkdir(join(d, 'img/bbbb'), { recursive: true });
    await sh('tar', ['-cf', join(d, 'img/aaaa/layer.tar'), '-C', join(d, 'l1'), '.'], d);
    await sh('tar', ['-cf', join(d, 'img/bbbb/layer.tar'), '-C', join(d, 'l2'), '.'], d);
    await writeFile(join(d, 'img/config.json'), '{}');
    await writeFile(
      join(d, 'img/manifest.json'),
      JSON.stringify([
        { Config: 'config.json', RepoTags: ['srv:1'], Layers: ['aaaa/layer.tar', 'bbbb/layer.tar'] },
      ]),
    );
    await sh(
      'tar',
      ['-cf', join(d, 'srv.tar'), '-C', join(d, 'img'), 'manifest.json', 'config.json', 'aaaa', 'bbbb'],
      d,
    );
    const r = await catalogArtifact({ name: 'srv.tar', path: join(d, 'srv.tar') });
    assert.deepEqual(pairs(r.components), ['srv@0.3.0']);
  });

  it('recognises archives by their bytes, not their names', async () => {
    const d = join(work, 'renamed');
    await writeTree(join(d, 'src'), { 'package.json': pkg('inside', '1.0.0') });
    await sh('tar', ['-czf', join(d, 'notes.txt'), '-C', join(d, 'src'), '.'], d);
    await writeFile(join(d, 'fake.jar'), 'not a zip at all');
    await mkdir(join(d, 'out'));
    await rename(join(d, 'notes.txt'), join(d, 'out/notes.txt'));
    await rename(join(d, 'fake.jar'), join(d, 'out/fake.jar'));
    const r = await catalogArtifact({ name: 'out', path: join(d, 'out') });
    assert.deepEqual(pairs(r.components), ['inside@1.0.0']);
    assert.deepEqual(r.components[0]?.evidence.archive, ['notes.txt']);
  });

  it('reports lockfiles shipped in the artifact, preferring what is installed', async () => {
    const d = join(work, 'with-lock');
    await writeTree(d, {
      'app/package.json': pkg('app', '1.0.0'),
      'app/package-lock.json': JSON.stringify({
        name: 'app',
        version: '1.0.0',
        lockfileVersion: 3,
        packages: {
          '': { name: 'app', version: '1.0.0', dependencies: { ms: '2.1.3', debug: '4.3.4' } },
          'node_modules/ms': { version: '2.1.3', resolved: 'https://registry.npmjs.org/ms/-/ms-2.1.3.tgz' },
          'node_modules/debug': {
            version: '4.3.4',
            resolved: 'https://registry.npmjs.org/debug/-/debug-4.3.4.tgz',
          },
        },
      }),
      'app/node_modules/ms/package.json': pkg('ms', '2.1.3'),
      // A lockfile inside an installed package speaks of its author's machine, not of this artifact.
      'app/node_modules/ms/yarn.lock':
        'left-pad@^1.0.0:\n  version "1.0.0"\n  resolved "https://x/left-pad-1.0.0.tgz"\n',
    });
    const r = await catalogArtifact({ name: 'with-lock', path: d });
    assert.deepEqual(pairs(r.components), ['app@1.0.0', 'debug@4.3.4', 'ms@2.1.3']);
    assert.equal(r.components.find((c) => c.name === 'ms')?.evidence.method, 'npm-package');
    assert.equal(r.components.find((c) => c.name === 'debug')?.evidence.method, 'lockfile');
  });
});

describe('recall on locally built artifacts of each kind', () => {
  it('finds every package it was built with: npm tarball, wheel, Debian-based OCI layout, Go binary', async () => {
    const kinds: { name: string; path: string; expected: string[] }[] = [
      {
        name: 'npm.tgz',
        path: await npmPackFixture(),
        expected: ['@scope/tiny@2.0.1', 'bundling-app@1.0.0', 'left-pad@1.3.0'],
      },
      { name: 'tiny.whl', path: await wheelFixture(), expected: ['tiny-lib@0.4.2'] },
      { name: 'image', path: await debianLayout(), expected: DEBIAN_EXPECTED },
    ];
    if (haveGo) {
      const gw = join(work, 'go-recall');
      await mkdir(gw, { recursive: true });
      const bin = await buildGoBinary(gw);
      await copyFile(bin, join(gw, 'app-copy'));
      kinds.push({ name: 'app', path: join(gw, 'app-copy'), expected: ['example.com/greet@v1.2.3'] });
    }
    const table: Record<string, { recall: number; missing: string[] }> = {};
    for (const k of kinds) {
      const found = new Set(pairs((await catalogArtifact({ name: k.name, path: k.path })).components));
      const missing = k.expected.filter((e) => !found.has(e));
      table[k.name] = { recall: (k.expected.length - missing.length) / k.expected.length, missing };
    }
    for (const [name, row] of Object.entries(table)) assert.deepEqual(row, { recall: 1, missing: [] }, name);
  });
});
