import { basename } from 'node:path';
import semver from 'semver';
import { z } from 'zod';
import { GatehouseError } from '../common/errors.ts';
import { parseJsonLockfile } from './lockfile.ts';
import type { Component, ComponentHash, ComponentScope, HashAlgorithm } from './model.ts';
import { npmPurl } from './purl.ts';

/** What a package-lock.json says about the project and what it installs. */
export interface NpmCatalog {
  /** The root package (the lockfile's "" entry): the project itself, not a component. */
  project: { name?: string; version?: string };
  /** Every installed package, one per purl, sorted by purl. */
  components: Component[];
  /** purls of the root's (and its workspaces') direct dependencies. */
  direct: string[];
}

const depMap = z.record(z.string(), z.string());
const licenseField = z.union([
  z.string(),
  z.looseObject({ type: z.string() }),
  z.array(z.looseObject({ type: z.string() })),
]);

// Entries carry many more fields (engines, bin, funding, …); only these matter here.
const entrySchema = z.looseObject({
  name: z.string().optional(),
  version: z.string().optional(),
  resolved: z.string().optional(),
  integrity: z.string().optional(),
  link: z.boolean().optional(),
  dev: z.boolean().optional(),
  optional: z.boolean().optional(),
  devOptional: z.boolean().optional(),
  license: licenseField.optional(),
  dependencies: depMap.optional(),
  optionalDependencies: depMap.optional(),
  peerDependencies: depMap.optional(),
  devDependencies: depMap.optional(),
});
type Entry = z.infer<typeof entrySchema>;

const lockSchema = z.looseObject({
  name: z.string().optional(),
  version: z.string().optional(),
  lockfileVersion: z.number().int(),
  packages: z.record(z.string(), z.unknown()).optional(),
  dependencies: z.record(z.string(), z.unknown()).optional(),
});

const v1Entry = z.looseObject({
  version: z.string(),
  resolved: z.string().optional(),
  integrity: z.string().optional(),
  dev: z.boolean().optional(),
  optional: z.boolean().optional(),
  bundled: z.boolean().optional(),
  requires: depMap.optional(),
  dependencies: z.record(z.string(), z.unknown()).optional(),
});

/**
 * Flatten a lockfile v1 tree into v2-style "packages" entries keyed by install path, so that one
 * code path resolves edges the way Node does.
 */
function packagesFromV1(
  deps: Record<string, unknown> | undefined,
  fail: (message: string, cause?: unknown) => GatehouseError,
): Record<string, unknown> {
  const out: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  let count = 0;
  const walk = (tree: Record<string, unknown> | undefined, prefix: string, depth: number): void => {
    if (depth > 256) throw fail(`dependencies nest deeper than 256 levels at '${prefix}'`);
    for (const [name, value] of Object.entries(tree ?? {})) {
      const key = `${prefix}node_modules/${name}`;
      const parsed = v1Entry.safeParse(value);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        const field = issue === undefined || issue.path.length === 0 ? '' : ` field ${issue.path.join('.')}`;
        throw fail(
          `dependency '${key}'${field} is malformed: ${issue?.message ?? 'not an object'}`,
          parsed.error,
        );
      }
      const e = parsed.data;
      if (++count > 1_000_000) throw fail('more than 1,000,000 dependencies');
      const entry: Record<string, unknown> = {
        resolved: e.resolved,
        integrity: e.integrity,
        dev: e.dev,
        optional: e.optional,
        dependencies: e.requires,
      };
      if (e.version.startsWith('npm:')) {
        // An aliased install: "npm:real-name@1.2.3".
        const spec = e.version.slice(4);
        const at = spec.lastIndexOf('@');
        if (at <= 0) throw fail(`dependency '${key}' has an invalid alias '${e.version}'`);
        entry.name = spec.slice(0, at);
        entry.version = spec.slice(at + 1);
      } else if (/^(file|link):/.test(e.version)) {
        // A local folder: part of the project, not a third-party component.
        entry.link = true;
        entry.resolved = e.version.replace(/^(file|link):/, '');
      } else entry.version = e.version;
      out[key] = entry;
      walk(e.dependencies, `${key}/`, depth + 1);
    }
  };
  walk(deps, '', 0);
  return out;
}

// npm's own rule for names (validate-npm-package-name), case-insensitive because packages
// published before 2015 may carry capitals.
const NPM_NAME = /^(?:@[a-z0-9\-*~][a-z0-9\-*._~]*\/)?[a-z0-9\-~][a-z0-9\-._~]*$/i;

const SRI_ALGS: Record<string, { alg: HashAlgorithm; bytes: number }> = {
  sha512: { alg: 'SHA-512', bytes: 64 },
  sha384: { alg: 'SHA-384', bytes: 48 },
  sha256: { alg: 'SHA-256', bytes: 32 },
  sha1: { alg: 'SHA-1', bytes: 20 },
};

/**
 * Turn an SRI string (`sha512-<base64> sha1-<base64>`) into hex hashes. Returns an error message
 * instead of throwing so that the caller can name the entry.
 */
export function sriToHashes(integrity: string): ComponentHash[] | string {
  const out: ComponentHash[] = [];
  const parts = integrity.trim().split(/\s+/);
  for (const part of parts) {
    const m = /^([a-z0-9]+)-([A-Za-z0-9+/]+={0,2})(?:\?.*)?$/.exec(part);
    if (m === null) return `integrity '${integrity}' is not a valid SRI string`;
    const spec = SRI_ALGS[m[1] ?? ''];
    if (spec === undefined) return `integrity uses the unsupported algorithm '${m[1]}'`;
    const raw = Buffer.from(m[2] ?? '', 'base64');
    if (raw.length !== spec.bytes)
      return `integrity ${m[1]} digest is ${raw.length} bytes, expected ${spec.bytes}`;
    out.push({ alg: spec.alg, content: raw.toString('hex') });
  }
  if (out.length === 0) return `integrity '${integrity}' holds no digest`;
  return out;
}

function licensesOf(license: Entry['license']): string[] | undefined {
  if (license === undefined) return undefined;
  if (typeof license === 'string') return license === '' ? undefined : [license];
  if (Array.isArray(license)) return license.map((l) => l.type);
  return [license.type];
}

function scopeOf(e: Entry): ComponentScope {
  // devOptional: needed only by dev dependencies or only optionally; either way not at run time.
  if (e.dev === true || e.devOptional === true) return 'dev';
  if (e.optional === true) return 'optional';
  return 'required';
}

const SCOPE_RANK: Record<ComponentScope, number> = { required: 0, optional: 1, dev: 2 };

/** The folder name a `node_modules/…` key installs, or undefined for a non-node_modules path. */
function installedName(key: string): string | undefined {
  const i = key.lastIndexOf('node_modules/');
  if (i < 0) return undefined;
  return key.slice(i + 'node_modules/'.length);
}

/**
 * Where Node would find `dep` when required from the package at `from`: the nearest
 * `node_modules/dep` walking up the path, ending at the root's `node_modules`.
 */
function resolveDep(from: string, dep: string, exists: (key: string) => boolean): string | undefined {
  const segments = from === '' ? [] : from.split('/');
  for (let i = segments.length; i >= 0; i--) {
    if (i > 0 && segments[i - 1] === 'node_modules') continue;
    const base = segments.slice(0, i).join('/');
    const candidate = base === '' ? `node_modules/${dep}` : `${base}/node_modules/${dep}`;
    if (exists(candidate)) return candidate;
  }
  return undefined;
}

/**
 * Catalog the packages a package-lock.json or npm-shrinkwrap.json (lockfileVersion 1, 2 or 3)
 * installs.
 *
 * @param text the lockfile's contents
 * @param where the lockfile's path, for error messages
 * @throws GatehouseError BAD_LOCKFILE when the text is not a usable lockfile, naming the entry
 */
export function catalogNpmLockfile(text: string, where: string): NpmCatalog {
  const fail = (message: string, cause?: unknown): GatehouseError =>
    new GatehouseError('BAD_LOCKFILE', message, cause === undefined ? { where } : { where, cause });

  const file = basename(where) === 'npm-shrinkwrap.json' ? 'npm-shrinkwrap.json' : 'package-lock.json';
  const raw = parseJsonLockfile(text, where, file);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw fail(`${file} is not a JSON object`);
  const parsedLock = lockSchema.safeParse(raw);
  if (!parsedLock.success) {
    throw fail(
      'lockfileVersion' in raw
        ? 'lockfileVersion is not an integer, or packages is not an object'
        : `${file} has no lockfileVersion`,
      parsedLock.error,
    );
  }
  const lock = parsedLock.data;
  let packages: Record<string, unknown>;
  if (lock.lockfileVersion === 1) {
    // npm 6 and older: a nested tree under "dependencies"; v2 lockfiles carry both forms and are
    // read from "packages".
    packages = packagesFromV1(lock.dependencies, fail);
    packages[''] = { name: lock.name, version: lock.version };
  } else if (lock.lockfileVersion === 2 || lock.lockfileVersion === 3) {
    if (lock.packages === undefined) throw fail(`lockfileVersion ${lock.lockfileVersion} without "packages"`);
    packages = lock.packages;
  } else throw fail(`lockfileVersion ${lock.lockfileVersion} is not supported (expected 1, 2 or 3)`);

  const entries = new Map<string, Entry>();
  for (const [key, value] of Object.entries(packages)) {
    const parsed = entrySchema.safeParse(value);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const field = issue === undefined || issue.path.length === 0 ? '' : ` field ${issue.path.join('.')}`;
      throw fail(`entry '${key}'${field} is malformed: ${issue?.message ?? 'not an object'}`, parsed.error);
    }
    // Installed packages live under node_modules inside the project; only link targets (file:
    // dependencies, workspaces) may point elsewhere.
    const segments = key.split('/');
    if (
      installedName(key) !== undefined &&
      (key.startsWith('/') || segments.includes('..') || segments.includes('.'))
    )
      throw fail(`entry '${key}' has an invalid path`);
    entries.set(key, parsed.data);
  }

  // A link entry stands for the folder it points to; follow it when resolving edges.
  const target = (key: string): string => {
    const e = entries.get(key);
    return e?.link === true && e.resolved !== undefined ? e.resolved : key;
  };

  const byKey = new Map<string, Component>();
  const byPurl = new Map<string, Component>();
  for (const [key, e] of entries) {
    if (key === '' || e.link === true) continue;
    const folderName = installedName(key);
    if (folderName !== undefined && !NPM_NAME.test(folderName))
      throw fail(`entry '${key}' installs an invalid package name '${folderName}'`);
    // An aliased install (`"foo": "npm:bar@1"`) keeps the real package name in `name`; the real
    // name is what vulnerability data knows.
    const name = e.name ?? folderName ?? key.split('/').pop() ?? key;
    if (!NPM_NAME.test(name)) throw fail(`entry '${key}' has an invalid package name '${name}'`);
    if (e.version === undefined) {
      // A workspace folder without a version is part of the project, not a third-party component.
      if (folderName === undefined) continue;
      throw fail(`entry '${key}' has no version`);
    }
    if (semver.valid(e.version) === null) throw fail(`entry '${key}' has an invalid version '${e.version}'`);
    let hashes: ComponentHash[] = [];
    if (e.integrity !== undefined) {
      const h = sriToHashes(e.integrity);
      if (typeof h === 'string') throw fail(`entry '${key}': ${h}`);
      hashes = h;
    }
    const purl = npmPurl(name, e.version);
    const existing = byPurl.get(purl);
    if (existing !== undefined) {
      // The same name@version installed twice must be the same bytes; different digests mean a
      // different registry or a tampered lockfile, and either way the SBOM would lie.
      for (const h of hashes) {
        const other = existing.hashes.find((x) => x.alg === h.alg);
        if (other !== undefined && other.content !== h.content)
          throw fail(
            `entry '${key}' (${name}@${e.version}) has a different ${h.alg} integrity than another copy`,
          );
        if (other === undefined) existing.hashes.push(h);
      }
      const scope = scopeOf(e);
      if (existing.scope !== undefined && SCOPE_RANK[scope] < SCOPE_RANK[existing.scope])
        existing.scope = scope;
      byKey.set(key, existing);
      continue;
    }
    const component: Component = {
      name,
      version: e.version,
      purl,
      ecosystem: 'npm',
      hashes,
      dependencies: [],
      scope: scopeOf(e),
    };
    const licenses = licensesOf(e.license);
    if (licenses !== undefined) component.licenses = licenses;
    byKey.set(key, component);
    byPurl.set(purl, component);
  }

  const exists = (k: string) => entries.has(k);
  const edgesOf = (key: string, e: Entry): string[] => {
    const names = new Set([
      ...Object.keys(e.dependencies ?? {}),
      ...Object.keys(e.optionalDependencies ?? {}),
      ...Object.keys(e.peerDependencies ?? {}),
      // devDependencies are installed only for the root and workspaces, never for packages
      // under node_modules.
      ...(installedName(key) === undefined ? Object.keys(e.devDependencies ?? {}) : []),
    ]);
    const out = new Set<string>();
    for (const dep of names) {
      const found = resolveDep(key, dep, exists);
      // Missing optional or peer dependencies (other platforms, --legacy-peer-deps) are normal.
      if (found === undefined) continue;
      const c = byKey.get(target(found));
      if (c !== undefined) out.add(c.purl);
    }
    return [...out];
  };

  for (const [key, e] of entries) {
    const c = byKey.get(key);
    if (c === undefined) continue;
    const deps = new Set([...c.dependencies, ...edgesOf(key, e)]);
    deps.delete(c.purl);
    c.dependencies = [...deps].sort();
  }

  const direct = new Set<string>();
  for (const [key, e] of entries) {
    // The root and its workspaces (folders that are not installed packages).
    if (installedName(key) !== undefined || e.link === true) continue;
    for (const p of edgesOf(key, e)) direct.add(p);
  }

  const root = entries.get('');
  const project: NpmCatalog['project'] = {};
  const projectName = root?.name ?? lock.name;
  const projectVersion = root?.version ?? lock.version;
  if (projectName !== undefined) project.name = projectName;
  if (projectVersion !== undefined) project.version = projectVersion;
  const components = [...byPurl.values()].sort((a, b) => (a.purl < b.purl ? -1 : a.purl > b.purl ? 1 : 0));
  return { project, components, direct: [...direct].sort() };
}
