/**
 * Version schemes split into "read once" and "compare what was read", so that matching many
 * components against many advisory events reads each version a single time. Every scheme here
 * orders exactly as its string comparison in ecosystems.ts does.
 */
import { baseEcosystem, type VersionCompare, versionScheme } from './ecosystems.ts';
import { compareParsedPypi, parsePypi } from './pypi.ts';
import { compareParsedSemver, parseSemver } from './semver.ts';

/** A version scheme whose versions are read once and compared many times. */
export interface ParsedScheme {
  /** The version read, or undefined when the scheme cannot read it (no comparison can be made). */
  parse(v: string): unknown;
  /** Order two versions `parse` read: negative, zero or positive. */
  compare(a: unknown, b: unknown): number;
}

/** Semantic versions (npm, Go, crates.io and OSV `SEMVER` ranges). */
export const SEMVER_SCHEME: ParsedScheme = {
  parse: parseSemver,
  compare: (a, b) => compareParsedSemver(a as never, b as never),
};

const PYPI_SCHEME: ParsedScheme = {
  parse: parsePypi,
  compare: (a, b) => compareParsedPypi(a as never, b as never),
};

/**
 * A scheme over a string comparison, for ecosystems without a split reader: a version "reads"
 * when it compares with itself, and two that read always compare.
 */
function stringScheme(compare: VersionCompare): ParsedScheme {
  return {
    parse: (v) => (compare(v, v) === undefined ? undefined : v),
    compare: (a, b) => compare(a as string, b as string) ?? 0,
  };
}

const SPLIT: Readonly<Record<string, ParsedScheme>> = {
  npm: SEMVER_SCHEME,
  Go: SEMVER_SCHEME,
  'crates.io': SEMVER_SCHEME,
  PyPI: PYPI_SCHEME,
};
const wrapped = new Map<string, ParsedScheme>();

/** The read-once scheme of an OSV ecosystem (release suffix allowed), or undefined if unsupported. */
export function parsedScheme(ecosystem: string): ParsedScheme | undefined {
  const base = baseEcosystem(ecosystem);
  const split = SPLIT[base];
  if (split !== undefined) return split;
  let s = wrapped.get(base);
  if (s === undefined) {
    const compare = versionScheme(base);
    if (compare === undefined) return undefined;
    s = stringScheme(compare);
    wrapped.set(base, s);
  }
  return s;
}
