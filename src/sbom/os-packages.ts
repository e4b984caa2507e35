import { type Catalog, finishCatalog, lockfileError } from './lockfile.ts';
import type { Component } from './model.ts';
import { formatPurl } from './purl.ts';

/** Which distribution the database belongs to, from os-release (`ID` and `VERSION_ID`). */
export interface Distro {
  id: string;
  versionId?: string;
}

/** Parse /etc/os-release (or /usr/lib/os-release) into a {@link Distro}, if it names one. */
export function parseOsRelease(text: string): Distro | undefined {
  const values = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m !== null) values.set(m[1] ?? '', (m[2] ?? '').replace(/^["']|["']$/g, ''));
  }
  const id = values.get('ID');
  if (id === undefined || !/^[a-z0-9._-]+$/.test(id)) return undefined;
  const versionId = values.get('VERSION_ID');
  return versionId === undefined ? { id } : { id, versionId };
}

const MAX_FIELD = 1 << 20;

/** Split a deb822 / apk database into paragraphs of fields, with the line each starts on. */
function paragraphs(
  text: string,
  where: string,
  what: string,
  separator: ':' | 'apk',
): { fields: Map<string, string>; line: number }[] {
  const out: { fields: Map<string, string>; line: number }[] = [];
  let current: { fields: Map<string, string>; line: number } | undefined;
  let last: string | undefined;
  for (const [n, raw] of text.split('\n').entries()) {
    const line = raw.replace(/\r$/, '');
    if (line.trim() === '') {
      current = undefined;
      last = undefined;
      continue;
    }
    const fail = (m: string) => lockfileError(where, `${what}: ${m}`, { line: n + 1, column: 1 });
    if (current === undefined) {
      current = { fields: new Map(), line: n + 1 };
      out.push(current);
    }
    if (separator === ':' && (line.startsWith(' ') || line.startsWith('\t'))) {
      // A continuation line of a multi-line field (Description, Conffiles).
      if (last === undefined) throw fail('continuation line without a field');
      const prev = current.fields.get(last) ?? '';
      if (prev.length < MAX_FIELD) current.fields.set(last, `${prev}\n${line.trim()}`);
      continue;
    }
    const m = separator === ':' ? /^([!-9;-~]+):\s*(.*)$/.exec(line) : /^([A-Za-z]):(.*)$/.exec(line);
    if (m === null) throw fail(`'${line.slice(0, 60)}' is not a field`);
    const key = m[1] ?? '';
    // apk repeats some keys (one per file); only the package-level ones matter here.
    if (current.fields.has(key) && separator === ':')
      throw fail(`field ${key} appears twice in one paragraph`);
    if (!current.fields.has(key)) current.fields.set(key, m[2] ?? '');
    last = key;
  }
  return out;
}

/**
 * An installed package of a distribution's package database (`type` deb or apk), as a component
 * needed at run time: its purl names the distribution (`namespace` when the release is unknown)
 * and the architecture.
 */
function osPackage(
  type: 'deb' | 'apk',
  namespace: string,
  p: { name: string; version: string; arch: string | undefined },
  distro: Distro | undefined,
): Component {
  const { name, version } = p;
  const qualifiers: Record<string, string> = {};
  if (p.arch !== undefined) qualifiers.arch = p.arch;
  if (distro !== undefined)
    qualifiers.distro = distro.versionId === undefined ? distro.id : `${distro.id}-${distro.versionId}`;
  return {
    name,
    version,
    purl: formatPurl({ type, namespace: distro?.id ?? namespace, name, version, qualifiers }),
    ecosystem: type,
    hashes: [],
    dependencies: [],
    scope: 'required',
  };
}

const DEB_NAME = /^[a-z0-9][a-z0-9+.-]+$/;
const DEB_VERSION = /^([0-9]+:)?[0-9][A-Za-z0-9.+~:-]*$/;

/**
 * Catalog a Debian dpkg `status` database: every package whose status is "installed", with its
 * architecture, the source package it was built from (`Source: name (version)`; advisories name
 * source packages), and edges from Depends and Pre-Depends to installed packages.
 * @throws GatehouseError BAD_LOCKFILE naming the line and the problem
 */
export function catalogDpkgStatus(text: string, where: string, distro?: Distro): Catalog {
  const byName = new Map<string, { c: Component; depends: string }[]>();
  const provides = new Map<string, Component>();
  for (const p of paragraphs(text, where, 'dpkg status', ':')) {
    const f = p.fields;
    const fail = (m: string) => lockfileError(where, `dpkg status: ${m}`, { line: p.line, column: 1 });
    const name = f.get('Package');
    if (name === undefined) throw fail('paragraph without a Package field');
    const status = f.get('Status') ?? '';
    if (!/ installed$/.test(status)) continue;
    const version = f.get('Version');
    if (!DEB_NAME.test(name)) throw fail(`invalid package name '${name}'`);
    if (version === undefined || !DEB_VERSION.test(version))
      throw fail(`package ${name} has an invalid version '${version ?? ''}'`);
    const c = osPackage('deb', 'debian', { name, version, arch: f.get('Architecture') }, distro);
    const source = f.get('Source');
    if (source !== undefined) {
      const m = /^([a-z0-9][a-z0-9+.-]+)(?:\s+\(([^)]+)\))?$/.exec(source.trim());
      if (m === null) throw fail(`package ${name} has an invalid Source '${source}'`);
      c.sourcePackage = { name: m[1] ?? '', version: m[2] ?? version };
    } else c.sourcePackage = { name, version };
    byName.set(name, [
      ...(byName.get(name) ?? []),
      { c, depends: [f.get('Pre-Depends'), f.get('Depends')].filter(Boolean).join(', ') },
    ]);
    for (const v of (f.get('Provides') ?? '').split(',')) {
      const pv = v.trim().split(/[\s(]/)[0];
      if (pv !== undefined && pv !== '' && !provides.has(pv)) provides.set(pv, c);
    }
  }
  const all = [...byName.values()].flat();
  for (const { c, depends } of all) {
    for (const clause of depends.split(',')) {
      // Of alternatives (a | b), the first one installed is the one in use.
      for (const alt of clause.split('|')) {
        const dep = alt.trim().split(/[\s(:]/)[0] ?? '';
        const t = byName.get(dep)?.[0]?.c ?? provides.get(dep);
        if (t !== undefined) {
          c.dependencies.push(t.purl);
          break;
        }
      }
    }
  }
  return finishCatalog(
    {},
    all.map((x) => x.c),
    [],
  );
}

/**
 * Catalog an Alpine apk `installed` database: P (name), V (version), A (arch), o (origin, the
 * source package), L (licence), D (dependencies, resolved through p provides).
 * @throws GatehouseError BAD_LOCKFILE naming the line and the problem
 */
export function catalogApkInstalled(text: string, where: string, distro?: Distro): Catalog {
  const byName = new Map<string, Component>();
  const provides = new Map<string, Component>();
  const pending: [Component, string][] = [];
  for (const p of paragraphs(text, where, 'apk installed', 'apk')) {
    const f = p.fields;
    const fail = (m: string) => lockfileError(where, `apk installed: ${m}`, { line: p.line, column: 1 });
    const name = f.get('P');
    const version = f.get('V');
    if (name === undefined || !/^[A-Za-z0-9][A-Za-z0-9+._-]*$/.test(name))
      throw fail(`invalid package name '${name ?? ''}'`);
    if (version === undefined || !/^[0-9][A-Za-z0-9._~-]*$/.test(version))
      throw fail(`package ${name} has an invalid version '${version ?? ''}'`);
    const c = osPackage('apk', 'alpine', { name, version, arch: f.get('A') }, distro);
    c.sourcePackage = { name: f.get('o') ?? name, version };
    const license = f.get('L');
    if (license !== undefined && license !== '') c.licenses = [license];
    if (byName.has(name)) throw fail(`package ${name} is listed twice`);
    byName.set(name, c);
    for (const pv of (f.get('p') ?? '').split(/\s+/)) {
      const n = pv.split(/[=<>~]/)[0];
      if (n !== undefined && n !== '' && !provides.has(n)) provides.set(n, c);
    }
    pending.push([c, f.get('D') ?? '']);
  }
  for (const [c, deps] of pending)
    for (const d of deps.split(/\s+/)) {
      if (d === '' || d.startsWith('!')) continue;
      const n = d.split(/[=<>~]/)[0] ?? '';
      const t = byName.get(n) ?? provides.get(n);
      if (t !== undefined) c.dependencies.push(t.purl);
    }
  return finishCatalog({}, byName.values(), []);
}
