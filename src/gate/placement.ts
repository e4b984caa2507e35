/** Where a decided artifact goes: promoted with its bundles and records, or quarantined. */
import { GatehouseError } from '../common/errors.ts';
import { artifactManifest } from '../registry/manifests.ts';
import type {
  ArtifactFile,
  ArtifactManifestInput,
  ArtifactRegistry,
  Attachment,
  ImagePlacement,
  Placement,
} from '../registry/registry.ts';
import { sbomAttestationTypes } from '../sbom/read.ts';
import { SLSA_PROVENANCE_V1 } from '../signing/intoto.ts';
import { SLSA_VSA_V1 } from '../signing/vsa.ts';
import { type Deployment, jsonBytes, type SignedPromotion } from './sign-build.ts';

/** Media and artifact types of what a promoted artifact carries. */
export const MEDIA = {
  bundle: 'application/vnd.dev.sigstore.bundle.v0.3+json',
  decision: 'application/vnd.gatehouse.decision.v1+json',
} as const;

/** Artifact type of a triage record attached to the quarantined artifact. */
export const TRIAGE_ARTIFACT_TYPE = 'application/vnd.gatehouse.triage.v1+json';

/** The SBOM as a record attached to the artifact (promoted or quarantined). */
export function sbomRecord(sbom: Record<string, unknown>): Attachment {
  const { mediaType } = sbomAttestationTypes(sbom);
  return { artifactType: mediaType, mediaType, bytes: jsonBytes(sbom) };
}

/** Artifact type of the build environment's SBOM attached to an artifact (its layer is CycloneDX). */
export const ENVIRONMENT_SBOM_ARTIFACT_TYPE = 'application/vnd.gatehouse.build-environment-sbom.v1+json';

/**
 * The build environment's SBOM as a record attached to the artifact: its exact text, so that the
 * layer's digest is the digest the artifact's SBOM references it by.
 */
export function environmentRecord(text: string): Attachment {
  return {
    artifactType: ENVIRONMENT_SBOM_ARTIFACT_TYPE,
    mediaType: 'application/vnd.cyclonedx+json',
    bytes: new TextEncoder().encode(text),
  };
}

/** A decision (or triage) document as a record attached to the artifact. */
export function decisionRecord(doc: Record<string, unknown>): Attachment {
  return { artifactType: MEDIA.decision, mediaType: MEDIA.decision, bytes: jsonBytes(doc) };
}

/** The value of `dev.sigstore.bundle.content` for a bundle holding a DSSE envelope. */
export const BUNDLE_CONTENT_DSSE = 'dsse-envelope';

/** A repository URI as a reference without scheme (`oci://host/repo` → `host/repo`). */
export function dockerReference(repositoryUri: string): string {
  return repositoryUri.replace(/^oci:\/\//, '');
}

/**
 * The artifact manifest a promotion of these files will write, planned before anything is signed,
 * and the repository it goes to: what the signed statements name beside the files.
 */
export function artifactDeployment(
  registry: ArtifactRegistry,
  project: string,
  input: ArtifactManifestInput,
): Deployment {
  const { descriptor } = artifactManifest(input);
  return {
    repository: dockerReference(registry.repositoryUri('promoted', project)),
    manifests: [{ mediaType: descriptor.mediaType, digest: descriptor.digest, size: descriptor.size }],
  };
}

/**
 * Promote an approved artifact with its three bundles (referrers), cosign's signature and
 * attestation layers (its tags) and its records (SBOM, decision). The placement is refused if its
 * manifest is not the one the statements were signed for.
 * @throws GatehouseError INTERNAL when the planned manifest differs from the signed one
 */
export function promoteSigned(
  registry: ArtifactRegistry,
  p: {
    project: string;
    tag: string;
    files: ArtifactFile[];
    image?: ImagePlacement;
    sbom: Record<string, unknown>;
    signed: SignedPromotion;
    records: Attachment[];
    annotations: Record<string, string>;
    createdAt: string;
  },
): Promise<Placement> {
  const manifest = artifactManifest(p).descriptor.digest;
  const cosign = p.signed.cosign.find((c) => c.manifestDigest === manifest);
  if (cosign === undefined)
    throw new GatehouseError(
      'INTERNAL',
      `the artifact manifest ${manifest} is not one the build was signed for`,
    );
  const bundle = (bytes: unknown, predicateType: string): Attachment => ({
    artifactType: MEDIA.bundle,
    mediaType: MEDIA.bundle,
    bytes: jsonBytes(bytes),
    annotations: {
      'dev.sigstore.bundle.content': BUNDLE_CONTENT_DSSE,
      'dev.sigstore.bundle.predicateType': predicateType,
    },
  });
  const { bundles } = p.signed;
  return registry.promote({
    project: p.project,
    tag: p.tag,
    files: p.files,
    ...(p.image === undefined ? {} : { image: p.image }),
    attachments: [
      bundle(bundles.bundle, SLSA_PROVENANCE_V1),
      bundle(bundles.sbomBundle, sbomAttestationTypes(p.sbom).predicateType),
      bundle(bundles.vsaBundle, SLSA_VSA_V1),
      ...p.records,
    ],
    annotations: p.annotations,
    createdAt: p.createdAt,
    cosign: cosign.layers,
    manifestDigest: manifest,
  });
}
