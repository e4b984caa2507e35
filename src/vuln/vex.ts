import { GatehouseError } from '../common/errors.ts';
import type { Finding } from './findings.ts';

/** VEX status, in OpenVEX's words (CycloneDX analysis states map onto these). */
export type VexStatus = 'not_affected' | 'affected' | 'fixed' | 'under_investigation';

/** One VEX statement, normalised from OpenVEX or CycloneDX VEX. */
export interface VexStatement {
  /** The document it came from (its `@id` or serial number, else the file name). */
  document: string;
  vulnerability: string;
  aliases: string[];
  /**
   * What the statement is about: purls, or product names/bom-refs. A product matches the
   * artifact being judged (its project name or subject purl) or a component purl.
   */
  products: string[];
  /** Components inside the product the statement is limited to (purls); empty for all. */
  subcomponents: string[];
  status: VexStatus;
  justification?: string;
  detail?: string;
}

const CDX_STATE: Record<string, VexStatus> = {
  not_affected: 'not_affected',
  false_positive: 'not_affected',
  resolved: 'fixed',
  resolved_with_pedigree: 'fixed',
  exploitable: 'affected',
  in_triage: 'under_investigation',
};

const OPENVEX_STATUS = new Set<VexStatus>(['not_affected', 'affected', 'fixed', 'under_investigation']);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/**
 * Parse a VEX document: OpenVEX (`@context` of openvex.dev) or CycloneDX with `vulnerabilities`.
 * @throws GatehouseError BAD_INPUT naming the statement and the problem
 */
export function parseVex(doc: unknown, where: string): VexStatement[] {
  const bad = (msg: string) => new GatehouseError('BAD_INPUT', `VEX document: ${msg}`, { where });
  if (!isObject(doc)) throw bad('is not a JSON object');
  const context = doc['@context'];
  if (typeof context === 'string' && context.includes('openvex')) return parseOpenVex(doc, where, bad);
  if (doc.bomFormat === 'CycloneDX') return parseCycloneDxVex(doc, where, bad);
  throw bad('is neither OpenVEX (an openvex.dev @context) nor CycloneDX');
}

function parseOpenVex(
  doc: Record<string, unknown>,
  where: string,
  bad: (m: string) => Error,
): VexStatement[] {
  const id = str(doc['@id']) ?? where;
  const statements = doc.statements;
  if (!Array.isArray(statements)) throw bad('has no statements list');
  return statements.map((s, i): VexStatement => {
    if (!isObject(s)) throw bad(`statement ${i} is not an object`);
    const v = s.vulnerability;
    const name = isObject(v) ? (str(v.name) ?? str(v['@id'])) : str(v);
    if (name === undefined) throw bad(`statement ${i} names no vulnerability`);
    const aliases =
      isObject(v) && Array.isArray(v.aliases)
        ? v.aliases.filter((a): a is string => typeof a === 'string')
        : [];
    const ids = (list: unknown): string[] =>
      Array.isArray(list)
        ? list.flatMap((p) => {
            if (typeof p === 'string') return [p];
            if (!isObject(p)) return [];
            const idents = isObject(p.identifiers)
              ? Object.values(p.identifiers).filter((x): x is string => typeof x === 'string')
              : [];
            return [str(p['@id']), ...idents].filter((x): x is string => x !== undefined);
          })
        : [];
    const products = ids(s.products);
    if (products.length === 0) throw bad(`statement ${i} names no product`);
    const subcomponents = Array.isArray(s.products)
      ? [...ids(s.subcomponents), ...s.products.flatMap((p) => (isObject(p) ? ids(p.subcomponents) : []))]
      : ids(s.subcomponents);
    const status = s.status;
    if (typeof status !== 'string' || !OPENVEX_STATUS.has(status as VexStatus))
      throw bad(
        `statement ${i} has status '${String(status)}', not one of ${[...OPENVEX_STATUS].join(', ')}`,
      );
    const out: VexStatement = {
      document: id,
      vulnerability: name,
      aliases,
      products,
      subcomponents,
      status: status as VexStatus,
    };
    const j = str(s.justification);
    if (j !== undefined) out.justification = j;
    const d = str(s.impact_statement) ?? str(s.status_notes);
    if (d !== undefined) out.detail = d;
    if (out.status === 'not_affected' && j === undefined && d === undefined)
      throw bad(`statement ${i} says not_affected without a justification or impact statement`);
    return out;
  });
}

function parseCycloneDxVex(
  doc: Record<string, unknown>,
  where: string,
  bad: (m: string) => Error,
): VexStatement[] {
  const id = str(doc.serialNumber) ?? where;
  const vulns = doc.vulnerabilities;
  if (!Array.isArray(vulns)) throw bad('has no vulnerabilities list');
  // bom-refs in this document resolve to purls (or the product's name) where they can.
  const refs = new Map<string, string[]>();
  const meta =
    isObject(doc.metadata) && isObject(doc.metadata.component) ? doc.metadata.component : undefined;
  const remember = (c: Record<string, unknown>) => {
    const ref = str(c['bom-ref']);
    if (ref === undefined) return;
    refs.set(
      ref,
      [ref, str(c.purl), str(c.name)].filter((x): x is string => x !== undefined),
    );
  };
  if (meta !== undefined) remember(meta);
  if (Array.isArray(doc.components)) for (const c of doc.components) if (isObject(c)) remember(c);
  const out: VexStatement[] = [];
  for (const [i, v] of vulns.entries()) {
    if (!isObject(v)) throw bad(`vulnerability ${i} is not an object`);
    const name = str(v.id);
    if (name === undefined) throw bad(`vulnerability ${i} has no id`);
    const analysis = isObject(v.analysis) ? v.analysis : undefined;
    // A vulnerability without an analysis is an advisory, not a VEX statement: nothing to apply.
    if (analysis === undefined) continue;
    const state = str(analysis.state);
    const status = state === undefined ? undefined : CDX_STATE[state];
    if (status === undefined) throw bad(`vulnerability ${i} (${name}) has analysis state '${state ?? ''}'`);
    const products: string[] = [];
    if (Array.isArray(v.affects))
      for (const a of v.affects) {
        const ref = isObject(a) ? str(a.ref) : undefined;
        if (ref === undefined) continue;
        // A BOM-Link (urn:cdx:serial/version#ref) names a ref in another BOM: keep the ref part.
        const local =
          ref.startsWith('urn:cdx:') && ref.includes('#')
            ? decodeURIComponent(ref.slice(ref.indexOf('#') + 1))
            : ref;
        products.push(...(refs.get(local) ?? [local]));
      }
    const references = Array.isArray(v.references)
      ? v.references.flatMap((r) => (isObject(r) && typeof r.id === 'string' ? [r.id] : []))
      : [];
    const st: VexStatement = {
      document: id,
      vulnerability: name,
      aliases: references,
      products,
      subcomponents: [],
      status,
    };
    const j = str(analysis.justification);
    if (j !== undefined) st.justification = j;
    const d = str(analysis.detail);
    if (d !== undefined) st.detail = d;
    out.push(st);
  }
  return out;
}

/** A purl without qualifiers and subpath, and without its version when `dropVersion`. */
function purlKey(p: string, dropVersion: boolean): string {
  let s = p.split('#')[0]?.split('?')[0] ?? p;
  if (dropVersion) {
    const at = s.lastIndexOf('@');
    if (at > s.lastIndexOf('/')) s = s.slice(0, at);
  }
  return decodeURIComponent(s);
}

function namesComponent(id: string, purl: string): boolean {
  if (!id.startsWith('pkg:')) return false;
  const versioned = purlKey(id, false) !== purlKey(id, true);
  return purlKey(id, !versioned) === purlKey(purl, !versioned);
}

/** The purl that names a project's artifacts in VEX statements: `pkg:generic/<project>`. */
export function projectPurl(project: string): string {
  return `pkg:generic/${encodeURIComponent(project)}`;
}

/**
 * Whether a statement's product identifies one of the artifact's identifiers: a `sha256:<hex>`
 * digest exactly, or a purl (the project purl, with or without a version).
 */
function namesArtifact(product: string, identifiers: readonly string[]): boolean {
  return identifiers.some((x) => (x.startsWith('sha256:') ? product === x : namesComponent(product, x)));
}

/** A versioned component purl as the product: a statement about exactly that release. */
function namesRelease(product: string, purl: string): boolean {
  return product.startsWith('pkg:') && purlKey(product, false) !== purlKey(product, true)
    ? namesComponent(product, purl)
    : false;
}

/**
 * The statement that settles a finding for the artifact identified by `identifiers` (its project
 * purl and subject digests: never an output path or a bare name, which another project could share),
 * if any. A statement applies when a product names the artifact (and, when it lists subcomponents,
 * one of them is the affected component), or when its product is exactly the affected release of
 * the component. Only `not_affected` and `fixed` suppress; when statements that apply disagree (one
 * says affected or under investigation), nothing is suppressed: the cautious reading.
 */
export function vexFor(
  finding: Finding,
  statements: readonly VexStatement[],
  identifiers: readonly string[],
): VexStatement | undefined {
  const ids = new Set([finding.vulnId, ...finding.aliases]);
  const applicable = statements.filter((s) => {
    if (!ids.has(s.vulnerability) && !s.aliases.some((a) => ids.has(a))) return false;
    if (s.products.some((p) => namesRelease(p, finding.purl))) return true;
    if (!s.products.some((p) => namesArtifact(p, identifiers))) return false;
    // A statement about the product as a whole, or limited to subcomponents that include this one.
    return s.subcomponents.length === 0 || s.subcomponents.some((c) => namesComponent(c, finding.purl));
  });
  if (applicable.length === 0) return undefined;
  if (applicable.some((s) => s.status === 'affected' || s.status === 'under_investigation')) return undefined;
  return applicable[0];
}
