import { GatehouseError } from '../common/errors.ts';
import type { Component } from '../sbom/model.ts';
import type { VulnStore } from '../store/store.ts';
import { RecordsLookup, StoreLookup } from './candidate-lookups.ts';
import type { Candidate, PreparedRange } from './candidates.ts';
import { compareFindings, type Finding, type Hit, mergeAliases } from './findings.ts';
import { type OsvPackageRef, osvPackageOf, packageKey, releaseApplies } from './osv-package.ts';
import { inRange, inReadRange } from './version-ranges.ts';
import { type VersionCompare, versionScheme } from './versions/ecosystems.ts';
import { type ParsedScheme, parsedScheme, SEMVER_SCHEME } from './versions/parsed.ts';
import { compareSemver } from './versions/semver.ts';
import { type CurrentVulnIndex, VulnIndex, type VulnLookup } from './vuln-index.ts';

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

/** The fixed versions of a hit that has none newer than the component (shared, never written). */
const NO_FIXED: ReadonlySet<string> = new Set();

/** The per-component state of matching: the component's version read lazily per scheme. */
interface VersionReads {
  eco: unknown;
  semver: unknown;
  semverRead: boolean;
}

/**
 * The component's version read in the scheme of a range whose events were read ahead (read at
 * most once per scheme); undefined when the range was not read ahead or the version does not read.
 */
function readVersion(pr: PreparedRange, ref: OsvPackageRef, reads: VersionReads): unknown {
  if (pr.read === undefined) return undefined;
  if (!pr.semver) return reads.eco;
  if (!reads.semverRead) {
    reads.semver = SEMVER_SCHEME.parse(ref.version);
    reads.semverRead = true;
  }
  return reads.semver;
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
        const v = readVersion(pr, ref, reads);
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
        ? index.candidates(packageKey(ref.ecosystem, ref.name))
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
  findings.sort(compareFindings);
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
