/**
 * The gate's decision as a SLSA Verification Summary Attestation v1
 * (https://slsa.dev/spec/v1.0/verification_summary): who verified, when, under which policy
 * (by digest), from which input attestations, with what result and level. The gate signs it like
 * its other attestations; deploy-time verification reads it back.
 */
import { z } from 'zod';
import { GatehouseError } from '../common/errors.ts';

export const SLSA_VSA_V1 = 'https://slsa.dev/verification_summary/v1';

/** The VSA v1 predicate. */
export interface VerificationSummaryV1 {
  verifier: { id: string };
  timeVerified: string;
  resourceUri: string;
  policy: { uri: string; digest: { sha256: string } };
  inputAttestations: { uri: string; digest: { sha256: string } }[];
  verificationResult: 'PASSED' | 'FAILED';
  verifiedLevels: string[];
  slsaVersion: '1.0';
  /**
   * gatehouse's extension: present when the security role released an artifact the policy had
   * refused; names who (security key id), why, the refusal and the triage log entry.
   */
  release?: VsaRelease;
}

/** A triage release as the VSA records it. */
export interface VsaRelease {
  triageId: string;
  decisionId: string;
  actor: string;
  reason: string;
  policyDigest: string;
  logIndex: number;
  uri: string;
}

/**
 * The SLSA build level the runner evidence supports: hardware-rooted (TPM) evidence of an
 * isolated, ephemeral runner whose build holds no signing key is Build L3; software measurement
 * alone is Build L2 (hosted, signed provenance, but no hardware root for the isolation claim).
 */
export function buildLevelOf(evidenceTypes: readonly string[]): 2 | 3 {
  return evidenceTypes.some((t) => /tpm/i.test(t)) ? 3 : 2;
}

export interface VsaInput {
  verifierId: string;
  timeVerified: Date | string;
  resourceUri: string;
  policyUri: string;
  /** Hex SHA-256 of the policy the gate enforced. */
  policyDigest: string;
  inputAttestations: { uri: string; sha256: string }[];
  passed: boolean;
  evidenceTypes: readonly string[];
  release?: VsaRelease;
}

/** Build a VSA v1 predicate. @throws GatehouseError BAD_INPUT when a digest is not hex SHA-256 */
export function verificationSummary(input: VsaInput): VerificationSummaryV1 {
  const hex = /^[0-9a-f]{64}$/;
  if (!hex.test(input.policyDigest))
    throw new GatehouseError('BAD_INPUT', 'the policy digest is not a SHA-256');
  for (const a of input.inputAttestations) {
    if (!hex.test(a.sha256))
      throw new GatehouseError('BAD_INPUT', `input attestation ${a.uri} has no SHA-256`);
  }
  return {
    verifier: { id: input.verifierId },
    timeVerified:
      typeof input.timeVerified === 'string' ? input.timeVerified : input.timeVerified.toISOString(),
    resourceUri: input.resourceUri,
    policy: { uri: input.policyUri, digest: { sha256: input.policyDigest } },
    inputAttestations: input.inputAttestations.map((a) => ({ uri: a.uri, digest: { sha256: a.sha256 } })),
    verificationResult: input.passed ? 'PASSED' : 'FAILED',
    verifiedLevels: input.passed ? [`SLSA_BUILD_LEVEL_${buildLevelOf(input.evidenceTypes)}`] : ['FAILED'],
    slsaVersion: '1.0',
    ...(input.release === undefined ? {} : { release: { ...input.release } }),
  };
}

const digestSet = z.object({ sha256: z.string().regex(/^[0-9a-f]{64}$/) }).catchall(z.string());
const vsaSchema = z.object({
  verifier: z.object({ id: z.string().min(1) }).loose(),
  timeVerified: z.iso.datetime({ offset: true }),
  resourceUri: z.string().min(1),
  policy: z.object({ uri: z.string().min(1), digest: digestSet }).loose(),
  inputAttestations: z.array(z.object({ uri: z.string(), digest: digestSet }).loose()).optional(),
  verificationResult: z.enum(['PASSED', 'FAILED']),
  verifiedLevels: z.array(z.string()),
  slsaVersion: z.string().optional(),
  release: z
    .object({
      triageId: z.string().min(1),
      decisionId: z.string().min(1),
      actor: z.string().min(1),
      reason: z.string(),
      policyDigest: z.string(),
      logIndex: z.number().int().nonnegative(),
    })
    .loose()
    .optional(),
});

export interface ParsedVsa {
  verifierId: string;
  timeVerified: Date;
  resourceUri: string;
  policyDigest: string;
  policyUri: string;
  inputAttestationDigests: string[];
  passed: boolean;
  /** The SLSA Build level claimed (0 when none). */
  buildLevel: number;
  /** Set when the security role released an artifact the policy had refused. */
  release?: { triageId: string; decisionId: string; actor: string; reason: string; logIndex: number };
}

/** Parse a VSA predicate from a verified statement. @throws GatehouseError BAD_BUNDLE */
export function parseVsa(predicate: unknown, where: string): ParsedVsa {
  const r = vsaSchema.safeParse(predicate);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new GatehouseError(
      'BAD_BUNDLE',
      `the verification summary is malformed at ${issue?.path.join('.') ?? ''}: ${issue?.message ?? ''}`,
      {
        where,
      },
    );
  }
  const v = r.data;
  const levels = v.verifiedLevels
    .map((l) => /^SLSA_BUILD_LEVEL_([0-4])$/.exec(l)?.[1])
    .filter((x): x is string => x !== undefined)
    .map(Number);
  if (levels.length > 1)
    throw new GatehouseError('BAD_BUNDLE', 'the verification summary claims two build levels', { where });
  return {
    verifierId: v.verifier.id,
    timeVerified: new Date(v.timeVerified),
    resourceUri: v.resourceUri,
    policyDigest: v.policy.digest.sha256,
    policyUri: v.policy.uri,
    inputAttestationDigests: (v.inputAttestations ?? []).map((a) => a.digest.sha256),
    passed: v.verificationResult === 'PASSED',
    buildLevel: levels[0] ?? 0,
    ...(v.release === undefined
      ? {}
      : {
          release: {
            triageId: v.release.triageId,
            decisionId: v.release.decisionId,
            actor: v.release.actor,
            reason: v.release.reason,
            logIndex: v.release.logIndex,
          },
        }),
  };
}
