/**
 * Finding the Sigstore bundles attached to an artifact in a registry: through referrers (the API,
 * or the spec's fallback tag) first, rebuilt from the DSSE layers of cosign's `.att` tag when
 * referrers give nothing. What is found is only read, not trusted: every bundle is verified afterwards.
 */
import { GatehouseError } from '../common/errors.ts';
import { type Descriptor, parseImageManifest } from '../registry/oci-format.ts';
import { cosignTag, digestOf } from '../registry/oci-names.ts';
import { bundleFromAttestationLayer, DSSE_ENVELOPE_MEDIA_TYPE } from '../signing/cosign.ts';
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

/**
 * Rebuild into `found` the bundles of the DSSE layers under the artifact's `.att` tag (cosign's
 * format, with gatehouse's verification material annotation). The `.sig` tag holds a simple-signing
 * signature, which says nothing about provenance, so it is not read here.
 */
async function cosignBundles({ client, ref, where }: RegistryArtifact, found: FoundBundle[]): Promise<void> {
  const tag = cosignTag(ref.digest, 'att');
  const digest = await client.manifestDigest(ref.repository, tag);
  if (digest === undefined || !/^sha256:[0-9a-f]{64}$/.test(digest)) return;
  const m = await client.getManifest(ref.repository, digest);
  if (m === undefined) return;
  for (const layer of parseImageManifest(m.bytes, `${where} ${tag}`).layers) {
    if (found.length >= MAX_BUNDLES) break;
    if (layer.mediaType !== DSSE_ENVELOPE_MEDIA_TYPE || layer.size > MAX_BUNDLE_BYTES) continue;
    const envelope = await client.getBlob(ref.repository, layer.digest, MAX_BUNDLE_BYTES);
    let bytes: Uint8Array;
    try {
      bytes = bundleFromAttestationLayer(envelope, layer.annotations, `${where} ${tag} ${layer.digest}`);
    } catch {
      // Not one gatehouse wrote (no verification material): nothing to verify it with offline.
      continue;
    }
    const bundleDigest = digestOf(bytes);
    if (found.some((f) => f.digest === bundleDigest)) continue;
    found.push({ bytes, digest: bundleDigest, source: 'cosign' });
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
