import { lstat, readdir, readFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, sep } from 'node:path';
import { GatehouseError } from '../common/errors.ts';
import { catalogCargoLock, catalogGoMod } from './go-cargo.ts';
import { catalogGradleLockfile, catalogPom } from './jvm-lock.ts';
import { type Catalog, finishCatalog, parseJsonLockfile } from './lockfile.ts';
import type { Component, ComponentScope } from './model.ts';
import { catalogNpmLockfile } from './npm-lock.ts';
import { catalogApkInstalled, catalogDpkgStatus, type Distro, parseOsRelease } from './os-packages.ts';
import { catalogPnpmLock } from './pnpm-lock.ts';
import { formatPurl, npmPurl } from './purl.ts';
import { catalogPipfileLock, catalogPoetryLock, catalogRequirements, catalogUvLock } from './python-lock.ts';
import { catalogYarnLock, type NpmManifest } from './yarn-lock.ts';

/** The formats gatehouse catalogues, named after the file that holds them. */
export type LockfileFormat =
  | 'npm'
  | 'yarn'
  | 'pnpm'
  | 'poetry'
  | 'uv'
  | 'pipenv'
  | 'requirements'
  | 'gomod'
  | 'cargo'
  | 'maven'
  | 'gradle'
  | 'dpkg'
  | 'apk';

/** The format a file holds, judged by its path (workspace-relative, POSIX or native separators). */
export function lockfileFormat(path: string): LockfileFormat | undefined {
  const p = path.split(sep).join('/');
  const name = basename(p);
  if (name === 'package-lock.json' || name === 'npm-shrinkwrap.json') return 'npm';
  if (name === 'yarn.lock') return 'yarn';
  if (name === 'pnpm-lock.yaml') return 'pnpm';
  if (name === 'poetry.lock') return 'poetry';
  if (name === 'uv.lock') return 'uv';
  if (name === 'Pipfile.lock') return 'pipenv';
  if (/^requirements([-_.][A-Za-z0-9_.-]+)?\.txt$/.test(name)) return 'requirements';
  if (name === 'go.mod') return 'gomod';
  if (name === 'Cargo.lock') return 'cargo';
  if (name === 'pom.xml') return 'maven';
  if (name === 'gradle.lockfile') return 'gradle';
  if (p === 'var/lib/dpkg/status' || p.endsWith('/var/lib/dpkg/status')) return 'dpkg';
  if (p === 'lib/apk/db/installed' || p.endsWith('/lib/apk/db/installed')) return 'apk';
  return undefined;
}

/** Context some formats use: the sibling package.json for yarn, the distribution for OS packages. */
export interface CatalogContext {
  manifest?: NpmManifest;
  distro?: Distro;
}

/**
 * Catalog one lockfile or package database, chosen by its file name.
 * @param path the file's path (its name picks the format)
 * @param where how to name the file in errors (defaults to `path`)
 * @throws GatehouseError BAD_LOCKFILE naming the file, the position and the problem; BAD_INPUT for
 *   a file name no cataloger knows
 */
export function catalogFile(path: string, text: string, context: CatalogContext = {}, where = path): Catalog {
  const format = lockfileFormat(path);
  switch (format) {
    case 'npm':
      return catalogNpmLockfile(text, where);
    case 'yarn':
      return catalogYarnLock(text, where, context.manifest);
    case 'pnpm':
      return catalogPnpmLock(text, where);
    case 'poetry':
      return catalogPoetryLock(text, where);
    case 'uv':
      return catalogUvLock(text, where);
    case 'pipenv':
      return catalogPipfileLock(text, where);
    case 'requirements':
      return catalogRequirements(text, where);
    case 'gomod':
      return catalogGoMod(text, where);
    case 'cargo':
      return catalogCargoLock(text, where);
    case 'maven':
      return catalogPom(text, where);
    case 'gradle':
      return catalogGradleLockfile(text, where);
    case 'dpkg':
      return catalogDpkgStatus(text, where, context.distro);
    case 'apk':
      return catalogApkInstalled(text, where, context.distro);
    case undefined:
      throw new GatehouseError('BAD_INPUT', `'${basename(path)}' is not a lockfile gatehouse can catalogue`, {
        where,
      });
  }
}

const SCOPE_RANK: Record<ComponentScope, number> = { required: 0, optional: 1, dev: 2 };

/** Merge catalogs: one component per purl, edges united, the most needed scope kept. */
export function mergeCatalogs(project: Catalog['project'], catalogs: Iterable<Catalog>): Catalog {
  const byPurl = new Map<string, Component>();
  const direct: string[] = [];
  for (const cat of catalogs) {
    direct.push(...cat.direct);
    for (const c of cat.components) {
      const existing = byPurl.get(c.purl);
      if (existing === undefined) {
        byPurl.set(c.purl, { ...c, hashes: [...c.hashes], dependencies: [...c.dependencies] });
        continue;
      }
      existing.dependencies.push(...c.dependencies);
      for (const h of c.hashes) {
        const other = existing.hashes.find((x) => x.alg === h.alg);
        if (other === undefined) existing.hashes.push(h);
        else if (other.content !== h.content)
          throw new GatehouseError('BAD_LOCKFILE', `${c.purl} is locked with two different ${h.alg} digests`);
      }
      if (
        c.scope !== undefined &&
        (existing.scope === undefined || SCOPE_RANK[c.scope] < SCOPE_RANK[existing.scope])
      )
        existing.scope = c.scope;
      if (existing.licenses === undefined && c.licenses !== undefined) existing.licenses = c.licenses;
    }
  }
  return finishCatalog(project, byPurl.values(), direct);
}

/** What {@link catalogDirectory} found: the merged catalog and each file it read. */
export interface DirectoryCatalog extends Catalog {
  sources: { path: string; format: LockfileFormat; components: number }[];
  /** purls of the projects the lockfiles belong to (their own packages), sorted. */
  projects: string[];
}

const PROJECT_PURL_TYPE: Partial<Record<LockfileFormat, string>> = {
  npm: 'npm',
  yarn: 'npm',
  pnpm: 'npm',
  poetry: 'pypi',
  uv: 'pypi',
  pipenv: 'pypi',
  cargo: 'cargo',
  maven: 'maven',
};

/** The purl of the project a lockfile belongs to, where the format names it with its version. */
export function projectPurlOf(format: LockfileFormat, project: Catalog['project']): string | undefined {
  const type = PROJECT_PURL_TYPE[format];
  const { name, version } = project;
  if (type === undefined || name === undefined || version === undefined || name === '') return undefined;
  if (type === 'npm') return npmPurl(name, version);
  if (type === 'pypi') return formatPurl({ type, name: name.toLowerCase().replace(/[-_.]+/g, '-'), version });
  if (type === 'maven') {
    const colon = name.indexOf(':');
    if (colon < 0) return undefined;
    return formatPurl({ type, namespace: name.slice(0, colon), name: name.slice(colon + 1), version });
  }
  return formatPurl({ type, name, version });
}

// Folders that hold installed or generated copies, not the project's own declarations.
const SKIP_DIRS = new Set([
  'node_modules',
  '.git',
  '.hg',
  '.svn',
  '.venv',
  'venv',
  '__pycache__',
  '.gradle',
  '.yarn',
  '.pnpm-store',
]);
const MAX_DEPTH = 16;
const MAX_BYTES = 256 * 1024 * 1024;

async function readLimited(path: string, where: string): Promise<string> {
  const st = await lstat(path);
  if (!st.isFile()) throw new GatehouseError('BAD_LOCKFILE', 'is not a regular file', { where });
  if (st.size > MAX_BYTES)
    throw new GatehouseError('BAD_LOCKFILE', `is larger than ${MAX_BYTES} bytes`, { where });
  return readFile(path, 'utf8');
}

async function manifestNear(dir: string): Promise<NpmManifest | undefined> {
  const path = join(dir, 'package.json');
  let text: string;
  try {
    text = await readLimited(path, path);
  } catch {
    return undefined;
  }
  const raw = parseJsonLockfile(text, path, 'package.json');
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return undefined;
  const m = raw as Record<string, unknown>;
  const deps = (v: unknown) =>
    typeof v === 'object' && v !== null && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).filter((e): e is [string, string] => typeof e[1] === 'string'))
      : undefined;
  const out: NpmManifest = {};
  if (typeof m.name === 'string') out.name = m.name;
  if (typeof m.version === 'string') out.version = m.version;
  for (const k of ['dependencies', 'devDependencies', 'optionalDependencies'] as const) {
    const d = deps(m[k]);
    if (d !== undefined) out[k] = d;
  }
  return out;
}

/**
 * Catalog every supported lockfile found under `dir` (skipping installed copies such as
 * node_modules and never following symlinks), or exactly the given files, plus any `extra` ones.
 * Errors name files as `displayRoot/relative-path`.
 * @param options.files workspace-relative files to catalogue instead of searching; each must exist
 * @param options.extra workspace-relative files to catalogue besides those found; each must exist
 * @param options.displayRoot how to name `dir` in errors (defaults to `dir`)
 * @throws GatehouseError BAD_LOCKFILE naming the file, the position and the problem
 */
export async function catalogDirectory(
  dir: string,
  options: { files?: readonly string[]; extra?: readonly string[]; displayRoot?: string } = {},
): Promise<DirectoryCatalog> {
  const display = options.displayRoot ?? dir;
  const found = options.files ?? (await findLockfiles(dir));
  const files = [...new Set([...found, ...(options.extra ?? [])])].sort();
  const catalogs: Catalog[] = [];
  const sources: DirectoryCatalog['sources'] = [];
  const projects = new Set<string>();
  let project: Catalog['project'] | undefined;
  let projectDepth = Number.POSITIVE_INFINITY;
  for (const rel of files) {
    const where = join(display, rel);
    // Listed files come from a project's configuration: they must stay inside the workspace.
    if (isAbsolute(rel) || rel.split(/[\\/]/).includes('..'))
      throw new GatehouseError('BAD_LOCKFILE', 'is not a path inside the workspace', { where: rel });
    const format = lockfileFormat(rel);
    if (format === undefined)
      throw new GatehouseError('BAD_LOCKFILE', 'is not a lockfile format gatehouse can catalogue', { where });
    let text: string;
    try {
      text = await readLimited(join(dir, rel), where);
    } catch (e) {
      if (e instanceof GatehouseError) throw e;
      throw new GatehouseError('BAD_LOCKFILE', 'cannot read the lockfile', { where, cause: e });
    }
    const context: CatalogContext = {};
    if (format === 'yarn') {
      const manifest = await manifestNear(dirname(join(dir, rel)));
      if (manifest !== undefined) context.manifest = manifest;
    }
    const cat = catalogFile(rel, text, context, where);
    catalogs.push(cat);
    sources.push({ path: rel, format, components: cat.components.length });
    const own = projectPurlOf(format, cat.project);
    if (own !== undefined) projects.add(own);
    // The shallowest lockfile that names its project names the whole directory.
    const depth = rel.split('/').length;
    if (cat.project.name !== undefined && (project === undefined || depth < projectDepth)) {
      project = cat.project;
      projectDepth = depth;
    }
  }
  return { ...mergeCatalogs(project ?? {}, catalogs), sources, projects: [...projects].sort() };
}

/** Every supported lockfile under `dir`, workspace-relative and sorted. */
export async function findLockfiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string, depth: number): Promise<void> => {
    if (depth > MAX_DEPTH) return;
    const entries = await readdir(d, { withFileTypes: true });
    const names = new Set(entries.map((e) => e.name));
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory() && !SKIP_DIRS.has(e.name)) await walk(p, depth + 1);
      else if (e.isFile()) {
        const rel = relative(dir, p).split(sep).join('/');
        const format = lockfileFormat(rel);
        // Only OS databases at their real place; npm ignores package-lock.json beside a shrinkwrap.
        if (format === undefined || ((format === 'dpkg' || format === 'apk') && depth > 3)) continue;
        if (e.name === 'package-lock.json' && names.has('npm-shrinkwrap.json')) continue;
        out.push(rel);
      }
    }
  };
  await walk(dir, 0);
  return out.sort();
}

/**
 * Catalog the packages of the system image a build runs on (dpkg status and apk installed under
 * `root`), marked as the build environment. An image with neither database yields no components.
 * @throws GatehouseError BAD_LOCKFILE when a database is present but malformed
 */
export async function catalogBuildEnvironment(root = '/'): Promise<Component[]> {
  let distro: Distro | undefined;
  for (const p of ['etc/os-release', 'usr/lib/os-release']) {
    try {
      distro = parseOsRelease(await readFile(join(root, p), 'utf8'));
      if (distro !== undefined) break;
    } catch {
      // absent: try the next one
    }
  }
  const out: Catalog[] = [];
  for (const rel of ['var/lib/dpkg/status', 'lib/apk/db/installed']) {
    const path = join(root, rel);
    let text: string;
    try {
      text = await readLimited(path, path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw e instanceof GatehouseError
        ? e
        : new GatehouseError('BAD_LOCKFILE', 'cannot read the package database', { where: path, cause: e });
    }
    out.push(catalogFile(rel, text, distro === undefined ? {} : { distro }, path));
  }
  const merged = mergeCatalogs({}, out).components;
  for (const c of merged) {
    c.buildEnvironment = true;
    delete c.scope;
  }
  return merged;
}

/**
 * The components of a build: every lockfile of the workspace, plus the ones the project lists
 * (each of which must exist: a project may add lockfiles, never leave one out), plus the packages
 * of the runner image, marked as the build environment.
 * @param options.extra workspace-relative lockfiles the project configured, besides all found
 * @param options.displayRoot how to name the workspace in errors (the source folder)
 * @param options.environmentRoot root of the runner image's file system (`/` for a sandbox that
 *   mounts the host's system read-only); false to leave the build environment out
 * @throws GatehouseError BAD_LOCKFILE naming the file, the position and the problem
 */
export async function catalogWorkspace(
  workspace: string,
  options: { extra?: readonly string[]; displayRoot?: string; environmentRoot?: string | false } = {},
): Promise<{ components: Component[]; projects: string[] }> {
  const project = await catalogDirectory(workspace, {
    ...(options.extra === undefined ? {} : { extra: options.extra }),
    ...(options.displayRoot === undefined ? {} : { displayRoot: options.displayRoot }),
  });
  const environment =
    options.environmentRoot === false ? [] : await catalogBuildEnvironment(options.environmentRoot ?? '/');
  const byPurl = new Map(project.components.map((c) => [c.purl, c]));
  for (const c of environment) if (!byPurl.has(c.purl)) byPurl.set(c.purl, c);
  const components = [...byPurl.values()].sort((a, b) => (a.purl < b.purl ? -1 : a.purl > b.purl ? 1 : 0));
  return { components, projects: project.projects };
}
