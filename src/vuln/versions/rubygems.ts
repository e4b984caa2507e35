/**
 * RubyGems version ordering (Gem::Version): the version is split into number and letter runs;
 * any letter makes it a prerelease, which sorts before the release; trailing zeros of the
 * numeric part and of the prerelease part do not count; a `-` reads as `.pre.`.
 */
import { cmpBig, cmpStr } from './common.ts';

type Segment = bigint | string;

function segments(v: string): Segment[] {
  const s = v.trim().replaceAll('-', '.pre.');
  const raw = (s.match(/[0-9]+|[a-z]+/gi) ?? []).map((p) => (/^\d+$/.test(p) ? BigInt(p) : p));
  // Drop trailing zeros of the numeric part and of the string (prerelease) part separately.
  const firstString = raw.findIndex((x) => typeof x === 'string');
  const numeric = firstString < 0 ? raw : raw.slice(0, firstString);
  const rest = firstString < 0 ? [] : raw.slice(firstString);
  const trim = (xs: Segment[]): Segment[] => {
    const out = [...xs];
    while (out.length > 0 && out[out.length - 1] === 0n) out.pop();
    return out;
  };
  return [...trim(numeric), ...trim(rest)];
}

/** Compare two RubyGems versions. */
export function compareRubygems(a: string, b: string): number {
  const x = segments(a);
  const y = segments(b);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const p = x[i] ?? 0n;
    const q = y[i] ?? 0n;
    if (p === q) continue;
    if (typeof p === 'string' && typeof q === 'bigint') return -1;
    if (typeof p === 'bigint' && typeof q === 'string') return 1;
    return typeof p === 'bigint' ? cmpBig(p, q as bigint) : cmpStr(p, q as string);
  }
  return 0;
}
