/**
 * Three SBOMs of one build, reconciled: what the project declared (its lockfiles before the
 * build), what the fetch phase downloaded (each download by URL and digest), and what the gate
 * found in the artifact itself. The union is what the policy judges and what is signed; a component
 * found in the artifact that the declared SBOM lacks, or names at another version, is reported as
 * undeclared, with the path it was found at.
 */
import { createHash } from 'node:crypto';
import type { Component, ComponentOrigin, OriginKind } from './model.ts';

export type { ComponentOrigin, OriginKind } from './model.ts';

import { formatPurl, npmPurl, parsePurl } from './purl.ts';

/** A component of the union, with every origin it has. */
export interface JudgedComponent extends Component {
  origins: ComponentOrigin[];
}

/** A component found in the artifact and not declared (or declared only at other versions). */
export interface UndeclaredComponent {
  purl: string;
  name: string;
  version: string;
  /** Where in the artifact it was found. */
  path: string;
  method: string;
  /** The versions the declared SBOM names for the same package, if any. */
  declaredVersions: string[];
}

/** A component found in the artifact, with where and how. */
export interface FoundInArtifact extends Component {
  evidence: { path: string; method: string; archive?: string[] };
}

/** A download of the fetch phase, as the egress proxy digested it. */
export interface FetchedArtifact {
  uri: string;
  digest: { sha256: string };
}

export interface Reconciliation {
  components: JudgedComponent[];
  undeclared: UndeclaredComponent[];
}

/** A purl's identity without qualifiers and subpath: what "the same component" means here. */
function identity(purl: string): string {
  try {
    const p = parsePurl(purl);
    return formatPurl({
      type: p.type,
      name: p.name,
      ...(p.namespace === undefined ? {} : { namespace: p.namespace }),
      ...(p.version === undefined ? {} : { version: p.version }),
    });
  } catch {
    return purl;
  }
}

/** The package a purl names, without its version. */
function packageOf(purl: string): string {
  try {
    const p = parsePurl(purl);
    return formatPurl({
      type: p.type,
      name: p.name,
      ...(p.namespace === undefined ? {} : { namespace: p.namespace }),
    });
  } catch {
    return purl;
  }
}

/**
 * The component a download is, from its URL: the npm registry's and PyPI's file names, Go's module
 * proxy; anything else is a generic component named by its file, with its digest.
 */
export function fetchedComponent(f: FetchedArtifact): Component {
  const hashes = [{ alg: 'SHA-256' as const, content: f.digest.sha256 }];
  const url = new URL(f.uri);
  const npm = /^\/((?:@[^/]+\/)?[^/]+)\/-\/[^/]+-(\d[^/]*)\.tgz$/.exec(url.pathname);
  if (npm?.[1] !== undefined && npm[2] !== undefined) {
    const name = decodeURIComponent(npm[1]);
    return { name, version: npm[2], purl: npmPurl(name, npm[2]), ecosystem: 'npm', hashes, dependencies: [] };
  }
  const go = /^\/(.+)\/@v\/(v[^/]+)\.zip$/.exec(url.pathname);
  if (go?.[1] !== undefined && go[2] !== undefined) {
    const module = decodeURIComponent(go[1]);
    const slash = module.lastIndexOf('/');
    const purl = formatPurl({
      type: 'golang',
      namespace: module.slice(0, slash),
      name: module.slice(slash + 1),
      version: go[2],
    });
    return { name: module, version: go[2], purl, ecosystem: 'golang', hashes, dependencies: [] };
  }
  const file = decodeURIComponent(url.pathname.split('/').pop() ?? 'download');
  const pypi = /^([A-Za-z0-9_.]+?)-(\d[A-Za-z0-9_.!+]*?)(?:-[^-]+-[^-]+-[^-]+\.whl|\.tar\.gz|\.zip)$/.exec(
    file,
  );
  if (pypi?.[1] !== undefined && pypi[2] !== undefined && /pythonhosted|pypi/.test(url.hostname)) {
    const name = pypi[1].toLowerCase().replace(/[-_.]+/g, '-');
    const purl = formatPurl({ type: 'pypi', name, version: pypi[2] });
    return { name, version: pypi[2], purl, ecosystem: 'pypi', hashes, dependencies: [] };
  }
  // No package identity in the URL: the download itself is the component, pinned by its digest.
  const version = `sha256:${f.digest.sha256}`;
  const purl = formatPurl({
    type: 'generic',
    name: file,
    qualifiers: { checksum: `sha256:${f.digest.sha256}`, download_url: f.uri },
  });
  return { name: file, version, purl, ecosystem: 'generic', hashes, dependencies: [] };
}

/**
 * Reconcile the three SBOMs. The project's own package (the declared SBOM's root, which the
 * artifact may well carry, e.g. its package.json) is in the union but never undeclared.
 */
export function reconcile(input: {
  declared: readonly Component[];
  fetched: readonly FetchedArtifact[];
  found: readonly FoundInArtifact[];
  /** The project's own package identities (purls), as its lockfiles name it. */
  own?: readonly string[];
  /** What the build environment's toolchain compiles into an artifact (see {@link toolchainProvides}). */
  toolchain?: readonly string[];
}): Reconciliation {
  const union = new Map<string, JudgedComponent>();
  const add = (c: Component, origin: ComponentOrigin): void => {
    const key = identity(c.purl);
    const existing = union.get(key);
    if (existing === undefined) union.set(key, { ...c, origins: [origin] });
    else if (!existing.origins.some((o) => sameOrigin(o, origin))) existing.origins.push(origin);
  };
  for (const c of input.declared) add(c, { kind: 'declared' });
  for (const f of input.fetched) add(fetchedComponent(f), { kind: 'fetched', uri: f.uri });
  const declared = new Set(input.declared.map((c) => identity(c.purl)));
  const declaredVersions = new Map<string, string[]>();
  for (const c of input.declared) {
    const pkg = packageOf(c.purl);
    declaredVersions.set(pkg, [...(declaredVersions.get(pkg) ?? []), c.version]);
  }
  const own = new Set((input.own ?? []).map(identity));
  const toolchain = new Set((input.toolchain ?? []).map(identity));
  const undeclared: UndeclaredComponent[] = [];
  for (const f of input.found) {
    const { evidence, ...component } = f;
    const path = [...(evidence.archive ?? []), evidence.path].join('!');
    const key = identity(f.purl);
    add(component, { kind: 'found', path, method: evidence.method });
    // The project's own package is judged like any other (a project named after a vulnerable
    // package gains nothing), but it is not a dependency the project failed to declare.
    if (declared.has(key) || own.has(key)) continue;
    // The Go standard library in a binary is the toolchain's, and the toolchain is a package of
    // the build environment (whose SBOM is judged with the artifact): judged, not undeclared.
    if (toolchain.has(key)) continue;
    undeclared.push({
      purl: f.purl,
      name: f.name,
      version: f.version,
      path,
      method: evidence.method,
      declaredVersions: [...new Set(declaredVersions.get(packageOf(f.purl)) ?? [])].sort(),
    });
  }
  const components = [...union.values()].sort((a, b) => (a.purl < b.purl ? -1 : a.purl > b.purl ? 1 : 0));
  return { components, undeclared: dedupeUndeclared(undeclared) };
}

/**
 * The components a build environment's toolchain compiles into what it builds, as purls: the Go
 * standard library (`pkg:golang/stdlib@1.19.8`) of each Debian Go compiler package
 * (`golang-1.19-go` at `1.19.8-2`), at the package's upstream version.
 */
export function toolchainProvides(environment: readonly Component[]): string[] {
  const out: string[] = [];
  for (const c of environment) {
    if (!/^golang-\d+\.\d+-go$/.test(c.name)) continue;
    // Debian version: [epoch:]upstream[-revision]; the upstream part is Go's own version.
    const upstream = c.version.replace(/^\d+:/, '').replace(/-[^-]*$/, '');
    if (/^\d+\.\d+(?:\.\d+)?$/.test(upstream))
      out.push(formatPurl({ type: 'golang', name: 'stdlib', version: upstream }));
  }
  return out;
}

function sameOrigin(a: ComponentOrigin, b: ComponentOrigin): boolean {
  return a.kind === b.kind && a.path === b.path && a.uri === b.uri && a.method === b.method;
}

/** One undeclared finding per component and path. */
function dedupeUndeclared(list: UndeclaredComponent[]): UndeclaredComponent[] {
  const seen = new Set<string>();
  return list.filter((u) => {
    const k = createHash('sha256').update(`${u.purl}\u0000${u.path}`).digest('hex');
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/**
 * One line for people: how many components each SBOM holds and how many were undeclared. The
 * runner image's packages (declared as the build environment) are counted apart.
 */
export function reconciliationSummary(r: Reconciliation): string {
  const artifact = r.components.filter((c) => c.buildEnvironment !== true);
  const count = (kind: OriginKind) => artifact.filter((c) => c.origins.some((o) => o.kind === kind)).length;
  const environment = r.components.length - artifact.length;
  return `declared ${count('declared')}, fetched ${count('fetched')}, found ${count('found')}, undeclared ${r.undeclared.length}${environment === 0 ? '' : ` (and ${environment} build-environment packages)`}`;
}
