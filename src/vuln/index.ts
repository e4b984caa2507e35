export type { Severity } from './cvss.ts';
export { cvss3BaseScore, SEVERITY_RANK, severityOfScore } from './cvss.ts';
export type { ImportOptions, ImportResult } from './import.ts';
export { importOsv } from './import.ts';
export type { Finding } from './match.ts';
export { findVulnerabilities } from './match.ts';
export type { OsvAffected, OsvEvent, OsvPackage, OsvRange, OsvRecord, OsvSeverity } from './osv.ts';
export { normalizePackageName, parseOsvJson, parseOsvRecord } from './osv.ts';
