/**
 * Deploy-side recipes: Kyverno and Sigstore policy-controller policies (templates under
 * `deploy/`) filled in from a home's exported trusted root and identity settings, so that a
 * cluster admits exactly what gatehouse signs (its CA, its transparency log key, its CT log key,
 * its identities and issuer). A template is YAML whose string values may be `${GATEHOUSE_…}`
 * placeholders; each is replaced by its value as a whole YAML string, never spliced into text.
 */
import { createPublicKey, X509Certificate } from 'node:crypto';
import { isScalar, parseAllDocuments, visit } from 'yaml';
import { GatehouseError } from '../common/errors.ts';

/** What a recipe is filled from. */
export interface RecipeInput {
  /** The exported trusted root (`gatehouse trust-root`), as JSON. */
  trustedRoot: Record<string, unknown>;
  /** The home's identity base: leaf SANs are `<identityBase>/projects/<project>`. */
  identityBase: string;
  /** The issuer extension gatehouse writes into every leaf. */
  issuer: string;
  /** The images the policy applies to, as a glob (e.g. `registry.example/gatehouse/promoted/*`). */
  images: string;
}

interface TrustedKey {
  baseUrl?: string;
  publicKey?: { rawBytes?: string; validFor?: { start?: string; end?: string } };
}

interface TrustedCa {
  subject?: { organization?: string; commonName?: string };
  certChain?: { certificates?: { rawBytes?: string }[] };
  validFor?: { start?: string; end?: string };
}

/** The placeholders a template may use; each names one value derived from the input. */
export const RECIPE_VARIABLES = [
  'GATEHOUSE_IMAGES',
  'GATEHOUSE_ISSUER',
  'GATEHOUSE_IDENTITY_BASE',
  'GATEHOUSE_IDENTITY_REGEXP',
  'GATEHOUSE_CA_ORGANIZATION',
  'GATEHOUSE_CA_COMMON_NAME',
  'GATEHOUSE_CA_ROOTS_PEM',
  'GATEHOUSE_CA_CHAIN_PEM_BASE64',
  'GATEHOUSE_REKOR_URL',
  'GATEHOUSE_REKOR_PUBKEY_PEM',
  'GATEHOUSE_REKOR_PUBKEY_PEM_BASE64',
  'GATEHOUSE_CTLOG_URL',
  'GATEHOUSE_CTLOG_PUBKEY_PEM',
  'GATEHOUSE_CTLOG_PUBKEY_PEM_BASE64',
  'GATEHOUSE_TRUSTED_ROOT_JSON',
] as const;

export type RecipeVariable = (typeof RECIPE_VARIABLES)[number];

const PLACEHOLDER = /\$\{(GATEHOUSE_[A-Z0-9_]+)\}/g;

function bad(message: string, where?: string): GatehouseError {
  return new GatehouseError('BAD_INPUT', message, where === undefined ? {} : { where });
}

/** Those in force at `now`: a CA or key whose window rotation closed no longer admits. */
function current<T extends { validFor?: { end?: string } }>(items: readonly T[], now: Date): T[] {
  return items.filter((i) => i.validFor?.end === undefined || new Date(i.validFor.end) > now);
}

function keyPem(k: TrustedKey, what: string): string {
  const raw = k.publicKey?.rawBytes;
  if (raw === undefined) throw bad(`the trusted root's ${what} has no public key`);
  return createPublicKey({ key: Buffer.from(raw, 'base64'), format: 'der', type: 'spki' })
    .export({ type: 'spki', format: 'pem' })
    .toString();
}

function certPem(rawBytes: string | undefined, what: string): string {
  if (rawBytes === undefined) throw bad(`the trusted root's ${what} has a certificate without bytes`);
  return new X509Certificate(Buffer.from(rawBytes, 'base64')).toString();
}

/** A regular expression (RE2-safe, anchored) matching exactly the SANs gatehouse issues. */
export function identityRegExp(identityBase: string): string {
  const base = identityBase.replace(/\/+$/, '');
  // Project names are single repository path components (src/registry/manifests.ts PROJECT_RE).
  return `^${base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/projects/[a-z0-9][a-z0-9._-]{0,62}$`;
}

/**
 * The value of each placeholder for this input.
 * @throws GatehouseError BAD_INPUT when the trusted root has no current CA, log or CT log
 */
export function recipeValues(input: RecipeInput, now = new Date()): Record<RecipeVariable, string> {
  const root = input.trustedRoot;
  const cas = current((root.certificateAuthorities ?? []) as TrustedCa[], now);
  const inForce = (t: TrustedKey) => t.publicKey?.validFor?.end === undefined;
  const tlogs = ((root.tlogs ?? []) as TrustedKey[]).filter(inForce);
  const ctlogs = ((root.ctlogs ?? []) as TrustedKey[]).filter(inForce);
  const [ca] = cas;
  const [tlog] = tlogs;
  const [ctlog] = ctlogs;
  if (ca === undefined) throw bad('the trusted root has no certificate authority in force');
  if (tlog === undefined) throw bad('the trusted root has no transparency log key in force');
  if (ctlog === undefined) throw bad('the trusted root has no CT log key in force');
  const chain = (ca.certChain?.certificates ?? []).map((c) => certPem(c.rawBytes, 'certificate authority'));
  const roots = cas.map((c) => {
    const certs = c.certChain?.certificates ?? [];
    return certPem(certs[certs.length - 1]?.rawBytes, 'certificate authority');
  });
  const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
  const rekorPem = keyPem(tlog, 'transparency log');
  const ctPem = keyPem(ctlog, 'CT log');
  return {
    GATEHOUSE_IMAGES: input.images,
    GATEHOUSE_ISSUER: input.issuer,
    GATEHOUSE_IDENTITY_BASE: input.identityBase.replace(/\/+$/, ''),
    GATEHOUSE_IDENTITY_REGEXP: identityRegExp(input.identityBase),
    GATEHOUSE_CA_ORGANIZATION: ca.subject?.organization ?? '',
    GATEHOUSE_CA_COMMON_NAME: ca.subject?.commonName ?? '',
    GATEHOUSE_CA_ROOTS_PEM: roots.join(''),
    GATEHOUSE_CA_CHAIN_PEM_BASE64: b64(chain.join('')),
    GATEHOUSE_REKOR_URL: tlog.baseUrl ?? '',
    GATEHOUSE_REKOR_PUBKEY_PEM: rekorPem,
    GATEHOUSE_REKOR_PUBKEY_PEM_BASE64: b64(rekorPem),
    GATEHOUSE_CTLOG_URL: ctlog.baseUrl ?? '',
    GATEHOUSE_CTLOG_PUBKEY_PEM: ctPem,
    GATEHOUSE_CTLOG_PUBKEY_PEM_BASE64: b64(ctPem),
    GATEHOUSE_TRUSTED_ROOT_JSON: JSON.stringify(root),
  };
}

function isVariable(name: string): name is RecipeVariable {
  return (RECIPE_VARIABLES as readonly string[]).includes(name);
}

/**
 * Fill in a recipe template. A string value that is exactly one placeholder becomes its value
 * (multi-line values are written as block scalars by the YAML writer); a placeholder anywhere else
 * (inside a longer string, in a key) or an unknown one is refused, so nothing is left half filled.
 * @throws GatehouseError BAD_INPUT naming the template and the placeholder
 */
export function renderRecipe(
  template: string,
  values: Record<RecipeVariable, string>,
  where: string,
): string {
  const docs = parseAllDocuments(template);
  const out: string[] = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) throw bad(`the template is not YAML: ${doc.errors[0]?.message ?? ''}`, where);
    visit(doc, {
      Pair(_, pair) {
        if (
          isScalar(pair.key) &&
          typeof pair.key.value === 'string' &&
          pair.key.value.includes('${GATEHOUSE_')
        )
          throw bad(`a key holds a placeholder: ${pair.key.value}`, where);
      },
      Scalar(_, node) {
        if (typeof node.value !== 'string') return;
        const found = [...node.value.matchAll(PLACEHOLDER)];
        if (found.length === 0) {
          if (node.value.includes('${GATEHOUSE'))
            throw bad(`a malformed placeholder in '${node.value}'`, where);
          return;
        }
        const name = found[0]?.[1] ?? '';
        if (found.length > 1 || node.value !== `\${${name}}`)
          throw bad(`the placeholder \${${name}} must be a whole value, not part of '${node.value}'`, where);
        if (!isVariable(name)) throw bad(`unknown placeholder \${${name}}`, where);
        node.value = values[name];
        // Keys and certificates keep their line breaks; everything else stays a plain string.
        node.type = values[name].includes('\n') ? 'BLOCK_LITERAL' : 'QUOTE_DOUBLE';
      },
    });
    out.push(doc.toString({ lineWidth: 0 }));
  }
  return out.join('---\n');
}
