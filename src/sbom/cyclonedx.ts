import { randomUUID } from 'node:crypto';
import parseSpdxExpression from 'spdx-expression-parse';
import { z } from 'zod';
import { GatehouseError } from '../common/errors.ts';
import type {
  Component,
  ComponentHash,
  ComponentOrigin,
  ComponentScope,
  HashAlgorithm,
  Sbom,
  UnidentifiedComponent,
} from './model.ts';
import { modelNameOf, type PackageUrl, parsePurl } from './purl.ts';
import { gatehouseVersion } from './version.ts';

/** The CycloneDX versions gatehouse writes; 1.6 by default. */
export type CycloneDxVersion = '1.5' | '1.6' | '1.7';

/** A CycloneDX JSON document as gatehouse writes it. */
export interface CycloneDxDocument {
  $schema: string;
  bomFormat: 'CycloneDX';
  specVersion: CycloneDxVersion;
  serialNumber: string;
  version: 1;
  metadata: {
    timestamp: string;
    tools: { components: { type: 'application'; name: string; version: string }[] };
    component?: CycloneDxComponent;
    properties?: { name: string; value: string }[];
  };
  components: CycloneDxComponent[];
  dependencies: { ref: string; dependsOn: string[] }[];
  externalReferences?: {
    type: 'bom';
    url: string;
    comment: string;
    hashes: { alg: 'SHA-256'; content: string }[];
  }[];
}

/** One component of a {@link CycloneDxDocument}. */
export interface CycloneDxComponent {
  type: 'library' | 'application';
  'bom-ref': string;
  group?: string;
  name: string;
  version?: string;
  purl?: string;
  hashes?: { alg: HashAlgorithm; content: string }[];
  licenses?: ({ expression: string } | { license: { name: string } })[];
  scope?: 'required' | 'optional' | 'excluded';
  externalReferences?: { type: 'distribution'; url: string }[];
  evidence?: {
    identity?: {
      field: 'purl';
      confidence: number;
      methods: { technique: string; confidence: number; value: string }[];
    }[];
    occurrences?: { location: string }[];
  };
  properties?: { name: string; value: string }[];
}

/** Options for {@link writeCycloneDx}; both default to fresh values. */
export interface WriteCycloneDxOptions {
  /** `urn:uuid:…`; a random one by default. */
  serialNumber?: string;
  /** RFC 3339 date-time; now by default. */
  timestamp?: string;
  /** The specification version to write; 1.6 by default. */
  specVersion?: CycloneDxVersion;
}

const SERIAL = /^urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i;
// The registered CycloneDX property for npm development dependencies (cdx:npm taxonomy).
const NPM_DEV_PROPERTY = 'cdx:npm:package:development';
// gatehouse's own properties: a runner image package, and the source package an OS package came from.
const BUILD_ENV_PROPERTY = 'gatehouse:build-environment';
const SOURCE_PACKAGE_PROPERTY = 'gatehouse:source-package';
// How the gate knows a component (`declared`, `fetched <url>`, `found <method> <path>`), and the
// project's own packages as its lockfiles name them.
const ORIGIN_PROPERTY = 'gatehouse:origin';
const PROJECT_PACKAGE_PROPERTY = 'gatehouse:project-package';
// The build environment's own SBOM, by digest (its packages are not listed in this one).
const ENVIRONMENT_PROPERTY = 'gatehouse:build-environment-sbom';
// CycloneDX identity-evidence techniques for the ways the cataloguer finds a component.
const BINARY_METHODS = new Set(['go-buildinfo', 'cargo-auditable']);
// A licence string that reads as an SPDX expression: ids joined by AND / OR / WITH.
const SPDX_EXPRESSION = /^\(*[A-Za-z0-9.\-+:]+\)*( +(AND|OR|WITH|and|or|with) +\(*[A-Za-z0-9.\-+:]+\)*)*$/;

function licensesOut(licenses: string[] | undefined): CycloneDxComponent['licenses'] {
  if (licenses === undefined || licenses.length === 0) return undefined;
  // CycloneDX allows either exactly one expression or a list of named licences, not a mix.
  const [only] = licenses;
  if (licenses.length === 1 && only !== undefined && SPDX_EXPRESSION.test(only))
    return [{ expression: only }];
  return licenses.map((name) => ({ license: { name } }));
}

function scopeOut(scope: ComponentScope | undefined): CycloneDxComponent['scope'] {
  if (scope === undefined) return undefined;
  // "excluded" is CycloneDX's scope for components used only at build or test time.
  return scope === 'dev' ? 'excluded' : scope;
}

function groupAndName(c: { name: string; ecosystem: string }): { group?: string; name: string } {
  // CycloneDX's npm convention: the scope is the group.
  if (c.ecosystem === 'npm' && c.name.startsWith('@') && c.name.includes('/')) {
    const slash = c.name.indexOf('/');
    return { group: c.name.slice(0, slash), name: c.name.slice(slash + 1) };
  }
  return { name: c.name };
}

/**
 * Write an SBOM as a CycloneDX 1.6 JSON document: components keyed by purl (their bom-ref), the
 * subject as `metadata.component` with its SHA-256, and the dependency graph.
 * @throws GatehouseError BAD_INPUT for a malformed serial number or timestamp, BAD_SBOM when two
 *   components share a purl
 */
export function writeCycloneDx(sbom: Sbom, options: WriteCycloneDxOptions = {}): CycloneDxDocument {
  const serialNumber = options.serialNumber ?? `urn:uuid:${randomUUID()}`;
  if (!SERIAL.test(serialNumber))
    throw new GatehouseError('BAD_INPUT', `serial number '${serialNumber}' is not a urn:uuid`);
  const timestamp = options.timestamp ?? new Date().toISOString();
  if (!DATE_TIME.test(timestamp))
    throw new GatehouseError('BAD_INPUT', `timestamp '${timestamp}' is not an RFC 3339 date-time`);

  const refs = new Set<string>();
  const components: CycloneDxComponent[] = [];
  for (const [i, c] of sbom.components.entries()) {
    if (refs.has(c.purl))
      throw new GatehouseError('BAD_SBOM', `SBOM component ${i} repeats the purl '${c.purl}'`);
    refs.add(c.purl);
    const out: CycloneDxComponent = {
      type: 'library',
      'bom-ref': c.purl,
      ...groupAndName(c),
      version: c.version,
      purl: c.purl,
    };
    if (c.hashes.length > 0)
      out.hashes = c.hashes.map((h) => ({ alg: h.alg, content: h.content.toLowerCase() }));
    const licenses = licensesOut(c.licenses);
    if (licenses !== undefined) out.licenses = licenses;
    const scope = scopeOut(c.scope);
    if (scope !== undefined) out.scope = scope;
    const properties: { name: string; value: string }[] = [];
    if (c.scope === 'dev' && c.ecosystem === 'npm')
      properties.push({ name: NPM_DEV_PROPERTY, value: 'true' });
    if (c.buildEnvironment === true) {
      // Not part of the artifact: the system the build ran on.
      out.scope = 'excluded';
      properties.push({ name: BUILD_ENV_PROPERTY, value: 'true' });
    }
    if (c.sourcePackage !== undefined)
      properties.push({
        name: SOURCE_PACKAGE_PROPERTY,
        value:
          c.sourcePackage.version === undefined
            ? c.sourcePackage.name
            : `${c.sourcePackage.name} ${c.sourcePackage.version}`,
      });
    if (c.origins !== undefined && c.origins.length > 0) {
      properties.push(...c.origins.map((o) => ({ name: ORIGIN_PROPERTY, value: originText(o) })));
      Object.assign(out, originEvidence(c.origins, options.specVersion ?? '1.6'));
    }
    if (properties.length > 0) out.properties = properties;
    components.push(out);
  }

  const dependencies: CycloneDxDocument['dependencies'] = [];
  const metadata: CycloneDxDocument['metadata'] = {
    timestamp,
    tools: { components: [{ type: 'application', name: 'gatehouse', version: gatehouseVersion() }] },
  };
  const metaProperties = (sbom.projectPackages ?? []).map((value) => ({
    name: PROJECT_PACKAGE_PROPERTY,
    value,
  }));
  if (sbom.environment !== undefined)
    metaProperties.push({ name: ENVIRONMENT_PROPERTY, value: sbom.environment.digest });
  if (metaProperties.length > 0) metadata.properties = metaProperties;
  if (sbom.subject !== undefined) {
    const s = sbom.subject;
    let ref = s.purl ?? `gatehouse:subject:${s.name}`;
    while (refs.has(ref)) ref = `${ref}#subject`;
    const subject: CycloneDxComponent = { type: 'application', 'bom-ref': ref, name: s.name };
    if (s.version !== undefined) subject.version = s.version;
    if (s.purl !== undefined) subject.purl = s.purl;
    if (s.sha256 !== undefined) subject.hashes = [{ alg: 'SHA-256', content: s.sha256.toLowerCase() }];
    metadata.component = subject;
    if (s.dependencies !== undefined)
      dependencies.push({ ref, dependsOn: [...new Set(s.dependencies.filter((d) => refs.has(d)))].sort() });
  }
  for (const c of sbom.components) {
    // Every dependsOn must name a bom-ref in the document; an edge to nothing would not validate.
    dependencies.push({
      ref: c.purl,
      dependsOn: [...new Set(c.dependencies.filter((d) => refs.has(d)))].sort(),
    });
  }

  const specVersion = options.specVersion ?? '1.6';
  if (!['1.5', '1.6', '1.7'].includes(specVersion))
    throw new GatehouseError(
      'BAD_INPUT',
      `CycloneDX ${String(specVersion)} cannot be written (1.5, 1.6 or 1.7)`,
    );
  const doc: CycloneDxDocument = {
    $schema: `http://cyclonedx.org/schema/bom-${specVersion}.schema.json`,
    bomFormat: 'CycloneDX',
    specVersion,
    serialNumber,
    version: 1,
    metadata,
    components,
    dependencies,
  };
  if (sbom.environment !== undefined)
    doc.externalReferences = [
      {
        type: 'bom',
        url: sbom.environment.url,
        comment: 'the build environment: the packages of the runner image the build ran in',
        hashes: [{ alg: 'SHA-256', content: sbom.environment.digest.replace(/^sha256:/, '') }],
      },
    ];
  return doc;
}

function originText(o: ComponentOrigin): string {
  if (o.kind === 'fetched') return `fetched ${o.uri ?? ''}`.trimEnd();
  if (o.kind === 'found') return `found ${o.method ?? 'unknown'} ${o.path ?? ''}`.trimEnd();
  return 'declared';
}

function originOf(text: string): ComponentOrigin | undefined {
  const [kind, a, ...rest] = text.split(' ');
  if (kind === 'declared') return { kind };
  if (kind === 'fetched' && a !== undefined) return { kind, uri: a };
  if (kind === 'found' && a !== undefined && rest.length > 0)
    return { kind, method: a, path: rest.join(' ') };
  return undefined;
}

/** The standard fields for where a component was found and downloaded from. */
function originEvidence(
  origins: readonly ComponentOrigin[],
  specVersion: CycloneDxVersion,
): Pick<CycloneDxComponent, 'evidence' | 'externalReferences'> {
  const found = origins.filter((o) => o.kind === 'found' && o.path !== undefined);
  const urls = origins.filter((o) => o.kind === 'fetched' && o.uri !== undefined);
  const out: Pick<CycloneDxComponent, 'evidence' | 'externalReferences'> = {};
  if (urls.length > 0)
    out.externalReferences = urls.map((o) => ({ type: 'distribution', url: o.uri as string }));
  if (found.length === 0) return out;
  out.evidence = { occurrences: found.map((o) => ({ location: o.path as string })) };
  // Identity evidence is a list from CycloneDX 1.6 on.
  if (specVersion !== '1.5')
    out.evidence.identity = [
      {
        field: 'purl',
        confidence: 1,
        methods: found.map((o) => ({
          technique: BINARY_METHODS.has(o.method ?? '') ? 'binary-analysis' : 'manifest-analysis',
          confidence: o.method === 'lockfile' ? 0.7 : 1,
          value: o.path as string,
        })),
      },
    ];
  return out;
}

// ---- reading ----

const HASH_HEX_LENGTH: Record<string, number | undefined> = {
  MD5: 32,
  'SHA-1': 40,
  'SHA-256': 64,
  'SHA-384': 96,
  'SHA-512': 128,
  'SHA3-256': 64,
  'SHA3-384': 96,
  'SHA3-512': 128,
  'BLAKE2b-256': 64,
  'BLAKE2b-384': 96,
  'BLAKE2b-512': 128,
  BLAKE3: undefined,
};
const KEPT_ALGS = new Set<string>(['SHA-512', 'SHA-384', 'SHA-256', 'SHA-1']);

const hashSchema = z
  .object({ alg: z.enum(Object.keys(HASH_HEX_LENGTH) as [string, ...string[]]), content: z.string() })
  .check((ctx) => {
    const len = HASH_HEX_LENGTH[ctx.value.alg];
    const hex = /^[0-9a-fA-F]+$/.test(ctx.value.content);
    if (!hex || (len !== undefined && ctx.value.content.length !== len))
      ctx.issues.push({
        code: 'custom',
        input: ctx.value.content,
        path: ['content'],
        message: `is not a ${ctx.value.alg} hex digest`,
      });
  });

function isSpdxLicenseId(id: string): boolean {
  try {
    const parsed = parseSpdxExpression(id) as { license?: string; plus?: boolean; exception?: string };
    // The SPDX list keeps the old "or later" ids (`LGPL-2.1+`) as deprecated ids, which the schema
    // allows; LicenseRef- and DocumentRef- are not list ids and belong in `name`.
    if (parsed.exception !== undefined || /^(LicenseRef|DocumentRef)-/.test(id)) return false;
    return parsed.license === id || (parsed.plus === true && `${parsed.license ?? ''}+` === id);
  } catch {
    return false;
  }
}

const licenseText = z.looseObject({
  content: z.string(),
  contentType: z.string().optional(),
  encoding: z.literal('base64', 'must be base64').optional(),
});

const licenseChoice = z
  .looseObject({
    expression: z.string().min(1).optional(),
    license: z
      .looseObject({
        id: z.string().refine(isSpdxLicenseId, 'is not an SPDX licence id').optional(),
        name: z.string().min(1).optional(),
        text: licenseText.optional(),
      })
      .check((ctx) => {
        if ((ctx.value.id === undefined) === (ctx.value.name === undefined))
          ctx.issues.push({
            code: 'custom',
            input: ctx.value,
            message: 'must hold exactly one of id and name',
          });
      })
      .optional(),
  })
  .check((ctx) => {
    if ((ctx.value.expression === undefined) === (ctx.value.license === undefined))
      ctx.issues.push({
        code: 'custom',
        input: ctx.value,
        message: 'must hold exactly one of expression and license',
      });
  });

// A licence list is either named licences or exactly one expression, never a mix.
const licenseList = z.array(licenseChoice).check((ctx) => {
  if (ctx.value.length > 1 && ctx.value.some((l) => l.expression !== undefined))
    ctx.issues.push({
      code: 'custom',
      input: ctx.value,
      message: 'an expression must be the only licence entry',
    });
});

const pedigreeSchema = z.looseObject({
  patches: z
    .array(
      z.looseObject({
        type: z.enum(['unofficial', 'monkey', 'backport', 'cherry-pick']),
        resolves: z.array(z.looseObject({ type: z.enum(['defect', 'enhancement', 'security']) })).optional(),
      }),
    )
    .optional(),
});

const serviceSchema = z.looseObject({
  name: z.string().min(1),
  data: z
    .array(
      z.looseObject({
        flow: z.enum(['inbound', 'outbound', 'bi-directional', 'unknown']),
        classification: z.string(),
      }),
    )
    .optional(),
});

const COMPONENT_TYPES = [
  'application',
  'framework',
  'library',
  'container',
  'platform',
  'operating-system',
  'device',
  'device-driver',
  'firmware',
  'file',
  'machine-learning-model',
  'data',
  'cryptographic-asset',
] as const;

interface RawComponent {
  type: string;
  name: string;
  group?: string | undefined;
  version?: string | undefined;
  purl?: string | undefined;
  'bom-ref'?: string | undefined;
  hashes?: { alg: string; content: string }[] | undefined;
  licenses?: z.infer<typeof licenseChoice>[] | undefined;
  swid?: unknown;
  pedigree?: unknown;
  scope?: 'required' | 'optional' | 'excluded' | undefined;
  properties?: { name: string; value?: string | undefined }[] | undefined;
  components?: RawComponent[] | undefined;
}

const componentSchema: z.ZodType<RawComponent> = z.lazy(() =>
  z.looseObject({
    type: z.enum(COMPONENT_TYPES),
    name: z.string().min(1),
    group: z.string().optional(),
    version: z.string().optional(),
    purl: z.string().optional(),
    'bom-ref': z.string().min(1).optional(),
    hashes: z.array(hashSchema).optional(),
    licenses: licenseList.optional(),
    swid: z.looseObject({ tagId: z.string().min(1), name: z.string().min(1) }).optional(),
    pedigree: pedigreeSchema.optional(),
    scope: z.enum(['required', 'optional', 'excluded']).optional(),
    properties: z.array(z.looseObject({ name: z.string(), value: z.string().optional() })).optional(),
    components: z.array(componentSchema).optional(),
  }),
);

const bomSchema = z.looseObject({
  bomFormat: z.literal('CycloneDX'),
  specVersion: z.enum(['1.2', '1.3', '1.4', '1.5', '1.6', '1.7']),
  serialNumber: z.string().regex(SERIAL, 'is not a urn:uuid').optional(),
  version: z.number().int().min(1).optional(),
  metadata: z
    .looseObject({
      timestamp: z.string().regex(DATE_TIME, 'is not an RFC 3339 date-time').optional(),
      component: componentSchema.optional(),
      licenses: licenseList.optional(),
      properties: z.array(z.looseObject({ name: z.string(), value: z.string().optional() })).optional(),
    })
    .optional(),
  components: z.array(componentSchema).optional(),
  services: z.array(serviceSchema).optional(),
  dependencies: z
    .array(z.looseObject({ ref: z.string().min(1), dependsOn: z.array(z.string().min(1)).optional() }))
    .optional(),
});

function formatPath(path: readonly PropertyKey[]): string {
  return path
    .map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`))
    .join('');
}

function licensesIn(licenses: RawComponent['licenses']): string[] | undefined {
  if (licenses === undefined || licenses.length === 0) return undefined;
  return licenses.map((l) => {
    if (l.license === undefined) return l.expression ?? '';
    const lic = l.license as { id?: string; name?: string };
    return lic.id ?? lic.name ?? '';
  });
}

function scopeIn(c: RawComponent): ComponentScope | undefined {
  if (c.properties?.some((p) => p.name === NPM_DEV_PROPERTY && p.value === 'true') === true) return 'dev';
  if (c.scope === 'excluded') return 'dev';
  return c.scope;
}

/**
 * Read a CycloneDX JSON document (spec versions 1.2 to 1.7) into the component model. Nested
 * components are flattened; components without a purl or version are listed as unidentified;
 * only SHA-1/256/384/512 digests are kept.
 * @param json the document, as text or already parsed
 * @param where the document's origin, for error messages
 * @throws GatehouseError BAD_SBOM naming the first malformed field
 */
export function readCycloneDx(json: unknown, where: string): Sbom {
  let raw = json;
  if (typeof json === 'string') {
    try {
      raw = JSON.parse(json);
    } catch (cause) {
      throw new GatehouseError('BAD_SBOM', 'the SBOM is not valid JSON', { where, cause });
    }
  }
  const parsed = bomSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const at = issue === undefined || issue.path.length === 0 ? 'the document' : formatPath(issue.path);
    throw new GatehouseError('BAD_SBOM', `CycloneDX ${at}: ${issue?.message ?? 'invalid'}`, {
      where,
      cause: parsed.error,
    });
  }
  const bom = parsed.data;

  const flat: { raw: RawComponent; path: string }[] = [];
  const walk = (list: RawComponent[] | undefined, path: string) => {
    for (const [i, c] of (list ?? []).entries()) {
      flat.push({ raw: c, path: `${path}[${i}]` });
      walk(c.components, `${path}[${i}].components`);
    }
  };
  walk(bom.components, 'components');

  const refToPurl = new Map<string, string>();
  const allRefs = new Set<string>();
  const byPurl = new Map<string, Component>();
  const unidentified: UnidentifiedComponent[] = [];
  const subjectRef = bom.metadata?.component?.['bom-ref'];
  if (subjectRef !== undefined) allRefs.add(subjectRef);
  // Services (and anything else carrying a bom-ref) may be dependency targets too.
  const collectRefs = (v: unknown, depth: number): void => {
    if (depth > 64 || typeof v !== 'object' || v === null) return;
    if (Array.isArray(v)) for (const x of v) collectRefs(x, depth + 1);
    else
      for (const [k, x] of Object.entries(v)) {
        if (k === 'bom-ref' && typeof x === 'string') otherRefs.add(x);
        else if (k !== 'components') collectRefs(x, depth + 1);
      }
  };
  const otherRefs = new Set<string>();
  const { components: _ignored, ...rest } = bom;
  collectRefs(rest, 0);
  for (const { raw: c, path } of flat) {
    const ref = c['bom-ref'];
    if (ref !== undefined) {
      if (allRefs.has(ref))
        throw new GatehouseError('BAD_SBOM', `CycloneDX ${path} repeats bom-ref '${ref}'`, { where });
      allRefs.add(ref);
    }
    if (c.purl === undefined || c.version === undefined) {
      const u: UnidentifiedComponent = { name: c.group === undefined ? c.name : `${c.group}/${c.name}` };
      if (c.version !== undefined) u.version = c.version;
      if (ref !== undefined) u.bomRef = ref;
      unidentified.push(u);
      continue;
    }
    let p: PackageUrl;
    try {
      p = parsePurl(c.purl);
    } catch (cause) {
      throw new GatehouseError('BAD_SBOM', `CycloneDX ${path} has an invalid purl '${c.purl}'`, {
        where,
        cause,
      });
    }
    if (ref !== undefined) refToPurl.set(ref, c.purl);
    if (byPurl.has(c.purl)) continue;
    const hashes: ComponentHash[] = (c.hashes ?? [])
      .filter((h) => KEPT_ALGS.has(h.alg))
      .map((h) => ({ alg: h.alg as HashAlgorithm, content: h.content.toLowerCase() }));
    const component: Component = {
      name: modelNameOf(p),
      version: c.version,
      purl: c.purl,
      ecosystem: p.type,
      hashes,
      dependencies: [],
    };
    const licenses = licensesIn(c.licenses);
    if (licenses !== undefined) component.licenses = licenses;
    const scope = scopeIn(c);
    if (scope !== undefined) component.scope = scope;
    if (c.properties?.some((x) => x.name === BUILD_ENV_PROPERTY && x.value === 'true') === true) {
      component.buildEnvironment = true;
      delete component.scope;
    }
    const origins = (c.properties ?? [])
      .filter((x) => x.name === ORIGIN_PROPERTY)
      .map((x) => originOf(x.value ?? ''))
      .filter((o) => o !== undefined);
    if (origins.length > 0) component.origins = origins;
    const src = c.properties?.find((x) => x.name === SOURCE_PACKAGE_PROPERTY)?.value?.split(' ');
    if (src?.[0] !== undefined && src[0] !== '')
      component.sourcePackage = src[1] === undefined ? { name: src[0] } : { name: src[0], version: src[1] };
    byPurl.set(c.purl, component);
  }

  const sbom: Sbom = { components: [...byPurl.values()] };
  for (const [i, d] of (bom.dependencies ?? []).entries()) {
    for (const to of d.dependsOn ?? []) {
      if (!allRefs.has(to) && !otherRefs.has(to))
        throw new GatehouseError(
          'BAD_SBOM',
          `CycloneDX dependencies[${i}] names an unknown bom-ref '${to}'`,
          {
            where,
          },
        );
    }
    const from = refToPurl.get(d.ref);
    const c = from === undefined ? undefined : byPurl.get(from);
    const targets = (d.dependsOn ?? []).map((r) => refToPurl.get(r)).filter((p) => p !== undefined);
    if (c !== undefined) c.dependencies = [...new Set([...c.dependencies, ...targets])].sort();
    else if (d.ref === subjectRef) sbom.subject = { name: '', dependencies: [...new Set(targets)].sort() };
  }

  const m = bom.metadata?.component;
  if (m !== undefined) {
    const subject = { ...sbom.subject, name: m.group === undefined ? m.name : `${m.group}/${m.name}` };
    if (m.version !== undefined) subject.version = m.version;
    if (m.purl !== undefined) subject.purl = m.purl;
    const sha = m.hashes?.find((h) => h.alg === 'SHA-256');
    if (sha !== undefined) subject.sha256 = sha.content.toLowerCase();
    sbom.subject = subject;
  } else delete sbom.subject;
  if (unidentified.length > 0) sbom.unidentified = unidentified;
  const own = (bom.metadata?.properties ?? [])
    .filter((x) => x.name === PROJECT_PACKAGE_PROPERTY && x.value !== undefined && x.value !== '')
    .map((x) => x.value as string);
  if (own.length > 0) sbom.projectPackages = [...new Set(own)].sort();
  const env = bom.metadata?.properties?.find((x) => x.name === ENVIRONMENT_PROPERTY)?.value;
  if (env !== undefined && /^sha256:[0-9a-f]{64}$/.test(env)) {
    const refs = (
      raw as { externalReferences?: { type?: unknown; url?: unknown; hashes?: { content?: unknown }[] }[] }
    ).externalReferences;
    const ref = refs?.find(
      (r) => r.type === 'bom' && r.hashes?.some((h) => `sha256:${String(h.content)}` === env),
    );
    sbom.environment = {
      digest: env,
      url: typeof ref?.url === 'string' ? ref.url : `urn:gatehouse:build-environment:${env}`,
    };
  }
  return sbom;
}
