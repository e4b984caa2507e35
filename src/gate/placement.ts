/** Where a decided artifact goes: promoted with its bundles and records, or quarantined. */
import type {
  ArtifactFile,
  ArtifactRegistry,
  Attachment,
  ImagePlacement,
  Placement,
} from '../registry/registry.ts';
import { sbomAttestationTypes } from '../sbom/read.ts';
import { SLSA_PROVENANCE_V1 } from '../signing/intoto.ts';
import { SLSA_VSA_V1 } from '../signing/vsa.ts';
import { jsonBytes, type SignedBuild } from './sign-build.ts';

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

/** Promote an approved artifact with its three bundles and its records (SBOM, decision). */
export function promoteSigned(
  registry: ArtifactRegistry,
  p: {
    project: string;
    tag: string;
    files: ArtifactFile[];
    image?: ImagePlacement;
    sbom: Record<string, unknown>;
    signed: SignedBuild;
    records: Attachment[];
    annotations: Record<string, string>;
    createdAt?: string;
  },
): Promise<Placement> {
  const bundle = (bytes: unknown, predicateType: string, cosign: ('sig' | 'att')[]): Attachment => ({
    artifactType: MEDIA.bundle,
    mediaType: MEDIA.bundle,
    bytes: jsonBytes(bytes),
    annotations: { 'dev.sigstore.bundle.predicateType': predicateType },
    cosign,
  });
  return registry.promote({
    project: p.project,
    tag: p.tag,
    files: p.files,
    ...(p.image === undefined ? {} : { image: p.image }),
    attachments: [
      bundle(p.signed.bundle, SLSA_PROVENANCE_V1, ['sig', 'att']),
      bundle(p.signed.sbomBundle, sbomAttestationTypes(p.sbom).predicateType, ['att']),
      bundle(p.signed.vsaBundle, SLSA_VSA_V1, ['att']),
      ...p.records,
    ],
    annotations: p.annotations,
    ...(p.createdAt === undefined ? {} : { createdAt: p.createdAt }),
  });
}
