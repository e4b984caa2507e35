/**
 * Where the authority meets the platform evidence verifiers: the `platform_evidence` list a
 * runner may add to its attestation, the reference values per kind in the signed bundle, and
 * the EAR submod each affirmed appraisal becomes.
 */
import { z } from 'zod';
import type { CheckFailure } from '../../tpm/quote.ts';
import { AzureAttestationVerifier, azureReferenceSchema } from './azure.ts';
import { GcpVtpmVerifier, gcpReferenceSchema } from './gcp.ts';
import { NitroTpmVerifier, nitroReferenceSchema } from './nitro-tpm.ts';
import { SevSnpVerifier, snpReferenceSchema } from './sev-snp.ts';
import { TdxVerifier, tdxReferenceSchema } from './tdx.ts';
import {
  EVIDENCE_CHECKS,
  EVIDENCE_KINDS,
  type EvidenceAppraisal,
  type EvidenceKind,
  type EvidenceVerifier,
  isEvidenceKind,
  type TrustAnchors,
} from './verifier.ts';

/**
 * Reference values per evidence kind, as published in the signed reference-value bundle under
 * `platforms` (no defaults or transforms: the bundle's signature covers exactly what was sent).
 */
export const platformReferenceValuesSchema = z.strictObject({
  'sev-snp': snpReferenceSchema.optional(),
  tdx: tdxReferenceSchema.optional(),
  azure: azureReferenceSchema.optional(),
  'nitro-tpm': nitroReferenceSchema.optional(),
  'gcp-vtpm': gcpReferenceSchema.optional(),
});
export type PlatformReferenceValues = z.infer<typeof platformReferenceValuesSchema>;

/** At most one piece of evidence per kind; each an object naming its kind. */
export const platformEvidenceListSchema = z
  .array(z.looseObject({ kind: z.string().max(32) }))
  .min(1)
  .max(EVIDENCE_KINDS.length);

/** Every verifier gatehouse has, one per kind. */
export function allPlatformVerifiers(): EvidenceVerifier[] {
  return [
    new SevSnpVerifier(),
    new TdxVerifier(),
    new AzureAttestationVerifier(),
    new NitroTpmVerifier(),
    new GcpVtpmVerifier(),
  ];
}

/** Options for {@link PlatformEvidenceAppraiser}. */
export interface PlatformEvidenceOptions {
  /** The verifiers accepted (default: all). */
  readonly verifiers?: readonly EvidenceVerifier[];
  /** The trust anchors of a kind, read on every appraisal so that a change takes effect at once. */
  readonly anchors: (kind: EvidenceKind) => TrustAnchors;
}

/** The outcome of appraising a runner's platform evidence. */
export interface PlatformAppraisal {
  /** Affirmed appraisals, by kind, in the order presented. */
  readonly affirmed: readonly EvidenceAppraisal[];
  /** Every failed check of every piece of evidence (empty when all affirmed). */
  readonly failures: readonly CheckFailure[];
}

/**
 * Appraises the platform evidence a runner presents beside its TPM quote or measured baseline.
 * Evidence that is presented must pass: a kind without a verifier, a kind presented twice or
 * any failed check refuses the whole attestation (fail closed); evidence that is not presented
 * is simply absent from the token, and a policy that requires it denies.
 */
export class PlatformEvidenceAppraiser {
  readonly #verifiers: ReadonlyMap<EvidenceKind, EvidenceVerifier>;
  readonly #anchors: (kind: EvidenceKind) => TrustAnchors;

  constructor(options: PlatformEvidenceOptions) {
    this.#verifiers = new Map((options.verifiers ?? allPlatformVerifiers()).map((v) => [v.kind, v]));
    this.#anchors = options.anchors;
  }

  /**
   * @param items the `platform_evidence` list as received (unparsed)
   * @param binding SHA-256(nonce ‖ runner key thumbprint)
   * @param reference the `platforms` part of the reference values in force
   */
  async appraise(
    items: unknown,
    binding: Uint8Array,
    reference: PlatformReferenceValues | undefined,
    now: Date,
  ): Promise<PlatformAppraisal> {
    const list = platformEvidenceListSchema.safeParse(items);
    if (!list.success)
      return {
        affirmed: [],
        failures: [
          {
            check: EVIDENCE_CHECKS.malformed,
            message: `platform_evidence must be a list of 1–${EVIDENCE_KINDS.length} objects each naming its kind (${list.error.issues[0]?.message ?? 'invalid'})`,
          },
        ],
      };
    const failures: CheckFailure[] = [];
    const affirmed: EvidenceAppraisal[] = [];
    const seen = new Set<string>();
    for (const [i, item] of list.data.entries()) {
      const kind = item.kind;
      // Two reports of one kind could be from two machines: one kind, one piece of evidence.
      if (seen.has(kind)) {
        failures.push({
          check: EVIDENCE_CHECKS.kindUnsupported,
          message: `platform_evidence[${i}]: ${kind} is presented twice`,
        });
        continue;
      }
      seen.add(kind);
      const verifier = isEvidenceKind(kind) ? this.#verifiers.get(kind) : undefined;
      if (verifier === undefined || !isEvidenceKind(kind)) {
        failures.push({
          check: EVIDENCE_CHECKS.kindUnsupported,
          message: `platform_evidence[${i}]: no verifier for '${kind}' (known: ${[...this.#verifiers.keys()].join(', ')})`,
        });
        continue;
      }
      let appraisal: EvidenceAppraisal;
      try {
        appraisal = await verifier.verify(item, {
          binding,
          anchors: this.#anchors(kind),
          reference: reference?.[kind],
          now,
        });
      } catch (e) {
        // A verifier never throws for bad evidence; if one does, nothing it checked counts.
        failures.push({
          check: EVIDENCE_CHECKS.malformed,
          message: `${kind}: ${e instanceof Error ? e.message : String(e)}`,
        });
        continue;
      }
      if (appraisal.status === 'affirming' && appraisal.failures.length === 0) affirmed.push(appraisal);
      else failures.push(...appraisal.failures.map((f) => ({ check: f.check, message: f.message })));
    }
    return { affirmed, failures };
  }
}

/** The EAR submod of an affirmed appraisal, named by its kind in the token. */
export function platformSubmod(a: EvidenceAppraisal, policyId: string): Record<string, unknown> {
  return {
    'ear.status': a.status,
    'ear.trustworthiness-vector': { ...a.trustworthinessVector },
    'ear.appraisal-policy-id': policyId,
  };
}

/** What the token's `gatehouse.platform` names of an affirmed appraisal: measurements and facts. */
export function platformFacts(a: EvidenceAppraisal): Record<string, unknown> {
  return { measurements: { ...a.measurements }, ...a.claims };
}
