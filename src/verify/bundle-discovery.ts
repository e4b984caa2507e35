/**
 * Finding the Sigstore bundles attached to an artifact in a registry: through referrers (the API,
 * or the spec's fallback tag) first, through cosign's `.att` and `.sig` tags when referrers give
 * nothing. What is found is only read, not trusted: every bundle is verified afterwards.
 */
import { GatehouseError } from '../common/errors.ts';
import { type Descriptor, parseImageManifest } from '../registry/oci-format.ts';
import { cosignTag } from '../registry/oci-names.ts';
import type { RegistryArtifact } from './oci-reference.ts';

export const BUNDLE_MEDIA_TYPE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
/** Bundles are small; a larger layer is refused rather than read. */
const MAX_BUNDLE_BYTES = 16 * 1024 * 1024;
/** A registry could list thousands of referrers; we read at most this many bundles. */
const MAX_BUNDLES = 32;

/** A bundle read from the registry, not yet verified. */
export interface FoundBundle {
  bytes: Uint8Array;
  digest: string;
  source: 'referrers' | 'cosign';
}

/** Where the bundles were found. */
export type BundleDiscovery = 'referrers-api' | 'referrers-tag' | 'cosign-tags';

/** Read into `found` the bundle layers of the manifest `manifestDigest` (those `layers` accepts). */
async function bundleLayers(
  { client, ref }: RegistryArtifact,
  manifestDigest: string,
  layers: (d: Uint8Array) => Descriptor[],
  source: 'referrers' | 'cosign',
  found: FoundBundle[],
): Promise<void> {
  const repo = ref.repository;
  const m = await client.getManifest(repo, manifestDigest);
  if (m === undefined) return;
  for (const layer of layers(m.bytes)) {
    if (found.length >= MAX_BUNDLES || found.some((f) => f.digest === layer.digest)) continue;
    if (layer.mediaType !== BUNDLE_MEDIA_TYPE || layer.size > MAX_BUNDLE_BYTES) continue;
    found.push({
      bytes: await client.getBlob(repo, layer.digest, MAX_BUNDLE_BYTES),
      digest: layer.digest,
      source,
    });
  }
}

/** Read the bundles the artifact's referrers carry into `found`; says how the referrers were listed. */
async function referrerBundles(a: RegistryArtifact, found: FoundBundle[]): Promise<BundleDiscovery> {
  const { ref, where } = a;
  const referrers = await a.client.referrers(ref.repository, ref.digest);
  // Bounded: a hostile index may list thousands of referrers; we look at the first few bundles.
  for (const r of referrers.manifests
    .filter((m) => m.artifactType === BUNDLE_MEDIA_TYPE)
    .slice(0, MAX_BUNDLES)) {
    await bundleLayers(
      a,
      r.digest,
      (b) => {
        const m = parseImageManifest(b, `${where} referrer ${r.digest}`);
        // A referrer must point back at this manifest, whatever the index claimed.
        return m.subject?.digest === ref.digest ? m.layers : [];
      },
      'referrers',
      found,
    );
  }
  return referrers.source === 'api' ? 'referrers-api' : 'referrers-tag';
}

/** Read the bundles under the artifact's cosign tags into `found`. */
async function cosignBundles(a: RegistryArtifact, found: FoundBundle[]): Promise<void> {
  for (const kind of ['att', 'sig'] as const) {
    const tag = cosignTag(a.ref.digest, kind);
    const digest = await a.client.manifestDigest(a.ref.repository, tag);
    if (digest === undefined || !/^sha256:[0-9a-f]{64}$/.test(digest)) continue;
    await bundleLayers(a, digest, (b) => parseImageManifest(b, `${a.where} ${tag}`).layers, 'cosign', found);
  }
}

/**
 * Find the bundles attached to an artifact: referrers first, cosign tags when they give nothing.
 * @throws GatehouseError VERIFICATION_FAILED (none attached), REGISTRY_ERROR, REGISTRY_AUTH_FAILED,
 *   UNREACHABLE
 */
export async function findBundles(
  a: RegistryArtifact,
): Promise<{ found: FoundBundle[]; discovery: BundleDiscovery }> {
  const found: FoundBundle[] = [];
  let discovery = await referrerBundles(a, found);
  if (found.length === 0) {
    discovery = 'cosign-tags';
    await cosignBundles(a, found);
  }
  if (found.length === 0) {
    throw new GatehouseError(
      'VERIFICATION_FAILED',
      'no signed attestations are attached (neither referrers nor cosign tags)',
      { where: a.where },
    );
  }
  return { found, discovery };
}
