/**
 * Names in the OCI distribution API: repository names, tags and sha256 digests with their grammar,
 * the digest of content, and the tags derived from a digest (the referrers fallback tag of the
 * distribution specification, and cosign's attachment tags).
 */
import { sha256Hex } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;
const REPO_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

/** The digest that names content: `sha256:<hex>`. */
export function digestOf(bytes: Uint8Array): string {
  return `sha256:${sha256Hex(bytes)}`;
}

/** Whether a string is a sha256 digest, `sha256:` and 64 lowercase hex digits. */
export function isDigest(s: string): boolean {
  return DIGEST_RE.test(s);
}

/** Whether a string is a valid OCI tag. */
export function isTag(s: string): boolean {
  return TAG_RE.test(s);
}

/** Check a repository name against the distribution grammar. @throws GatehouseError BAD_INPUT */
export function checkRepository(name: string): string {
  if (name.length > 255 || !REPO_RE.test(name)) {
    throw new GatehouseError('BAD_INPUT', `'${name}' is not a valid OCI repository name`);
  }
  return name;
}

/** Check a manifest reference: a sha256 digest or a tag. @throws GatehouseError BAD_INPUT */
export function checkReference(ref: string): string {
  if (!DIGEST_RE.test(ref) && !TAG_RE.test(ref)) {
    throw new GatehouseError('BAD_INPUT', `'${ref}' is neither a sha256 digest nor a valid tag`);
  }
  return ref;
}

/** Check a sha256 digest. @throws GatehouseError BAD_INPUT */
export function checkDigest(digest: string): string {
  if (!DIGEST_RE.test(digest)) throw new GatehouseError('BAD_INPUT', `'${digest}' is not a sha256 digest`);
  return digest;
}

/** A digest as a tag: `sha256-<hex>`, the base of both tag schemas below. */
function digestTag(digest: string): string {
  return digest.replace(':', '-');
}

/** The referrers fallback tag of a digest: `sha256-<hex>`. */
export function fallbackTag(digest: string): string {
  return digestTag(checkDigest(digest));
}

/** The kinds of cosign attachment: a signature and a signed attestation. */
export const COSIGN_KINDS = ['sig', 'att'] as const;

/** cosign's tag for an attachment kind: `sha256-<hex>.sig` or `.att`. */
export function cosignTag(subjectDigest: string, kind: (typeof COSIGN_KINDS)[number]): string {
  return `${digestTag(subjectDigest)}.${kind}`;
}
