import type { Severity } from './cvss.ts';
import { normalizePackageName, type OsvRange, type OsvRecord } from './osv.ts';
import { packageKey } from './osv-package.ts';
import { scoresOf, severityOf } from './severity.ts';
import { type ReadRange, readRange } from './version-ranges.ts';
import { baseEcosystem } from './versions/ecosystems.ts';
import { parsedScheme, SEMVER_SCHEME } from './versions/parsed.ts';

/**
 * One record as matching uses it, with what does not depend on the component worked out once:
 * its ids, severity and scores.
 */
export interface PreparedRecord {
  record: OsvRecord;
  /** The record's id, then its aliases. */
  ids: readonly string[];
  /** Its aliases without its own id, distinct and sorted: a lone record's finding's aliases. */
  aliases: readonly string[];
  severity: Severity;
  cvssVector: string | undefined;
  v3: number | undefined;
  v4: number | undefined;
}

/** One range of an entry, with the scheme its versions are compared in. */
export interface PreparedRange {
  range: OsvRange;
  semver: boolean;
  /**
   * The events read once; undefined when some event cannot be read in the range's scheme (or
   * the lookup does not read ranges ahead): then {@link inRange} evaluates the range as written
   * and reports what cannot be ordered.
   */
  read: ReadRange | undefined;
}

/** One `affected` entry of a record that names the looked-up package. */
export interface PreparedEntry {
  /** The entry's OSV ecosystem, with its `:release` suffix if any. */
  ecosystem: string;
  versions: ReadonlySet<string>;
  ranges: PreparedRange[];
}

/** A record that names a package, with its entries for that package. */
export interface Candidate {
  prepared: PreparedRecord;
  entries: PreparedEntry[];
}

/** Work out once what matching needs of a record whatever the component: ids, severity, scores. */
function prepareRecord(record: OsvRecord): PreparedRecord {
  const s = severityOf(record);
  const sc = scoresOf(record);
  return {
    record,
    ids: [record.id, ...record.aliases],
    aliases: [...new Set(record.aliases)].filter((a) => a !== record.id).sort(),
    severity: s.severity,
    cvssVector: s.cvssVector,
    v3: sc.v3,
    v4: sc.v4,
  };
}

/**
 * The entries of `record` that name the package `key` ({@link packageKey}); with `read`, each
 * range's events read once for {@link inReadRange}.
 */
function prepareEntries(record: OsvRecord, key: string, read: boolean): PreparedEntry[] {
  const out: PreparedEntry[] = [];
  for (const a of record.affected) {
    if (a.package === undefined) continue;
    const eco = baseEcosystem(a.package.ecosystem);
    if (packageKey(eco, normalizePackageName(eco, a.package.name)) !== key) continue;
    const ecoScheme = parsedScheme(eco);
    const ranges: PreparedRange[] = [];
    for (const range of a.ranges) {
      // GIT ranges name commits, which say nothing about a released version: skipped.
      if (range.type === 'GIT') continue;
      const semver = range.type === 'SEMVER';
      const scheme = semver ? SEMVER_SCHEME : ecoScheme;
      ranges.push({
        range,
        semver,
        read: read && scheme !== undefined ? readRange(range, scheme) : undefined,
      });
    }
    out.push({ ecosystem: a.package.ecosystem, versions: new Set(a.versions), ranges });
  }
  return out;
}

/**
 * The candidates of the package `key` among `records`, each with its entries for that package;
 * with `read`, ranges read ahead.
 */
export function candidatesOf(records: readonly OsvRecord[], key: string, read: boolean): Candidate[] {
  return records.map((r) => ({ prepared: prepareRecord(r), entries: prepareEntries(r, key, read) }));
}
