import type { GatehouseError } from '../common/errors.ts';
import {
  type Catalog,
  finishCatalog,
  lockfileError,
  normalizePypiName,
  parseJsonLockfile,
  scopeByReachability,
} from './lockfile.ts';
import type { Component, ComponentHash } from './model.ts';
import { formatPurl } from './purl.ts';
import { isTable, parseToml, type TomlTable, type TomlValue } from './toml.ts';

// PEP 508 names: letters and digits, with . _ - inside.
const PYPI_NAME = /^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$/;
// PEP 440 public versions with optional local part, loosely: what a lockfile pins.
const PYPI_VERSION =
  /^v?(\d+!)?\d+(\.\d+)*((a|b|rc|alpha|beta|c|pre|preview)[-_.]?\d*)?([-_.]?(post|rev|r)[-_.]?\d*)?([-_.]?dev[-_.]?\d*)?(\+[a-z0-9]+([-_.][a-z0-9]+)*)?$/i;

function pypi(name: string, version: string): Component {
  const n = normalizePypiName(name);
  return {
    name: n,
    version,
    purl: formatPurl({ type: 'pypi', name: n, version }),
    ecosystem: 'pypi',
    hashes: [],
    dependencies: [],
  };
}

/** A `sha256:<hex>` (or `sha256=`) digest, if it is one. */
function hashOf(s: string): ComponentHash | undefined {
  const m = /^(sha256|sha384|sha512)[:=]([0-9a-fA-F]+)$/.exec(s);
  if (m === null) return undefined;
  const alg = ({ sha256: 'SHA-256', sha384: 'SHA-384', sha512: 'SHA-512' } as const)[m[1] as 'sha256'];
  const len = { 'SHA-256': 64, 'SHA-384': 96, 'SHA-512': 128 }[alg];
  return m[2]?.length === len ? { alg, content: (m[2] ?? '').toLowerCase() } : undefined;
}

/**
 * The one hash that identifies a package's distribution: the source archive's when the lock names
 * one, else the only file's. A package with several wheels and no sdist has no single archive, so
 * no hash is recorded rather than an arbitrary one.
 */
function distributionHash(files: { name: string; hash: string }[]): ComponentHash[] {
  const sdist = files.filter((f) => /\.(tar\.gz|zip|tar\.bz2)$/.test(f.name));
  const pick = sdist.length === 1 ? sdist[0] : files.length === 1 ? files[0] : undefined;
  const h = pick === undefined ? undefined : hashOf(pick.hash);
  return h === undefined ? [] : [h];
}

const str = (v: TomlValue | undefined): string | undefined => (typeof v === 'string' ? v : undefined);

function checkNameVersion(
  name: unknown,
  version: unknown,
  fail: (m: string) => GatehouseError,
): [string, string] {
  if (typeof name !== 'string' || !PYPI_NAME.test(name)) throw fail(`invalid package name '${String(name)}'`);
  if (typeof version !== 'string' || !PYPI_VERSION.test(version))
    throw fail(`package ${name} has an invalid version '${String(version)}'`);
  return [name, version];
}

/**
 * Catalog a poetry.lock (lock-version 1.x and 2.x). Dependency edges come from each package's
 * `[package.dependencies]`; scope from `groups` (poetry 2) or `category` (poetry 1).
 * @throws GatehouseError BAD_LOCKFILE naming the position or the package
 */
export function catalogPoetryLock(text: string, where: string): Catalog {
  const doc = parseToml(text, where);
  const packages = doc.package ?? [];
  if (!Array.isArray(packages)) throw lockfileError(where, 'poetry.lock: package is not an array of tables');
  const byName = new Map<string, Component>();
  const deps = new Map<Component, string[]>();
  const legacyFiles = isTable(doc.metadata) && isTable(doc.metadata.files) ? doc.metadata.files : undefined;
  const required: string[] = [];
  const dev: string[] = [];
  for (const [i, p] of packages.entries()) {
    const fail = (m: string) => lockfileError(where, `poetry.lock package ${i + 1}: ${m}`);
    if (!isTable(p)) throw fail('is not a table');
    const [name, version] = checkNameVersion(p.name, p.version, fail);
    const c = pypi(name, version);
    const files = Array.isArray(p.files) ? p.files : legacyFiles?.[name];
    if (Array.isArray(files))
      c.hashes = distributionHash(
        files.filter(isTable).map((f) => ({ name: str(f.file) ?? '', hash: str(f.hash) ?? '' })),
      );
    if (byName.has(c.name)) throw fail(`package ${c.name} is locked twice`);
    byName.set(c.name, c);
    const d = p.dependencies;
    deps.set(c, isTable(d) ? Object.keys(d).map(normalizePypiName) : []);
    const groups = Array.isArray(p.groups) ? p.groups.map(String) : [str(p.category) ?? 'main'];
    if (groups.includes('main')) required.push(c.purl);
    else dev.push(c.purl);
  }
  // Dependencies limited to other platforms or extras may not be locked; the rest are.
  for (const [c, names] of deps)
    for (const n of names) {
      const t = byName.get(n);
      if (t !== undefined) c.dependencies.push(t.purl);
    }
  const catalog = finishCatalog({}, byName.values(), []);
  scopeByReachability(catalog.components, { required, dev });
  return catalog;
}

/**
 * Catalog a uv.lock (version 1). The project and its workspace members (editable, virtual or
 * directory sources) are not components; their dependencies are the direct ones, their
 * dev-dependencies the development roots.
 * @throws GatehouseError BAD_LOCKFILE naming the position or the package
 */
export function catalogUvLock(text: string, where: string): Catalog {
  const doc = parseToml(text, where);
  if (doc.version !== 1)
    throw lockfileError(where, `uv.lock: version ${String(doc.version)} is not supported (expected 1)`);
  const packages = doc.package ?? [];
  if (!Array.isArray(packages)) throw lockfileError(where, 'uv.lock: package is not an array of tables');
  const byNameVersion = new Map<string, Component>();
  const byName = new Map<string, Component[]>();
  const local = new Set<string>();
  const pending: [Component | undefined, TomlTable, number][] = [];
  const project: Catalog['project'] = {};
  for (const [i, p] of packages.entries()) {
    const fail = (m: string) => lockfileError(where, `uv.lock package ${i + 1}: ${m}`);
    if (!isTable(p)) throw fail('is not a table');
    const source = isTable(p.source) ? p.source : {};
    if ('editable' in source || 'virtual' in source || 'directory' in source) {
      const name = str(p.name);
      if (name === undefined) throw fail('has no name');
      local.add(normalizePypiName(name));
      if (str(source.editable) === '.' || str(source.virtual) === '.') {
        project.name = name;
        if (str(p.version) !== undefined) project.version = str(p.version) as string;
      }
      pending.push([undefined, p, i]);
      continue;
    }
    const [name, version] = checkNameVersion(p.name, p.version, fail);
    const c = pypi(name, version);
    const files: { name: string; hash: string }[] = [];
    if (isTable(p.sdist)) files.push({ name: 'sdist.tar.gz', hash: str(p.sdist.hash) ?? '' });
    else if (Array.isArray(p.wheels))
      for (const w of p.wheels.filter(isTable))
        files.push({ name: str(w.url) ?? '', hash: str(w.hash) ?? '' });
    c.hashes = distributionHash(files);
    if (byNameVersion.has(c.purl)) throw fail(`${c.name} ${version} is locked twice`);
    byNameVersion.set(c.purl, c);
    byName.set(c.name, [...(byName.get(c.name) ?? []), c]);
    pending.push([c, p, i]);
  }
  const resolve = (ref: TomlValue, at: number): Component | undefined => {
    const fail = (m: string) => lockfileError(where, `uv.lock package ${at + 1}: ${m}`);
    if (!isTable(ref) || typeof ref.name !== 'string') throw fail('a dependency has no name');
    const n = normalizePypiName(ref.name);
    if (local.has(n)) return undefined;
    const candidates = byName.get(n) ?? [];
    const v = str(ref.version);
    const hit =
      v === undefined
        ? candidates.length === 1
          ? candidates[0]
          : undefined
        : candidates.find((c) => c.version === v);
    if (hit === undefined)
      throw fail(
        candidates.length > 1
          ? `dependency ${n} is ambiguous without a version`
          : `dependency ${n} is not locked`,
      );
    return hit;
  };
  const roots = { required: [] as string[], optional: [] as string[], dev: [] as string[] };
  for (const [c, p, i] of pending) {
    const runtime = (Array.isArray(p.dependencies) ? p.dependencies : []).map((d) => resolve(d, i));
    const extras = Object.values(isTable(p['optional-dependencies']) ? p['optional-dependencies'] : {})
      .flatMap((l) => (Array.isArray(l) ? l : []))
      .map((d) => resolve(d, i));
    const devs = Object.values(isTable(p['dev-dependencies']) ? p['dev-dependencies'] : {})
      .flatMap((l) => (Array.isArray(l) ? l : []))
      .map((d) => resolve(d, i));
    const purls = (l: (Component | undefined)[]) => l.filter((x) => x !== undefined).map((x) => x.purl);
    if (c !== undefined) c.dependencies.push(...purls(runtime), ...purls(extras));
    else {
      roots.required.push(...purls(runtime));
      roots.optional.push(...purls(extras));
      roots.dev.push(...purls(devs));
    }
  }
  const catalog = finishCatalog(project, byNameVersion.values(), [
    ...roots.required,
    ...roots.optional,
    ...roots.dev,
  ]);
  scopeByReachability(catalog.components, roots);
  return catalog;
}

/**
 * Catalog a Pipfile.lock: `default` is required, `develop` dev. The lock records no edges.
 * @throws GatehouseError BAD_LOCKFILE naming the position or the entry
 */
export function catalogPipfileLock(text: string, where: string): Catalog {
  const raw = parseJsonLockfile(text, where, 'Pipfile.lock');
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw lockfileError(where, 'Pipfile.lock is not a JSON object');
  const lock = raw as Record<string, unknown>;
  if (typeof lock._meta !== 'object' || lock._meta === null)
    throw lockfileError(where, 'Pipfile.lock has no _meta section');
  const byPurl = new Map<string, Component>();
  for (const section of ['default', 'develop'] as const) {
    const entries = lock[section] ?? {};
    if (typeof entries !== 'object' || entries === null || Array.isArray(entries))
      throw lockfileError(where, `Pipfile.lock ${section} is not an object`);
    for (const [name, value] of Object.entries(entries)) {
      const fail = (m: string) => lockfileError(where, `Pipfile.lock ${section}.${name}: ${m}`);
      if (typeof value !== 'object' || value === null) throw fail('is not an object');
      const e = value as Record<string, unknown>;
      if (e.editable === true || typeof e.path === 'string' || typeof e.file === 'string') continue; // the project's own code
      let c: Component;
      if (typeof e.version === 'string') {
        if (!e.version.startsWith('==')) throw fail(`version '${e.version}' is not pinned with ==`);
        checkNameVersion(name, e.version.slice(2), fail);
        c = pypi(name, e.version.slice(2));
      } else if (typeof e.git === 'string' && typeof e.ref === 'string') {
        if (!PYPI_NAME.test(name)) throw fail(`invalid package name '${name}'`);
        // A VCS checkout has no PyPI release: name the exact commit in a generic purl.
        c = {
          ...pypi(name, e.ref),
          purl: formatPurl({
            type: 'generic',
            name: normalizePypiName(name),
            version: e.ref,
            qualifiers: { vcs_url: `git+${e.git}@${e.ref}` },
          }),
          ecosystem: 'generic',
        };
      } else throw fail('has neither a pinned version nor a git ref');
      const hashes = Array.isArray(e.hashes) ? e.hashes.map(String) : [];
      if (hashes.length === 1) c.hashes = distributionHash([{ name: 'only', hash: hashes[0] ?? '' }]);
      const existing = byPurl.get(c.purl);
      if (existing === undefined) {
        c.scope = section === 'default' ? 'required' : 'dev';
        byPurl.set(c.purl, c);
      } else if (section === 'default') existing.scope = 'required';
    }
  }
  const catalog = finishCatalog({}, byPurl.values(), byPurl.keys());
  return catalog;
}

/**
 * Catalog a requirements.txt in which every requirement is pinned with `==` (as pip-compile and
 * `pip freeze` write them). Anything not pinned to one version, and includes of other files, are
 * refused by line: the SBOM must not guess what pip would install.
 * @throws GatehouseError BAD_LOCKFILE naming the line and column
 */
export function catalogRequirements(text: string, where: string): Catalog {
  const byPurl = new Map<string, Component>();
  const pinned = new Map<string, string>();
  const lines = text.split('\n');
  for (let n = 0; n < lines.length; n++) {
    const start = n;
    let line = (lines[n] ?? '').replace(/\r$/, '');
    // A trailing backslash continues the requirement on the next line.
    while (line.endsWith('\\') && n + 1 < lines.length)
      line = `${line.slice(0, -1)} ${(lines[++n] ?? '').replace(/\r$/, '')}`;
    const fail = (m: string, col = 1) =>
      lockfileError(where, `requirements: ${m}`, { line: start + 1, column: col });
    const body = line.replace(/(^|\s)#.*$/, '').trim();
    if (body === '') continue;
    if (body.startsWith('-')) {
      const opt = body.split(/[\s=]/)[0] ?? '';
      // Index options change where packages come from, not which ones are installed.
      if (
        [
          '--index-url',
          '-i',
          '--extra-index-url',
          '--trusted-host',
          '--find-links',
          '-f',
          '--no-binary',
          '--only-binary',
          '--prefer-binary',
          '--pre',
          '--no-index',
        ].includes(opt)
      )
        continue;
      throw fail(`option ${opt} is not supported (list each pinned requirement in this file)`);
    }
    const m =
      /^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*==\s*([^\s;,]+)\s*(;[^-]*)?((?:\s*--hash[=\s]\S+)*)\s*$/.exec(
        body,
      );
    if (m === null) {
      if (
        /^[A-Za-z0-9][A-Za-z0-9._-]*\s*(\[[^\]]*\])?\s*(===|~=|!=|<=|>=|<|>|@)/.test(body) ||
        /^[A-Za-z0-9][A-Za-z0-9._-]*\s*(\[[^\]]*\])?\s*$/.test(body)
      )
        throw fail(`'${body}' is not pinned to one version with ==`);
      throw fail(`cannot read requirement '${body}'`);
    }
    const [, name = '', , version = '', , hashPart = ''] = m;
    if (version.includes('*'))
      throw fail(`'${body}' pins a wildcard, not one version`, body.indexOf('==') + 3);
    checkNameVersion(name, version, (msg) => fail(msg));
    const c = pypi(name, version);
    const hashes = [...hashPart.matchAll(/--hash[=\s](\S+)/g)].map((h) => h[1] ?? '');
    for (const h of hashes) if (hashOf(h) === undefined) throw fail(`invalid hash '${h}'`);
    if (hashes.length === 1) c.hashes = distributionHash([{ name: 'only', hash: hashes[0] ?? '' }]);
    const other = pinned.get(c.name);
    if (other !== undefined && other !== version)
      throw fail(`${c.name} is pinned to both ${other} and ${version}`);
    pinned.set(c.name, version);
    if (!byPurl.has(c.purl)) {
      c.scope = 'required';
      byPurl.set(c.purl, c);
    }
  }
  return finishCatalog({}, byPurl.values(), byPurl.keys());
}
