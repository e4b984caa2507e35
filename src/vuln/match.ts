import { GatehouseError } from '../common/errors.ts';
import type { Component } from '../sbom/model.ts';
import { parsePurl } from '../sbom/purl.ts';
import type { VulnStore } from '../store/store.ts';
import { cvss3BaseScore, SEVERITY_RANK, type Severity, severityOfScore } from './cvss.ts';
import { cvss4Score } from './cvss4.ts';
import {
  normalizePackageName,
  type OsvAffected,
  type OsvRange,
  type OsvRecord,
  parseOsvJson,
} from './osv.ts';
import {
  baseEcosystem,
  OSV_ECOSYSTEM_OF_PURL_TYPE,
  type VersionCompare,
  versionScheme,
} from './versions/ecosystems.ts';
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

/** Parsed records for lookup, by `ecosystem\0name`. */
export interface VulnLookup {
  recordsFor(ecosystem: string, name: string): Promise<readonly OsvRecord[]>;
}

/**
 * The whole vulnerability database parsed into memory, for evaluating many components (a large
 * SBOM, re-evaluation of every promoted artifact) without a query per component.
 */
export class VulnIndex implements VulnLookup {
  readonly #byPackage = new Map<string, OsvRecord[]>();
  /** Records held. */
  readonly size: number;

  private constructor(records: OsvRecord[]) {
    this.size = records.length;
    for (const r of records) {
      const seen = new Set<string>();
      for (const a of r.affected) {
        if (a.package === undefined) continue;
        const eco = baseEcosystem(a.package.ecosystem);
        const key = `${eco}\u0000${normalizePackageName(eco, a.package.name)}`;
        if (seen.has(key)) continue;
        seen.add(key);
        const list = this.#byPackage.get(key);
        if (list === undefined) this.#byPackage.set(key, [r]);
        else list.push(r);
      }
    }
  }

  /** Load every record that is not withdrawn. */
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
    return this.#byPackage.get(`${ecosystem}\u0000${name}`) ?? [];
  }
}

/** Store-backed lookup: one query per distinct package, parsed once. */
class StoreLookup implements VulnLookup {
  readonly #vulns: VulnStore;
  readonly #cache = new Map<string, OsvRecord[]>();
  constructor(vulns: VulnStore) {
    this.#vulns = vulns;
  }
  async recordsFor(ecosystem: string, name: string): Promise<readonly OsvRecord[]> {
    const key = `${ecosystem}\u0000${name}`;
    let hit = this.#cache.get(key);
    if (hit === undefined) {
      hit = (await this.#vulns.findByPackage(ecosystem, name)).map((r) =>
        parseOsvJson(r.json, `vulnerability database record ${r.id}`),
      );
      this.#cache.set(key, hit);
    }
    return hit;
  }
}

function affectedEntryApplies(a: OsvAffected, ref: OsvPackageRef): boolean {
  if (a.package === undefined) return false;
  const eco = a.package.ecosystem;
  if (baseEcosystem(eco) !== ref.ecosystem) return false;
  if (normalizePackageName(ref.ecosystem, a.package.name) !== ref.name) return false;
  // A release-specific entry (`Debian:11`) applies only to that release when the component
  // names its distro; without one, every release's entry applies (the cautious reading).
  const colon = eco.indexOf(':');
  if (colon >= 0 && ref.release !== undefined) {
    const rel = eco.slice(colon + 1);
    if (rel !== ref.release && !rel.startsWith(`${ref.release}.`) && !rel.startsWith(`${ref.release}:`))
      return false;
  }
  return true;
}

interface Hit {
  record: OsvRecord;
  fixed: Set<string>;
}

/**
 * Match components against OSV records. Records that alias each other (a GHSA and its CVE,
 * say) give one finding per component. A component whose version, or an advisory's event,
 * cannot be ordered in its ecosystem is reported as unmatched, never silently passed.
 * @throws GatehouseError STORE_ERROR
 */
export async function matchVulnerabilities(
  components: readonly Component[],
  vulns: VulnStore | VulnLookup,
): Promise<MatchResult> {
  const lookup: VulnLookup = 'recordsFor' in vulns ? vulns : new StoreLookup(vulns);
  const findings: Finding[] = [];
  const unmatched: Unmatched[] = [];
  for (const c of components) {
    const ref = osvPackageOf(c);
    if (ref === undefined) continue;
    const records = await lookup.recordsFor(ref.ecosystem, ref.name);
    if (records.length === 0) continue;
    const ecoCompare = versionScheme(ref.ecosystem);
    if (ecoCompare === undefined) continue;
    const hits: Hit[] = [];
    try {
      if (ecoCompare(ref.version, ref.version) === undefined)
        throw new GatehouseError('BAD_INPUT', `version '${ref.version}' is not a ${ref.ecosystem} version`);
      for (const record of records) {
        const where = `vulnerability database record ${record.id}`;
        const fixed = new Set<string>();
        let affected = false;
        for (const a of record.affected) {
          if (!affectedEntryApplies(a, ref)) continue;
          if (a.versions.includes(ref.version)) affected = true;
          for (const range of a.ranges) {
            // GIT ranges name commits, which say nothing about a released version: skipped.
            if (range.type === 'GIT') continue;
            const compare = range.type === 'SEMVER' ? compareSemver : ecoCompare;
            if (inRange(ref.version, range, compare, where)) affected = true;
            for (const e of range.events)
              if (e.kind === 'fixed' && (compare(e.version, ref.version) ?? 0) > 0) fixed.add(e.version);
          }
        }
        if (affected) hits.push({ record, fixed });
      }
    } catch (e) {
      unmatched.push({
        purl: c.purl,
        reason: e instanceof GatehouseError ? e.describe() : String(e),
        code: e instanceof GatehouseError && e.code === 'BAD_OSV_RECORD' ? 'BAD_OSV_RECORD' : 'BAD_INPUT',
      });
      continue;
    }
    findings.push(...mergeAliases(hits, c, ref, ecoCompare));
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
  vulns: VulnStore | VulnLookup,
): Promise<Finding[]> {
  const r = await matchVulnerabilities(components, vulns);
  const [first] = r.unmatched;
  if (first !== undefined)
    throw new GatehouseError(first.code, `component ${first.purl} cannot be matched: ${first.reason}`);
  return r.findings;
}

/** Group records that share an id or alias (transitively) and make one finding per group. */
function mergeAliases(hits: Hit[], c: Component, ref: OsvPackageRef, compare: VersionCompare): Finding[] {
  const parent = hits.map((_, i) => i);
  const find = (i: number): number => {
    while (parent[i] !== i) i = parent[i] = parent[parent[i] ?? i] ?? i;
    return i;
  };
  const owner = new Map<string, number>();
  for (const [i, h] of hits.entries()) {
    for (const id of [h.record.id, ...h.record.aliases]) {
      const j = owner.get(id);
      if (j === undefined) owner.set(id, i);
      else parent[find(i)] = find(j);
    }
  }
  const groups = new Map<number, Hit[]>();
  for (const [i, h] of hits.entries()) {
    const root = find(i);
    groups.set(root, [...(groups.get(root) ?? []), h]);
  }
  const out: Finding[] = [];
  for (const group of groups.values()) {
    // Prefer the GHSA record, then the smallest id, for stability.
    const preferred = [...group].sort((a, b) => {
      const ga = a.record.id.startsWith('GHSA-') ? 0 : 1;
      const gb = b.record.id.startsWith('GHSA-') ? 0 : 1;
      return ga - gb || (a.record.id < b.record.id ? -1 : 1);
    })[0];
    if (preferred === undefined) continue;
    const ids = new Set(group.flatMap((h) => [h.record.id, ...h.record.aliases]));
    ids.delete(preferred.record.id);
    let severity: Severity = 'unknown';
    let cvssVector: string | undefined;
    let v3: number | undefined;
    let v4: number | undefined;
    for (const h of [preferred, ...group.filter((x) => x !== preferred)]) {
      const s = severityOf(h.record);
      if (SEVERITY_RANK[s.severity] > SEVERITY_RANK[severity]) severity = s.severity;
      cvssVector ??= s.cvssVector;
      const sc = scoresOf(h.record);
      if (sc.v3 !== undefined) v3 = Math.max(v3 ?? 0, sc.v3);
      if (sc.v4 !== undefined) v4 = Math.max(v4 ?? 0, sc.v4);
    }
    const fixed = [...new Set(group.flatMap((h) => [...h.fixed]))].sort((a, b) => compare(a, b) ?? 0);
    const summary =
      group.map((h) => h.record.summary).find((s) => s !== undefined && s !== '') ??
      preferred.record.details?.split('\n')[0] ??
      '';
    const f: Finding = {
      vulnId: preferred.record.id,
      aliases: [...ids].sort(),
      purl: c.purl,
      name: c.name,
      version: c.version,
      ecosystem: ref.ecosystem,
      severity,
      fixedVersions: fixed,
      summary: preferred.record.summary ?? summary,
    };
    if (cvssVector !== undefined) f.cvssVector = cvssVector;
    if (v3 !== undefined) f.cvssV3Score = v3;
    if (v4 !== undefined) f.cvssV4Score = v4;
    out.push(f);
  }
  return out;
}
