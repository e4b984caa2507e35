import type semver from 'semver';
import { GatehouseError } from '../common/errors.ts';
import type { Component } from '../sbom/model.ts';
import type { VulnStore } from '../store/store.ts';
import { cvss3BaseScore, SEVERITY_RANK, type Severity, severityOfScore } from './cvss.ts';
import { compareNpmVersions, parseNpmVersion } from './npm-version.ts';
import { type OsvAffected, type OsvRange, type OsvRecord, parseOsvJson } from './osv.ts';

/** One vulnerability affecting one component. */
export interface Finding {
  /** The preferred id (a GHSA id when the group has one). */
  vulnId: string;
  /** Every other id the vulnerability is known by, merged across records. */
  aliases: string[];
  purl: string;
  name: string;
  version: string;
  severity: Severity;
  /** The CVSS v3 vector the severity came from, or the first one given. */
  cvssVector?: string;
  /** Versions that fix it and are newer than the component's, ascending. */
  fixedVersions: string[];
  summary: string;
}

const GHSA_SEVERITY: Record<string, Severity> = {
  CRITICAL: 'critical',
  HIGH: 'high',
  MODERATE: 'medium',
  MEDIUM: 'medium',
  LOW: 'low',
};

/** Severity of one record: the database's own rating, else its CVSS v3 base score, else unknown. */
export function severityOf(record: OsvRecord): { severity: Severity; cvssVector?: string } {
  const vectors = [...record.severity, ...record.affected.flatMap((a) => a.severity)]
    .filter((s) => s.type === 'CVSS_V3')
    .map((s) => s.score);
  const [vector] = vectors;
  const rated = record.database_specific?.severity;
  if (typeof rated === 'string' && GHSA_SEVERITY[rated.toUpperCase()] !== undefined) {
    const severity = GHSA_SEVERITY[rated.toUpperCase()] ?? 'unknown';
    return vector === undefined ? { severity } : { severity, cvssVector: vector };
  }
  for (const v of vectors) {
    try {
      return { severity: severityOfScore(cvss3BaseScore(v)), cvssVector: v };
    } catch {
      // A malformed vector does not rate the record; try the next, else it stays unknown.
    }
  }
  return { severity: 'unknown' };
}

type Version = semver.SemVer;

/**
 * Whether `v` lies in an OSV SEMVER/ECOSYSTEM range, by the schema's event algorithm: events
 * sorted by version, `introduced: "0"` before everything, `fixed` and `limit` exclusive,
 * `last_affected` inclusive.
 */
function inRange(v: Version, range: OsvRange, parse: (s: string) => Version): boolean {
  const events = range.events.map((e) => ({
    ...e,
    parsed:
      e.kind === 'introduced' && e.version === '0'
        ? undefined
        : e.kind === 'limit' && e.version === '*'
          ? null
          : parse(e.version),
  }));
  const limits = events.filter((e) => e.kind === 'limit');
  if (
    limits.length > 0 &&
    !limits.some((e) => e.parsed === null || (e.parsed !== undefined && compareNpmVersions(v, e.parsed) < 0))
  )
    return false;
  // undefined stands for introduced "0", which sorts before every version.
  const sorted = events
    .filter((e) => e.kind !== 'limit')
    .sort((a, b) => {
      if (a.parsed === undefined || a.parsed === null)
        return b.parsed === undefined || b.parsed === null ? 0 : -1;
      if (b.parsed === undefined || b.parsed === null) return 1;
      return compareNpmVersions(a.parsed, b.parsed);
    });
  let vulnerable = false;
  for (const e of sorted) {
    const p = e.parsed;
    if (e.kind === 'introduced') {
      if (p === undefined || (p !== null && compareNpmVersions(v, p) >= 0)) vulnerable = true;
    } else if (e.kind === 'fixed') {
      if (p !== undefined && p !== null && compareNpmVersions(v, p) >= 0) vulnerable = false;
    } else if (e.kind === 'last_affected') {
      if (p !== undefined && p !== null && compareNpmVersions(v, p) > 0) vulnerable = false;
    }
  }
  return vulnerable;
}

interface Hit {
  record: OsvRecord;
  fixed: Set<string>;
}

function affects(record: OsvRecord, a: OsvAffected, c: Component, v: Version, hit: Set<string>): boolean {
  const where = `vulnerability database record ${record.id}`;
  const parse = (s: string): Version => {
    const p = parseNpmVersion(s);
    if (p === undefined)
      throw new GatehouseError(
        'BAD_OSV_RECORD',
        `OSV record '${record.id}' has a range event '${s}' that is not an npm version`,
        {
          where,
        },
      );
    return p;
  };
  let affected = a.versions.includes(c.version);
  for (const range of a.ranges) {
    // GIT ranges name commits, which say nothing about a published npm version: skipped by design.
    if (range.type === 'GIT') continue;
    if (range.type !== 'SEMVER' && range.type !== 'ECOSYSTEM')
      throw new GatehouseError('BAD_OSV_RECORD', `OSV record '${record.id}' has an unknown range type`, {
        where,
      });
    if (inRange(v, range, parse)) affected = true;
    for (const e of range.events) {
      if (e.kind !== 'fixed') continue;
      if (compareNpmVersions(parse(e.version), v) > 0) hit.add(e.version);
    }
  }
  return affected;
}

/**
 * Find the known vulnerabilities of npm components in the vulnerability store. Records that alias
 * each other (a GHSA and its CVE, say) yield one finding per component, their ids merged.
 * Components of other ecosystems are not matched here.
 * @throws GatehouseError BAD_OSV_RECORD when a stored record for a component cannot be evaluated
 *   (an event that is not a version), BAD_INPUT when a component's version is not an npm version,
 *   STORE_ERROR
 */
export async function findVulnerabilities(
  components: readonly Component[],
  vulns: VulnStore,
): Promise<Finding[]> {
  const recordsByName = new Map<string, OsvRecord[]>();
  const findings: Finding[] = [];
  for (const c of components) {
    if (c.ecosystem !== 'npm') continue;
    let records = recordsByName.get(c.name);
    if (records === undefined) {
      records = (await vulns.findByPackage('npm', c.name)).map((r) =>
        parseOsvJson(r.json, `vulnerability database record ${r.id}`),
      );
      recordsByName.set(c.name, records);
    }
    if (records.length === 0) continue;
    const v = parseNpmVersion(c.version);
    if (v === undefined)
      throw new GatehouseError(
        'BAD_INPUT',
        `component ${c.purl} has a version npm cannot order, so it cannot be matched`,
      );

    const hits: Hit[] = [];
    for (const record of records) {
      const fixed = new Set<string>();
      let affected = false;
      for (const a of record.affected) {
        if (a.package?.ecosystem !== 'npm' || a.package.name !== c.name) continue;
        if (affects(record, a, c, v, fixed)) affected = true;
      }
      if (affected) hits.push({ record, fixed });
    }
    findings.push(...mergeAliases(hits, c));
  }
  return findings.sort(
    (a, b) =>
      (a.purl < b.purl ? -1 : a.purl > b.purl ? 1 : 0) ||
      SEVERITY_RANK[b.severity] - SEVERITY_RANK[a.severity] ||
      (a.vulnId < b.vulnId ? -1 : a.vulnId > b.vulnId ? 1 : 0),
  );
}

/** Group records that share an id or alias (transitively) and make one finding per group. */
function mergeAliases(hits: Hit[], c: Component): Finding[] {
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
    // Prefer the GHSA record (npm's own advisory database), then the smallest id, for stability.
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
    for (const h of [preferred, ...group.filter((x) => x !== preferred)]) {
      const s = severityOf(h.record);
      if (SEVERITY_RANK[s.severity] > SEVERITY_RANK[severity]) severity = s.severity;
      cvssVector ??= s.cvssVector;
    }
    const fixed = [...new Set(group.flatMap((h) => [...h.fixed]))].sort((a, b) => {
      const pa = parseNpmVersion(a);
      const pb = parseNpmVersion(b);
      return pa === undefined || pb === undefined ? 0 : compareNpmVersions(pa, pb);
    });
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
      severity,
      fixedVersions: fixed,
      summary: preferred.record.summary ?? summary,
    };
    if (cvssVector !== undefined) f.cvssVector = cvssVector;
    out.push(f);
  }
  return out;
}
