/**
 * The OCI image format (image specification 1.1) as gatehouse reads and writes it: media types,
 * descriptors, image indexes and image manifests. Documents read from a registry or a layout are
 * parsed and checked before use, never trusted as they come.
 */
import { isDigest } from './oci-names.ts';
import { parseJson, registryError } from './registry-http.ts';

/** Media types from the OCI image specification 1.1. */
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const OCI_EMPTY = 'application/vnd.oci.empty.v1+json';
export const OCI_IMAGE_CONFIG = 'application/vnd.oci.image.config.v1+json';
/** Docker's manifest and manifest list, which registries still serve beside OCI's. */
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';

/** A content descriptor: what a manifest or index says about the content it names. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

/** An image index: a list of manifest descriptors. */
export interface ImageIndex {
  schemaVersion: 2;
  mediaType: string;
  manifests: Descriptor[];
}

/** An image manifest, as far as gatehouse reads it. */
export interface ImageManifest {
  mediaType?: string;
  artifactType?: string;
  config: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

/** A JSON document as bytes, as manifests, configs and indexes are stored. */
export function jsonBytes(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value));
}

/** An image index of `manifests`. */
export function imageIndex(manifests: Descriptor[]): ImageIndex {
  return { schemaVersion: 2, mediaType: OCI_INDEX, manifests };
}

/** The descriptor a registry lists a referrer manifest under: with its artifactType and annotations. */
export function referrerDescriptor(
  manifest: Descriptor,
  artifactType: string,
  annotations: Record<string, string> | undefined,
): Descriptor {
  return { ...manifest, artifactType, ...(annotations === undefined ? {} : { annotations }) };
}

function isDescriptor(d: unknown): d is Descriptor {
  if (typeof d !== 'object' || d === null) return false;
  const x = d as Record<string, unknown>;
  return (
    typeof x.mediaType === 'string' &&
    typeof x.digest === 'string' &&
    isDigest(x.digest) &&
    typeof x.size === 'number' &&
    Number.isSafeInteger(x.size) &&
    x.size >= 0 &&
    (x.artifactType === undefined || typeof x.artifactType === 'string') &&
    (x.annotations === undefined ||
      (typeof x.annotations === 'object' &&
        x.annotations !== null &&
        Object.values(x.annotations).every((v) => typeof v === 'string')))
  );
}

/** Parse an image index, keeping only well-formed descriptors' fields. @throws REGISTRY_ERROR */
export function parseIndex(bytes: Uint8Array, where: string): { manifests: Descriptor[] } {
  const raw = parseJson(bytes, where) as { schemaVersion?: unknown; manifests?: unknown };
  if (raw === null || typeof raw !== 'object' || raw.schemaVersion !== 2 || !Array.isArray(raw.manifests)) {
    throw registryError('the image index is malformed', where);
  }
  if (!raw.manifests.every(isDescriptor))
    throw registryError('the image index has a malformed descriptor', where);
  return { manifests: raw.manifests as Descriptor[] };
}

/** Parse an image manifest. @throws REGISTRY_ERROR */
export function parseImageManifest(bytes: Uint8Array, where: string): ImageManifest {
  const raw = parseJson(bytes, where) as Record<string, unknown> | null;
  if (
    raw === null ||
    typeof raw !== 'object' ||
    raw.schemaVersion !== 2 ||
    !isDescriptor(raw.config) ||
    !Array.isArray(raw.layers) ||
    !raw.layers.every(isDescriptor) ||
    (raw.subject !== undefined && !isDescriptor(raw.subject)) ||
    (raw.artifactType !== undefined && typeof raw.artifactType !== 'string') ||
    (raw.mediaType !== undefined && raw.mediaType !== OCI_MANIFEST && raw.mediaType !== DOCKER_MANIFEST)
  ) {
    throw registryError('the image manifest is malformed', where);
  }
  return raw as unknown as ImageManifest;
}
