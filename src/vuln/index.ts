export type { Severity } from './cvss.ts';
export { cvss3BaseScore, SEVERITY_RANK, severityOfScore } from './cvss.ts';
export { cvss4Score } from './cvss4.ts';
export type { ImportOptions, ImportResult, RefusedRecord } from './import.ts';
export { importOsv } from './import.ts';
export { LiveVulnIndex } from './live-index.ts';
export type {
  CurrentVulnIndex,
  Finding,
  MatchResult,
  OsvPackageRef,
  Unmatched,
  VulnLookup,
} from './match.ts';
export { findVulnerabilities, matchVulnerabilities, osvPackageOf, VulnIndex } from './match.ts';
export type { OsvAffected, OsvEvent, OsvPackage, OsvRange, OsvRecord, OsvSeverity } from './osv.ts';
export { normalizePackageName, parseOsvJson, parseOsvRecord } from './osv.ts';
export type { VersionCompare } from './versions/ecosystems.ts';
export { VERSION_SCHEMES, versionScheme } from './versions/ecosystems.ts';
export type { VexStatement, VexStatus } from './vex.ts';
export { parseVex, vexFor } from './vex.ts';
