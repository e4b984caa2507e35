/**
 * Debian package version ordering (`[epoch:]upstream[-revision]`), as dpkg orders them: within
 * upstream and revision, non-digit runs compare character by character with `~` before
 * everything (even the end), letters before other characters; digit runs compare as numbers.
 */
import { cmpBig, cmpNum } from './common.ts';

interface Parsed {
  epoch: bigint;
  upstream: string;
  revision: string;
}

function parse(v: string): Parsed | undefined {
  const s = v.trim();
  if (s === '') return undefined;
  const colon = s.indexOf(':');
  let epoch = 0n;
  let rest = s;
  if (colon >= 0) {
    const e = s.slice(0, colon);
    if (!/^\d+$/.test(e)) return undefined;
    epoch = BigInt(e);
    rest = s.slice(colon + 1);
  }
  const dash = rest.lastIndexOf('-');
  const upstream = dash < 0 ? rest : rest.slice(0, dash);
  const revision = dash < 0 ? '' : rest.slice(dash + 1);
  if (upstream === '' || !/^[0-9A-Za-z.+~:-]*$/.test(upstream) || !/^[0-9A-Za-z.+~]*$/.test(revision))
    return undefined;
  return { epoch, upstream, revision };
}

function order(c: string | undefined): number {
  if (c === undefined) return 0;
  if (c === '~') return -1;
  if (/[A-Za-z]/.test(c)) return c.charCodeAt(0);
  return c.charCodeAt(0) + 256;
}

function isDigit(c: string | undefined): boolean {
  return c !== undefined && c >= '0' && c <= '9';
}

/** dpkg's comparison of one upstream or revision part. */
function comparePart(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    while ((i < a.length && !isDigit(a[i])) || (j < b.length && !isDigit(b[j]))) {
      const x = isDigit(a[i]) ? 0 : order(a[i]);
      const y = isDigit(b[j]) ? 0 : order(b[j]);
      if (x !== y) return cmpNum(x, y);
      i++;
      j++;
    }
    let x = i;
    while (isDigit(a[x])) x++;
    let y = j;
    while (isDigit(b[y])) y++;
    const c = cmpBig(BigInt(a.slice(i, x) || '0'), BigInt(b.slice(j, y) || '0'));
    if (c !== 0) return c;
    i = x;
    j = y;
  }
  return 0;
}

/** Whether `v` is a Debian version. */
export function isDebianVersion(v: string): boolean {
  return parse(v) !== undefined;
}

/** Compare two Debian versions; undefined when either is not one. */
export function compareDebian(a: string, b: string): number | undefined {
  const x = parse(a);
  const y = parse(b);
  if (x === undefined || y === undefined) return undefined;
  return (
    cmpBig(x.epoch, y.epoch) || comparePart(x.upstream, y.upstream) || comparePart(x.revision, y.revision)
  );
}
