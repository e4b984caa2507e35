import { GatehouseError } from '../common/errors.ts';
import type { Component } from '../sbom/model.ts';
import { parsePurl } from '../sbom/purl.ts';
import type { VulnStore } from '../store/store.ts';
import { cvss3BaseScore, SEVERITY_RANK, type Severity, severityOfScore } from './cvss.ts';
import { cvss4Score } from './cvss4.ts';
import { normalizePackageName, type OsvEvent, type OsvRange, type OsvRecord, parseOsvJson } from './osv.ts';
import {
  baseEcosystem,
  OSV_ECOSYSTEM_OF_PURL_TYPE,
  type VersionCompare,
  versionScheme,
} from './versions/ecosystems.ts';
import { type ParsedScheme, parsedScheme, SEMVER_SCHEME } from './versions/parsed.ts';
import { compareSemver } from './versions/semver.ts';

/** One vulnerability affecting one component. */
export interface Finding {
  /** The preferred id (a GHSA id when the group has one). */
  vulnId: string;
  /** Every other id the vulnerability is known by, merged across records. */
  aliases: string[];
  purl: string;
  name: string;
  version: string;
  /** OSV ecosystem the component was matched in (`npm`, `PyPI`, `Debian`, …). */
  ecosystem?: string;
  severity: Severity;
  /** The CVSS vector the score came from (v3 preferred), or the first one given. */
  cvssVector?: string;
  /** CVSS v3.x base score, when the advisory gives a v3 vector. */
  cvssV3Score?: number;
  /** CVSS v4.0 score, when the advisory gives a v4 vector. */
  cvssV4Score?: number;
  /** Versions that fix it and are newer than the component's, ascending. */
  fixedVersions: string[];
  summary: string;
}

/** A component that has advisories but could not be matched against them, and why. */
export interface Unmatched {
  purl: string;
  reason: string;
  /** BAD_INPUT when the component's version is at fault, BAD_OSV_RECORD when an advisory is. */
  code: 'BAD_INPUT' | 'BAD_OSV_RECORD';
}

/** What matching found: findings, and the components it could not decide. */
export interface MatchResult {
  findings: Finding[];
  unmatched: Unmatched[];
}

const GHSA_SEVERITY: Record<string, Severity> = {
  CRITICAL: 'critical',
  HIGH: 'high',
  MODERATE: 'medium',
  MEDIUM: 'medium',
  LOW: 'low',
};

/** Scores of one record's CVSS vectors (v3 and v4), each only when the vector reads. */
export function scoresOf(record: OsvRecord): {
  v3?: number;
  v3Vector?: string;
  v4?: number;
  v4Vector?: string;
} {
  const all = [...record.severity, ...record.affected.flatMap((a) => a.severity)];
  const out: { v3?: number; v3Vector?: string; v4?: number; v4Vector?: string } = {};
  for (const s of all) {
    try {
      if (s.type === 'CVSS_V3' && out.v3 === undefined) {
        out.v3 = cvss3BaseScore(s.score);
        out.v3Vector = s.score;
      } else if (s.type === 'CVSS_V4' && out.v4 === undefined) {
        out.v4 = cvss4Score(s.score);
        out.v4Vector = s.score;
      }
    } catch {
      // A malformed vector does not score the record; the next one may.
    }
  }
  return out;
}

/**
 * Severity of one record: the database's own rating, else its CVSS v3 base score, else its
 * CVSS v4 score, else unknown.
 */
export function severityOf(record: OsvRecord): { severity: Severity; cvssVector?: string } {
  const s = scoresOf(record);
  const vector = s.v3Vector ?? s.v4Vector;
  const rated = record.database_specific?.severity;
  let severity: Severity = 'unknown';
  if (typeof rated === 'string' && GHSA_SEVERITY[rated.toUpperCase()] !== undefined)
    severity = GHSA_SEVERITY[rated.toUpperCase()] ?? 'unknown';
  else if (s.v3 !== undefined) severity = severityOfScore(s.v3);
  else if (s.v4 !== undefined) severity = s.v4 === 0 ? 'low' : severityOfScore(s.v4);
  return vector === undefined ? { severity } : { severity, cvssVector: vector };
}

/** Where and under which name an SBOM component is looked up in OSV data. */
export interface OsvPackageRef {
  ecosystem: string;
  /** Name as OSV names it, normalised for lookup. */
  name: string;
  /** The version to match (the source package's version for Debian and Alpine, when known). */
  version: string;
  /** `Debian:11`-style release suffix the component's distro implies, if any. */
  release?: string;
}

/**
 * The OSV package a component is, from its purl: npm `@scope/name`, Maven `group:artifact`,
 * Go module path, Packagist `vendor/name`; Debian and Alpine packages by their *source* package
 * (advisories name source packages), from the SBOM's source package or the purl's `upstream`.
 * Undefined for purl types gatehouse does not match.
 */
export function osvPackageOf(c: Component): OsvPackageRef | undefined {
  let p: ReturnType<typeof parsePurl>;
  try {
    p = parsePurl(c.purl);
  } catch {
    return undefined;
  }
  const ecosystem = OSV_ECOSYSTEM_OF_PURL_TYPE[p.type];
  if (ecosystem === undefined) return undefined;
  const ns = p.namespace;
  let name: string;
  let version = p.version ?? c.version;
  let release: string | undefined;
  switch (ecosystem) {
    case 'npm':
      name = ns === undefined ? p.name : `${ns}/${p.name}`;
      break;
    case 'Maven':
      name = ns === undefined ? p.name : `${ns}:${p.name}`;
      break;
    case 'Go':
    case 'Packagist':
      name = ns === undefined ? p.name : `${ns}/${p.name}`;
      break;
    case 'Debian':
    case 'Alpine': {
      const upstream = p.qualifiers.upstream?.replace(/\s*\(.*\)\s*$/, '');
      name = c.sourcePackage?.name ?? (upstream !== undefined && upstream !== '' ? upstream : p.name);
      if (c.sourcePackage?.version !== undefined) version = c.sourcePackage.version;
      const distro = p.qualifiers.distro ?? '';
      const m = /(\d+(?:\.\d+)?)/.exec(distro);
      if (m?.[1] !== undefined) {
        if (ecosystem === 'Debian') release = m[1].split('.')[0];
        else release = `v${m[1].split('.').slice(0, 2).join('.')}`;
      }
      break;
    }
    default:
      name = p.name;
  }
  const ref: OsvPackageRef = { ecosystem, name: normalizePackageName(ecosystem, name), version };
  if (release !== undefined) ref.release = release;
  return ref;
}

/**
 * Whether `v` lies in an OSV SEMVER/ECOSYSTEM range, by the schema's evaluation: `introduced`
 * opens, `fixed` and `limit` are exclusive upper bounds, `last_affected` inclusive; `"0"`
 * introduces before every version.
 * @throws GatehouseError BAD_OSV_RECORD when an event's version cannot be ordered
 */
function inRange(v: string, range: OsvRange, compare: VersionCompare, where: string): boolean {
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

/**
 * One record as matching uses it, with what does not depend on the component worked out once:
 * its ids, severity and scores.
 */
interface PreparedRecord {
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

/** A range's events read once in its scheme, sorted the way {@link inRange} walks them. */
interface ReadRange {
  /** A `limit` of `*`: no upper limit. */
  limitStar: boolean;
  limits: unknown[];
  /** Non-limit events in walking order; `zero` is `introduced: "0"`. */
  walk: { kind: OsvEvent['kind']; zero: boolean; v: unknown }[];
  /** `fixed` events in the record's order, for the fixed versions a finding lists. */
  fixed: { version: string; v: unknown }[];
}

interface PreparedRange {
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
interface PreparedEntry {
  /** The entry's OSV ecosystem, with its `:release` suffix if any. */
  ecosystem: string;
  versions: ReadonlySet<string>;
  ranges: PreparedRange[];
}

/** A record that names a package, with its entries for that package. */
interface Candidate {
  prepared: PreparedRecord;
  entries: PreparedEntry[];
}

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

/** Read a range's events once, or undefined when one cannot be read in its scheme. */
function readRange(range: OsvRange, scheme: ParsedScheme): ReadRange | undefined {
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
function inReadRange(v: unknown, r: ReadRange, scheme: ParsedScheme): boolean {
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

/**
 * The entries of `record` that name the package `key` (`ecosystem\0name`); with `read`, each
 * range's events read once for {@link inReadRange}.
 */
function prepareEntries(record: OsvRecord, key: string, read: boolean): PreparedEntry[] {
  const out: PreparedEntry[] = [];
  for (const a of record.affected) {
    if (a.package === undefined) continue;
    const eco = baseEcosystem(a.package.ecosystem);
    if (`${eco}\u0000${normalizePackageName(eco, a.package.name)}` !== key) continue;
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

function candidatesOf(records: readonly OsvRecord[], key: string, read: boolean): Candidate[] {
  return records.map((r) => ({ prepared: prepareRecord(r), entries: prepareEntries(r, key, read) }));
}

/** Something that yields the index of the vulnerability database as it is now. */
export interface CurrentVulnIndex {
  /** @throws GatehouseError when the database cannot be loaded (matching then fails closed) */
  current(): Promise<VulnIndex>;
}

/** Where matching finds the advisories of one package. */
export interface VulnLookup {
  /** Records naming the package (OSV ecosystem without release, normalised name), by id. */
  recordsFor(ecosystem: string, name: string): Promise<readonly OsvRecord[]>;
}

/**
 * The whole vulnerability database parsed into memory, for evaluating many components (a large
 * SBOM, re-evaluation of every promoted artifact) without a query per component. Each record's
 * ranges are read once here, so matching compares versions without reading them again.
 */
export class VulnIndex implements VulnLookup {
  readonly #byPackage = new Map<string, Candidate[]>();
  /** Records held. */
  readonly size: number;

  private constructor(records: OsvRecord[]) {
    this.size = records.length;
    const byKey = new Map<string, OsvRecord[]>();
    for (const r of records) {
      const seen = new Set<string>();
      for (const a of r.affected) {
        if (a.package === undefined) continue;
        const eco = baseEcosystem(a.package.ecosystem);
        const key = `${eco}\u0000${normalizePackageName(eco, a.package.name)}`;
        if (seen.has(key)) continue;
        seen.add(key);
        const list = byKey.get(key);
        if (list === undefined) byKey.set(key, [r]);
        else list.push(r);
      }
    }
    // Records in id order per package, as the store returns them, so findings merge alike.
    for (const [key, list] of byKey) {
      list.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      this.#byPackage.set(key, candidatesOf(list, key, true));
    }
  }

  /** Load every record that is not withdrawn. @throws GatehouseError STORE_ERROR, BAD_OSV_RECORD */
  static async load(vulns: VulnStore): Promise<VulnIndex> {
    const rows = await vulns.all();
    return new VulnIndex(
      rows
        .filter((r) => r.withdrawn === null)
        .map((r) => parseOsvJson(r.json, `vulnerability database record ${r.id}`)),
    );
  }

  /** An index over records already parsed (tests, benchmarks). */
  static of(records: OsvRecord[]): VulnIndex {
    return new VulnIndex(records.filter((r) => r.withdrawn === undefined));
  }

  async recordsFor(ecosystem: string, name: string): Promise<readonly OsvRecord[]> {
    return (this.#byPackage.get(`${ecosystem}\u0000${name}`) ?? []).map((c) => c.prepared.record);
  }

  /** The candidates of one package key, ranges read ahead. */
  candidates(key: string): readonly Candidate[] | undefined {
    return this.#byPackage.get(key);
  }
}

/**
 * Store-backed lookup: one query per distinct package, parsed once, ranges evaluated as written
 * (no reading ahead). It is the reference the in-memory index is tested against.
 */
class StoreLookup {
  readonly #vulns: VulnStore;
  readonly #cache = new Map<string, Candidate[]>();
  constructor(vulns: VulnStore) {
    this.#vulns = vulns;
  }
  async candidates(ecosystem: string, name: string): Promise<readonly Candidate[]> {
    const key = `${ecosystem}\u0000${name}`;
    let hit = this.#cache.get(key);
    if (hit === undefined) {
      const records = (await this.#vulns.findByPackage(ecosystem, name)).map((r) =>
        parseOsvJson(r.json, `vulnerability database record ${r.id}`),
      );
      hit = candidatesOf(records, key, false);
      this.#cache.set(key, hit);
    }
    return hit;
  }
}

/** A lookup given as records only (not an index): its records are prepared per package. */
class RecordsLookup {
  readonly #lookup: VulnLookup;
  readonly #cache = new Map<string, Candidate[]>();
  constructor(lookup: VulnLookup) {
    this.#lookup = lookup;
  }
  async candidates(ecosystem: string, name: string): Promise<readonly Candidate[]> {
    const key = `${ecosystem}\u0000${name}`;
    let hit = this.#cache.get(key);
    if (hit === undefined) {
      hit = candidatesOf(await this.#lookup.recordsFor(ecosystem, name), key, true);
      this.#cache.set(key, hit);
    }
    return hit;
  }
}

/** A release-specific entry (`Debian:11`) applies only to the release the component names. */
function releaseApplies(entryEcosystem: string, ref: OsvPackageRef): boolean {
  // Without a release on the component, every release's entry applies (the cautious reading).
  if (ref.release === undefined) return true;
  const colon = entryEcosystem.indexOf(':');
  if (colon < 0) return true;
  const rel = entryEcosystem.slice(colon + 1);
  return rel === ref.release || rel.startsWith(`${ref.release}.`) || rel.startsWith(`${ref.release}:`);
}

interface Hit {
  prepared: PreparedRecord;
  fixed: ReadonlySet<string>;
}

/** The fixed versions of a hit that has none newer than the component (shared, never written). */
const NO_FIXED: ReadonlySet<string> = new Set();

/** The per-component state of matching: the component's version read lazily per scheme. */
interface VersionReads {
  eco: unknown;
  semver: unknown;
  semverRead: boolean;
}

/** Match one component against its candidates; throws what cannot be ordered. */
function matchComponent(
  ref: OsvPackageRef,
  candidates: readonly Candidate[],
  ecoScheme: ParsedScheme,
  ecoCompare: VersionCompare,
  reads: VersionReads,
): Hit[] {
  const hits: Hit[] = [];
  for (const { prepared, entries } of candidates) {
    let fixed: Set<string> | undefined;
    let affected = false;
    for (const entry of entries) {
      if (!releaseApplies(entry.ecosystem, ref)) continue;
      if (entry.versions.has(ref.version)) affected = true;
      for (const pr of entry.ranges) {
        const scheme = pr.semver ? SEMVER_SCHEME : ecoScheme;
        let v: unknown;
        if (pr.read !== undefined) {
          if (pr.semver) {
            if (!reads.semverRead) {
              reads.semver = SEMVER_SCHEME.parse(ref.version);
              reads.semverRead = true;
            }
            v = reads.semver;
          } else v = reads.eco;
        }
        if (pr.read !== undefined && v !== undefined) {
          if (inReadRange(v, pr.read, scheme)) affected = true;
          for (const f of pr.read.fixed)
            if (scheme.compare(f.v, v) > 0) {
              fixed ??= new Set();
              fixed.add(f.version);
            }
        } else {
          // Not read ahead, or the component's version does not read in the range's scheme:
          // evaluate as written, which reports what cannot be ordered.
          const compare = pr.semver ? compareSemver : ecoCompare;
          const where = `vulnerability database record ${prepared.record.id}`;
          if (inRange(ref.version, pr.range, compare, where)) affected = true;
          for (const e of pr.range.events)
            if (e.kind === 'fixed' && (compare(e.version, ref.version) ?? 0) > 0) {
              fixed ??= new Set();
              fixed.add(e.version);
            }
        }
      }
    }
    if (affected) hits.push({ prepared, fixed: fixed ?? NO_FIXED });
  }
  return hits;
}

/**
 * Match components against OSV records. Records that alias each other (a GHSA and its CVE,
 * say) give one finding per component. A component whose version, or an advisory's event,
 * cannot be ordered in its ecosystem is reported as unmatched, never silently passed.
 * @param vulns a {@link VulnIndex}, a {@link CurrentVulnIndex} (the index of the database as it is
 *   now, src/vuln/live-index.ts), or the store itself (one query per package)
 * @throws GatehouseError STORE_ERROR, or what loading a live index throws
 */
export async function matchVulnerabilities(
  components: readonly Component[],
  vulns: VulnStore | VulnLookup | CurrentVulnIndex,
): Promise<MatchResult> {
  const source = 'current' in vulns ? await vulns.current() : vulns;
  const index = source instanceof VulnIndex ? source : undefined;
  const other =
    index !== undefined
      ? undefined
      : 'recordsFor' in source
        ? new RecordsLookup(source)
        : new StoreLookup(source);
  const findings: Finding[] = [];
  const unmatched: Unmatched[] = [];
  for (const c of components) {
    const ref = osvPackageOf(c);
    if (ref === undefined) continue;
    const candidates =
      index !== undefined
        ? index.candidates(`${ref.ecosystem}\u0000${ref.name}`)
        : await other?.candidates(ref.ecosystem, ref.name);
    if (candidates === undefined || candidates.length === 0) continue;
    const ecoScheme = parsedScheme(ref.ecosystem);
    const ecoCompare = versionScheme(ref.ecosystem);
    if (ecoScheme === undefined || ecoCompare === undefined) continue;
    let hits: Hit[];
    try {
      const eco = ecoScheme.parse(ref.version);
      if (eco === undefined)
        throw new GatehouseError('BAD_INPUT', `version '${ref.version}' is not a ${ref.ecosystem} version`);
      hits = matchComponent(ref, candidates, ecoScheme, ecoCompare, {
        eco,
        semver: undefined,
        semverRead: false,
      });
    } catch (e) {
      unmatched.push({
        purl: c.purl,
        reason: e instanceof GatehouseError ? e.describe() : String(e),
        code: e instanceof GatehouseError && e.code === 'BAD_OSV_RECORD' ? 'BAD_OSV_RECORD' : 'BAD_INPUT',
      });
      continue;
    }
    if (hits.length > 0) findings.push(...mergeAliases(hits, c, ref, ecoCompare));
  }
  findings.sort(
    (a, b) =>
      (a.purl < b.purl ? -1 : a.purl > b.purl ? 1 : 0) ||
      SEVERITY_RANK[b.severity] - SEVERITY_RANK[a.severity] ||
      (a.vulnId < b.vulnId ? -1 : a.vulnId > b.vulnId ? 1 : 0),
  );
  return { findings, unmatched };
}

/**
 * Find the known vulnerabilities of components, in every supported ecosystem. Fails closed: a
 * component that has advisories but cannot be matched against them makes the whole call throw.
 * @throws GatehouseError BAD_INPUT (a component's version) or BAD_OSV_RECORD (an advisory's event)
 *   naming the component and why it could not be matched, STORE_ERROR
 */
export async function findVulnerabilities(
  components: readonly Component[],
  vulns: VulnStore | VulnLookup | CurrentVulnIndex,
): Promise<Finding[]> {
  const r = await matchVulnerabilities(components, vulns);
  const [first] = r.unmatched;
  if (first !== undefined)
    throw new GatehouseError(first.code, `component ${first.purl} cannot be matched: ${first.reason}`);
  return r.findings;
}

/** Group records that share an id or alias (transitively) and make one finding per group. */
function mergeAliases(hits: Hit[], c: Component, ref: OsvPackageRef, compare: VersionCompare): Finding[] {
  const [only] = hits;
  if (hits.length === 1 && only !== undefined) return [loneFinding(only, c, ref, compare)];
  const parent = hits.map((_, i) => i);
  const find = (i: number): number => {
    while (parent[i] !== i) i = parent[i] = parent[parent[i] ?? i] ?? i;
    return i;
  };
  const owner = new Map<string, number>();
  for (const [i, h] of hits.entries()) {
    for (const id of h.prepared.ids) {
      const j = owner.get(id);
      if (j === undefined) owner.set(id, i);
      else parent[find(i)] = find(j);
    }
  }
  const groups = new Map<number, Hit[]>();
  for (const [i, h] of hits.entries()) {
    const root = find(i);
    const g = groups.get(root);
    if (g === undefined) groups.set(root, [h]);
    else g.push(h);
  }
  const out: Finding[] = [];
  for (const group of groups.values()) out.push(findingOf(group, c, ref, compare));
  return out;
}

/** The finding of a record that aliases no other hit: {@link findingOf} without the merging. */
function loneFinding(h: Hit, c: Component, ref: OsvPackageRef, compare: VersionCompare): Finding {
  const p = h.prepared;
  const record = p.record;
  const f: Finding = {
    vulnId: record.id,
    aliases: p.aliases.slice(),
    purl: c.purl,
    name: c.name,
    version: c.version,
    ecosystem: ref.ecosystem,
    severity: p.severity,
    fixedVersions: h.fixed.size < 2 ? [...h.fixed] : [...h.fixed].sort((a, b) => compare(a, b) ?? 0),
    summary: record.summary ?? (record.details === undefined ? '' : (record.details.split('\n')[0] ?? '')),
  };
  if (p.cvssVector !== undefined) f.cvssVector = p.cvssVector;
  if (p.v3 !== undefined) f.cvssV3Score = p.v3;
  if (p.v4 !== undefined) f.cvssV4Score = p.v4;
  return f;
}

/** The one finding of a group of records that alias each other. */
function findingOf(group: Hit[], c: Component, ref: OsvPackageRef, compare: VersionCompare): Finding {
  // Prefer the GHSA record, then the smallest id, for stability.
  let preferred = group[0] as Hit;
  for (const h of group) {
    const ga = h.prepared.record.id.startsWith('GHSA-') ? 0 : 1;
    const gb = preferred.prepared.record.id.startsWith('GHSA-') ? 0 : 1;
    if (ga < gb || (ga === gb && h.prepared.record.id < preferred.prepared.record.id)) preferred = h;
  }
  const ids = new Set<string>();
  for (const h of group) for (const id of h.prepared.ids) ids.add(id);
  ids.delete(preferred.prepared.record.id);
  let severity: Severity = 'unknown';
  let cvssVector: string | undefined;
  let v3: number | undefined;
  let v4: number | undefined;
  for (const h of [preferred, ...group.filter((x) => x !== preferred)]) {
    const p = h.prepared;
    if (SEVERITY_RANK[p.severity] > SEVERITY_RANK[severity]) severity = p.severity;
    cvssVector ??= p.cvssVector;
    if (p.v3 !== undefined) v3 = Math.max(v3 ?? 0, p.v3);
    if (p.v4 !== undefined) v4 = Math.max(v4 ?? 0, p.v4);
  }
  const fixedSet = new Set<string>();
  for (const h of group) for (const f of h.fixed) fixedSet.add(f);
  const fixed = [...fixedSet].sort((a, b) => compare(a, b) ?? 0);
  const record = preferred.prepared.record;
  const f: Finding = {
    vulnId: record.id,
    aliases: [...ids].sort(),
    purl: c.purl,
    name: c.name,
    version: c.version,
    ecosystem: ref.ecosystem,
    severity,
    fixedVersions: fixed,
    summary:
      record.summary ??
      group.map((h) => h.prepared.record.summary).find((s) => s !== undefined && s !== '') ??
      record.details?.split('\n')[0] ??
      '',
  };
  if (cvssVector !== undefined) f.cvssVector = cvssVector;
  if (v3 !== undefined) f.cvssV3Score = v3;
  if (v4 !== undefined) f.cvssV4Score = v4;
  return f;
}
