/**
 * The installed-package metadata files gatehouse reads inside an artifact, recognised by their
 * path, and the parsers for npm and Python ones (Java lives in java-metadata.ts; OS databases and
 * lockfiles reuse the catalogers of src/sbom).
 */
import { lockfileFormat } from '../catalog.ts';
import { normalizePypiName } from '../lockfile.ts';
import type { Component } from '../model.ts';
import { formatPurl, npmPurl } from '../purl.ts';

/** Which parser a file's path calls for. */
export type MetadataKind =
  | 'npm-package'
  | 'python-metadata'
  | 'java-pom-properties'
  | 'java-manifest'
  | 'dpkg-status'
  | 'dpkg-status-d'
  | 'apk-installed'
  | 'os-release'
  | 'lockfile';

// Folders of installed packages: the lockfiles that packages ship there describe how their authors
// developed them, not what this artifact contains (the installed metadata beside them does).
const INSTALLED_DIRS = new Set(['node_modules', 'site-packages', 'dist-packages', 'bower_components']);

/**
 * The kind of metadata at `path` (POSIX, relative to its archive or directory), or undefined.
 * @param atArchiveRoot whether paths are relative to a zip's root (a jar's META-INF/MANIFEST.MF)
 */
export function metadataKind(path: string, atArchiveRoot: boolean): MetadataKind | undefined {
  const segments = path.split('/');
  const name = segments[segments.length - 1] ?? '';
  if (name === 'package.json') return 'npm-package';
  if (/\.dist-info\/METADATA$/.test(path) || /\.egg-info\/PKG-INFO$/.test(path)) return 'python-metadata';
  if (/(^|\/)META-INF\/maven\/[^/]+\/[^/]+\/pom\.properties$/.test(path)) return 'java-pom-properties';
  if (atArchiveRoot && path === 'META-INF/MANIFEST.MF') return 'java-manifest';
  if (path === 'etc/os-release' || path.endsWith('/etc/os-release')) return 'os-release';
  if (path === 'usr/lib/os-release' || path.endsWith('/usr/lib/os-release')) return 'os-release';
  const sd = /(^|\/)var\/lib\/dpkg\/status\.d\/[^/]+$/.exec(path);
  if (sd !== null && !name.endsWith('.md5sums') && !name.startsWith('.')) return 'dpkg-status-d';
  const format = lockfileFormat(path);
  if (format === 'dpkg') return 'dpkg-status';
  if (format === 'apk') return 'apk-installed';
  if (format === undefined) return undefined;
  // A pom.xml under META-INF/maven declares the jar's dependencies; it does not contain them.
  if (format === 'maven' && /(^|\/)META-INF\/maven\//.test(path)) return undefined;
  if (segments.slice(0, -1).some((s) => INSTALLED_DIRS.has(s))) return undefined;
  return 'lockfile';
}

/** The path a database's root file system starts at: `rootfs/` for `rootfs/var/lib/dpkg/status`. */
export function rootPrefix(path: string, kind: MetadataKind): string {
  const suffix =
    kind === 'dpkg-status'
      ? 'var/lib/dpkg/status'
      : kind === 'apk-installed'
        ? 'lib/apk/db/installed'
        : kind === 'os-release'
          ? path.endsWith('usr/lib/os-release')
            ? 'usr/lib/os-release'
            : 'etc/os-release'
          : undefined;
  if (suffix !== undefined) return path.slice(0, path.length - suffix.length);
  if (kind === 'dpkg-status-d') return path.slice(0, path.lastIndexOf('var/lib/dpkg/status.d/'));
  return '';
}

const NPM_NAME = /^(?:@[a-z0-9][a-z0-9._~-]*\/)?[A-Za-z0-9._~-][A-Za-z0-9._~-]*$/;
const NPM_VERSION = /^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/;

/** Why a metadata file was not taken: the one-line reason, for the result's notes. */
export class NotAPackage extends Error {}

/**
 * The npm package a package.json names, when it names one (`name` and a semver `version`); a
 * package.json without them (a sub-path's `{"type":"module"}`, a workspace root) names none.
 * @throws NotAPackage when the file is not JSON or its name or version is malformed
 */
export function npmPackageComponent(text: string): Component | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  } catch (e) {
    throw new NotAPackage(`is not JSON (${e instanceof Error ? e.message.slice(0, 80) : 'syntax error'})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new NotAPackage('is not a JSON object');
  const m = raw as Record<string, unknown>;
  if (typeof m.name !== 'string' || typeof m.version !== 'string') return undefined;
  if (!NPM_NAME.test(m.name) || m.name.length > 214)
    throw new NotAPackage(`has an invalid name '${m.name.slice(0, 80)}'`);
  const version = m.version.trim().replace(/^[=v]+/, '');
  if (!NPM_VERSION.test(version))
    throw new NotAPackage(`package ${m.name} has a version '${m.version.slice(0, 40)}' that is not semver`);
  const c: Component = {
    name: m.name,
    version,
    purl: npmPurl(m.name, version),
    ecosystem: 'npm',
    hashes: [],
    dependencies: [],
    scope: 'required',
  };
  if (typeof m.license === 'string' && m.license !== '' && m.license.length < 200) c.licenses = [m.license];
  return c;
}

/** The header fields of an RFC 822-style metadata file (Python METADATA and PKG-INFO). */
function headerFields(text: string): Map<string, string> {
  const out = new Map<string, string>();
  let last: string | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    if (line === '') break; // the body (the long description) starts here
    if ((line.startsWith(' ') || line.startsWith('\t')) && last !== undefined) {
      out.set(last, `${out.get(last) ?? ''}\n${line.trim()}`);
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    last = line.slice(0, colon).trim();
    if (!out.has(last)) out.set(last, line.slice(colon + 1).trim());
  }
  return out;
}

const PYPI_NAME = /^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$/;
const PYPI_VERSION = /^[A-Za-z0-9][A-Za-z0-9.!+_-]*$/;

/**
 * The Python distribution a `*.dist-info/METADATA` or `*.egg-info/PKG-INFO` names: its PEP 503
 * normalised name and version, and its licence expression (Metadata 2.4) where given.
 * @throws NotAPackage when the file has no valid Name or Version
 */
export function pythonMetadataComponent(text: string): Component {
  const f = headerFields(text);
  const name = f.get('Name');
  const version = f.get('Version');
  if (name === undefined || !PYPI_NAME.test(name))
    throw new NotAPackage(`has no valid Name ('${(name ?? '').slice(0, 60)}')`);
  if (version === undefined || !PYPI_VERSION.test(version))
    throw new NotAPackage(`${name} has no valid Version ('${(version ?? '').slice(0, 40)}')`);
  const n = normalizePypiName(name);
  const c: Component = {
    name: n,
    version,
    purl: formatPurl({ type: 'pypi', name: n, version }),
    ecosystem: 'pypi',
    hashes: [],
    dependencies: [],
    scope: 'required',
  };
  const expr = f.get('License-Expression');
  if (expr !== undefined && expr !== '' && expr.length < 200) c.licenses = [expr];
  return c;
}

/**
 * A distroless `var/lib/dpkg/status.d/<package>` file holds the package's control paragraph, with
 * no Status field; give each paragraph the installed status so that the dpkg cataloger takes it.
 */
export function statusDToStatus(text: string): string {
  return text
    .replace(/\r\n/g, '\n')
    .split(/\n\s*\n/)
    .filter((p) => p.trim() !== '')
    .map((p) => (/^Status:/m.test(p) ? p : `${p.trimEnd()}\nStatus: install ok installed`))
    .join('\n\n')
    .concat('\n');
}
