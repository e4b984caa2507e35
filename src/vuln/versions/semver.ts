/**
 * Semantic Versioning 2.0 ordering, read leniently the way advisory data needs it: a leading `v`
 * is allowed, missing minor or patch count as 0, numbers have no size limit, and anything after
 * the third number that is not a prerelease (`1.2.3.4`, `+build`) is build metadata, which does
 * not order. Used for npm, Go, crates.io and OSV `SEMVER` ranges.
 */
import { cmpBig, cmpStr } from './common.ts';

/** A semantic version read once, for comparing many times ({@link compareParsedSemver}). */
export interface ParsedSemver {
  core: [bigint, bigint, bigint];
  pre: string[];
}

const SHAPE = /^[vV]?(\d+)(?:\.(\d+))?(?:\.(\d+))?(.*)$/s;

/** Read a (lenient) semantic version, or undefined when it does not read as one. */
export function parseSemver(v: string): ParsedSemver | undefined {
  const m = SHAPE.exec(v.trim());
  if (m === null) return undefined;
  let rest = m[4] ?? '';
  let pre: string[] = [];
  if (rest.startsWith('-')) {
    const plus = rest.indexOf('+');
    const text = plus < 0 ? rest.slice(1) : rest.slice(1, plus);
    pre = text.split('.');
    rest = plus < 0 ? '' : rest.slice(plus);
  }
  if (rest !== '' && !rest.startsWith('+') && !rest.startsWith('.')) return undefined;
  return { core: [BigInt(m[1] ?? '0'), BigInt(m[2] ?? '0'), BigInt(m[3] ?? '0')], pre };
}

const NUMERIC = /^\d+$/;

function comparePre(a: string[], b: string[]): number {
  // A version without a prerelease ranks above every prerelease of it.
  if (a.length === 0 || b.length === 0) return b.length - a.length;
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const x = a[i] ?? '';
    const y = b[i] ?? '';
    const xn = NUMERIC.test(x);
    const yn = NUMERIC.test(y);
    let c: number;
    if (xn && yn) c = cmpBig(BigInt(x), BigInt(y));
    else if (xn) c = -1;
    else if (yn) c = 1;
    else c = cmpStr(x, y);
    if (c !== 0) return c;
  }
  return a.length - b.length;
}

/** Whether `v` reads as a (lenient) semantic version. */
export function isSemver(v: string): boolean {
  return parseSemver(v) !== undefined;
}

/**
 * Compare two semantic versions; undefined when either does not read as one.
 */
export function compareSemver(a: string, b: string): number | undefined {
  const x = parseSemver(a);
  const y = parseSemver(b);
  if (x === undefined || y === undefined) return undefined;
  return compareParsedSemver(x, y);
}

/** Compare two versions read by {@link parseSemver}: negative, zero or positive. */
export function compareParsedSemver(x: ParsedSemver, y: ParsedSemver): number {
  for (let i = 0; i < 3; i++) {
    const c = cmpBig(x.core[i] ?? 0n, y.core[i] ?? 0n);
    if (c !== 0) return c;
  }
  return comparePre(x.pre, y.pre);
}
