import type { Descriptor } from './oci-format.ts';

/**
 * Where gate outcomes go: an allowed artifact is promoted with its attestations; a denied or
 * quarantined one is kept apart, with its reasons, and never reaches the promoted repository.
 */

/**
 * A file the build produced, on disk: its SHA-256 as the control plane computed it from the bytes it
 * received (never the runner's claim), and where those bytes are. Registries read it as a stream.
 */
export interface ArtifactFile {
  name: string;
  sha256: string;
  size: number;
  path: string;
}

/** Something attached to the artifact: a bundle, an SBOM, a decision record. */
export interface Attachment {
  /** OCI artifactType of the referrer, e.g. `application/vnd.dev.sigstore.bundle.v0.3+json`. */
  artifactType: string;
  /** Media type of the single layer holding `bytes`. */
  mediaType: string;
  bytes: Uint8Array;
  annotations?: Record<string, string>;
}

/**
 * A layer under one of cosign's tags, for consumers that read cosign's tag schema rather than
 * OCI 1.1 referrers: under `sig` a simple-signing payload, under `att` a DSSE envelope, each with
 * the annotations cosign reads (signature, certificate, chain, log bundle, predicate type).
 */
export interface CosignLayer {
  kind: 'sig' | 'att';
  mediaType: string;
  bytes: Uint8Array;
  annotations: Record<string, string>;
}

/**
 * A manifest that is deployed and that signed statements name: an artifact manifest, an image
 * manifest or an image index. Its digest is known before anything is written (manifests are
 * planned from their content alone), so the statements can name it before promotion.
 */
export interface DeployedManifest {
  mediaType: string;
  digest: string;
  size: number;
}

/** What the artifact manifest of a placement is made of: its files, annotations and creation time. */
export interface ArtifactManifestInput {
  files: ArtifactFile[];
  annotations?: Record<string, string>;
  /** RFC 3339; the manifest's `created` annotation and its config's `created`. */
  createdAt: string;
  /** When set, the artifact is this image exactly as assembled (its manifest digest names it). */
  image?: ImagePlacement;
}

/**
 * A container image to place as the artifact: its manifest and config exactly as assembled (so
 * the manifest digest is the one that was checked and signed), and its layers as files.
 */
export interface ImagePlacement {
  manifest: { descriptor: Descriptor; bytes: Uint8Array };
  config: { descriptor: Descriptor; bytes: Uint8Array };
  layers: { descriptor: Descriptor; path: string }[];
}

export interface PlacementRequest {
  project: string;
  /** The tag to give the artifact manifest, e.g. the job id. */
  tag: string;
  files: ArtifactFile[];
  /** When set, the artifact placed is this image (its manifest digest names it), not `files`. */
  image?: ImagePlacement;
  attachments: Attachment[];
  annotations?: Record<string, string>;
  /**
   * When the artifact was decided (RFC 3339), the manifests' creation time: the same placement
   * then gives the same manifest digest, so placing it again (after a crash) adds nothing.
   */
  createdAt?: string;
  /** Layers to write under cosign's `sha256-<hex>.sig` / `.att` tags of the artifact manifest. */
  cosign?: CosignLayer[];
  /**
   * The artifact manifest digest the attachments were signed for: a placement whose planned
   * manifest differs is refused before anything is written.
   */
  manifestDigest?: string;
}

export interface Placement {
  /** `promoted` or `quarantine`. */
  area: 'promoted' | 'quarantine';
  /** Human-usable reference: `<location>/<project>:<tag>@sha256:<manifest digest>`. */
  reference: string;
  manifestDigest: string;
  referrers: { artifactType: string; digest: string }[];
  /** The cosign tags written (`sha256-<hex>.sig`, `sha256-<hex>.att`), if any attachment asked for one. */
  cosignTags: string[];
}

/** What a registry holds for one artifact manifest, read back. */
export interface PlacedArtifact {
  manifestDigest: string;
  /** The artifact's files (layers titled with their names). */
  files: { name: string; sha256: string; size: number }[];
  /** Its OCI 1.1 referrers. */
  referrers: { artifactType: string; digest: string; annotations: Record<string, string> }[];
  /** cosign tags present for it. */
  cosignTags: string[];
}

export type Area = 'promoted' | 'quarantine';

/**
 * The promote and quarantine entry points of an adapter that places an artifact the same way in
 * either area; the adapter's `place` does it.
 */
export abstract class PlacingRegistry {
  promote(request: PlacementRequest): Promise<Placement> {
    return this.place('promoted', request);
  }

  quarantine(request: PlacementRequest): Promise<Placement> {
    return this.place('quarantine', request);
  }

  /** Place the artifact, its attachments and their cosign tags in one area. */
  protected abstract place(area: Area, request: PlacementRequest): Promise<Placement>;
}

/** An artifact repository with a promoted area and a quarantine area. */
export interface ArtifactRegistry {
  promote(request: PlacementRequest): Promise<Placement>;
  quarantine(request: PlacementRequest): Promise<Placement>;
  /** Read back an artifact by tag or manifest digest; undefined when the area has no such artifact. */
  inspect(area: Area, project: string, reference: string): Promise<PlacedArtifact | undefined>;
  /** The bytes of a referrer's single layer, checked against its digest. */
  attachment(area: Area, project: string, referrerDigest: string): Promise<Uint8Array>;
  /** A URI naming the repository of a project's area, for records such as the VSA's resourceUri. */
  repositoryUri(area: Area, project: string): string;
  /**
   * The artifact's files (a triage release promotes them from quarantine), each written into `dir`
   * as a stream and checked against its digest.
   * @throws GatehouseError NOT_FOUND when the area has no such artifact, REGISTRY_ERROR on a digest mismatch
   */
  files(area: Area, project: string, reference: string, dir: string): Promise<ArtifactFile[]>;
  /**
   * Attach one more referrer to an artifact already placed, e.g. the record of a triage act.
   * @throws GatehouseError NOT_FOUND when the area has no artifact with that manifest digest
   */
  attach(
    area: Area,
    project: string,
    manifestDigest: string,
    attachment: Attachment,
  ): Promise<{ artifactType: string; digest: string }>;
}
