import { cvss3BaseScore, type Severity, severityOfScore } from './cvss.ts';
import { cvss4Score } from './cvss4.ts';
import type { OsvRecord } from './osv.ts';

/** The GitHub Advisory Database's own ratings (`database_specific.severity`) as severities. */
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
