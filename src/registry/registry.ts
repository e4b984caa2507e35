/**
 * Where gate outcomes go: an allowed artifact is promoted with its attestations; a denied or
 * quarantined one is kept apart, with its reasons, and never reaches the promoted repository.
 */

/** A file the build produced, as the agent digested it. */
export interface ArtifactFile {
  name: string;
  sha256: string;
  bytes: Uint8Array;
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

export interface PlacementRequest {
  project: string;
  /** The tag to give the artifact manifest, e.g. the job id. */
  tag: string;
  files: ArtifactFile[];
  attachments: Attachment[];
  annotations?: Record<string, string>;
}

export interface Placement {
  /** `promoted` or `quarantine`. */
  area: 'promoted' | 'quarantine';
  /** Human-usable reference: `<location>/<project>:<tag>@sha256:<manifest digest>`. */
  reference: string;
  manifestDigest: string;
  referrers: { artifactType: string; digest: string }[];
}

/** An artifact repository with a promoted area and a quarantine area. */
export interface ArtifactRegistry {
  promote(request: PlacementRequest): Promise<Placement>;
  quarantine(request: PlacementRequest): Promise<Placement>;
}
