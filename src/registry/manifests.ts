/**
 * The manifests gatehouse writes, the same for every registry adapter: the artifact (an OCI image
 * manifest with an image config, so that image tools such as `skopeo inspect` read it), its OCI 1.1
 * referrers (artifact manifests with the empty config and a `subject`), and cosign's tag-schema
 * attachments `sha256-<hex>.sig` / `.att` for consumers that do not read referrers.
 */
import { sha256Hex } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import { type Descriptor, OCI_EMPTY, OCI_MANIFEST, parseImageManifest } from './oci-client.ts';
import type { Area, ArtifactFile, PlacedArtifact, PlacementRequest } from './registry.ts';

const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
/** Project names are single repository path components. */
export const PROJECT_RE = /^[a-z0-9][a-z0-9._-]{0,62}$/;

export const OCI_IMAGE_CONFIG = 'application/vnd.oci.image.config.v1+json';
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

export function jsonBytes(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value));
}

export function blobOf(bytes: Uint8Array, mediaType: string, annotations?: Record<string, string>): Blob {
  return {
    bytes,
    descriptor: {
      mediaType,
      digest: `sha256:${sha256Hex(bytes)}`,
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

/** cosign's tag for an attachment kind: `sha256-<hex>.sig` or `.att`. */
export function cosignTag(subjectDigest: string, kind: 'sig' | 'att'): string {
  return `${subjectDigest.replace(':', '-')}.${kind}`;
}

/** cosign's annotation naming an attestation layer's predicate type. */
export const COSIGN_PREDICATE_TYPE = 'predicateType';

/** Check the fields every adapter checks the same way. @throws GatehouseError BAD_INPUT */
export function checkPlacementRequest(request: PlacementRequest): void {
  if (!PROJECT_RE.test(request.project)) {
    throw new GatehouseError('BAD_INPUT', `project name '${request.project}' is not a valid repository name`);
  }
  if (!TAG_RE.test(request.tag))
    throw new GatehouseError('BAD_INPUT', `tag '${request.tag}' is not a valid OCI tag`);
  for (const f of request.files) {
    if (!/^[0-9a-f]{64}$/.test(f.sha256) || sha256Hex(f.bytes) !== f.sha256) {
      throw new GatehouseError(
        'BAD_INPUT',
        `artifact ${f.name} does not match its digest sha256:${f.sha256}`,
      );
    }
  }
}

/** Everything one placement writes, in the order a registry must receive it (blobs before manifests). */
export interface PlacementPlan {
  blobs: Blob[];
  artifact: Blob;
  referrers: { manifest: Blob; artifactType: string; annotations?: Record<string, string> }[];
  cosign: { tag: string; manifest: Blob }[];
}

/** Plan the blobs and manifests of a placement, the same for every adapter. */
export function planPlacement(request: PlacementRequest, now = new Date()): PlacementPlan {
  checkPlacementRequest(request);
  const created = now.toISOString();
  const blobs: Blob[] = [];
  const layers = request.files.map((f) => {
    const b = blobOf(f.bytes, 'application/octet-stream', { [TITLE]: f.name });
    blobs.push(b);
    return b.descriptor;
  });
  const config = imageConfig(layers, created);
  blobs.push(config);
  const artifact = manifestBlob({
    artifactType: ARTIFACT_TYPE,
    config: config.descriptor,
    layers,
    annotations: { 'org.opencontainers.image.created': created, ...request.annotations },
  });
  const empty = emptyConfig();
  blobs.push(empty);
  const referrers: PlacementPlan['referrers'] = [];
  const cosignLayers: Record<'sig' | 'att', Descriptor[]> = { sig: [], att: [] };
  for (const a of request.attachments) {
    const layer = blobOf(a.bytes, a.mediaType);
    blobs.push(layer);
    const manifest = manifestBlob({
      artifactType: a.artifactType,
      config: empty.descriptor,
      layers: [layer.descriptor],
      subject: artifact.descriptor,
      ...(a.annotations === undefined ? {} : { annotations: a.annotations }),
    });
    referrers.push({
      manifest,
      artifactType: a.artifactType,
      ...(a.annotations === undefined ? {} : { annotations: a.annotations }),
    });
    for (const kind of new Set(a.cosign ?? [])) {
      const predicateType = a.annotations?.['dev.sigstore.bundle.predicateType'];
      cosignLayers[kind].push({
        ...layer.descriptor,
        annotations: {
          ...a.annotations,
          ...(predicateType === undefined ? {} : { [COSIGN_PREDICATE_TYPE]: predicateType }),
        },
      });
    }
  }
  const cosign: PlacementPlan['cosign'] = [];
  for (const kind of ['sig', 'att'] as const) {
    const layersOfKind = cosignLayers[kind];
    if (layersOfKind.length === 0) continue;
    const cfg = imageConfig(layersOfKind, created);
    blobs.push(cfg);
    cosign.push({
      tag: cosignTag(artifact.descriptor.digest, kind),
      manifest: manifestBlob({ config: cfg.descriptor, layers: layersOfKind }),
    });
  }
  return { blobs, artifact, referrers, cosign };
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
  const manifest = manifestBlob({
    artifactType: attachment.artifactType,
    config: empty.descriptor,
    layers: [layer.descriptor],
    subject: { mediaType: OCI_MANIFEST, digest: subject.digest, size: subject.size },
    ...(attachment.annotations === undefined ? {} : { annotations: attachment.annotations }),
  });
  return { blobs: [empty, layer], manifest };
}

/**
 * The files of an artifact manifest, in order, each read with `readLayer` (which must refuse bytes
 * that do not hash to the layer's digest).
 */
export async function readArtifactFiles(
  manifestBytes: Uint8Array,
  where: string,
  readLayer: (layer: { name: string; digest: string }) => Promise<Uint8Array>,
): Promise<ArtifactFile[]> {
  const out: ArtifactFile[] = [];
  for (const l of parseImageManifest(manifestBytes, where).layers) {
    const layer = { name: l.annotations?.[TITLE] ?? '', digest: l.digest };
    out.push({ name: layer.name, sha256: l.digest.slice(7), bytes: await readLayer(layer) });
  }
  return out;
}

/** The descriptor a registry lists a referrer manifest under: with its artifactType and annotations. */
export function referrerDescriptor(
  manifest: Descriptor,
  artifactType: string,
  annotations: Record<string, string> | undefined,
): Descriptor {
  return { ...manifest, artifactType, ...(annotations === undefined ? {} : { annotations }) };
}

/** The error for an artifact that is not in an area of a registry. */
export function noArtifact(reference: string, area: Area, where: string): GatehouseError {
  return new GatehouseError('NOT_FOUND', `no artifact ${reference} in the ${area} area`, { where });
}
