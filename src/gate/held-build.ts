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
  attestation: { tokenId: string; evidenceTypes: string[]; pcrs: Record<string, string> };
  components: Component[];
  source?: SourceVerification;
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

/** The facts the gate signs, from a verified submission. */
export function heldBuildOf(
  submission: Submission,
  claims: AttestationClaims,
  components: Component[],
  source: SourceVerification | undefined,
): HeldBuild {
  const { steps: _steps, ...rest } = submission;
  return {
    submission: rest,
    attestation: {
      tokenId: claims.jti,
      evidenceTypes: claims.gatehouse.evidence_types,
      pcrs: claims.gatehouse.pcrs,
    },
    components,
    ...(source === undefined ? {} : { source }),
  };
}
