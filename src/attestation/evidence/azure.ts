/**
 * Microsoft Azure Attestation tokens: a JWT (RS256) signed by the attestation provider's keys
 * (its `/certs` JWKS), issued after the provider appraised an SEV-SNP or TDX confidential VM.
 * The verifier believes the provider for the hardware appraisal and checks the rest itself: the
 * signature against the configured JWKS (never the `jku` the token names), the issuer, the
 * lifetime, the TEE type, debug state, launch measurement, and the runtime-data binding.
 */
import { createLocalJWKSet, errors, jwtVerify } from 'jose';
import { z } from 'zod';
import { sameBytes } from './bytes.ts';
import {
  AppraisalBuilder,
  EVIDENCE_CHECKS as C,
  type EvidenceAppraisal,
  type EvidenceVerifier,
  messageOf,
  referenceFor,
  type TrustClaim,
  type VerifyContext,
} from './verifier.ts';

/** Tokens longer than this are refused unread. */
export const AZURE_MAX_TOKEN_CHARS = 64 * 1024;
/** A token older than this is stale even when its `exp` is later. */
export const AZURE_MAX_TOKEN_AGE_SECONDS = 600;

const hex96 = z.string().regex(/^[0-9a-f]{96}$/, 'must be 96 lowercase hex digits');

/** Azure reference values in the signed bundle (`platforms.azure`). */
export const azureReferenceSchema = z.strictObject({
  /** TEE types accepted: `sevsnpvm`, `tdxvm`. */
  attestationTypes: z.array(z.enum(['sevsnpvm', 'tdxvm'])).min(1),
  /** Allowed launch measurements (SEV-SNP MEASUREMENT or TDX MRTD, hex). */
  measurements: z.array(hex96).min(1).max(256),
  /** Require `x-ms-compliance-status: azure-compliant-cvm` (default). */
  requireCompliance: z.boolean().optional(),
  /** Allowed `x-ms-policy-hash` values (the provider's attestation policy); any when absent. */
  policyHashes: z.array(z.string().min(1)).min(1).optional(),
});

/** The evidence a runner presents: the token the provider returned. */
export const azureEvidenceSchema = z.strictObject({
  kind: z.literal('azure'),
  token: z.string().min(1).max(AZURE_MAX_TOKEN_CHARS),
});

const CLAIMS: readonly TrustClaim[] = [
  'hardware',
  'instance-identity',
  'configuration',
  'executables',
  'runtime-opaque',
];

const record = (v: unknown): Record<string, unknown> | undefined =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;

/** Verifies Azure Attestation tokens against the configured provider JWKS and issuer. */
export class AzureAttestationVerifier implements EvidenceVerifier {
  readonly kind = 'azure' as const;
  readonly claims = CLAIMS;

  async verify(evidence: unknown, ctx: VerifyContext): Promise<EvidenceAppraisal> {
    const out = new AppraisalBuilder(this.kind, CLAIMS);
    const parsed = azureEvidenceSchema.safeParse(evidence);
    if (!parsed.success) {
      out.fail(
        C.malformed,
        'hardware',
        parsed.error.issues[0]?.message ?? 'the evidence is not { kind, token }',
      );
      return out.done();
    }
    const { jwks, issuer } = ctx.anchors;
    if (jwks === undefined || issuer === undefined) {
      out.fail(C.chainUntrusted, 'hardware', 'no Azure Attestation provider (JWKS and issuer) is trusted');
      return out.done();
    }
    let claims: Record<string, unknown>;
    try {
      // Only RS256 and only the configured keys: a `jku`, `x5u` or embedded `jwk` in the header
      // is attacker-controlled and never consulted.
      ({ payload: claims } = await jwtVerify(parsed.data.token, createLocalJWKSet(jwks), {
        algorithms: ['RS256'],
        issuer,
        currentDate: ctx.now,
        maxTokenAge: AZURE_MAX_TOKEN_AGE_SECONDS,
        requiredClaims: ['exp', 'iat'],
      }));
    } catch (e) {
      if (e instanceof errors.JWTExpired) out.fail(C.freshness, 'hardware', 'the token has expired');
      else if (e instanceof errors.JWTClaimValidationFailed)
        out.fail(
          e.claim === 'iss' ? C.chainUntrusted : C.freshness,
          'hardware',
          `the token's ${e.claim} claim is not acceptable (${e.reason})`,
        );
      else if (e instanceof errors.JWSSignatureVerificationFailed || e instanceof errors.JWKSNoMatchingKey)
        out.fail(C.signature, 'hardware', 'the token is not signed by a key of the trusted provider');
      else if (e instanceof errors.JOSEAlgNotAllowed)
        out.fail(C.signature, 'hardware', 'the token is not signed with RS256');
      else out.fail(C.malformed, 'hardware', `the token does not parse (${messageOf(e)})`);
      return out.done();
    }
    // A confidential VM's token carries its TEE claims under x-ms-isolation-tee; a direct
    // SEV-SNP or TDX attestation carries them at the top level.
    const tee = record(claims['x-ms-isolation-tee']) ?? claims;
    const type = tee['x-ms-attestation-type'];
    out.facts.attestation_type = type;
    out.facts.top_attestation_type = claims['x-ms-attestation-type'];
    if (typeof claims['x-ms-policy-hash'] === 'string') out.facts.policy_hash = claims['x-ms-policy-hash'];
    let measurement: unknown;
    if (type === 'sevsnpvm') {
      measurement = tee['x-ms-sevsnpvm-launchmeasurement'];
      if (tee['x-ms-sevsnpvm-is-debuggable'] !== false)
        out.fail(
          C.debug,
          'runtime-opaque',
          'x-ms-sevsnpvm-is-debuggable is not false: the guest may be debugged',
        );
    } else if (type === 'tdxvm') {
      measurement = tee.tdx_mrtd;
      if (tee.tdx_td_attributes_debug !== false)
        out.fail(C.debug, 'runtime-opaque', 'tdx_td_attributes_debug is not false: the TD may be debugged');
    } else
      out.fail(
        C.measurement,
        'configuration',
        `the TEE type '${String(type)}' is not a confidential VM this verifier appraises`,
      );
    if (typeof measurement === 'string') out.measurements.measurement = measurement.toLowerCase();

    // The binding must sit in the runtime data, which the provider checked against the
    // hardware report's REPORT_DATA; the `nonce` claim is only echoed from the request, so a
    // relayed report could be attested with anyone's nonce and is not accepted as a binding.
    const runtime = record(claims['x-ms-runtime']);
    const presented = record(runtime?.['client-payload'])?.nonce ?? runtime?.nonce;
    if (
      typeof presented !== 'string' ||
      !/^[A-Za-z0-9_-]{43}$/.test(presented) ||
      !sameBytes(Buffer.from(presented, 'base64url'), ctx.binding)
    )
      out.fail(
        C.binding,
        'instance-identity',
        'x-ms-runtime does not carry the binding (base64url SHA-256(nonce ‖ runner key thumbprint)) as client-payload.nonce or nonce',
      );

    const ref = referenceFor(out, azureReferenceSchema, ctx.reference, 'Azure');
    if (ref === undefined) return out.done();
    if (
      typeof type === 'string' &&
      (type === 'sevsnpvm' || type === 'tdxvm') &&
      !ref.attestationTypes.includes(type)
    )
      out.fail(
        C.measurement,
        'configuration',
        `the TEE type '${type}' is not one the reference values accept`,
      );
    if (
      out.measurements.measurement === undefined ||
      !ref.measurements.includes(out.measurements.measurement)
    )
      out.fail(
        C.measurement,
        'executables',
        `the launch measurement ${out.measurements.measurement ?? '(none)'} is not a reference value`,
      );
    const compliance = tee['x-ms-compliance-status'] ?? claims['x-ms-compliance-status'];
    if (ref.requireCompliance !== false && compliance !== 'azure-compliant-cvm')
      out.fail(
        C.tcb,
        'hardware',
        `x-ms-compliance-status is '${String(compliance)}', not azure-compliant-cvm`,
      );
    if (ref.policyHashes !== undefined && !ref.policyHashes.includes(String(claims['x-ms-policy-hash'])))
      out.fail(
        C.identity,
        'configuration',
        'the provider appraised under an attestation policy the reference values do not name (x-ms-policy-hash)',
      );
    return out.done();
  }
}
