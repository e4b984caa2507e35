import semver from 'semver';
import { parseDocument } from 'yaml';
import type { GatehouseError } from '../common/errors.ts';
import { type Catalog, finishCatalog, lockfileError, positionAt, scopeByReachability } from './lockfile.ts';
import type { Component, ComponentHash } from './model.ts';
import { sriToHashes } from './npm-lock.ts';
import { npmPurl } from './purl.ts';

/** The dependency lists of the project's package.json, used to find direct and dev dependencies. */
export interface NpmManifest {
  name?: string;
  version?: string;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

const NPM_NAME = /^(?:@[a-z0-9\-*~][a-z0-9\-*._~]*\/)?[a-z0-9\-~][a-z0-9\-._~]*$/i;
const MAX_ENTRIES = 1_000_000;

/** Split `name@range` at the `@` that is not a scope's. */
function splitDescriptor(d: string): { name: string; range: string } | undefined {
  const at = d.indexOf('@', d.startsWith('@') ? 1 : 0);
  if (at <= 0) return undefined;
  return { name: d.slice(0, at), range: d.slice(at + 1) };
}

interface Entry {
  descriptors: string[];
  fields: Record<string, unknown>;
  line: number;
}

/**
 * Catalog a yarn.lock: the classic v1 format (yarn 1) or the YAML format of yarn 2 and later
 * ("Berry", recognised by its `__metadata` entry). Without a manifest, direct dependencies are
 * unknown and every package counts as required.
 * @throws GatehouseError BAD_LOCKFILE naming the line and the problem
 */
export function catalogYarnLock(text: string, where: string, manifest?: NpmManifest): Catalog {
  return /^__metadata:/m.test(text)
    ? catalogBerry(text, where, manifest)
    : catalogClassic(text, where, manifest);
}

// ---- yarn 1 ----

/** Parse yarn 1's indentation format into entries. */
function parseClassic(text: string, where: string): Entry[] {
  const lines = text.split('\n');
  const entries: Entry[] = [];
  const fail = (n: number, col: number, message: string): GatehouseError =>
    lockfileError(where, `yarn.lock: ${message}`, { line: n + 1, column: col });
  // A value is a JSON-style quoted string or a bare token.
  const scalar = (s: string, n: number, col: number): string => {
    if (!s.startsWith('"')) {
      if (/\s/.test(s) || s.includes('"')) throw fail(n, col, `malformed value '${s}'`);
      return s;
    }
    try {
      const v: unknown = JSON.parse(s);
      if (typeof v === 'string') return v;
    } catch {
      // fall through to the error below
    }
    throw fail(n, col, `malformed quoted string ${s}`);
  };
  const splitKeyValue = (s: string, n: number, col: number): [string, string] => {
    let end: number;
    if (s.startsWith('"')) {
      end = 1;
      while (end < s.length && s[end] !== '"') end += s[end] === '\\' ? 2 : 1;
      if (end >= s.length) throw fail(n, col, 'quoted key is not closed');
      end++;
    } else {
      end = s.search(/\s/);
      if (end < 0) throw fail(n, col, `'${s}' has no value`);
    }
    return [scalar(s.slice(0, end), n, col), s.slice(end).trim()];
  };

  let current: Entry | undefined;
  let nested: Record<string, unknown> | undefined;
  for (const [n, rawLine] of lines.entries()) {
    const line = rawLine.replace(/\r$/, '');
    if (line.trim() === '' || line.trimStart().startsWith('#')) continue;
    const indent = line.length - line.trimStart().length;
    const body = line.trim();
    if (line.includes('\t')) throw fail(n, line.indexOf('\t') + 1, 'tab character');
    if (indent === 0) {
      if (!body.endsWith(':')) throw fail(n, 1, `entry header '${body}' does not end with ':'`);
      const descriptors: string[] = [];
      for (const part of body.slice(0, -1).split(/,\s*/)) descriptors.push(scalar(part.trim(), n, 1));
      if (entries.length >= MAX_ENTRIES) throw fail(n, 1, `more than ${MAX_ENTRIES} entries`);
      current = { descriptors, fields: Object.create(null) as Record<string, unknown>, line: n + 1 };
      nested = undefined;
      entries.push(current);
    } else if (indent === 2) {
      if (current === undefined) throw fail(n, 1, 'field outside an entry');
      if (body.endsWith(':') && !body.includes(' ')) {
        const key = scalar(body.slice(0, -1), n, 3);
        nested = Object.create(null) as Record<string, unknown>;
        if (key in current.fields) throw fail(n, 3, `field '${key}' appears twice`);
        current.fields[key] = nested;
      } else {
        const [key, value] = splitKeyValue(body, n, 3);
        if (key in current.fields) throw fail(n, 3, `field '${key}' appears twice`);
        current.fields[key] = scalar(value, n, 3 + key.length);
        nested = undefined;
      }
    } else if (indent === 4) {
      if (nested === undefined) throw fail(n, 5, 'nested field outside a block');
      const [key, value] = splitKeyValue(body, n, 5);
      nested[key] = scalar(value, n, 5);
    } else throw fail(n, 1, `unexpected indentation of ${indent} spaces`);
  }
  return entries;
}

function catalogClassic(text: string, where: string, manifest?: NpmManifest): Catalog {
  if (text.trim() === '') return finishCatalog({}, [], []);
  const entries = parseClassic(text, where);
  const byDescriptor = new Map<string, Component>();
  const byPurl = new Map<string, Component>();
  const edgesOf = new Map<
    Component,
    { deps: Record<string, string>; optional: Record<string, string>; line: number }[]
  >();
  for (const e of entries) {
    const fail = (message: string): GatehouseError =>
      lockfileError(where, `yarn.lock entry '${e.descriptors.join(', ')}': ${message}`, {
        line: e.line,
        column: 1,
      });
    const version = e.fields.version;
    if (typeof version !== 'string') throw fail('has no version');
    const first = splitDescriptor(e.descriptors[0] ?? '');
    if (first === undefined) throw fail(`'${e.descriptors[0]}' is not name@range`);
    let name = first.name;
    for (const d of e.descriptors) {
      const s = splitDescriptor(d);
      if (s === undefined || s.name !== first.name) throw fail(`descriptor '${d}' names another package`);
    }
    // A local folder is part of the project, not a third-party component.
    if (/^(file|link|portal):/.test(first.range)) continue;
    const alias = /^npm:((?:@[^@/]+\/)?[^@]+)@/.exec(first.range);
    if (alias?.[1] !== undefined) name = alias[1];
    if (!NPM_NAME.test(name)) throw fail(`invalid package name '${name}'`);
    if (semver.valid(version) === null) throw fail(`invalid version '${version}'`);
    let hashes: ComponentHash[] = [];
    if (typeof e.fields.integrity === 'string') {
      const h = sriToHashes(e.fields.integrity);
      if (typeof h === 'string') throw fail(h);
      hashes = h;
    } else if (typeof e.fields.resolved === 'string') {
      // Before integrity fields, yarn 1 kept the tarball's SHA-1 in the resolved URL's fragment.
      const m = /#([0-9a-f]{40})$/.exec(e.fields.resolved);
      if (m?.[1] !== undefined) hashes = [{ alg: 'SHA-1', content: m[1] }];
    }
    const purl = npmPurl(name, version);
    let c = byPurl.get(purl);
    if (c === undefined) {
      c = { name, version, purl, ecosystem: 'npm', hashes, dependencies: [] };
      byPurl.set(purl, c);
      edgesOf.set(c, []);
    } else
      for (const h of hashes) {
        const other = c.hashes.find((x) => x.alg === h.alg);
        if (other !== undefined && other.content !== h.content)
          throw fail(`${name}@${version} has a different ${h.alg} integrity than another entry`);
      }
    for (const d of e.descriptors) byDescriptor.set(d, c);
    const block = (v: unknown): Record<string, string> =>
      typeof v === 'object' && v !== null ? (v as Record<string, string>) : {};
    edgesOf.get(c)?.push({
      deps: block(e.fields.dependencies),
      optional: block(e.fields.optionalDependencies),
      line: e.line,
    });
  }
  for (const [c, lists] of edgesOf) {
    for (const { deps, optional, line } of lists) {
      for (const [dep, range] of Object.entries(deps)) {
        const target = byDescriptor.get(`${dep}@${range}`);
        if (target === undefined)
          throw lockfileError(
            where,
            `yarn.lock: ${c.name}@${c.version} depends on ${dep}@${range}, which has no entry`,
            {
              line,
              column: 1,
            },
          );
        c.dependencies.push(target.purl);
      }
      // Optional dependencies for other platforms may be absent.
      for (const [dep, range] of Object.entries(optional)) {
        const target = byDescriptor.get(`${dep}@${range}`);
        if (target !== undefined) c.dependencies.push(target.purl);
      }
    }
  }
  return withManifest(byPurl.values(), manifest, (name, range) => byDescriptor.get(`${name}@${range}`));
}

/** Direct dependencies and scopes from the manifest, when there is one. */
function withManifest(
  components: Iterable<Component>,
  manifest: NpmManifest | undefined,
  lookup: (name: string, range: string) => Component | undefined,
): Catalog {
  const list = [...components];
  const project: Catalog['project'] = {};
  if (manifest?.name !== undefined) project.name = manifest.name;
  if (manifest?.version !== undefined) project.version = manifest.version;
  if (manifest === undefined) {
    for (const c of list) c.scope = 'required';
    return finishCatalog(project, list, []);
  }
  const roots = (deps: Record<string, string> | undefined): string[] =>
    Object.entries(deps ?? {})
      .map(([n, r]) => lookup(n, r)?.purl)
      .filter((p) => p !== undefined);
  const required = roots(manifest.dependencies);
  const optional = roots(manifest.optionalDependencies);
  const dev = roots(manifest.devDependencies);
  const catalog = finishCatalog(project, list, [...required, ...optional, ...dev]);
  scopeByReachability(catalog.components, { required, optional, dev });
  return catalog;
}

// ---- yarn 2+ ----

function catalogBerry(text: string, where: string, manifest?: NpmManifest): Catalog {
  const doc = parseDocument(text, { uniqueKeys: true });
  const err = doc.errors[0];
  if (err !== undefined)
    throw lockfileError(where, `yarn.lock: ${err.message.split('\n')[0]}`, positionAt(text, err.pos[0]));
  let raw: unknown;
  try {
    // Lockfiles never need YAML aliases; refusing them rules out alias expansion bombs.
    raw = doc.toJS({ maxAliasCount: 0 });
  } catch (cause) {
    throw lockfileError(where, 'yarn.lock: YAML aliases are not allowed in a lockfile', undefined, cause);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw lockfileError(where, 'yarn.lock: the document is not a mapping');
  const lineOf = (key: string): { line: number; column: number } | undefined => {
    const i =
      text.indexOf(`\n${key}:`) >= 0 ? text.indexOf(`\n${key}:`) + 1 : text.indexOf(`\n"${key}":`) + 1;
    return i > 0 ? positionAt(text, i) : undefined;
  };
  const byDescriptor = new Map<string, Component>();
  const byPurl = new Map<string, Component>();
  const workspaceDeps: Record<string, string>[] = [];
  const pending: [Component, Record<string, string>, string][] = [];
  for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
    if (key === '__metadata') continue;
    const fail = (message: string): GatehouseError =>
      lockfileError(where, `yarn.lock entry '${key}': ${message}`, lineOf(key));
    if (typeof value !== 'object' || value === null) throw fail('is not a mapping');
    const e = value as Record<string, unknown>;
    const resolution = e.resolution;
    const version = e.version === undefined ? undefined : String(e.version);
    if (typeof resolution !== 'string') throw fail('has no resolution');
    if (version === undefined) throw fail('has no version');
    const deps = (e.dependencies ?? {}) as Record<string, unknown>;
    if (typeof deps !== 'object') throw fail('dependencies is not a mapping');
    const depStrings = Object.fromEntries(Object.entries(deps).map(([k, v]) => [k, String(v)]));
    const descriptors = key.split(/,\s*/);
    let res = splitDescriptor(resolution);
    if (res === undefined) throw fail(`resolution '${resolution}' is not name@reference`);
    // A patched package is the package it patches, as far as advisories go.
    if (res.range.startsWith('patch:')) {
      const inner = splitDescriptor(decodeURIComponent(res.range.slice(6).split('#')[0] ?? ''));
      if (inner === undefined) throw fail(`patch resolution '${resolution}' names no package`);
      res = inner;
    }
    if (/^(workspace|link|portal|file):/.test(res.range)) {
      if (res.range.startsWith('workspace:')) workspaceDeps.push(depStrings);
      continue;
    }
    const name = res.name;
    if (!NPM_NAME.test(name)) throw fail(`invalid package name '${name}'`);
    if (semver.valid(version) === null) throw fail(`invalid version '${version}'`);
    const purl = npmPurl(name, version);
    let c = byPurl.get(purl);
    if (c === undefined) {
      // Berry's checksum is of its own re-packed zip in the cache, not of the registry tarball,
      // so it is not recorded as the component's hash.
      c = { name, version, purl, ecosystem: 'npm', hashes: [], dependencies: [] };
      byPurl.set(purl, c);
    }
    for (const d of descriptors) byDescriptor.set(d, c);
    pending.push([c, depStrings, key]);
  }
  const lookup = (name: string, range: string): Component | undefined =>
    byDescriptor.get(`${name}@${range}`) ?? byDescriptor.get(`${name}@npm:${range}`);
  for (const [c, deps, key] of pending) {
    for (const [dep, range] of Object.entries(deps)) {
      const t = lookup(dep, range);
      if (t === undefined) {
        // Workspace and local links are not components; anything else must have an entry.
        if (/^(workspace|link|portal|file):/.test(range)) continue;
        throw lockfileError(
          where,
          `yarn.lock entry '${key}' depends on ${dep}@${range}, which has no entry`,
          lineOf(key),
        );
      }
      c.dependencies.push(t.purl);
    }
  }
  if (manifest === undefined && workspaceDeps.length > 0) {
    // Workspace entries list their dependencies (runtime and dev together) without telling which.
    const direct = workspaceDeps
      .flatMap((d) => Object.entries(d).map(([n, r]) => lookup(n, r)?.purl))
      .filter((p) => p !== undefined);
    for (const c of byPurl.values()) c.scope = 'required';
    return finishCatalog({}, byPurl.values(), direct);
  }
  return withManifest(byPurl.values(), manifest, lookup);
}
