/**
 * The manifests gatehouse writes, the same for every registry adapter: the artifact (an OCI image
 * manifest with an image config, so that image tools such as `skopeo inspect` read it), its OCI 1.1
 * referrers (artifact manifests with the empty config and a `subject`), and cosign's tag-schema
 * attachments `sha256-<hex>.sig` / `.att` for consumers that do not read referrers.
 */
import { join } from 'node:path';
import { GatehouseError } from '../common/errors.ts';
import {
  type Descriptor,
  jsonBytes,
  OCI_EMPTY,
  OCI_IMAGE_CONFIG,
  OCI_MANIFEST,
  parseImageManifest,
} from './oci-format.ts';
import { COSIGN_KINDS, cosignTag, digestOf, isTag } from './oci-names.ts';
import type {
  Area,
  ArtifactFile,
  ArtifactManifestInput,
  Attachment,
  CosignLayer,
  PlacedArtifact,
  PlacementRequest,
} from './registry.ts';

/** Project names are single repository path components. */
export const PROJECT_RE = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/** The artifactType gatehouse gives a build's output. */
export const ARTIFACT_TYPE = 'application/vnd.gatehouse.artifact.v1';
export const EMPTY_CONFIG = new TextEncoder().encode('{}');
/** The annotation naming a layer's file, from the OCI image specification. */
export const TITLE = 'org.opencontainers.image.title';

/** A blob to store, with the descriptor that names it. */
export interface Blob {
  descriptor: Descriptor;
  bytes: Uint8Array;
}

/** An artifact file to store as a blob: read from disk as a stream, checked as it is written. */
export interface FileBlob {
  descriptor: Descriptor;
  path: string;
}

/** Whether a planned blob is an artifact file on disk (rather than bytes in memory). */
export function isFileBlob(b: Blob | FileBlob): b is FileBlob {
  return 'path' in b;
}

export function blobOf(bytes: Uint8Array, mediaType: string, annotations?: Record<string, string>): Blob {
  return {
    bytes,
    descriptor: {
      mediaType,
      digest: digestOf(bytes),
      size: bytes.byteLength,
      ...(annotations === undefined ? {} : { annotations }),
    },
  };
}

/**
 * A minimal image config naming the layers, as cosign writes for its signature images: no
 * platform, no command. It makes the manifest an image to image tools without claiming it runs.
 */
export function imageConfig(layers: Descriptor[], created: string): Blob {
  return blobOf(
    jsonBytes({
      created,
      architecture: '',
      os: '',
      config: {},
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
    }),
    OCI_IMAGE_CONFIG,
  );
}

/** A manifest of `layers` over `config`, as bytes with its descriptor. */
export function manifestBlob(fields: {
  config: Descriptor;
  layers: Descriptor[];
  artifactType?: string;
  subject?: Descriptor;
  annotations?: Record<string, string>;
}): Blob {
  const manifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    ...(fields.artifactType === undefined ? {} : { artifactType: fields.artifactType }),
    config: fields.config,
    layers: fields.layers,
    ...(fields.subject === undefined
      ? {}
      : {
          subject: {
            mediaType: fields.subject.mediaType,
            digest: fields.subject.digest,
            size: fields.subject.size,
          },
        }),
    ...(fields.annotations === undefined ? {} : { annotations: fields.annotations }),
  };
  return blobOf(jsonBytes(manifest), OCI_MANIFEST);
}

/** The empty config blob of OCI 1.1 artifacts. */
export function emptyConfig(): Blob {
  return blobOf(EMPTY_CONFIG, OCI_EMPTY);
}

/** Check the fields every adapter checks the same way. @throws GatehouseError BAD_INPUT */
export function checkPlacementRequest(request: PlacementRequest): void {
  if (!PROJECT_RE.test(request.project)) {
    throw new GatehouseError('BAD_INPUT', `project name '${request.project}' is not a valid repository name`);
  }
  if (!isTag(request.tag))
    throw new GatehouseError('BAD_INPUT', `tag '${request.tag}' is not a valid OCI tag`);
  checkFiles(request.files);
}

function checkFiles(files: readonly ArtifactFile[]): void {
  // The bytes themselves are checked against the digest as each adapter writes them.
  for (const f of files) {
    if (!/^[0-9a-f]{64}$/.test(f.sha256) || !Number.isSafeInteger(f.size) || f.size < 0) {
      throw new GatehouseError('BAD_INPUT', `artifact ${f.name} has no valid digest and size`);
    }
  }
}

/** Everything one placement writes, in the order a registry must receive it (blobs before manifests). */
export interface PlacementPlan {
  blobs: (Blob | FileBlob)[];
  artifact: Blob;
  referrers: { manifest: Blob; artifactType: string; annotations?: Record<string, string> }[];
  cosign: { tag: string; manifest: Blob }[];
}

/** Plan the blobs and manifests of a placement, the same for every adapter. */
export function planPlacement(
  request: PlacementRequest,
  now = request.createdAt === undefined ? new Date() : new Date(request.createdAt),
): PlacementPlan {
  checkPlacementRequest(request);
  const created = now.toISOString();
  // Each step appends the blobs it needs, so that blobs keep the order they are planned in.
  const blobs: (Blob | FileBlob)[] = [];
  const artifact = planArtifact({ ...request, createdAt: created }, blobs);
  // The attachments were signed for a manifest digest: placing them on any other manifest would
  // attach statements that name something else.
  if (request.manifestDigest !== undefined && request.manifestDigest !== artifact.descriptor.digest)
    throw new GatehouseError(
      'INTERNAL',
      `the artifact manifest is ${artifact.descriptor.digest}, but its attestations were signed for ${request.manifestDigest}`,
    );
  const referrers = planAttachments(request.attachments, artifact.descriptor, blobs);
  const cosign = planCosign(request.cosign ?? [], artifact.descriptor.digest, created, blobs);
  return { blobs, artifact, referrers, cosign };
}

/**
 * The artifact manifest a placement of these files would write, computed before anything is
 * signed or written: the digest the signed statements name. Pure, the same for every adapter.
 * @throws GatehouseError BAD_INPUT (a file without a valid digest and size)
 */
export function artifactManifest(input: ArtifactManifestInput): Blob {
  checkFiles(input.files);
  return planArtifact({ ...input, createdAt: new Date(input.createdAt).toISOString() }, []);
}

/** The artifact manifest: one titled layer per file, over an image config naming them. */
function planArtifact(request: ArtifactManifestInput, blobs: (Blob | FileBlob)[]): Blob {
  const created = request.createdAt;
  const image = request.image;
  if (image !== undefined) {
    // A runnable image is placed exactly as assembled: its digest is the one checked and signed.
    for (const l of image.layers) blobs.push({ descriptor: l.descriptor, path: l.path });
    blobs.push({ descriptor: image.config.descriptor, bytes: image.config.bytes });
    return { descriptor: image.manifest.descriptor, bytes: image.manifest.bytes };
  }
  const layers = request.files.map((f) => {
    const descriptor: Descriptor = {
      mediaType: 'application/octet-stream',
      digest: `sha256:${f.sha256}`,
      size: f.size,
      annotations: { [TITLE]: f.name },
    };
    blobs.push({ descriptor, path: f.path });
    return descriptor;
  });
  const config = imageConfig(layers, created);
  blobs.push(config);
  return manifestBlob({
    artifactType: ARTIFACT_TYPE,
    config: config.descriptor,
    layers,
    annotations: { 'org.opencontainers.image.created': created, ...request.annotations },
  });
}

/** One referrer of `subject` per attachment. */
function planAttachments(
  attachments: Attachment[],
  subject: Descriptor,
  blobs: (Blob | FileBlob)[],
): PlacementPlan['referrers'] {
  const empty = emptyConfig();
  blobs.push(empty);
  return attachments.map((a) => {
    const layer = blobOf(a.bytes, a.mediaType);
    blobs.push(layer);
    return {
      manifest: referrerManifest(a, layer.descriptor, empty.descriptor, subject),
      artifactType: a.artifactType,
      ...(a.annotations === undefined ? {} : { annotations: a.annotations }),
    };
  });
}

/** One cosign manifest per kind that has layers, tagged `sha256-<hex>.<kind>` after the artifact. */
function planCosign(
  layers: readonly CosignLayer[],
  subjectDigest: string,
  created: string,
  blobs: (Blob | FileBlob)[],
): PlacementPlan['cosign'] {
  const cosign: PlacementPlan['cosign'] = [];
  for (const kind of COSIGN_KINDS) {
    const layersOfKind = layers
      .filter((l) => l.kind === kind)
      .map((l) => {
        const blob = blobOf(l.bytes, l.mediaType, l.annotations);
        blobs.push(blob);
        return blob.descriptor;
      });
    if (layersOfKind.length === 0) continue;
    const cfg = imageConfig(layersOfKind, created);
    blobs.push(cfg);
    cosign.push({
      tag: cosignTag(subjectDigest, kind),
      manifest: manifestBlob({ config: cfg.descriptor, layers: layersOfKind }),
    });
  }
  return cosign;
}

/** The manifest of a referrer: the attachment's single layer over the empty config, naming `subject`. */
function referrerManifest(
  attachment: { artifactType: string; annotations?: Record<string, string> },
  layer: Descriptor,
  empty: Descriptor,
  subject: Descriptor,
): Blob {
  return manifestBlob({
    artifactType: attachment.artifactType,
    config: empty,
    layers: [layer],
    subject,
    ...(attachment.annotations === undefined ? {} : { annotations: attachment.annotations }),
  });
}

/** Read back a placed artifact from its manifest bytes and what the registry lists for it. */
export function describePlaced(
  manifestBytes: Uint8Array,
  digest: string,
  referrers: Descriptor[],
  cosignTags: string[],
  where: string,
): PlacedArtifact {
  const m = parseImageManifest(manifestBytes, where);
  return {
    manifestDigest: digest,
    files: m.layers.map((l) => ({
      name: l.annotations?.[TITLE] ?? '',
      sha256: l.digest.slice(7),
      size: l.size,
    })),
    referrers: referrers.map((r) => ({
      artifactType: r.artifactType ?? '',
      digest: r.digest,
      annotations: r.annotations ?? {},
    })),
    cosignTags,
  };
}

/** Plan one more referrer of an existing artifact manifest: its blobs and its manifest. */
export function planReferrer(
  subject: { digest: string; size: number },
  attachment: {
    artifactType: string;
    mediaType: string;
    bytes: Uint8Array;
    annotations?: Record<string, string>;
  },
): { blobs: Blob[]; manifest: Blob } {
  const empty = emptyConfig();
  const layer = blobOf(attachment.bytes, attachment.mediaType);
  const manifest = referrerManifest(attachment, layer.descriptor, empty.descriptor, {
    mediaType: OCI_MANIFEST,
    digest: subject.digest,
    size: subject.size,
  });
  return { blobs: [empty, layer], manifest };
}

/**
 * The files of an artifact manifest, in order, each written into `dir` by `writeLayer` (which must
 * refuse bytes that do not hash to the layer's digest).
 */
export async function readArtifactFiles(
  manifestBytes: Uint8Array,
  where: string,
  dir: string,
  writeLayer: (layer: { name: string; digest: string }, dest: string) => Promise<number>,
): Promise<ArtifactFile[]> {
  const out: ArtifactFile[] = [];
  for (const l of parseImageManifest(manifestBytes, where).layers) {
    const layer = { name: l.annotations?.[TITLE] ?? '', digest: l.digest };
    const path = join(dir, l.digest.slice(7));
    const size = await writeLayer(layer, path);
    out.push({ name: layer.name, sha256: l.digest.slice(7), size, path });
  }
  return out;
}

/** The error for an artifact that is not in an area of a registry. */
export function noArtifact(reference: string, area: Area, where: string): GatehouseError {
  return new GatehouseError('NOT_FOUND', `no artifact ${reference} in the ${area} area`, { where });
}

/**
 * The layer of a referrer manifest that holds its attachment. `where` names the repository,
 * `parseWhere` the manifest.
 * @throws GatehouseError NOT_FOUND when there is no such referrer or it has no layer
 */
export function attachmentLayer(
  manifestBytes: Uint8Array | undefined,
  referrerDigest: string,
  where: string,
  parseWhere: string,
): Descriptor {
  if (manifestBytes === undefined)
    throw new GatehouseError('NOT_FOUND', `no referrer ${referrerDigest}`, { where });
  const [layer] = parseImageManifest(manifestBytes, parseWhere).layers;
  if (layer === undefined) throw noAttachmentContent(referrerDigest, where);
  return layer;
}

/** The error for a referrer whose attachment is missing. */
export function noAttachmentContent(referrerDigest: string, where: string): GatehouseError {
  return new GatehouseError('NOT_FOUND', `referrer ${referrerDigest} has no content`, { where });
}
