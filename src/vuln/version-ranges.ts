import { GatehouseError } from '../common/errors.ts';
import type { OsvEvent, OsvRange } from './osv.ts';
import type { VersionCompare } from './versions/ecosystems.ts';
import type { ParsedScheme } from './versions/parsed.ts';

/**
 * Whether `v` lies in an OSV SEMVER/ECOSYSTEM range, by the schema's evaluation: `introduced`
 * opens, `fixed` and `limit` are exclusive upper bounds, `last_affected` inclusive; `"0"`
 * introduces before every version.
 * @throws GatehouseError BAD_OSV_RECORD when an event's version cannot be ordered
 */
export function inRange(v: string, range: OsvRange, compare: VersionCompare, where: string): boolean {
  const cmp = (a: string, b: string): number => {
    const c = compare(a, b);
    if (c === undefined)
      throw new GatehouseError('BAD_OSV_RECORD', `cannot order version '${b}' against '${a}'`, { where });
    return c;
  };
  const limits = range.events.filter((e) => e.kind === 'limit');
  if (limits.length > 0 && !limits.some((e) => e.version === '*' || cmp(v, e.version) < 0)) return false;
  // Evaluate every introduced..(fixed|last_affected) interval: sort the events, then walk them.
  const events = range.events
    .filter((e) => e.kind !== 'limit')
    .sort((a, b) => {
      if (a.kind === 'introduced' && a.version === '0')
        return b.kind === 'introduced' && b.version === '0' ? 0 : -1;
      if (b.kind === 'introduced' && b.version === '0') return 1;
      return cmp(a.version, b.version);
    });
  let vulnerable = false;
  for (const e of events) {
    if (e.kind === 'introduced') {
      if (e.version === '0' || cmp(v, e.version) >= 0) vulnerable = true;
    } else if (e.kind === 'fixed') {
      if (cmp(v, e.version) >= 0) vulnerable = false;
    } else if (e.kind === 'last_affected') {
      if (cmp(v, e.version) > 0) vulnerable = false;
    }
  }
  return vulnerable;
}

/** A range's events read once in its scheme, sorted the way {@link inRange} walks them. */
export interface ReadRange {
  /** A `limit` of `*`: no upper limit. */
  limitStar: boolean;
  limits: unknown[];
  /** Non-limit events in walking order; `zero` is `introduced: "0"`. */
  walk: { kind: OsvEvent['kind']; zero: boolean; v: unknown }[];
  /** `fixed` events in the record's order, for the fixed versions a finding lists. */
  fixed: { version: string; v: unknown }[];
}

/** Read a range's events once, or undefined when one cannot be read in its scheme. */
export function readRange(range: OsvRange, scheme: ParsedScheme): ReadRange | undefined {
  const out: ReadRange = { limitStar: false, limits: [], walk: [], fixed: [] };
  for (const e of range.events) {
    if (e.kind === 'limit') {
      if (e.version === '*') out.limitStar = true;
      else {
        const v = scheme.parse(e.version);
        if (v === undefined) return undefined;
        out.limits.push(v);
      }
      continue;
    }
    const zero = e.kind === 'introduced' && e.version === '0';
    const v = zero ? undefined : scheme.parse(e.version);
    if (!zero && v === undefined) return undefined;
    out.walk.push({ kind: e.kind, zero, v });
    if (e.kind === 'fixed') out.fixed.push({ version: e.version, v });
  }
  // The same (stable) order inRange sorts into: `introduced: "0"` first, then by version.
  out.walk.sort((a, b) => {
    if (a.zero) return b.zero ? 0 : -1;
    if (b.zero) return 1;
    return scheme.compare(a.v, b.v);
  });
  return out;
}

/** Whether a version (read in the range's scheme) lies in a read range: {@link inRange} exactly. */
export function inReadRange(v: unknown, r: ReadRange, scheme: ParsedScheme): boolean {
  if (!r.limitStar && r.limits.length > 0) {
    let below = false;
    for (const l of r.limits)
      if (scheme.compare(v, l) < 0) {
        below = true;
        break;
      }
    if (!below) return false;
  }
  let vulnerable = false;
  for (const e of r.walk) {
    if (e.kind === 'introduced') {
      if (e.zero || scheme.compare(v, e.v) >= 0) vulnerable = true;
    } else if (e.kind === 'fixed') {
      if (scheme.compare(v, e.v) >= 0) vulnerable = false;
    } else if (scheme.compare(v, e.v) > 0) vulnerable = false;
  }
  return vulnerable;
}
