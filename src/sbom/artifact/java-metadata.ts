/**
 * Java archive metadata: `META-INF/maven/<group>/<artifact>/pom.properties`, which Maven writes
 * into every jar it builds, and `META-INF/MANIFEST.MF`, read only for a jar that has no
 * pom.properties (its Implementation-* or Bundle-* headers, and the jar's file name).
 */
import type { Component } from '../model.ts';
import { formatPurl } from '../purl.ts';
import { NotAPackage } from './package-metadata.ts';

const COORD = /^[A-Za-z0-9_.-]{1,200}$/;
const VERSION = /^[A-Za-z0-9_.+-]{1,100}$/;

function mavenComponent(group: string | undefined, artifact: string, version: string): Component {
  return {
    name: group === undefined ? artifact : `${group}:${artifact}`,
    version,
    purl: formatPurl({
      type: 'maven',
      ...(group === undefined ? {} : { namespace: group }),
      name: artifact,
      version,
    }),
    ecosystem: 'maven',
    hashes: [],
    dependencies: [],
    scope: 'required',
  };
}

/** Java properties (`key=value`, `key: value`, `#` and `!` comments, `\` continuations). */
function properties(text: string): Map<string, string> {
  const out = new Map<string, string>();
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  for (let i = 0; i < lines.length; i++) {
    let line = (lines[i] ?? '').replace(/^\s+/, '');
    if (line === '' || line.startsWith('#') || line.startsWith('!')) continue;
    while (/(^|[^\\])(\\\\)*\\$/.test(line) && i + 1 < lines.length)
      line = line.slice(0, -1) + (lines[++i] ?? '').trimStart();
    const m = /^((?:[^=:\s\\]|\\.)+)\s*[=:\s]\s*(.*)$/.exec(line);
    if (m === null) continue;
    const unescapeProp = (s: string) => s.replace(/\\(.)/g, '$1');
    out.set(unescapeProp(m[1] ?? ''), unescapeProp(m[2] ?? '').trim());
  }
  return out;
}

/**
 * The Maven artifact a pom.properties names.
 * @throws NotAPackage when groupId, artifactId or version is missing or malformed
 */
export function pomPropertiesComponent(text: string): Component {
  const p = properties(text);
  const group = p.get('groupId');
  const artifact = p.get('artifactId');
  const version = p.get('version');
  if (group === undefined || !COORD.test(group))
    throw new NotAPackage(`has no valid groupId ('${(group ?? '').slice(0, 60)}')`);
  if (artifact === undefined || !COORD.test(artifact))
    throw new NotAPackage(`has no valid artifactId ('${(artifact ?? '').slice(0, 60)}')`);
  if (version === undefined || !VERSION.test(version))
    throw new NotAPackage(`${group}:${artifact} has no valid version ('${(version ?? '').slice(0, 40)}')`);
  return mavenComponent(group, artifact, version);
}

/** The main section of a jar manifest: 72-byte lines, continuations start with one space. */
function manifestMain(text: string): Map<string, string> {
  const out = new Map<string, string>();
  let last: string | undefined;
  for (const raw of text.replace(/\r\n?/g, '\n').split('\n')) {
    if (raw === '') break; // per-entry sections follow the first blank line
    if (raw.startsWith(' ') && last !== undefined) {
      out.set(last, (out.get(last) ?? '') + raw.slice(1));
      continue;
    }
    const colon = raw.indexOf(':');
    if (colon <= 0) continue;
    last = raw.slice(0, colon);
    out.set(last, raw.slice(colon + 1).trim());
  }
  return out;
}

/**
 * The artifact a jar's manifest names, for a jar without pom.properties: the version from
 * Implementation-Version, Bundle-Version or Specification-Version; the artifact from the jar's
 * file name without its version (`commons-io-2.16.1.jar`), else the last dot-segment of
 * Bundle-SymbolicName, else Implementation-Title; the group from Implementation-Vendor-Id (which
 * Maven sets to the groupId) or the rest of Bundle-SymbolicName. Returns undefined for a manifest
 * that names no versioned artifact (most jars built by hand).
 * @param jarName the jar's file name, when the manifest came from a jar with one
 */
export function manifestComponent(text: string, jarName: string | undefined): Component | undefined {
  const m = manifestMain(text);
  const version =
    m.get('Implementation-Version') ?? m.get('Bundle-Version') ?? m.get('Specification-Version');
  if (version === undefined || !VERSION.test(version)) return undefined;
  const symbolic = m.get('Bundle-SymbolicName')?.split(';')[0]?.trim();
  let artifact: string | undefined;
  if (jarName !== undefined) {
    const base = jarName.replace(/\.(jar|war|ear|hpi|jpi)$/i, '');
    if (base.endsWith(`-${version}`)) artifact = base.slice(0, base.length - version.length - 1);
  }
  let group = m.get('Implementation-Vendor-Id');
  if (artifact === undefined && symbolic !== undefined)
    artifact = symbolic.slice(symbolic.lastIndexOf('.') + 1);
  if (group === undefined && symbolic !== undefined && artifact !== undefined) {
    if (symbolic.endsWith(`.${artifact}`)) group = symbolic.slice(0, symbolic.length - artifact.length - 1);
    else if (symbolic.includes('.') && symbolic !== artifact)
      group = symbolic.slice(0, symbolic.lastIndexOf('.'));
  }
  artifact ??= m.get('Implementation-Title')?.replace(/\s+/g, '-');
  if (artifact === undefined || !COORD.test(artifact)) return undefined;
  if (group !== undefined && !COORD.test(group)) group = undefined;
  return mavenComponent(group, artifact, version);
}
