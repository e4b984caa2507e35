import type { Component } from '../sbom/model.ts';
import type { PreparedRecord } from './candidates.ts';
import { SEVERITY_RANK, type Severity } from './cvss.ts';
import type { OsvPackageRef } from './osv-package.ts';
import type { VersionCompare } from './versions/ecosystems.ts';

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

/** A record that affects a component, with its fixed versions newer than the component's. */
export interface Hit {
  prepared: PreparedRecord;
  fixed: ReadonlySet<string>;
}

/** The order findings are reported in: by purl, the most severe first, then by id. */
export function compareFindings(a: Finding, b: Finding): number {
  return (
    (a.purl < b.purl ? -1 : a.purl > b.purl ? 1 : 0) ||
    SEVERITY_RANK[b.severity] - SEVERITY_RANK[a.severity] ||
    (a.vulnId < b.vulnId ? -1 : a.vulnId > b.vulnId ? 1 : 0)
  );
}

/** Group records that share an id or alias (transitively) and make one finding per group. */
export function mergeAliases(
  hits: Hit[],
  c: Component,
  ref: OsvPackageRef,
  compare: VersionCompare,
): Finding[] {
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
