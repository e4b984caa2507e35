import { z } from 'zod';
import { GatehouseError } from '../common/errors.ts';

/** One event of an OSV range, reduced to its kind and version. */
export interface OsvEvent {
  kind: 'introduced' | 'fixed' | 'last_affected' | 'limit';
  version: string;
}

/** An OSV affected range. */
export interface OsvRange {
  type: 'SEMVER' | 'ECOSYSTEM' | 'GIT';
  repo?: string;
  events: OsvEvent[];
}

/** A severity entry: the scoring system (`CVSS_V3`, `CVSS_V4`, …) and its vector or score. */
export interface OsvSeverity {
  type: string;
  score: string;
}

/** The package an affected entry names; absent for entries that only give GIT ranges. */
export interface OsvPackage {
  ecosystem: string;
  name: string;
  purl?: string;
}

/** One `affected` entry. */
export interface OsvAffected {
  package?: OsvPackage;
  ranges: OsvRange[];
  versions: string[];
  severity: OsvSeverity[];
  database_specific?: Record<string, unknown>;
  ecosystem_specific?: Record<string, unknown>;
}

/** An OSV vulnerability record, parsed and checked. */
export interface OsvRecord {
  id: string;
  modified: string;
  published?: string;
  withdrawn?: string;
  aliases: string[];
  summary?: string;
  details?: string;
  severity: OsvSeverity[];
  affected: OsvAffected[];
  database_specific?: Record<string, unknown>;
}

const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i;
const dateTime = z.string().regex(DATE_TIME, 'is not an RFC 3339 date-time');
const object = z.record(z.string(), z.unknown());
const severity = z.array(z.object({ type: z.string().min(1), score: z.string().min(1) }));

const EVENT_KINDS = ['introduced', 'fixed', 'last_affected', 'limit'] as const;

const event = z.record(z.string(), z.unknown()).transform((e, ctx): OsvEvent => {
  // Exactly one of the four kinds, as the schema's oneOf demands.
  const kinds = EVENT_KINDS.filter((k) => k in e);
  const [kind] = kinds;
  const version = kind === undefined ? undefined : e[kind];
  if (kinds.length !== 1 || kind === undefined || typeof version !== 'string' || version === '') {
    ctx.issues.push({
      code: 'custom',
      input: e,
      message:
        'an event must hold exactly one of introduced, fixed, last_affected, limit as a non-empty string',
    });
    return z.NEVER;
  }
  return { kind, version };
});

const range = z
  .object({
    type: z.enum(['SEMVER', 'ECOSYSTEM', 'GIT']),
    repo: z.string().optional(),
    events: z.array(event).min(1),
  })
  .check((ctx) => {
    const r = ctx.value;
    const issue = (message: string) => ctx.issues.push({ code: 'custom', input: r, message });
    if (r.type === 'GIT' && r.repo === undefined) issue('a GIT range needs a repo');
    if (!r.events.some((e) => e.kind === 'introduced')) issue("the range has no 'introduced' event");
    if (r.events.some((e) => e.kind === 'fixed') && r.events.some((e) => e.kind === 'last_affected'))
      issue("the range mixes 'fixed' and 'last_affected' events");
    // An introduced event directly followed by a fixed event at the same version or commit opens
    // and closes an empty interval: the record says nothing it means (the osv-linter's
    // range-is-distinct check). The linter's stricter form, no value both opening and closing
    // anywhere in the range, would refuse real PyPI advisories that list adjacent intervals
    // (fixed 3.1.1, then introduced 3.1.1), so only the empty interval is refused.
    for (const [i, e] of r.events.entries()) {
      const next = r.events[i + 1];
      if (e.kind === 'introduced' && next?.kind === 'fixed' && next.version === e.version)
        issue(`the range's events are not distinct: it is introduced and fixed at '${e.version}'`);
    }
  });

const affected = z.object({
  package: z
    .object({ ecosystem: z.string().min(1), name: z.string().min(1), purl: z.string().optional() })
    .optional(),
  ranges: z.array(range).optional(),
  versions: z.array(z.string()).optional(),
  severity: severity.nullish(),
  database_specific: object.optional(),
  ecosystem_specific: object.optional(),
});

const recordSchema = z.object({
  id: z.string().min(1),
  modified: dateTime,
  published: dateTime.optional(),
  withdrawn: dateTime.optional(),
  aliases: z.array(z.string()).nullish(),
  summary: z.string().optional(),
  details: z.string().optional(),
  severity: severity.nullish(),
  affected: z.array(affected).nullish(),
  database_specific: object.optional(),
});

function formatPath(path: readonly PropertyKey[]): string {
  return path
    .map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`))
    .join('');
}

/**
 * Parse one OSV record (already decoded from JSON) into a typed, checked record.
 * @param input the decoded JSON value
 * @param where the file (and zip member) it came from, for error messages
 * @throws GatehouseError BAD_OSV_RECORD naming the record, the field and the problem
 */
export function parseOsvRecord(input: unknown, where: string): OsvRecord {
  const parsed = recordSchema.safeParse(input);
  if (!parsed.success) {
    const id =
      typeof input === 'object' && input !== null && 'id' in input && typeof input.id === 'string'
        ? `OSV record '${input.id}'`
        : 'OSV record';
    const issue = parsed.error.issues[0];
    const at = issue === undefined || issue.path.length === 0 ? '' : ` ${formatPath(issue.path)}`;
    throw new GatehouseError('BAD_OSV_RECORD', `${id}${at}: ${issue?.message ?? 'invalid'}`, {
      where,
      cause: parsed.error,
    });
  }
  const r = parsed.data;
  const out: OsvRecord = {
    id: r.id,
    modified: r.modified,
    aliases: (r.aliases ?? []).filter((a) => a !== r.id),
    severity: r.severity ?? [],
    affected: (r.affected ?? []).map((a) => {
      const x: OsvAffected = {
        ranges: (a.ranges ?? []).map(
          (g) => (g.repo === undefined ? { type: g.type, events: g.events } : g) as OsvRange,
        ),
        versions: a.versions ?? [],
        severity: a.severity ?? [],
      };
      if (a.package !== undefined) {
        const p: OsvPackage = { ecosystem: a.package.ecosystem, name: a.package.name };
        if (a.package.purl !== undefined) p.purl = a.package.purl;
        x.package = p;
      }
      if (a.database_specific !== undefined) x.database_specific = a.database_specific;
      if (a.ecosystem_specific !== undefined) x.ecosystem_specific = a.ecosystem_specific;
      return x;
    }),
  };
  if (r.published !== undefined) out.published = r.published;
  if (r.withdrawn !== undefined) out.withdrawn = r.withdrawn;
  if (r.summary !== undefined) out.summary = r.summary;
  if (r.details !== undefined) out.details = r.details;
  if (r.database_specific !== undefined) out.database_specific = r.database_specific;
  return out;
}

/**
 * Decode and parse one OSV JSON document.
 * @throws GatehouseError BAD_OSV_RECORD when the text is not JSON or not a valid record
 */
export function parseOsvJson(text: string, where: string): OsvRecord {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (cause) {
    throw new GatehouseError('BAD_OSV_RECORD', 'OSV record is not valid JSON', { where, cause });
  }
  return parseOsvRecord(raw, where);
}

/**
 * Normalise a package name the way its ecosystem compares names: PyPI per PEP 503 (lowercase,
 * runs of `-`, `_`, `.` become one `-`); NuGet and Packagist lowercase; every other ecosystem,
 * npm included, as-is. A `:release` suffix on the ecosystem (`Debian:12`) is ignored.
 */
export function normalizePackageName(ecosystem: string, name: string): string {
  const base = ecosystem.split(':')[0];
  if (base === 'PyPI') return name.toLowerCase().replace(/[-_.]+/g, '-');
  // NuGet ids and Composer package names compare without regard to case.
  if (base === 'NuGet' || base === 'Packagist') return name.toLowerCase();
  return name;
}
