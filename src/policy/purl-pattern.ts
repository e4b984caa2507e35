import semver from 'semver';
import { GatehouseError } from '../common/errors.ts';
import type { Component } from '../sbom/model.ts';
import { parsePurl } from '../sbom/purl.ts';
import {
  OSV_ECOSYSTEM_OF_PURL_TYPE,
  VERSION_SCHEMES,
  type VersionCompare,
} from '../vuln/versions/ecosystems.ts';

/**
 * A compiled component pattern: `pkg:TYPE/[NAMESPACE/]NAME[@VERSION-OR-RANGE]`. The namespace
 * and name may hold `*` wildcards (`pkg:npm/%40evil/*`, `pkg:maven/org.example/*`). The part
 * after the last `@` is an exact version, or a range: for npm any semver range
 * (`>=1.0.0 <1.4.2`, `^2 || ^3`); for the other ecosystems comparisons joined by spaces or
 * commas (`>=2.0, <2.17.1`), ordered by that ecosystem's version rules, and `|` between
 * alternatives. A range in an ecosystem without version rules here is refused.
 */
export interface ComponentPattern {
  pattern: string;
  type: string;
  /** Matches `namespace/name` (or `name`) of the component's purl. */
  path: RegExp;
  version?: string;
  /** Whether a version satisfies the range; undefined when there is none. */
  range?: (version: string) => boolean;
}

type Op = '<' | '<=' | '>' | '>=' | '=' | '!=';

function globToRegExp(glob: string): RegExp {
  const escaped = glob.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*');
  return new RegExp(`^${escaped}$`);
}

function genericRange(
  text: string,
  compare: VersionCompare,
  bad: (why: string) => Error,
): (v: string) => boolean {
  const alternatives = text.split('|').map((alt) => {
    const parts = alt
      .split(/[\s,]+/)
      .map((p) => p.trim())
      .filter((p) => p !== '');
    if (parts.length === 0) throw bad(`has an empty range alternative in '${text}'`);
    return parts.map((p) => {
      const m = /^(<=|>=|<|>|=|!=)?(.+)$/.exec(p);
      const op = (m?.[1] ?? '=') as Op;
      const version = m?.[2] ?? '';
      if (compare(version, version) === undefined)
        throw bad(`has '${version}', which is not a version of its ecosystem`);
      return { op, version };
    });
  });
  return (v: string) =>
    alternatives.some((cs) =>
      cs.every(({ op, version }) => {
        const c = compare(v, version);
        if (c === undefined) return false;
        switch (op) {
          case '<':
            return c < 0;
          case '<=':
            return c <= 0;
          case '>':
            return c > 0;
          case '>=':
            return c >= 0;
          case '=':
            return c === 0;
          case '!=':
            return c !== 0;
          default:
            return false;
        }
      }),
    );
}

/**
 * Compile one component pattern.
 * @throws GatehouseError BAD_POLICY when the pattern is not a purl pattern or its range does not read
 */
export function parseComponentPattern(pattern: string): ComponentPattern {
  const bad = (why: string, cause?: unknown) =>
    new GatehouseError('BAD_POLICY', `'${pattern}' ${why}`, cause === undefined ? {} : { cause });
  const m = /^pkg:([a-zA-Z][a-zA-Z0-9.+-]*)\/(.+)$/.exec(pattern);
  if (m === null) throw bad("is not a purl pattern ('pkg:TYPE/NAME[@VERSION]')");
  const type = (m[1] ?? '').toLowerCase();
  const body = m[2] ?? '';
  // The version part may be a range with spaces or '<', which the purl grammar would encode:
  // split it off at the last '@' that follows the last '/'.
  const at = body.lastIndexOf('@');
  const hasVersion = at > 0 && at > body.lastIndexOf('/');
  const pathText = hasVersion ? body.slice(0, at) : body;
  let path: string;
  try {
    path = pathText
      .split('/')
      .map((s) => decodeURIComponent(s))
      .join('/');
  } catch (cause) {
    throw bad('has an invalid percent-encoding', cause);
  }
  if (path === '' || path.split('/').some((s) => s === '')) throw bad('has an empty name');
  if (!path.includes('*')) {
    try {
      parsePurl(`pkg:${type}/${pathText}`);
    } catch (cause) {
      throw bad('is not a valid purl', cause);
    }
  }
  const out: ComponentPattern = { pattern, type, path: globToRegExp(path) };
  if (!hasVersion) return out;
  let version: string;
  try {
    version = decodeURIComponent(body.slice(at + 1));
  } catch (cause) {
    throw bad('has an invalid percent-encoding in its version', cause);
  }
  if (version === '') throw bad('has an empty version after @');
  out.version = version;
  const isRange = /[<>=!|,\s^~*]/.test(version);
  if (!isRange) return out;
  if (type === 'npm') {
    if (semver.validRange(version) === null)
      throw bad(`has '${version}' after @, neither a version nor a semver range`);
    const r = new semver.Range(version);
    out.range = (v) => semver.valid(v) !== null && semver.satisfies(v, r, { includePrerelease: true });
    return out;
  }
  const eco = OSV_ECOSYSTEM_OF_PURL_TYPE[type];
  const compare = eco === undefined ? undefined : VERSION_SCHEMES[eco];
  if (compare === undefined)
    throw bad(`has a range, but gatehouse has no version ordering for purl type '${type}'`);
  out.range = genericRange(version, compare, (why) => bad(why));
  return out;
}

type Identity = { type: string; path: string; version: string } | undefined;

/**
 * Identities already read, per component object: a policy tests every pattern of every rule
 * against each component, and the purl is read once for all of them. Keyed weakly (a decision's
 * components go when it does) and checked against the purl and version, which could change.
 */
const identities = new WeakMap<Component, { purl: string; version: string; id: Identity }>();

/** The `namespace/name` path and version of a component, from its purl. */
function identity(c: Component): Identity {
  const known = identities.get(c);
  if (known !== undefined && known.purl === c.purl && known.version === c.version) return known.id;
  let id: Identity;
  try {
    const p = parsePurl(c.purl);
    id = {
      type: p.type,
      path: p.namespace === undefined || p.namespace === '' ? p.name : `${p.namespace}/${p.name}`,
      version: p.version ?? c.version,
    };
  } catch {
    id = undefined;
  }
  identities.set(c, { purl: c.purl, version: c.version, id });
  return id;
}

/** Whether a component matches a compiled pattern. A component without a readable purl never does. */
export function matchesComponent(p: ComponentPattern, c: Component): boolean {
  const id = identity(c);
  if (id === undefined || id.type !== p.type || !p.path.test(id.path)) return false;
  if (p.version === undefined) return true;
  if (p.range !== undefined) return p.range(id.version);
  return id.version === p.version;
}

/** Whether a purl (of a finding or reason) matches a compiled pattern. */
export function matchesPurl(p: ComponentPattern, purl: string): boolean {
  return matchesComponent(p, { name: '', version: '', purl, ecosystem: '', hashes: [], dependencies: [] });
}
