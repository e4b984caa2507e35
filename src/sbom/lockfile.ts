import { GatehouseError } from '../common/errors.ts';
import type { Component } from './model.ts';

/** What one lockfile or package database says about the project and what it installs. */
export interface Catalog {
  /** The project the lockfile belongs to (not a component), where the format names it. */
  project: { name?: string; version?: string };
  /** Every installed package, one per purl, sorted by purl. */
  components: Component[];
  /** purls of the project's direct dependencies, where the format records them. */
  direct: string[];
}

/** A line and column, both 1-based. */
export interface Position {
  line: number;
  column: number;
}

/** The line and column of a character offset in `text`. */
export function positionAt(text: string, offset: number): Position {
  let line = 1;
  let start = 0;
  const end = Math.min(Math.max(offset, 0), text.length);
  for (let i = text.indexOf('\n'); i >= 0 && i < end; i = text.indexOf('\n', i + 1)) {
    line++;
    start = i + 1;
  }
  return { line, column: end - start + 1 };
}

/**
 * A BAD_LOCKFILE error whose `where` is `file`, or `file:line:column` when the position is known,
 * so that the one stderr line names the file, the position and the problem.
 */
export function lockfileError(
  where: string,
  message: string,
  position?: Position,
  cause?: unknown,
): GatehouseError {
  const at = position === undefined ? where : `${where}:${position.line}:${position.column}`;
  return new GatehouseError(
    'BAD_LOCKFILE',
    message,
    cause === undefined ? { where: at } : { where: at, cause },
  );
}

/**
 * Parse a JSON lockfile; a syntax error names its line and column (taken from the engine's message,
 * which gives the character offset).
 * @throws GatehouseError BAD_LOCKFILE
 */
export function parseJsonLockfile(text: string, where: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (cause) {
    const m = /position (\d+)/.exec(cause instanceof Error ? cause.message : '');
    const pos = m === null ? positionAt(text, text.length) : positionAt(text, Number(m[1]));
    const detail =
      cause instanceof Error ? cause.message.replace(/ in JSON at position.*$/s, '') : 'syntax error';
    throw lockfileError(where, `${what} is not valid JSON (${detail})`, pos, cause);
  }
}

const byPurl = (a: Component, b: Component): number => (a.purl < b.purl ? -1 : a.purl > b.purl ? 1 : 0);

/**
 * Finish a catalog: drop self-edges and edges to components that are not in the catalog, sort
 * edges and components.
 */
export function finishCatalog(
  project: Catalog['project'],
  components: Iterable<Component>,
  direct: Iterable<string>,
): Catalog {
  const list = [...components].sort(byPurl);
  const known = new Set(list.map((c) => c.purl));
  for (const c of list)
    c.dependencies = [...new Set(c.dependencies)].filter((d) => d !== c.purl && known.has(d)).sort();
  return { project, components: list, direct: [...new Set(direct)].filter((d) => known.has(d)).sort() };
}

/** Components of a reachability walk from `roots` along the dependency edges (purls). */
export function reachable(roots: Iterable<string>, edges: (purl: string) => readonly string[]): Set<string> {
  const seen = new Set<string>();
  const stack = [...roots];
  for (let p = stack.pop(); p !== undefined; p = stack.pop()) {
    if (seen.has(p)) continue;
    seen.add(p);
    for (const d of edges(p)) if (!seen.has(d)) stack.push(d);
  }
  return seen;
}

/**
 * Mark scopes from reachability, for formats that record which roots are runtime and which are
 * development dependencies but not the scope of each package: reachable from a runtime root is
 * required, otherwise from an optional root optional, otherwise dev.
 */
export function scopeByReachability(
  components: Component[],
  roots: { required: Iterable<string>; optional?: Iterable<string>; dev?: Iterable<string> },
): void {
  const map = new Map(components.map((c) => [c.purl, c]));
  const edges = (p: string) => map.get(p)?.dependencies ?? [];
  const req = reachable(roots.required, edges);
  const opt = reachable(roots.optional ?? [], edges);
  const dev = reachable(roots.dev ?? [], edges);
  // A package no root reaches is counted as required: a scope must never hide a package from policy.
  for (const c of components)
    c.scope = req.has(c.purl)
      ? 'required'
      : opt.has(c.purl)
        ? 'optional'
        : dev.has(c.purl)
          ? 'dev'
          : 'required';
}

/** PEP 503 normalisation of a Python package name (what PyPI and the pypi purl type use). */
export function normalizePypiName(name: string): string {
  return name.toLowerCase().replace(/[-_.]+/g, '-');
}
