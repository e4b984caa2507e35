import { GatehouseError } from '../common/errors.ts';

/** A package URL split into its parts, percent-decoded. */
export interface PackageUrl {
  type: string;
  namespace?: string;
  name: string;
  version?: string;
  qualifiers: Record<string, string>;
  subpath?: string;
}

/**
 * Percent-encode one purl component. Only the RFC 3986 unreserved characters stay as they are, so
 * an npm scope's `@` always becomes `%40` (the purl npm type definition requires that).
 */
function encodeComponent(s: string): string {
  return Array.from(new TextEncoder().encode(s), (b) => {
    const c = String.fromCharCode(b);
    return /[A-Za-z0-9.\-_~]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }).join('');
}

function decodeComponent(s: string, purl: string): string {
  try {
    return decodeURIComponent(s);
  } catch (cause) {
    throw new GatehouseError('BAD_INPUT', `invalid percent-encoding in purl '${purl}'`, { cause });
  }
}

/**
 * The purl of an npm package: `pkg:npm/%40scope/name@1.2.3` for scoped names, `pkg:npm/name@1.2.3`
 * otherwise; without a version when `version` is undefined. Names keep their case (the npm purl
 * type is case-sensitive; old mixed-case packages exist).
 */
export function npmPurl(name: string, version?: string): string {
  const slash = name.startsWith('@') ? name.indexOf('/') : -1;
  const path =
    slash > 0
      ? `${encodeComponent(name.slice(0, slash))}/${encodeComponent(name.slice(slash + 1))}`
      : encodeComponent(name);
  return version === undefined ? `pkg:npm/${path}` : `pkg:npm/${path}@${encodeComponent(version)}`;
}

/**
 * Format a package URL from its parts: each namespace segment, the name and the version are
 * percent-encoded separately; qualifiers are sorted by key and empty ones dropped, as the purl
 * specification's canonical form requires.
 */
export function formatPurl(
  p: Omit<PackageUrl, 'qualifiers'> & { qualifiers?: Record<string, string> },
): string {
  const ns =
    p.namespace === undefined || p.namespace === ''
      ? ''
      : `${p.namespace
          .split('/')
          .filter((s) => s !== '')
          .map(encodeComponent)
          .join('/')}/`;
  let out = `pkg:${p.type}/${ns}${encodeComponent(p.name)}`;
  if (p.version !== undefined) out += `@${encodeComponent(p.version)}`;
  const q = Object.entries(p.qualifiers ?? {})
    .filter(([, v]) => v !== '')
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k.toLowerCase()}=${encodeComponent(v).replace(/%3A/g, ':').replace(/%2F/g, '/')}`);
  if (q.length > 0) out += `?${q.join('&')}`;
  if (p.subpath !== undefined && p.subpath !== '')
    out += `#${p.subpath.split('/').map(encodeComponent).join('/')}`;
  return out;
}

/**
 * Parse a package URL per the purl specification's parsing rules.
 * @throws GatehouseError BAD_INPUT when the string is not a purl
 */
export function parsePurl(purl: string): PackageUrl {
  const bad = (why: string) => new GatehouseError('BAD_INPUT', `invalid purl '${purl}': ${why}`);
  let rest = purl;
  let subpath: string | undefined;
  const hash = rest.indexOf('#');
  if (hash >= 0) {
    subpath = rest
      .slice(hash + 1)
      .split('/')
      .filter((s) => s !== '' && s !== '.' && s !== '..')
      .map((s) => decodeComponent(s, purl))
      .join('/');
    rest = rest.slice(0, hash);
  }
  const qualifiers: Record<string, string> = {};
  const q = rest.indexOf('?');
  if (q >= 0) {
    for (const pair of rest.slice(q + 1).split('&')) {
      if (pair === '') continue;
      const eq = pair.indexOf('=');
      if (eq <= 0) throw bad(`qualifier '${pair}' has no key or value`);
      const value = decodeComponent(pair.slice(eq + 1), purl);
      if (value !== '') qualifiers[pair.slice(0, eq).toLowerCase()] = value;
    }
    rest = rest.slice(0, q);
  }
  if (!rest.toLowerCase().startsWith('pkg:')) throw bad("it does not start with 'pkg:'");
  rest = rest.slice(4).replace(/^\/+/, '');
  const slash = rest.indexOf('/');
  if (slash <= 0) throw bad('it has no type and name');
  const type = rest.slice(0, slash).toLowerCase();
  if (!/^[a-z.+-][a-z0-9.+-]*$/.test(type)) throw bad(`type '${type}' is not allowed`);
  rest = rest.slice(slash + 1).replace(/\/+$/, '');
  let version: string | undefined;
  // The version follows the last '@' of the last segment; an unencoded scope '@' (a common slip,
  // `pkg:npm/@babel/core`) must not be taken for the version separator.
  const at = rest.lastIndexOf('@');
  if (at >= 0 && at > rest.lastIndexOf('/')) {
    version = decodeComponent(rest.slice(at + 1), purl);
    rest = rest.slice(0, at);
    if (version === '') throw bad('the version after @ is empty');
  }
  const segments = rest.split('/').filter((s) => s !== '');
  const rawName = segments.pop();
  if (rawName === undefined) throw bad('it has no name');
  const name = decodeComponent(rawName, purl);
  const namespace = segments.map((s) => decodeComponent(s, purl)).join('/');
  const out: PackageUrl = { type, name, qualifiers };
  if (namespace !== '') out.namespace = namespace;
  if (version !== undefined) out.version = version;
  if (subpath !== undefined && subpath !== '') out.subpath = subpath;
  return out;
}

/** The npm package name a parsed purl names (`@scope/name` or `name`). */
export function npmNameOf(p: PackageUrl): string {
  return p.namespace === undefined ? p.name : `${p.namespace}/${p.name}`;
}

// Purl types whose namespace names the distribution or vendor, not part of the package's name.
const DISTRO_TYPES = new Set(['deb', 'apk', 'rpm', 'alpm', 'qpkg']);

/**
 * The component name the model uses for a purl: npm `@scope/name`, Maven `group:artifact`, OS
 * packages (deb, apk, rpm) their bare name (the namespace is the distribution), else
 * `namespace/name` (a Go module path, say).
 */
export function modelNameOf(p: PackageUrl): string {
  if (p.type === 'npm') return npmNameOf(p);
  if (p.namespace === undefined || DISTRO_TYPES.has(p.type)) return p.name;
  return p.type === 'maven' ? `${p.namespace}:${p.name}` : `${p.namespace}/${p.name}`;
}
