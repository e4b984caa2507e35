import type { Component } from '../sbom/model.ts';
import { parsePurl } from '../sbom/purl.ts';
import { normalizePackageName } from './osv.ts';
import { OSV_ECOSYSTEM_OF_PURL_TYPE } from './versions/ecosystems.ts';

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
 * The key one OSV package is indexed and looked up under: its ecosystem (without a `:release`
 * suffix) and its normalised name.
 */
export function packageKey(ecosystem: string, name: string): string {
  return `${ecosystem}\u0000${name}`;
}

/** A release-specific entry (`Debian:11`) applies only to the release the component names. */
export function releaseApplies(entryEcosystem: string, ref: OsvPackageRef): boolean {
  // Without a release on the component, every release's entry applies (the cautious reading).
  if (ref.release === undefined) return true;
  const colon = entryEcosystem.indexOf(':');
  if (colon < 0) return true;
  const rel = entryEcosystem.slice(colon + 1);
  return rel === ref.release || rel.startsWith(`${ref.release}.`) || rel.startsWith(`${ref.release}:`);
}
