/**
 * SBOM benchmark: time to catalogue and write a synthetic 10,000-component lockfile, and accuracy
 * and time on real npm dependency trees next to a real peer (@cyclonedx/cyclonedx-npm, and
 * @cyclonedx/cdxgen when it installs), run on the same package-lock.json in the same run.
 *
 * The real trees are resolved by this benchmark from the npm registry (`npm install
 * --package-lock-only`), and the peers are installed into their own temporary prefix; both need
 * network access. Without it, the real-tree part reports why it was skipped.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { writeCycloneDx } from '../src/sbom/cyclonedx.ts';
import type { Sbom } from '../src/sbom/model.ts';
import { catalogNpmLockfile } from '../src/sbom/npm-lock.ts';
import { readSbom } from '../src/sbom/read.ts';
import { writeSpdx } from '../src/sbom/spdx.ts';
import { percentile, printTable, writeResult } from './lib.ts';

const run_ = promisify(execFile);
const TREES: Record<string, Record<string, string>> = {
  express: { express: '^4.21.0' },
  'react-app': { react: '^18.3.1', 'react-dom': '^18.3.1', 'react-router-dom': '^6.26.0' },
  webpack: { webpack: '^5.94.0', 'webpack-cli': '^5.1.4' },
  eslint: { eslint: '^9.10.0', typescript: '^5.6.2', '@typescript-eslint/parser': '^8.6.0' },
  jest: { jest: '^29.7.0' },
  // esbuild and rollup lock optional native packages for every platform.
  vite: { vite: '^5.4.0' },
};

/** A synthetic v3 lockfile of `n` packages with nested copies and edges (labelled synthetic). */
function syntheticLockfile(n: number): string {
  const packages: Record<string, unknown> = { '': { name: 'synthetic', version: '1.0.0', dependencies: {} } };
  const root = packages[''] as { dependencies: Record<string, string> };
  for (let i = 0; i < n; i++) {
    const name = i % 7 === 0 ? `@scope${i % 13}/pkg-${i}` : `pkg-${i}`;
    const deps: Record<string, string> = {};
    for (let k = 1; k <= 3; k++) if (i + k * 17 < n) deps[`pkg-${i + k * 17}`] = '*';
    packages[`node_modules/${name}`] = {
      version: `${i % 5}.${i % 11}.${i % 3}`,
      resolved: `https://registry.npmjs.org/${name}/-/x.tgz`,
      integrity: `sha512-${createHash('sha512').update(name).digest('base64')}`,
      license: i % 2 === 0 ? 'MIT' : '(MIT OR Apache-2.0)',
      dev: i % 4 === 0,
      dependencies: deps,
    };
    if (i < 50) root.dependencies[name] = '*';
  }
  return JSON.stringify({
    name: 'synthetic',
    version: '1.0.0',
    lockfileVersion: 3,
    requires: true,
    packages,
  });
}

function timeIt(fn: () => void, runs: number): { p50: number; p95: number } {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    fn();
    times.push(performance.now() - t0);
  }
  return { p50: percentile(times, 50), p95: percentile(times, 95) };
}

async function sh(cmd: string, args: string[], cwd: string, timeoutMs = 300_000): Promise<string> {
  const { stdout } = await run_(cmd, args, { cwd, timeout: timeoutMs, maxBuffer: 256 * 1024 * 1024 });
  return stdout;
}

/** name@version of every component of a CycloneDX document from any generator (nested included). */
function componentSet(doc: unknown): Set<string> {
  const sbom = readSbom(doc, 'peer');
  const out = new Set(sbom.components.map((c) => `${c.name}@${c.version}`));
  for (const u of sbom.unidentified ?? []) if (u.version !== undefined) out.add(`${u.name}@${u.version}`);
  return out;
}

export async function run(): Promise<void> {
  // ---- synthetic ----
  const n = 10_000;
  const lock = syntheticLockfile(n);
  const synth = {
    catalog: timeIt(() => catalogNpmLockfile(lock, 'synthetic'), 5),
    catalogAndCycloneDx: timeIt(() => {
      const c = catalogNpmLockfile(lock, 'synthetic');
      JSON.stringify(
        writeCycloneDx({ subject: { name: 'synthetic', dependencies: c.direct }, components: c.components }),
      );
    }, 5),
    catalogAndSpdx: timeIt(() => {
      const c = catalogNpmLockfile(lock, 'synthetic');
      JSON.stringify(
        writeSpdx({ subject: { name: 'synthetic', dependencies: c.direct }, components: c.components }),
      );
    }, 5),
  };
  printTable(
    `synthetic lockfile (SYNTHETIC, ${n} components, ${(lock.length / 1e6).toFixed(1)} MB), 5 runs`,
    [
      { step: 'catalog', 'p50 ms': synth.catalog.p50.toFixed(0), 'p95 ms': synth.catalog.p95.toFixed(0) },
      {
        step: 'catalog + CycloneDX 1.6',
        'p50 ms': synth.catalogAndCycloneDx.p50.toFixed(0),
        'p95 ms': synth.catalogAndCycloneDx.p95.toFixed(0),
      },
      {
        step: 'catalog + SPDX 2.3',
        'p50 ms': synth.catalogAndSpdx.p50.toFixed(0),
        'p95 ms': synth.catalogAndSpdx.p95.toFixed(0),
      },
    ],
  );

  // ---- real trees against peers ----
  const work = mkdtempSync(join(tmpdir(), 'gatehouse-bench-sbom-'));
  const results: Record<string, unknown>[] = [];
  const differences: Record<string, { onlyOurs: string[]; onlyPeer: string[] }> = {};
  let skipped: string | undefined;
  try {
    const peerPrefix = join(work, 'peers');
    const peers: { name: string; cmd: (dir: string, out: string) => [string, string[]] }[] = [];
    try {
      await sh(
        'npm',
        [
          'install',
          '--prefix',
          peerPrefix,
          '--no-audit',
          '--no-fund',
          '--ignore-scripts',
          '@cyclonedx/cyclonedx-npm@4',
        ],
        work,
      );
      peers.push({
        name: 'cyclonedx-npm',
        cmd: (dir, out) => [
          join(peerPrefix, 'node_modules/.bin/cyclonedx-npm'),
          ['--package-lock-only', '--output-format', 'JSON', '--output-file', out, join(dir, 'package.json')],
        ],
      });
    } catch (e) {
      skipped = `cyclonedx-npm did not install: ${(e as Error).message.split('\n')[0]}`;
    }
    const cdxPrefix = join(work, 'cdxgen');
    try {
      await sh(
        'npm',
        [
          'install',
          '--prefix',
          cdxPrefix,
          '--no-audit',
          '--no-fund',
          '--ignore-scripts',
          '--omit',
          'optional',
          '@cyclonedx/cdxgen@11',
        ],
        work,
        600_000,
      );
      peers.push({
        name: 'cdxgen',
        cmd: (dir, out) => [
          join(cdxPrefix, 'node_modules/.bin/cdxgen'),
          ['-t', 'npm', '--no-recurse', '--no-install-deps', '-o', out, dir],
        ],
      });
    } catch (e) {
      process.stdout.write(
        `cdxgen did not install (${(e as Error).message.split('\n')[0]}); comparing with cyclonedx-npm only\n`,
      );
    }

    for (const [tree, deps] of Object.entries(TREES)) {
      const dir = join(work, 'trees', tree);
      await sh('mkdir', ['-p', dir], work);
      writeFileSync(
        join(dir, 'package.json'),
        JSON.stringify({ name: `bench-${tree}`, version: '1.0.0', dependencies: deps }),
      );
      await sh('npm', ['install', '--package-lock-only', '--ignore-scripts', '--no-audit', '--no-fund'], dir);
      const text = readFileSync(join(dir, 'package-lock.json'), 'utf8');
      const t = timeIt(() => {
        const c = catalogNpmLockfile(text, 'package-lock.json');
        JSON.stringify(
          writeCycloneDx({
            subject: { name: tree, dependencies: c.direct },
            components: c.components,
          } satisfies Sbom),
        );
      }, 5);
      const ours = new Set(
        catalogNpmLockfile(text, 'package-lock.json').components.map((c) => `${c.name}@${c.version}`),
      );
      for (const peer of peers) {
        const out = join(dir, `${peer.name}.cdx.json`);
        const [cmd, args] = peer.cmd(dir, out);
        const t0 = performance.now();
        let peerMs: number;
        let theirs: Set<string>;
        try {
          await sh(cmd, args, dir);
          peerMs = performance.now() - t0;
          if (!existsSync(out)) throw new Error('wrote no SBOM');
          theirs = componentSet(JSON.parse(readFileSync(out, 'utf8')));
        } catch (e) {
          results.push({ tree, peer: peer.name, error: (e as Error).message.split('\n')[0] ?? '' });
          continue;
        }
        const both = [...ours].filter((x) => theirs.has(x)).length;
        const onlyOurs = [...ours].filter((x) => !theirs.has(x)).sort();
        const onlyPeer = [...theirs].filter((x) => !ours.has(x)).sort();
        differences[`${tree} vs ${peer.name}`] = { onlyOurs, onlyPeer };
        results.push({
          tree,
          peer: peer.name,
          ours: ours.size,
          theirs: theirs.size,
          precision: ours.size === 0 ? 1 : Number((both / ours.size).toFixed(4)),
          recall: theirs.size === 0 ? 1 : Number((both / theirs.size).toFixed(4)),
          'ours p50 ms': Number(t.p50.toFixed(1)),
          'peer ms': Number(peerMs.toFixed(0)),
        });
      }
    }
  } catch (e) {
    skipped = `real trees skipped: ${(e as Error).message.split('\n')[0]}`;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  if (results.length > 0)
    printTable(
      'real npm trees (resolved now from the registry): (name, version) sets against the peer',
      results.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, String(v)]))),
    );
  if (skipped !== undefined) process.stdout.write(`${skipped}\n`);
  for (const [k, d] of Object.entries(differences)) {
    if (d.onlyOurs.length === 0 && d.onlyPeer.length === 0) continue;
    process.stdout.write(
      `\n${k}:\n  only ours: ${d.onlyOurs.slice(0, 20).join(', ') || '-'}${d.onlyOurs.length > 20 ? ` … (${d.onlyOurs.length})` : ''}\n`,
    );
    process.stdout.write(
      `  only peer: ${d.onlyPeer.slice(0, 20).join(', ') || '-'}${d.onlyPeer.length > 20 ? ` … (${d.onlyPeer.length})` : ''}\n`,
    );
  }
  const path = writeResult('sbom', {
    synthetic: { components: n, bytes: lock.length, ...synth },
    realTrees: results,
    differences,
    skipped,
  });
  process.stdout.write(`\nwrote ${path}\n`);
}
