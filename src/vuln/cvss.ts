import { GatehouseError } from '../common/errors.ts';

/** Severity buckets gatehouse reports, most severe first. */
export type Severity = 'critical' | 'high' | 'medium' | 'low' | 'unknown';

const WEIGHTS = {
  AV: { N: 0.85, A: 0.62, L: 0.55, P: 0.2 },
  AC: { L: 0.77, H: 0.44 },
  UI: { N: 0.85, R: 0.62 },
  CIA: { H: 0.56, L: 0.22, N: 0 },
} as const;

// CVSS 3.1's Roundup: the smallest one-decimal number >= x, computed on integers so that
// floating-point noise (e.g. 4.000000001) does not bump a score up a tenth.
function roundUp(x: number): number {
  const i = Math.round(x * 100000);
  return i % 10000 === 0 ? i / 100000 : (Math.floor(i / 10000) + 1) / 10;
}

/**
 * The CVSS v3.0/v3.1 base score of a vector such as `CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H`.
 * @throws GatehouseError BAD_INPUT when the vector is not a complete v3 base vector
 */
export function cvss3BaseScore(vector: string): number {
  const bad = (why: string) => new GatehouseError('BAD_INPUT', `CVSS vector '${vector}' ${why}`);
  const parts = vector.split('/');
  if (parts[0] !== 'CVSS:3.1' && parts[0] !== 'CVSS:3.0') throw bad('is not CVSS v3');
  const m = new Map<string, string>();
  for (const p of parts.slice(1)) {
    const [k, v, extra] = p.split(':');
    if (k === undefined || v === undefined || extra !== undefined || m.has(k))
      throw bad(`has a malformed metric '${p}'`);
    m.set(k, v);
  }
  const pick = <T extends Record<string, number>>(key: string, table: T): number => {
    const v = m.get(key);
    if (v === undefined || !(v in table)) throw bad(`lacks a valid ${key}`);
    return table[v as keyof T] as number;
  };
  const scope = m.get('S');
  if (scope !== 'U' && scope !== 'C') throw bad('lacks a valid S');
  const changed = scope === 'C';
  const av = pick('AV', WEIGHTS.AV);
  const ac = pick('AC', WEIGHTS.AC);
  const pr = pick('PR', changed ? { N: 0.85, L: 0.68, H: 0.5 } : { N: 0.85, L: 0.62, H: 0.27 });
  const ui = pick('UI', WEIGHTS.UI);
  const c = pick('C', WEIGHTS.CIA);
  const i = pick('I', WEIGHTS.CIA);
  const a = pick('A', WEIGHTS.CIA);
  const iss = 1 - (1 - c) * (1 - i) * (1 - a);
  const impact = changed ? 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15 : 6.42 * iss;
  const exploitability = 8.22 * av * ac * pr * ui;
  if (impact <= 0) return 0;
  return changed
    ? roundUp(Math.min(1.08 * (impact + exploitability), 10))
    : roundUp(Math.min(impact + exploitability, 10));
}

/**
 * The qualitative rating of a CVSS v3 score. A score of 0.0 ("none") is reported as low: the
 * record still names the package as affected.
 */
export function severityOfScore(score: number): Exclude<Severity, 'unknown'> {
  if (score >= 9) return 'critical';
  if (score >= 7) return 'high';
  if (score >= 4) return 'medium';
  return 'low';
}

/** Order of severities, higher is worse; `unknown` sorts below `low` here. */
export const SEVERITY_RANK: Record<Severity, number> = {
  unknown: 0,
  low: 1,
  medium: 2,
  high: 3,
  critical: 4,
};
