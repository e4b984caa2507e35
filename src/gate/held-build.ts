import type { AttestationClaims } from '../attestation/token.ts';
import type { Component } from '../sbom/model.ts';
import type { SourceVerification } from '../source/source-provider.ts';
import type { Submission } from './submission.ts';

/**
 * What the gate verified about a build: the runner's submission (not the artifact bytes), the
 * attestation token's claims that the provenance cites, the components, and the source facts it
 * re-derived. An allowed build is signed from it at once; a refused one is held (in the store) so
 * that a triage release signs exactly the same statements.
 */
export interface HeldBuild {
  submission: Omit<Submission, 'steps'>;
  attestation: {
    tokenId: string;
    evidenceTypes: string[];
    pcrs: Record<string, string>;
    /** The kind of runner the token names (absent on builds held before it was recorded). */
    runnerKind?: string;
  };
  /** The union the policy judged, each component with how it is known. */
  components: Component[];
  /**
   * The signed SBOM: the union as CycloneDX, with evidence. Absent on builds held before the gate
   * catalogued artifacts, which are signed with the SBOM the runner declared.
   */
  sbom?: Record<string, unknown>;
  /** `sha256:<hex>` of the build environment's SBOM the judged one references, if any. */
  environment?: string;
  source?: SourceVerification;
  /**
   * The job's build log as the control plane kept it (digest of the kept bytes), named in the
   * provenance as a byproduct; absent when the runner handed none over.
   */
  buildLog?: { sha256: string; size: number; truncated: boolean };
  /** Manifest digest of the artifact in the quarantine area (refused builds only). */
  quarantineManifest?: string;
}

/** The security role's release of a refused artifact, recorded in the VSA it is signed with. */
export interface ReleaseNote {
  triageId: string;
  /** The refusal being overridden. */
  decisionId: string;
  /** Key id of the security key that signed the act. */
  actor: string;
  reason: string;
  /** Digest of the policy that refused the artifact. */
  policyDigest: string;
  /** Log index of the triage decision entry. */
  logIndex: number;
}

/** The SBOM a held build is signed with: the judged union, or for older holds the declared one. */
export function signedSbomOf(held: HeldBuild): Record<string, unknown> {
  return held.sbom ?? held.submission.sbom;
}

/** The facts the gate signs, from a verified submission. */
export function heldBuildOf(
  submission: Submission,
  claims: AttestationClaims,
  judged: { components: Component[]; document: Record<string, unknown> },
  source: SourceVerification | undefined,
  environment?: string,
  buildLog?: HeldBuild['buildLog'],
): HeldBuild {
  const { steps: _steps, ...rest } = submission;
  return {
    submission: rest,
    attestation: {
      tokenId: claims.jti,
      evidenceTypes: claims.gatehouse.evidence_types,
      pcrs: claims.gatehouse.pcrs,
      ...(claims.gatehouse.runner_kind === undefined ? {} : { runnerKind: claims.gatehouse.runner_kind }),
    },
    components: judged.components,
    sbom: judged.document,
    ...(environment === undefined ? {} : { environment }),
    ...(source === undefined ? {} : { source }),
    ...(buildLog === undefined ? {} : { buildLog }),
  };
}
