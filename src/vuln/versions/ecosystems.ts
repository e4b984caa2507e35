import { compareAlpine } from './alpine.ts';
import { compareDebian } from './debian.ts';
import { compareMaven } from './maven.ts';
import { compareNuget } from './nuget.ts';
import { comparePackagist } from './packagist.ts';
import { comparePypi } from './pypi.ts';
import { compareRubygems } from './rubygems.ts';
import { compareSemver } from './semver.ts';

/**
 * How one ecosystem orders its versions: negative, zero or positive; undefined when either
 * version cannot be read in that ecosystem's grammar (a comparison that cannot be made).
 */
export type VersionCompare = (a: string, b: string) => number | undefined;

/** The OSV ecosystems gatehouse matches, by their OSV name (without a `:release` suffix). */
export const VERSION_SCHEMES: Readonly<Record<string, VersionCompare>> = {
  npm: compareSemver,
  Go: compareSemver,
  'crates.io': compareSemver,
  PyPI: comparePypi,
  Maven: compareMaven,
  Debian: compareDebian,
  Alpine: compareAlpine,
  RubyGems: compareRubygems,
  Packagist: comparePackagist,
  NuGet: compareNuget,
};

/** OSV ecosystem of a purl type, for the ecosystems gatehouse matches. */
export const OSV_ECOSYSTEM_OF_PURL_TYPE: Readonly<Record<string, string>> = {
  npm: 'npm',
  golang: 'Go',
  cargo: 'crates.io',
  pypi: 'PyPI',
  maven: 'Maven',
  deb: 'Debian',
  apk: 'Alpine',
  gem: 'RubyGems',
  composer: 'Packagist',
  nuget: 'NuGet',
};

/** `Debian:11` → `Debian`: the ecosystem an OSV ecosystem string names, without its release. */
export function baseEcosystem(ecosystem: string): string {
  const colon = ecosystem.indexOf(':');
  return colon < 0 ? ecosystem : ecosystem.slice(0, colon);
}

/** The comparison for an OSV ecosystem (release suffix allowed), or undefined if unsupported. */
export function versionScheme(ecosystem: string): VersionCompare | undefined {
  return VERSION_SCHEMES[baseEcosystem(ecosystem)];
}
