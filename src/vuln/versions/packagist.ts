/**
 * Packagist (Composer) version ordering, which follows PHP's version_compare after Composer's
 * normalisation: a leading `v` is dropped; `-`, `_` and `+` become `.`; a `.` is inserted where
 * digits meet letters; numbers compare as numbers; the special words order
 * dev < alpha = a < beta = b < RC = rc < (a number) < pl = p, and any other word before dev.
 */
import { cmpBig, cmpNum } from './common.ts';

function canonical(v: string): string[] {
  let s = v.trim();
  if (/^[vV]\d/.test(s)) s = s.slice(1);
  s = s.replace(/[-_+]/g, '.');
  s = s.replace(/(\d)(?=[^\d.])/g, '$1.').replace(/([^\d.])(?=\d)/g, '$1.');
  return s.split('.').filter((p) => p !== '');
}

// A number is '#' in PHP's table of special forms.
const SPECIAL: [string, number][] = [
  ['dev', 0],
  ['alpha', 1],
  ['a', 1],
  ['beta', 2],
  ['b', 2],
  ['RC', 3],
  ['rc', 3],
  ['#', 4],
  ['pl', 5],
  ['p', 5],
];

function special(s: string): number {
  for (const [name, order] of SPECIAL) if (s.startsWith(name)) return order;
  return -1;
}

const isNum = (s: string): boolean => /^\d+$/.test(s);

/** Compare two Packagist versions. */
export function comparePackagist(a: string, b: string): number {
  return compareParts(canonical(a), canonical(b));
}

function compareParts(x: string[], y: string[]): number {
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const p = x[i] as string;
    const q = y[i] as string;
    let c: number;
    if (isNum(p) && isNum(q)) c = cmpBig(BigInt(p), BigInt(q));
    else if (isNum(p)) c = cmpNum(special('#'), special(q));
    else if (isNum(q)) c = cmpNum(special(p), special('#'));
    else c = cmpNum(special(p), special(q));
    if (c !== 0) return c;
  }
  // One runs out: a further number makes a version newer, a further word compares against '#'.
  if (x.length > y.length) {
    const p = x[y.length] as string;
    return isNum(p) ? 1 : compareParts(x.slice(y.length), ['#']);
  }
  if (y.length > x.length) {
    const q = y[x.length] as string;
    return isNum(q) ? -1 : compareParts(['#'], y.slice(x.length));
  }
  return 0;
}
