import semver from 'semver';
import { parseDocument } from 'yaml';
import type { GatehouseError } from '../common/errors.ts';
import { type Catalog, finishCatalog, lockfileError, positionAt, scopeByReachability } from './lockfile.ts';
import type { Component, ComponentHash } from './model.ts';
import { sriToHashes } from './npm-lock.ts';
import { npmPurl } from './purl.ts';

const NPM_NAME = /^(?:@[a-z0-9\-*~][a-z0-9\-*._~]*\/)?[a-z0-9\-~][a-z0-9\-._~]*$/i;

type Map_ = Record<string, unknown>;
const isMap = (v: unknown): v is Map_ => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `name@version(peer@1)(…)` or v6's `/name@version(…)` (v5's `/name/version` too) → name, version. */
function splitKey(key: string): { name: string; version: string } | undefined {
  let k = key.startsWith('/') ? key.slice(1) : key;
  const paren = k.indexOf('(');
  if (paren >= 0) k = k.slice(0, paren);
  const at = k.indexOf('@', k.startsWith('@') ? 1 : 0);
  if (at > 0) return { name: k.slice(0, at), version: k.slice(at + 1) };
  // lockfile v5: /name/1.2.3 and /@scope/name/1.2.3
  const slash = k.lastIndexOf('/');
  if (slash > 0) return { name: k.slice(0, slash), version: k.slice(slash + 1) };
  return undefined;
}

/**
 * The package key a dependency reference points to: `1.2.3(peer@1)` under `name` is
 * `name@1.2.3(peer@1)`; an alias `npm:real@1.2.3` (v6 `/real@1.2.3`) is `real@1.2.3`; `link:` and
 * `file:` references are local folders (undefined).
 */
function refKey(name: string, ref: string): string | undefined {
  if (/^(link|file|workspace):/.test(ref)) return undefined;
  if (ref.startsWith('npm:')) return ref.slice(4);
  if (ref.startsWith('/')) return ref.slice(1);
  return `${name}@${ref}`;
}

/**
 * Catalog a pnpm-lock.yaml, lockfile versions 5.4, 6 and 9: `packages` (and, in v9, `snapshots`)
 * give the packages and their edges, `importers` (or the top-level dependency lists of a
 * single-project v5/v6 lockfile) the direct and development dependencies.
 * @throws GatehouseError BAD_LOCKFILE naming the line and the problem
 */
export function catalogPnpmLock(text: string, where: string): Catalog {
  const doc = parseDocument(text, { uniqueKeys: true });
  const err = doc.errors[0];
  if (err !== undefined)
    throw lockfileError(where, `pnpm-lock.yaml: ${err.message.split('\n')[0]}`, positionAt(text, err.pos[0]));
  let lock: unknown;
  try {
    // Lockfiles never need YAML aliases; refusing them rules out alias expansion bombs.
    lock = doc.toJS({ maxAliasCount: 0 });
  } catch (cause) {
    throw lockfileError(
      where,
      'pnpm-lock.yaml: YAML aliases are not allowed in a lockfile',
      undefined,
      cause,
    );
  }
  if (!isMap(lock)) throw lockfileError(where, 'pnpm-lock.yaml: the document is not a mapping');
  const version = String(lock.lockfileVersion ?? '');
  const major = Number.parseFloat(version);
  if (!(major >= 5.3 && major < 10))
    throw lockfileError(
      where,
      `pnpm-lock.yaml: lockfileVersion '${version}' is not supported (expected 5.4, 6 or 9)`,
    );
  const lineOf = (key: string): { line: number; column: number } | undefined => {
    for (const form of [`\n  ${key}:`, `\n  '${key}':`, `\n  "${key}":`]) {
      const i = text.indexOf(form);
      if (i >= 0) return positionAt(text, i + 3);
    }
    return undefined;
  };
  const packages = lock.packages ?? {};
  const snapshots = lock.snapshots ?? {};
  if (!isMap(packages) || !isMap(snapshots))
    throw lockfileError(where, 'pnpm-lock.yaml: packages and snapshots must be mappings');

  const byKey = new Map<string, Component>();
  const byPurl = new Map<string, Component>();
  const component = (key: string, meta: Map_ | undefined): Component => {
    const fail = (message: string): GatehouseError =>
      lockfileError(where, `pnpm-lock.yaml package '${key}': ${message}`, lineOf(key));
    const nv = splitKey(key);
    if (nv === undefined) throw fail('is not name@version');
    const name = typeof meta?.name === 'string' ? meta.name : nv.name;
    const version = typeof meta?.version === 'string' ? meta.version : nv.version;
    if (!NPM_NAME.test(name)) throw fail(`invalid package name '${name}'`);
    if (semver.valid(version) === null) throw fail(`invalid version '${version}'`);
    const purl = npmPurl(name, version);
    const existing = byPurl.get(purl);
    if (existing !== undefined) return existing;
    let hashes: ComponentHash[] = [];
    const resolution = meta?.resolution;
    if (isMap(resolution) && typeof resolution.integrity === 'string') {
      const h = sriToHashes(resolution.integrity);
      if (typeof h === 'string') throw fail(h);
      hashes = h;
    }
    const c: Component = { name, version, purl, ecosystem: 'npm', hashes, dependencies: [] };
    byPurl.set(purl, c);
    return c;
  };

  // v9 keeps metadata under packages (keyed without peer suffix) and edges under snapshots.
  const metaFor = (key: string): Map_ | undefined => {
    const direct = packages[key];
    if (isMap(direct)) return direct;
    const paren = key.indexOf('(');
    const base = packages[paren >= 0 ? key.slice(0, paren) : key];
    return isMap(base) ? base : undefined;
  };
  const edgeSource = major >= 9 ? snapshots : packages;
  for (const [key, value] of Object.entries(edgeSource)) {
    if (value !== null && !isMap(value))
      throw lockfileError(where, `pnpm-lock.yaml package '${key}' is not a mapping`, lineOf(key));
    const c = component(key, metaFor(key));
    byKey.set(key.startsWith('/') ? key.slice(1) : key, c);
  }
  if (major >= 9)
    for (const key of Object.keys(packages))
      if (!byKey.has(key) && ![...byKey.keys()].some((k) => k.startsWith(`${key}(`)))
        byKey.set(key, component(key, metaFor(key)));

  for (const [key, value] of Object.entries(edgeSource)) {
    if (!isMap(value)) continue;
    const c = byKey.get(key.startsWith('/') ? key.slice(1) : key);
    if (c === undefined) continue;
    for (const field of ['dependencies', 'optionalDependencies'] as const) {
      const deps = value[field];
      if (deps === undefined) continue;
      if (!isMap(deps))
        throw lockfileError(where, `pnpm-lock.yaml package '${key}': ${field} is not a mapping`, lineOf(key));
      for (const [dep, ref] of Object.entries(deps)) {
        const k = refKey(dep, String(ref));
        if (k === undefined) continue;
        const t = byKey.get(k);
        if (t === undefined) {
          if (field === 'optionalDependencies') continue;
          throw lockfileError(
            where,
            `pnpm-lock.yaml package '${key}' depends on '${k}', which has no entry`,
            lineOf(key),
          );
        }
        c.dependencies.push(t.purl);
      }
    }
  }

  // Importers: v9 always, v5/v6 for workspaces; single-project v5/v6 lockfiles list them at the top.
  const importers: Map_[] = isMap(lock.importers) ? Object.values(lock.importers).filter(isMap) : [lock];
  const roots = { required: [] as string[], optional: [] as string[], dev: [] as string[] };
  for (const imp of importers) {
    for (const [field, list] of [
      ['dependencies', roots.required],
      ['optionalDependencies', roots.optional],
      ['devDependencies', roots.dev],
    ] as const) {
      const deps = imp[field];
      if (!isMap(deps)) continue;
      for (const [dep, spec] of Object.entries(deps)) {
        // v6 and v9: { specifier, version }; v5: the version itself.
        const ref = isMap(spec) ? String(spec.version ?? '') : String(spec);
        const k = refKey(dep, ref);
        if (k === undefined) continue;
        const t = byKey.get(k);
        if (t === undefined)
          throw lockfileError(
            where,
            `pnpm-lock.yaml importer dependency '${dep}' resolves to '${k}', which has no entry`,
          );
        list.push(t.purl);
      }
    }
  }
  const catalog = finishCatalog({}, byPurl.values(), [...roots.required, ...roots.optional, ...roots.dev]);
  scopeByReachability(catalog.components, roots);
  return catalog;
}
