/**
 * NuGet version ordering: up to four numeric parts (missing ones are 0, leading zeros ignored),
 * then a prerelease label compared part by part without regard to case (numeric parts as
 * numbers, before alphanumeric ones); build metadata after `+` does not order.
 */
import { cmpBig, cmpStr } from './common.ts';

const SHAPE = /^[vV]?(\d+(?:\.\d+){0,3})(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]*)?$/;

interface Parsed {
  release: bigint[];
  pre: string[];
}

function parse(v: string): Parsed | undefined {
  const m = SHAPE.exec(v.trim());
  if (m === null) return undefined;
  const release = (m[1] ?? '0').split('.').map(BigInt);
  while (release.length < 4) release.push(0n);
  return { release, pre: m[2] === undefined ? [] : m[2].toLowerCase().split('.') };
}

/** Compare two NuGet versions; undefined when either is not one. */
export function compareNuget(a: string, b: string): number | undefined {
  const x = parse(a);
  const y = parse(b);
  if (x === undefined || y === undefined) return undefined;
  for (let i = 0; i < 4; i++) {
    const c = cmpBig(x.release[i] ?? 0n, y.release[i] ?? 0n);
    if (c !== 0) return c;
  }
  if (x.pre.length === 0 || y.pre.length === 0)
    return y.pre.length - x.pre.length === 0 ? 0 : y.pre.length === 0 ? -1 : 1;
  for (let i = 0; i < Math.min(x.pre.length, y.pre.length); i++) {
    const p = x.pre[i] ?? '';
    const q = y.pre[i] ?? '';
    const pn = /^\d+$/.test(p);
    const qn = /^\d+$/.test(q);
    const c = pn && qn ? cmpBig(BigInt(p), BigInt(q)) : pn ? -1 : qn ? 1 : cmpStr(p, q);
    if (c !== 0) return c;
  }
  return x.pre.length - y.pre.length;
}
