import semver from 'semver';

/**
 * Parse an npm version the way npm orders them (semver 2.0, a leading `v` tolerated, build
 * metadata ignored), or undefined when semver cannot represent it.
 */
export function parseNpmVersion(v: string): semver.SemVer | undefined {
  try {
    return semver.parse(v, { loose: false }) ?? undefined;
  } catch {
    // semver throws for numeric parts beyond Number.MAX_SAFE_INTEGER.
    return undefined;
  }
}

/** Compare two parsed npm versions: negative, zero or positive. Prerelease-aware. */
export function compareNpmVersions(a: semver.SemVer, b: semver.SemVer): number {
  return semver.compare(a, b);
}
