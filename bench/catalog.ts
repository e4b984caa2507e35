/**
 * Artifact cataloguing benchmark.
 *
 * (a) Speed and memory: a synthetic artifact of 10,000 files and 1 GiB (node_modules-like
 * packages, ELF binaries, jars, and data files half random, half text), as a directory and as a
 * tar.gz. Each row is one run in a child process under GNU time (wall seconds and peak RSS of
 * that process), in the same run as its floor: `sha256sum` of the same bytes (the cost of reading
 * them once) and `gzip -dc | sha256sum` (reading and decompressing them once).
 *
 * (b) Accuracy: real artifacts — an npm tarball with bundled dependencies installed from the
 * registry, a Python wheel (pip's, from the local Python), a Debian bookworm minbase image
 * (debootstrap, as `gatehouse image build`) as an OCI layout, and a Go binary with module
 * dependencies (esbuild's, from the npm registry) — catalogued here and by @cyclonedx/cdxgen on
 * the same unpacked trees, and, where the ecosystem has one, by its own tool (`go version -m`,
 * `dpkg-query`). Precision and recall of the (name, version) sets, ours against each reference.
 * Needs the npm registry and a Debian mirror; what cannot run is reported with the reason.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { aptDefaultMirror, buildImage, imageDir, listImages } from '../src/runner/directory-image.ts';
import { catalogArtifact } from '../src/sbom/artifact/catalog-artifact.ts';
import { writeOciLayout } from '../src/sbom/artifact/fixtures.test-helper.ts';
import { normalizePypiName } from '../src/sbom/lockfile.ts';
import { readSbom } from '../src/sbom/read.ts';
import { printTable, writeResult } from './lib.ts';

const exec = promisify(execFile);
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const NODE = process.execPath;
const GiB = 1024 ** 3;

async function sh(cmd: string, args: string[], cwd: string, timeout = 900_000): Promise<string> {
  const { stdout } = await exec(cmd, args, { cwd, timeout, maxBuffer: 512 * 1024 * 1024 });
  return stdout;
}

/** Run a shell line under GNU time: wall seconds and peak RSS (MiB) of what it ran, and its stdout. */
async function timed(
  line: string,
  cwd: string,
): Promise<{ seconds: number; rssMiB: number; stdout: string }> {
  const { stdout, stderr } = await exec('/usr/bin/time', ['-f', 'TIME %e %M', 'bash', '-c', line], {
    cwd,
    timeout: 1_800_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  const m = /TIME ([\d.]+) (\d+)\s*$/.exec(stderr);
  return { seconds: Number(m?.[1] ?? Number.NaN), rssMiB: Math.round(Number(m?.[2] ?? 0) / 1024), stdout };
}

const CHILD = (path: string, name: string) =>
  `${NODE} --disable-warning=ExperimentalWarning --input-type=module -e "const m = await import('${join(ROOT, 'src/sbom/artifact/catalog-artifact.ts')}'); const r = await m.catalogArtifact({ name: '${name}', path: '${path}' }); console.log(JSON.stringify({ components: r.components.length, stats: r.stats }));"`;

/** 10,000 files, 1 GiB: 880 packages of 10 files, 20 ELF binaries, 40 jars, 1,140 data files. */
async function makeCorpus(dir: string): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  const put = async (p: string, b: Buffer | string) => {
    await mkdir(dirname(join(dir, p)), { recursive: true });
    await writeFile(join(dir, p), b);
    files++;
    bytes += Buffer.byteLength(b);
  };
  const text = (n: number, seed: number) => {
    const line = `export function f${seed}(x) { return x * ${seed} + "lorem ipsum dolor sit amet"; }\n`;
    return line.repeat(Math.ceil(n / line.length)).slice(0, n);
  };
  for (let i = 0; i < 880; i++) {
    await put(
      `app/node_modules/pkg-${i}/package.json`,
      JSON.stringify({ name: `pkg-${i}`, version: `1.${i % 50}.${i % 7}` }),
    );
    for (let k = 0; k < 9; k++)
      await put(`app/node_modules/pkg-${i}/lib/f${k}.js`, text(2048 + ((i * 9 + k) % 7) * 512, i * 9 + k));
  }
  const elves = readdirSync('/usr/bin')
    .map((f) => join('/usr/bin', f))
    .filter((f) => {
      try {
        const b = readFileSync(f);
        return b.length > 200_000 && b.length < 4_000_000 && b.readUInt32BE(0) === 0x7f454c46;
      } catch {
        return false;
      }
    })
    .slice(0, 20);
  for (const [i, f] of elves.entries()) await put(`bin/tool-${i}`, readFileSync(f));
  for (let j = 0; j < 40; j++) {
    const jd = join(dir, '..', `jar-src-${j}`);
    await mkdir(join(jd, `META-INF/maven/org.bench/lib-${j}`), { recursive: true });
    await writeFile(
      join(jd, `META-INF/maven/org.bench/lib-${j}/pom.properties`),
      `groupId=org.bench\nartifactId=lib-${j}\nversion=2.${j}.0\n`,
    );
    for (let k = 0; k < 50; k++) await writeFile(join(jd, `C${k}.class`), text(3000, k));
    await mkdir(join(dir, 'lib'), { recursive: true });
    await sh('zip', ['-qr', join(dir, `lib/lib-${j}.jar`), '.'], jd);
    files++;
    bytes += readFileSync(join(dir, `lib/lib-${j}.jar`)).length;
    await rm(jd, { recursive: true });
  }
  const left = 10_000 - files;
  const each = Math.floor((GiB - bytes) / left);
  for (let i = 0; i < left; i++) await put(`data/d${i}.bin`, i % 2 === 0 ? randomBytes(each) : text(each, i));
  return { files, bytes };
}

function pairSet(cs: { name: string; version: string; purl?: string }[]): Set<string> {
  return new Set(cs.map((c) => key(c.name, c.version, c.purl)));
}

function key(name: string, version: string, purl?: string): string {
  const n = purl?.startsWith('pkg:pypi/') === true ? normalizePypiName(name) : name.toLowerCase();
  return `${n}@${version}`;
}

function compare(ours: Set<string>, theirs: Set<string>) {
  const both = [...ours].filter((x) => theirs.has(x)).length;
  return {
    ours: ours.size,
    theirs: theirs.size,
    precision: ours.size === 0 ? 1 : Number((both / ours.size).toFixed(4)),
    recall: theirs.size === 0 ? 1 : Number((both / theirs.size).toFixed(4)),
    onlyOurs: [...ours].filter((x) => !theirs.has(x)).sort(),
    onlyTheirs: [...theirs].filter((x) => !ours.has(x)).sort(),
  };
}

async function speed(work: string): Promise<Record<string, unknown>[]> {
  const corpus = join(work, 'corpus');
  await mkdir(corpus);
  const made = await makeCorpus(corpus);
  await sh('bash', ['-c', `tar -cf - -C corpus . | gzip -1 > corpus.tar.gz`], work);
  const tgz = readFileSync(join(work, 'corpus.tar.gz')).length;
  process.stdout.write(
    `corpus: ${made.files} files, ${(made.bytes / GiB).toFixed(3)} GiB; corpus.tar.gz ${(tgz / GiB).toFixed(3)} GiB\n`,
  );
  const rows: Record<string, unknown>[] = [];
  const row = async (what: string, includes: string, line: string) => {
    const r = await timed(line, work);
    let extra = '';
    try {
      const j = JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as {
        components: number;
        stats: { bytesRead: number };
      };
      extra = `${j.components} components, ${(j.stats.bytesRead / GiB).toFixed(2)} GiB read+decoded`;
    } catch {
      // a floor row prints a digest, not JSON
    }
    rows.push({
      row: what,
      'wall s': r.seconds.toFixed(2),
      'peak RSS MiB': r.rssMiB,
      includes,
      result: extra,
    });
  };
  // Warm the page cache once so that no row pays for the first read from disk.
  await sh(
    'bash',
    ['-c', 'cat corpus.tar.gz > /dev/null; find corpus -type f -print0 | xargs -0 cat > /dev/null'],
    work,
  );
  await row('sha256sum corpus.tar.gz', 'read the tar.gz once, hash it', 'sha256sum corpus.tar.gz');
  await row(
    'gzip -dc | sha256sum',
    'read and gunzip the tar.gz once, hash the tar',
    'gzip -dc corpus.tar.gz | sha256sum',
  );
  await row(
    'catalogArtifact(corpus.tar.gz)',
    'node start-up and module load, gunzip, tar parse, every entry sniffed, metadata parsed, ELF scanned, jars spilled and read',
    CHILD(join(work, 'corpus.tar.gz'), 'corpus.tar.gz'),
  );
  await row('cat corpus.tar.gz > /dev/null', 'read the tar.gz once', 'cat corpus.tar.gz > /dev/null');
  await row(
    'gzip -dc > /dev/null',
    'read and gunzip the tar.gz once (GNU gzip)',
    'gzip -dc corpus.tar.gz > /dev/null',
  );
  await row(
    'find | xargs cat | sha256sum',
    'read every file of the directory once, hash the concatenation',
    'find corpus -type f -print0 | xargs -0 cat | sha256sum',
  );
  await row(
    'catalogArtifact(corpus/)',
    'node start-up, directory walk, 512 B sniffed per file, metadata parsed, ELF scanned, jars read in place (data files are not read past their magic)',
    CHILD(join(work, 'corpus'), 'corpus'),
  );
  await row(
    'node: import the cataloguer only',
    'node start-up and module load (the fixed cost in the rows above)',
    `${NODE} --disable-warning=ExperimentalWarning --input-type=module -e "await import('${join(ROOT, 'src/sbom/artifact/catalog-artifact.ts')}')"`,
  );
  printTable(
    '(a) 10,000 files / 1 GiB, one run each in the same session (page cache warm)',
    rows as Record<string, string>[],
  );
  return rows;
}

async function cdxgenSet(bin: string, args: string[], dir: string, out: string): Promise<Set<string>> {
  await sh(bin, [...args, '-o', out, dir], dirname(dir), 900_000);
  if (!existsSync(out)) throw new Error('wrote no SBOM');
  const sbom = readSbom(JSON.parse(readFileSync(out, 'utf8')), 'cdxgen');
  const s = pairSet(sbom.components);
  for (const u of sbom.unidentified ?? []) if (u.version !== undefined) s.add(key(u.name, u.version));
  // cdxgen names the scanned project as the subject, not as a component; ours lists it.
  const subject = sbom.subject;
  if (subject?.version !== undefined && subject.version !== 'latest')
    s.add(key(subject.name.replace(/^\//, ''), subject.version));
  return s;
}

async function accuracy(work: string): Promise<{ rows: Record<string, unknown>[]; notes: string[] }> {
  const rows: Record<string, unknown>[] = [];
  const notes: string[] = [];
  const cdx = join(work, 'cdxgen');
  let cdxBin: string | undefined;
  try {
    await sh(
      'npm',
      [
        'install',
        '--prefix',
        cdx,
        '--no-audit',
        '--no-fund',
        '--ignore-scripts',
        '--omit',
        'optional',
        '@cyclonedx/cdxgen@11',
      ],
      work,
    );
    cdxBin = join(cdx, 'node_modules/.bin/cdxgen');
  } catch (e) {
    notes.push(`cdxgen did not install: ${(e as Error).message.split('\n')[0]}`);
  }
  const artifacts: {
    name: string;
    path: string;
    tree: string;
    cdxArgs: string[];
    native?: () => Promise<Set<string>>;
  }[] = [];

  // npm: a package that bundles express, installed from the registry, packed by npm.
  try {
    const d = join(work, 'npm-bundle');
    await mkdir(d);
    await writeFile(
      join(d, 'package.json'),
      JSON.stringify({
        name: 'bench-bundle',
        version: '1.0.0',
        dependencies: { express: '4.21.2' },
        bundleDependencies: ['express'],
      }),
    );
    await sh('npm', ['install', '--ignore-scripts', '--no-audit', '--no-fund'], d);
    const file = (await sh('npm', ['pack', '--silent'], d)).trim().split('\n').pop() ?? '';
    const tree = join(work, 'npm-unpacked');
    await mkdir(tree);
    await sh('tar', ['-xzf', join(d, file), '-C', tree], work);
    artifacts.push({
      name: file,
      path: join(d, file),
      tree: join(tree, 'package'),
      cdxArgs: ['-t', 'js', '--no-install-deps', '--no-recurse'],
    });
  } catch (e) {
    notes.push(`npm artifact skipped: ${(e as Error).message.split('\n')[0]}`);
  }

  // Python: pip's own wheel, as the local Python ships it.
  const whl = (() => {
    try {
      const base = join(process.env.HOME ?? '/root', '.pyenv/versions');
      for (const v of readdirSync(base)) {
        const b = join(base, v, 'lib');
        for (const py of readdirSync(b)) {
          const dir = join(b, py, 'ensurepip/_bundled');
          if (existsSync(dir)) {
            const w = readdirSync(dir).find((f) => f.endsWith('.whl'));
            if (w !== undefined) return join(dir, w);
          }
        }
      }
    } catch {
      // no pyenv
    }
    return undefined;
  })();
  if (whl === undefined) notes.push('no wheel found on this machine (looked for ensurepip bundled wheels)');
  else {
    const tree = join(work, 'wheel-unpacked');
    await mkdir(tree);
    await sh('unzip', ['-q', whl, '-d', tree], work);
    artifacts.push({
      name: whl.slice(whl.lastIndexOf('/') + 1),
      path: whl,
      tree,
      cdxArgs: ['-t', 'oci-dir', '--no-install-deps'],
    });
  }

  // Debian: a debootstrap minbase image (as `gatehouse image build`), as a one-layer OCI layout.
  try {
    const images = join(tmpdir(), 'gatehouse-bench-catalog-images');
    let listed = await listImages(images).catch(() => []);
    if (listed.length === 0) {
      const apt = await aptDefaultMirror();
      if (apt === undefined) throw new Error('no Debian mirror in the apt sources');
      await buildImage({
        imagesDir: images,
        suite: apt.suite,
        mirror: apt.mirror,
        log: (l) => process.stdout.write(`  ${l}\n`),
      });
      listed = await listImages(images);
    }
    const first = listed[0];
    if (first === undefined) throw new Error('the image build left no image');
    const rootfs = join(imageDir(images, first.digest.replace(/^sha256:/, '')), 'rootfs');
    const layer = join(work, 'debian-layer.tar.gz');
    await sh('bash', ['-c', `tar -C '${rootfs}' -cf - . | gzip -1 > '${layer}'`], work);
    const layout = join(work, 'debian-oci');
    await writeOciLayout(layout, [layer], 'bookworm-minbase');
    artifacts.push({
      name: 'debian-oci',
      path: layout,
      tree: rootfs,
      cdxArgs: ['-t', 'oci-dir', '--no-install-deps'],
      native: async () => {
        const out = await sh(
          'dpkg-query',
          [
            '--admindir',
            join(rootfs, 'var/lib/dpkg'),
            '-W',
            '-f',
            '\u0024{Package} \u0024{Version} \u0024{db:Status-Status}\n',
          ],
          work,
        );
        return new Set(
          out
            .split('\n')
            .map((l) => l.split(' '))
            .filter((f) => f[2] === 'installed')
            .map((f) => key(f[0] ?? '', f[1] ?? '')),
        );
      },
    });
  } catch (e) {
    notes.push(`Debian image skipped: ${(e as Error).message.split('\n')[0]}`);
  }

  // Go: esbuild's binary, a real Go build with module dependencies, from the npm registry.
  try {
    const p = join(work, 'esbuild');
    await sh(
      'npm',
      ['install', '--prefix', p, '--no-audit', '--no-fund', '--ignore-scripts', '@esbuild/linux-x64@0.25.0'],
      work,
    );
    const bin = join(p, 'node_modules/@esbuild/linux-x64/bin/esbuild');
    const tree = join(work, 'go-tree');
    await mkdir(tree);
    await copyFile(bin, join(tree, 'esbuild'));
    artifacts.push({
      name: 'esbuild',
      path: bin,
      tree,
      cdxArgs: ['-t', 'oci-dir', '--no-install-deps'],
      native: async () => {
        const out = await sh('go', ['version', '-m', bin], work);
        const s = new Set<string>();
        for (const line of out.split('\n')) {
          const f = line.trim().split('\t');
          if (f[0] === 'dep' && f[1] !== undefined && f[2] !== undefined) s.add(key(f[1], f[2]));
          if (line.startsWith(`${bin}: go`)) s.add(key('stdlib', line.slice(bin.length + 4).trim()));
        }
        return s;
      },
    });
  } catch (e) {
    notes.push(`Go binary skipped: ${(e as Error).message.split('\n')[0]}`);
  }

  for (const a of artifacts) {
    const r = await catalogArtifact({ name: a.name, path: a.path });
    const ours = pairSet(r.components);
    const refs: [string, () => Promise<Set<string>>][] = [];
    if (cdxBin !== undefined)
      refs.push([
        'cdxgen',
        () => cdxgenSet(cdxBin as string, a.cdxArgs, a.tree, join(work, `${a.name}.cdx.json`)),
      ]);
    if (a.native !== undefined) refs.push([a.name === 'esbuild' ? 'go version -m' : 'dpkg-query', a.native]);
    for (const [ref, get] of refs) {
      try {
        const theirs = await get();
        const c = compare(ours, theirs);
        rows.push({ artifact: a.name, reference: ref, ...c });
      } catch (e) {
        rows.push({ artifact: a.name, reference: ref, error: (e as Error).message.split('\n')[0] ?? '' });
      }
    }
  }
  printTable(
    '(b) (name, version) sets: ours against each reference on the same artifact',
    rows.map((r) => ({
      artifact: String(r.artifact),
      reference: String(r.reference),
      ours: String(r.ours ?? ''),
      theirs: String(r.theirs ?? ''),
      precision: String(r.precision ?? ''),
      recall: String(r.recall ?? ''),
      error: String(r.error ?? ''),
    })),
  );
  for (const r of rows) {
    const o = (r.onlyOurs as string[] | undefined) ?? [];
    const t = (r.onlyTheirs as string[] | undefined) ?? [];
    if (o.length + t.length === 0) continue;
    process.stdout.write(
      `\n${String(r.artifact)} vs ${String(r.reference)}:\n  only ours: ${o.slice(0, 15).join(', ') || '-'}${o.length > 15 ? ` … (${o.length})` : ''}\n  only theirs: ${t.slice(0, 15).join(', ') || '-'}${t.length > 15 ? ` … (${t.length})` : ''}\n`,
    );
  }
  for (const n of notes) process.stdout.write(`${n}\n`);
  return { rows, notes };
}

export async function run(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'gatehouse-bench-catalog-'));
  try {
    const wanted = process.env.GATEHOUSE_BENCH_CATALOG ?? 'speed,accuracy';
    const speedRows = wanted.includes('speed') ? await speed(work) : [];
    await rm(join(work, 'corpus'), { recursive: true, force: true });
    const acc = wanted.includes('accuracy') ? await accuracy(work) : { rows: [], notes: [] };
    const path = writeResult('catalog', { speed: speedRows, accuracy: acc.rows, notes: acc.notes });
    process.stdout.write(`\nwrote ${path}\n`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
