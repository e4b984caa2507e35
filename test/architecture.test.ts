/**
 * The layering rule of docs/architecture.md, checked on the production import graph of `src/`
 * (tests and `src/testing/` left out): the folder-level graph has no cycles, and no part imports
 * the entry points (`cli/`, `server/`) or the composition root (`home/`).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative, sep } from 'node:path';
import { describe, it } from 'node:test';

const SRC = new URL('../src/', import.meta.url).pathname;
const ENTRY = new Set(['cli', 'server']);
const ROOT = 'home';

/** Every relative module specifier a file imports or re-exports, statically or dynamically. */
function specifiers(text: string): string[] {
  const out: string[] = [];
  const re =
    /(?:^|[\s;])(?:import|export)\s[^'";]*?\sfrom\s*['"](\.[^'"]+)['"]|import\s*\(\s*['"](\.[^'"]+)['"]\s*\)|^import\s+['"](\.[^'"]+)['"]/gm;
  for (const m of text.matchAll(re)) out.push(m[1] ?? m[2] ?? m[3] ?? '');
  return out;
}

interface Edge {
  from: string;
  to: string;
  /** One file-level import that makes the edge, e.g. `gate/gate.ts -> server/x.ts`. */
  example: string;
}

/** Folder-level edges of production code. */
function folderEdges(): Edge[] {
  const edges = new Map<string, Edge>();
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, e.name);
      if (e.isDirectory()) {
        if (relative(SRC, path) !== 'testing') walk(path);
        continue;
      }
      if (!/\.(?:ts|mjs)$/.test(e.name) || e.name.endsWith('.test.ts')) continue;
      const from = relative(SRC, path);
      for (const spec of specifiers(readFileSync(path, 'utf8'))) {
        const to = relative(SRC, normalize(join(dirname(path), spec)));
        const a = from.split(sep)[0] ?? '';
        const b = to.split(sep)[0] ?? '';
        if (a === b || to.startsWith('..')) continue;
        const key = `${a}->${b}`;
        if (!edges.has(key)) edges.set(key, { from: a, to: b, example: `${from} -> ${to}` });
      }
    }
  };
  walk(SRC);
  return [...edges.values()];
}

/** Strongly connected components with more than one folder (Tarjan). */
function cycles(edges: readonly Edge[]): string[][] {
  const next = new Map<string, string[]>();
  for (const e of edges) next.set(e.from, [...(next.get(e.from) ?? []), e.to]);
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  let counter = 0;
  const visit = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) ?? 0, low.get(w) ?? 0));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v) ?? 0, index.get(w) ?? 0));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string | undefined;
      do {
        w = stack.pop();
        if (w !== undefined) {
          onStack.delete(w);
          scc.push(w);
        }
      } while (w !== undefined && w !== v);
      if (scc.length > 1) out.push(scc.sort());
    }
  };
  for (const v of new Set(edges.flatMap((e) => [e.from, e.to]))) if (!index.has(v)) visit(v);
  return out;
}

describe('the layout of src/', () => {
  const edges = folderEdges();

  it('reads the import graph (the check would pass vacuously on an empty graph)', () => {
    assert.ok(edges.some((e) => e.from === 'gate' && e.to === 'signing'));
    assert.ok(edges.some((e) => e.from === 'cli' && e.to === ROOT));
  });

  it('has no import cycle between folders', () => {
    const found = cycles(edges).map((scc) => {
      const inside = edges.filter((e) => scc.includes(e.from) && scc.includes(e.to));
      return `${scc.join(', ')}: ${inside.map((e) => e.example).join('; ')}`;
    });
    assert.deepEqual(found, [], `folders in import cycles:\n${found.join('\n')}`);
  });

  it('has no part importing cli/, server/ or home/', () => {
    const bad = edges.filter(
      (e) =>
        (ENTRY.has(e.to) && e.from !== 'cli') ||
        (e.to === ROOT && !ENTRY.has(e.from)) ||
        (e.to === 'cli' && e.from !== 'cli'),
    );
    assert.deepEqual(
      bad.map((e) => e.example),
      [],
    );
  });

  it('finds a cycle and a forbidden import when there is one', () => {
    const planted = [
      ...edges,
      { from: 'store', to: 'gate', example: 'store/x.ts -> gate/gate.ts' },
      { from: 'gate', to: 'store', example: 'gate/gate.ts -> store/store.ts' },
    ];
    assert.ok(cycles(planted).some((scc) => scc.includes('store') && scc.includes('gate')));
    assert.deepEqual(specifiers("import type { A } from '../home/home.ts';\nexport { b } from './b.ts';"), [
      '../home/home.ts',
      './b.ts',
    ]);
  });
});
