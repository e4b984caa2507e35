import { randomUUID } from 'node:crypto';
import parseSpdxExpression from 'spdx-expression-parse';
import { z } from 'zod';
import { GatehouseError } from '../common/errors.ts';
import type {
  Component,
  ComponentHash,
  HashAlgorithm,
  Sbom,
  SbomSubject,
  UnidentifiedComponent,
} from './model.ts';
import { modelNameOf, type PackageUrl, parsePurl } from './purl.ts';
import { gatehouseVersion } from './version.ts';

/** An SPDX 2.3 JSON document as gatehouse writes it (the fields it uses). */
export interface SpdxDocument {
  spdxVersion: 'SPDX-2.3';
  dataLicense: 'CC0-1.0';
  SPDXID: 'SPDXRef-DOCUMENT';
  name: string;
  documentNamespace: string;
  creationInfo: { created: string; creators: string[] };
  packages: SpdxPackage[];
  documentDescribes?: string[];
  hasExtractedLicensingInfos?: { licenseId: string; extractedText: string; name: string }[];
  relationships: { spdxElementId: string; relationshipType: string; relatedSpdxElement: string }[];
}

/** One package of an {@link SpdxDocument}. */
export interface SpdxPackage {
  SPDXID: string;
  name: string;
  versionInfo?: string;
  downloadLocation: 'NOASSERTION';
  filesAnalyzed: false;
  checksums?: { algorithm: string; checksumValue: string }[];
  licenseConcluded: string;
  licenseDeclared: string;
  copyrightText: 'NOASSERTION';
  externalRefs?: { referenceCategory: 'PACKAGE-MANAGER'; referenceType: 'purl'; referenceLocator: string }[];
  primaryPackagePurpose: 'LIBRARY' | 'APPLICATION' | 'OPERATING-SYSTEM';
  sourceInfo?: string;
}

/** Options for {@link writeSpdx}: fresh values by default. */
export interface WriteSpdxOptions {
  /** The document namespace URI; `https://gatehouse.internal/spdx/<name>-<uuid>` by default. */
  namespace?: string;
  /** Creation time, `YYYY-MM-DDThh:mm:ssZ`; now by default. */
  created?: string;
}

const SPDX_ALG: Record<HashAlgorithm, string> = {
  'SHA-512': 'SHA512',
  'SHA-384': 'SHA384',
  'SHA-256': 'SHA256',
  'SHA-1': 'SHA1',
};
const MODEL_ALG: Record<string, HashAlgorithm | undefined> = {
  SHA512: 'SHA-512',
  SHA384: 'SHA-384',
  SHA256: 'SHA-256',
  SHA1: 'SHA-1',
};
const CREATED = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

function spdxId(kind: string, i: number, name: string): string {
  return `SPDXRef-${kind}-${i}-${name.replace(/[^A-Za-z0-9.-]+/g, '-').slice(0, 64)}`;
}

function isSpdxExpression(s: string): boolean {
  try {
    parseSpdxExpression(s);
    return true;
  } catch {
    return false;
  }
}

/**
 * Write an SBOM as an SPDX 2.3 JSON document. The subject is the described package (with its
 * SHA-256); components are packages with a purl external reference; edges are DEPENDS_ON; dev and
 * optional components get DEV_DEPENDENCY_OF / OPTIONAL_DEPENDENCY_OF the subject, and runner-image
 * packages BUILD_TOOL_OF it. A licence that is not an SPDX expression becomes a LicenseRef with its
 * text kept.
 * @throws GatehouseError BAD_INPUT for a malformed creation time, BAD_SBOM for repeated purls
 */
export function writeSpdx(sbom: Sbom, options: WriteSpdxOptions = {}): SpdxDocument {
  const created = options.created ?? `${new Date().toISOString().slice(0, 19)}Z`;
  if (!CREATED.test(created))
    throw new GatehouseError('BAD_INPUT', `creation time '${created}' is not YYYY-MM-DDThh:mm:ssZ`);
  const name = sbom.subject?.name || 'sbom';
  const namespace =
    options.namespace ?? `https://gatehouse.internal/spdx/${encodeURIComponent(name)}-${randomUUID()}`;
  const extracted = new Map<string, string>();
  const licenseOf = (licenses: string[] | undefined): string => {
    if (licenses === undefined || licenses.length === 0) return 'NOASSERTION';
    const parts = licenses.map((l) => {
      if (isSpdxExpression(l)) return licenses.length > 1 ? `(${l})` : l;
      let id = extracted.get(l);
      if (id === undefined) {
        id = `LicenseRef-${extracted.size + 1}`;
        extracted.set(l, id);
      }
      return id;
    });
    return parts.join(' AND ');
  };

  const packages: SpdxPackage[] = [];
  const relationships: SpdxDocument['relationships'] = [];
  const idOf = new Map<string, string>();
  for (const [i, c] of sbom.components.entries()) {
    if (idOf.has(c.purl))
      throw new GatehouseError('BAD_SBOM', `SBOM component ${i} repeats the purl '${c.purl}'`);
    const id = spdxId('Package', i, `${c.name}-${c.version}`);
    idOf.set(c.purl, id);
    const lic = licenseOf(c.licenses);
    const pkg: SpdxPackage = {
      SPDXID: id,
      name: c.name,
      versionInfo: c.version,
      downloadLocation: 'NOASSERTION',
      filesAnalyzed: false,
      licenseConcluded: 'NOASSERTION',
      licenseDeclared: lic,
      copyrightText: 'NOASSERTION',
      externalRefs: [
        { referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: c.purl },
      ],
      primaryPackagePurpose: 'LIBRARY',
    };
    if (c.hashes.length > 0)
      pkg.checksums = c.hashes.map((h) => ({
        algorithm: SPDX_ALG[h.alg],
        checksumValue: h.content.toLowerCase(),
      }));
    if (c.sourcePackage !== undefined)
      pkg.sourceInfo = `built package from: ${c.sourcePackage.name}${c.sourcePackage.version === undefined ? '' : ` ${c.sourcePackage.version}`}`;
    packages.push(pkg);
  }
  const subjectId = 'SPDXRef-Subject';
  const root = sbom.subject === undefined ? 'SPDXRef-DOCUMENT' : subjectId;
  const doc: SpdxDocument = {
    spdxVersion: 'SPDX-2.3',
    dataLicense: 'CC0-1.0',
    SPDXID: 'SPDXRef-DOCUMENT',
    name,
    documentNamespace: namespace,
    creationInfo: { created, creators: [`Tool: gatehouse-${gatehouseVersion()}`] },
    packages,
    relationships,
  };
  if (sbom.subject !== undefined) {
    const s = sbom.subject;
    const subject: SpdxPackage = {
      SPDXID: subjectId,
      name: s.name || 'subject',
      downloadLocation: 'NOASSERTION',
      filesAnalyzed: false,
      licenseConcluded: 'NOASSERTION',
      licenseDeclared: 'NOASSERTION',
      copyrightText: 'NOASSERTION',
      primaryPackagePurpose: 'APPLICATION',
    };
    if (s.version !== undefined) subject.versionInfo = s.version;
    if (s.sha256 !== undefined)
      subject.checksums = [{ algorithm: 'SHA256', checksumValue: s.sha256.toLowerCase() }];
    if (s.purl !== undefined)
      subject.externalRefs = [
        { referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: s.purl },
      ];
    packages.unshift(subject);
    doc.documentDescribes = [subjectId];
    relationships.push({
      spdxElementId: 'SPDXRef-DOCUMENT',
      relationshipType: 'DESCRIBES',
      relatedSpdxElement: subjectId,
    });
    for (const d of new Set(s.dependencies ?? [])) {
      const to = idOf.get(d);
      if (to !== undefined)
        relationships.push({
          spdxElementId: subjectId,
          relationshipType: 'DEPENDS_ON',
          relatedSpdxElement: to,
        });
    }
  }
  for (const c of sbom.components) {
    const from = idOf.get(c.purl) as string;
    for (const d of new Set(c.dependencies)) {
      const to = idOf.get(d);
      if (to !== undefined)
        relationships.push({ spdxElementId: from, relationshipType: 'DEPENDS_ON', relatedSpdxElement: to });
    }
    const role =
      c.buildEnvironment === true
        ? 'BUILD_TOOL_OF'
        : c.scope === 'dev'
          ? 'DEV_DEPENDENCY_OF'
          : c.scope === 'optional'
            ? 'OPTIONAL_DEPENDENCY_OF'
            : c.scope === 'required'
              ? 'RUNTIME_DEPENDENCY_OF'
              : undefined;
    if (role !== undefined)
      relationships.push({ spdxElementId: from, relationshipType: role, relatedSpdxElement: root });
  }
  if (extracted.size > 0)
    doc.hasExtractedLicensingInfos = [...extracted].map(([text, licenseId]) => ({
      licenseId,
      extractedText: text,
      name: text,
    }));
  return doc;
}

// ---- reading SPDX 2.x ----

const checksum = z.looseObject({
  algorithm: z.string(),
  checksumValue: z.string().regex(/^[0-9a-fA-F]+$/, 'is not hex'),
});
const pkgSchema = z.looseObject({
  SPDXID: z.string().regex(/^SPDXRef-[A-Za-z0-9.-]+$/, 'is not an SPDXRef id'),
  name: z.string(),
  versionInfo: z.string().optional(),
  checksums: z.array(checksum).optional(),
  licenseDeclared: z.string().optional(),
  licenseConcluded: z.string().optional(),
  sourceInfo: z.string().optional(),
  externalRefs: z
    .array(
      z.looseObject({
        referenceCategory: z.string(),
        referenceType: z.string(),
        referenceLocator: z.string(),
      }),
    )
    .optional(),
});
const spdx2Schema = z.looseObject({
  spdxVersion: z.enum(['SPDX-2.2', 'SPDX-2.3'], 'is not SPDX-2.2 or SPDX-2.3'),
  SPDXID: z.literal('SPDXRef-DOCUMENT'),
  name: z.string(),
  documentNamespace: z.string(),
  creationInfo: z.looseObject({ created: z.string(), creators: z.array(z.string()).min(1) }),
  packages: z.array(pkgSchema).optional(),
  documentDescribes: z.array(z.string()).optional(),
  relationships: z
    .array(
      z.looseObject({
        spdxElementId: z.string(),
        relationshipType: z.string(),
        relatedSpdxElement: z.string(),
      }),
    )
    .optional(),
});

function formatPath(path: readonly PropertyKey[]): string {
  return path
    .map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`))
    .join('');
}

function sbomError(where: string, message: string, cause?: unknown): GatehouseError {
  return new GatehouseError('BAD_SBOM', message, cause === undefined ? { where } : { where, cause });
}

function parseJson(json: unknown, where: string): unknown {
  if (typeof json !== 'string') return json;
  try {
    return JSON.parse(json);
  } catch (cause) {
    throw sbomError(where, 'the SBOM is not valid JSON', cause);
  }
}

interface Edge {
  from: string;
  type: string;
  to: string;
}

/** Turn packages and edges (by element id) into the model. */
function assemble(
  where: string,
  packages: {
    id: string;
    name: string;
    version?: string | undefined;
    purl?: string | undefined;
    hashes: ComponentHash[];
    license?: string | undefined;
    source?: { name: string; version?: string } | undefined;
    path: string;
  }[],
  edges: Edge[],
  described: string[],
): Sbom {
  const idToPurl = new Map<string, string>();
  const byPurl = new Map<string, Component>();
  const unidentified: UnidentifiedComponent[] = [];
  const subjectId = described.find((d) => packages.some((p) => p.id === d));
  let subject: SbomSubject | undefined;
  for (const p of packages) {
    if (p.id === subjectId) {
      subject = { name: p.name };
      if (p.version !== undefined) subject.version = p.version;
      if (p.purl !== undefined) subject.purl = p.purl;
      const sha = p.hashes.find((h) => h.alg === 'SHA-256');
      if (sha !== undefined) subject.sha256 = sha.content;
      continue;
    }
    if (p.purl === undefined || p.version === undefined) {
      const u: UnidentifiedComponent = { name: p.name, bomRef: p.id };
      if (p.version !== undefined) u.version = p.version;
      unidentified.push(u);
      continue;
    }
    let parsed: PackageUrl;
    try {
      parsed = parsePurl(p.purl);
    } catch (cause) {
      throw sbomError(where, `SPDX ${p.path} has an invalid purl '${p.purl}'`, cause);
    }
    idToPurl.set(p.id, p.purl);
    if (byPurl.has(p.purl)) continue;
    const c: Component = {
      name: modelNameOf(parsed),
      version: p.version,
      purl: p.purl,
      ecosystem: parsed.type,
      hashes: p.hashes,
      dependencies: [],
    };
    if (p.license !== undefined && p.license !== 'NOASSERTION' && p.license !== 'NONE')
      c.licenses = [p.license];
    if (p.source !== undefined) c.sourcePackage = p.source;
    byPurl.set(p.purl, c);
  }
  const subjectDeps = new Set<string>();
  for (const e of edges) {
    // Normalise both directions to "from depends on to".
    let from = e.from;
    let to = e.to;
    if (
      /^(DEPENDENCY_OF|DEV_DEPENDENCY_OF|OPTIONAL_DEPENDENCY_OF|RUNTIME_DEPENDENCY_OF|BUILD_DEPENDENCY_OF|TEST_DEPENDENCY_OF|PROVIDED_DEPENDENCY_OF|BUILD_TOOL_OF|CONTAINED_BY)$/i.test(
        e.type,
      )
    )
      [from, to] = [to, from];
    else if (!/^(DEPENDS_ON|CONTAINS)$/i.test(e.type)) continue;
    const target = idToPurl.get(to);
    const dependent = e.type.toUpperCase();
    if (target !== undefined) {
      const c = byPurl.get(target);
      if (c !== undefined && from === subjectId) {
        if (dependent === 'DEV_DEPENDENCY_OF' || dependent === 'TEST_DEPENDENCY_OF') c.scope = 'dev';
        else if (dependent === 'OPTIONAL_DEPENDENCY_OF') c.scope ??= 'optional';
        else if (dependent === 'BUILD_TOOL_OF') c.buildEnvironment = true;
        else if (dependent === 'RUNTIME_DEPENDENCY_OF') c.scope = 'required';
        if (dependent === 'DEPENDS_ON') subjectDeps.add(target);
        continue;
      }
    }
    const source = idToPurl.get(from);
    const sc = source === undefined ? undefined : byPurl.get(source);
    if (sc !== undefined && target !== undefined && dependent !== 'BUILD_TOOL_OF')
      sc.dependencies.push(target);
  }
  for (const c of byPurl.values())
    c.dependencies = [...new Set(c.dependencies)].filter((d) => d !== c.purl).sort();
  const sbom: Sbom = { components: [...byPurl.values()] };
  if (subject !== undefined) {
    if (subjectDeps.size > 0) subject.dependencies = [...subjectDeps].sort();
    sbom.subject = subject;
  }
  if (unidentified.length > 0) sbom.unidentified = unidentified;
  return sbom;
}

/**
 * Read an SPDX 2.2 or 2.3 JSON document into the component model: packages with a purl external
 * reference and a version are components (the described package is the subject); the rest are
 * listed as unidentified. DEPENDS_ON / *_DEPENDENCY_OF / CONTAINS relationships become edges.
 * @throws GatehouseError BAD_SBOM naming the first malformed field or an invalid purl
 */
export function readSpdx(json: unknown, where: string): Sbom {
  const parsed = spdx2Schema.safeParse(parseJson(json, where));
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const at = issue === undefined || issue.path.length === 0 ? 'the document' : formatPath(issue.path);
    throw sbomError(where, `SPDX ${at}: ${issue?.message ?? 'invalid'}`, parsed.error);
  }
  const d = parsed.data;
  const packages = (d.packages ?? []).map((p, i) => {
    const purls = (p.externalRefs ?? []).filter(
      (r) => r.referenceType === 'purl' && /^PACKAGE[-_]MANAGER$/.test(r.referenceCategory),
    );
    const hashes: ComponentHash[] = [];
    for (const c of p.checksums ?? []) {
      const alg = MODEL_ALG[c.algorithm];
      if (alg !== undefined) hashes.push({ alg, content: c.checksumValue.toLowerCase() });
    }
    const src = /^built package from: (\S+)(?: (\S+))?$/.exec(p.sourceInfo ?? '');
    return {
      id: p.SPDXID,
      name: p.name,
      version: p.versionInfo,
      purl: purls[0]?.referenceLocator,
      hashes,
      license: p.licenseDeclared ?? p.licenseConcluded,
      source:
        src === null
          ? undefined
          : src[2] === undefined
            ? { name: src[1] ?? '' }
            : { name: src[1] ?? '', version: src[2] },
      path: `packages[${i}]`,
    };
  });
  const ids = new Set(packages.map((p) => p.id));
  if (ids.size !== packages.length) {
    const dup = packages.find((p, i) => packages.findIndex((q) => q.id === p.id) !== i);
    throw sbomError(where, `SPDX ${dup?.path ?? 'packages'} repeats SPDXID '${dup?.id ?? ''}'`);
  }
  const edges = (d.relationships ?? []).map((r) => ({
    from: r.spdxElementId,
    type: r.relationshipType,
    to: r.relatedSpdxElement,
  }));
  const described = [
    ...(d.documentDescribes ?? []),
    ...edges.filter((e) => e.from === 'SPDXRef-DOCUMENT' && e.type === 'DESCRIBES').map((e) => e.to),
  ];
  return assemble(where, packages, edges, described);
}

// ---- reading SPDX 3.0 JSON-LD ----

const graphSchema = z.looseObject({
  '@context': z.union([z.string(), z.array(z.unknown()), z.record(z.string(), z.unknown())]),
  '@graph': z.array(z.looseObject({ type: z.string().optional(), '@type': z.string().optional() })),
});

const HASH3: Record<string, HashAlgorithm | undefined> = {
  sha1: 'SHA-1',
  sha256: 'SHA-256',
  sha384: 'SHA-384',
  sha512: 'SHA-512',
};

/**
 * Read an SPDX 3.0 JSON-LD document (the `@graph` serialisation): `software_Package` elements with
 * `software_packageUrl` (or a packageUrl external identifier) and `software_packageVersion`;
 * `dependsOn` and `contains` relationships; the first root element of the `software_Sbom` (or the
 * SpdxDocument) as the subject; declared licences from `hasDeclaredLicense` relationships.
 * @throws GatehouseError BAD_SBOM naming the first malformed element
 */
export function readSpdx3(json: unknown, where: string): Sbom {
  const parsed = graphSchema.safeParse(parseJson(json, where));
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const at = issue === undefined || issue.path.length === 0 ? 'the document' : formatPath(issue.path);
    throw sbomError(where, `SPDX 3 ${at}: ${issue?.message ?? 'invalid'}`, parsed.error);
  }
  const graph = parsed.data['@graph'] as Record<string, unknown>[];
  const typeOf = (e: Record<string, unknown>) => String(e.type ?? e['@type'] ?? '').replace(/^.*[/#]/, '');
  const idOf = (e: Record<string, unknown>) =>
    typeof e.spdxId === 'string' ? e.spdxId : typeof e['@id'] === 'string' ? e['@id'] : undefined;
  const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
  const list = (v: unknown): string[] =>
    Array.isArray(v) ? v.filter((x) => typeof x === 'string') : typeof v === 'string' ? [v] : [];
  const licenseText = new Map<string, string>();
  for (const e of graph) {
    const id = idOf(e);
    const expr =
      str(e.simplelicensing_licenseExpression) ?? str(e.expandedlicensing_licenseId) ?? str(e.name);
    if (id !== undefined && /License/.test(typeOf(e)) && expr !== undefined) licenseText.set(id, expr);
  }
  const declared = new Map<string, string>();
  const edges: Edge[] = [];
  const described: string[] = [];
  for (const [i, e] of graph.entries()) {
    const t = typeOf(e);
    if (t === 'Relationship' || t === 'software_Relationship' || t === 'LifecycleScopedRelationship') {
      const from = str(e.from);
      const type = str(e.relationshipType)?.replace(/^.*\//, '');
      if (from === undefined || type === undefined)
        throw sbomError(where, `SPDX 3 @graph[${i}]: a relationship needs from and relationshipType`);
      for (const to of list(e.to)) {
        if (type === 'hasDeclaredLicense') declared.set(from, licenseText.get(to) ?? to);
        else if (type === 'dependsOn') {
          // A development-scoped dependency is recorded by lifecycle scope.
          const scope = str(e.scope)?.replace(/^.*\//, '');
          edges.push({
            from,
            to,
            type: scope === 'development' || scope === 'test' ? 'DEPENDS_ON_DEV' : 'DEPENDS_ON',
          });
        } else if (type === 'contains') edges.push({ from, to, type: 'CONTAINS' });
      }
    } else if (t === 'software_Sbom' || t === 'SpdxDocument') {
      const roots = list(e.rootElement);
      if (t === 'software_Sbom') described.unshift(...roots);
      else described.push(...roots);
    }
  }
  const packages: Parameters<typeof assemble>[1] = [];
  for (const [i, e] of graph.entries()) {
    if (typeOf(e) !== 'software_Package') continue;
    const id = idOf(e);
    const name = str(e.name);
    if (id === undefined || name === undefined)
      throw sbomError(where, `SPDX 3 @graph[${i}]: a software_Package needs spdxId and name`);
    let purl = str(e.software_packageUrl);
    if (purl === undefined && Array.isArray(e.externalIdentifier))
      for (const x of e.externalIdentifier as Record<string, unknown>[])
        if (str(x.externalIdentifierType)?.replace(/^.*\//, '') === 'packageUrl') purl = str(x.identifier);
    const hashes: ComponentHash[] = [];
    for (const h of Array.isArray(e.verifiedUsing) ? (e.verifiedUsing as Record<string, unknown>[]) : []) {
      const alg = HASH3[str(h.algorithm)?.replace(/^.*\//, '') ?? ''];
      const value = str(h.hashValue);
      if (alg !== undefined && value !== undefined && /^[0-9a-fA-F]+$/.test(value))
        hashes.push({ alg, content: value.toLowerCase() });
    }
    packages.push({
      id,
      name,
      version: str(e.software_packageVersion),
      purl,
      hashes,
      license: declared.get(id),
      path: `@graph[${i}]`,
    });
  }
  const sbom = assemble(
    where,
    packages,
    edges.map((e) => (e.type === 'DEPENDS_ON_DEV' ? { ...e, type: 'DEPENDS_ON' } : e)),
    described,
  );
  // Mark components only reached by development-scoped edges from the subject.
  const devTargets = new Set(edges.filter((e) => e.type === 'DEPENDS_ON_DEV').map((e) => e.to));
  if (devTargets.size > 0) {
    const idPurl = new Map(packages.map((p) => [p.id, p.purl]));
    for (const c of sbom.components)
      if ([...devTargets].some((id) => idPurl.get(id) === c.purl)) c.scope = 'dev';
  }
  return sbom;
}
