import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { VERSION_SCHEMES } from './ecosystems.ts';

const dir = resolve(fileURLToPath(import.meta.url), '../../../../../shared/data/versions');
const skip = existsSync(dir) ? false : `reference data absent: ${dir}`;

/** Which orderings file(s) each ecosystem is held to. */
const FILES: Record<string, string[]> = {
  npm: ['semver-versions.txt'],
  Go: ['semver-versions.txt'],
  'crates.io': ['semver-versions.txt'],
  PyPI: ['pypi-versions.txt', 'pypi-versions-generated.txt'],
  Maven: ['maven-versions.txt', 'maven-versions-generated.txt'],
  Debian: ['debian-versions.txt', 'debian-versions-generated.txt'],
  Alpine: ['alpine-versions.txt', 'alpine-versions-generated.txt'],
  RubyGems: ['rubygems-versions.txt', 'rubygems-versions-generated.txt'],
  Packagist: ['packagist-versions.txt', 'packagist-versions-generated.txt'],
  NuGet: ['nuget-versions.txt'],
};

/**
 * Lines of the hand-written Alpine file where apk-tools 2 (the apk of the Alpine releases that
 * advisories cover, and what gatehouse implements) and apk-tools 3 disagree on invalid versions;
 * the file records apk 3's answer. Every other line of every file must hold.
 */
const APK2_DIFFERS = new Set([
  '1-r-0 < 1-r0',
  '1-r-1 < 1-r0',
  '0.r1 < 0r2',
  '0.8.21.r2 < 0.8.21r2',
  '1.2.0A < 1.2.0d',
  '1.2.0D < 1.2.0d',
  '1 > 1-ruff',
  '1-ruff2 = 1--ruff1',
]);

function pairs(file: string): { line: string; a: string; op: string; b: string }[] {
  const out = [];
  for (const raw of readFileSync(join(dir, file), 'utf8').split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith('//')) continue;
    const m = /^(.*) ([<>=]) (.*)$/.exec(line);
    assert.ok(m, `unreadable line in ${file}: ${line}`);
    out.push({ line, a: m[1] as string, op: m[2] as string, b: m[3] as string });
  }
  return out;
}

describe('version ordering per ecosystem, against every pair in shared/data/versions', { skip }, () => {
  for (const [ecosystem, files] of Object.entries(FILES)) {
    it(`orders ${ecosystem} versions as ${files.join(' and ')} say`, () => {
      const compare = VERSION_SCHEMES[ecosystem];
      assert.ok(compare);
      const wrong: string[] = [];
      let n = 0;
      for (const file of files) {
        for (const { line, a, op, b } of pairs(file)) {
          if (ecosystem === 'Alpine' && APK2_DIFFERS.has(line)) continue;
          n++;
          const want = op === '<' ? -1 : op === '>' ? 1 : 0;
          const c = compare(a, b);
          const back = compare(b, a);
          if (c === undefined || Math.sign(c) !== want || back === undefined || Math.sign(back) !== -want)
            wrong.push(`${file}: ${line} (got ${c}, reversed ${back})`);
        }
      }
      assert.ok(n > 30, `${ecosystem}: too few pairs read`);
      assert.deepEqual(wrong.slice(0, 10), []);
    });
  }

  it('orders versions transitively within each generated file (a < b < c gives a < c)', () => {
    for (const [ecosystem, files] of Object.entries(FILES)) {
      const compare = VERSION_SCHEMES[ecosystem];
      assert.ok(compare);
      const chain = files
        .filter((f) => f.endsWith('-generated.txt'))
        .flatMap((f) => pairs(f).filter((p) => p.op === '<'));
      for (let i = 0; i + 1 < chain.length; i += 97) {
        const x = chain[i];
        const y = chain[i + 1];
        if (x === undefined || y === undefined || x.b !== y.a) continue;
        assert.ok((compare(x.a, y.b) ?? 0) < 0, `${ecosystem}: ${x.a} < ${y.b}`);
      }
    }
  });
});

describe('version grammar refusals', () => {
  it('reports an unreadable version as an impossible comparison, never as an order', () => {
    const cases: [string, string, string][] = [
      ['npm', 'not-a-version', '1.0.0'],
      ['Go', '', '1.0.0'],
      ['NuGet', '1.0.0.0.0', '1.0'],
      ['Debian', 'a:1.0', '1.0'],
      ['Debian', '', '1.0'],
    ];
    for (const [eco, a, b] of cases) assert.equal(VERSION_SCHEMES[eco]?.(a, b), undefined, `${eco} ${a}`);
  });
});
