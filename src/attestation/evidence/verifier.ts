/**
 * The one interface every cloud and TEE evidence verifier implements (SEV-SNP, TDX, Azure
 * Attestation, AWS NitroTPM, GCP Shielded VM vTPM), and the appraisal they all return: an EAR
 * status and trustworthiness vector, the measurements read, and every failed check. The authority
 * turns each appraisal into a submod of the same name in its token.
 */
import { createHash, type X509Certificate } from 'node:crypto';
import type { X509Crl } from '@peculiar/x509';
import type { JSONWebKeySet } from 'jose';
import type { z } from 'zod';
import type { CheckFailure } from '../../tpm/quote.ts';

/** The kinds of platform evidence, each also the name of its EAR submod and policy evidence type. */
export const EVIDENCE_KINDS = ['sev-snp', 'tdx', 'azure', 'nitro-tpm', 'gcp-vtpm'] as const;
export type EvidenceKind = (typeof EVIDENCE_KINDS)[number];

/** Whether `s` names an evidence kind. */
export function isEvidenceKind(s: string): s is EvidenceKind {
  return (EVIDENCE_KINDS as readonly string[]).includes(s);
}

/** Check codes of platform evidence (documented in docs/attestation.md). */
export const EVIDENCE_CHECKS = {
  /** The evidence does not parse: the message names the field and the byte offset. */
  malformed: 'EVIDENCE_MALFORMED',
  /** No verifier is configured for the kind, or a kind was presented twice. */
  kindUnsupported: 'EVIDENCE_KIND_UNSUPPORTED',
  /** A certificate chain does not end in a trusted root, or a certificate is unfit for its place. */
  chainUntrusted: 'EVIDENCE_CHAIN_UNTRUSTED',
  /** The report, quote, document or token signature does not verify. */
  signature: 'EVIDENCE_SIGNATURE',
  /** The evidence does not carry SHA-256(nonce ‖ runner key thumbprint) where its format binds data. */
  binding: 'EVIDENCE_BINDING',
  /** The guest or TD can be debugged (its memory read by the host). */
  debug: 'EVIDENCE_DEBUG',
  /** A measurement is not one of the published reference values (or none are published). */
  measurement: 'EVIDENCE_MEASUREMENT',
  /** The platform's TCB is below the minimum, or does not match its signing certificate. */
  tcb: 'EVIDENCE_TCB',
  /** The platform or instance identity is not the one the certificate or the policy names. */
  identity: 'EVIDENCE_IDENTITY',
  /** The evidence is too old, not yet valid, or expired. */
  freshness: 'EVIDENCE_FRESHNESS',
} as const;

/** The AR4SI trustworthiness claims of an EAR appraisal (draft-ietf-rats-ear). */
export type TrustClaim =
  | 'instance-identity'
  | 'configuration'
  | 'executables'
  | 'file-system'
  | 'hardware'
  | 'runtime-opaque'
  | 'storage-opaque'
  | 'sourced-data';

/** AR4SI values: 2 = affirming ("trustworthy"/"approved"), 96 = contraindicated. */
export const TRUST_AFFIRMING = 2;
export const TRUST_CONTRAINDICATED = 96;

/** A failed check, and the trustworthiness claim it contraindicates. */
export interface EvidenceFailure extends CheckFailure {
  readonly claim: TrustClaim;
}

/** What a verifier returns: never a boolean, always the reasons. */
export interface EvidenceAppraisal {
  readonly kind: EvidenceKind;
  /** `affirming` only when no check failed. */
  readonly status: 'affirming' | 'contraindicated';
  readonly trustworthinessVector: Readonly<Partial<Record<TrustClaim, number>>>;
  /** The measurements read from the evidence (hex), by name: `measurement`, `mrtd`, `pcr8`, … */
  readonly measurements: Readonly<Record<string, string>>;
  /** Facts about the platform worth naming in the token (chip id, TCB, instance). */
  readonly claims: Readonly<Record<string, unknown>>;
  readonly failures: readonly EvidenceFailure[];
}

/** Roots of trust a verifier checks chains and tokens against; each kind reads its own. */
export interface TrustAnchors {
  /** Root certificates (AMD ARK, Intel SGX Root CA, AWS Nitro root, Google EK/AK root). */
  readonly roots: readonly X509Certificate[];
  /** The vendors' CRLs (AMD KDS, Intel PCS): a certificate its issuer revoked is refused. */
  readonly crls?: readonly X509Crl[];
  /** Azure Attestation: the provider's signing keys (its `/certs` document) and issuer URL. */
  readonly jwks?: JSONWebKeySet;
  readonly issuer?: string;
}

/** What every verification is against. */
export interface VerifyContext {
  /** SHA-256(nonce ‖ runner key thumbprint): what the evidence must carry to be fresh and bound. */
  readonly binding: Uint8Array;
  readonly anchors: TrustAnchors;
  /** The kind's reference values from the signed bundle in force; absent: nothing is approved. */
  readonly reference: unknown;
  readonly now: Date;
}

/** One kind of platform evidence: parse it (bounded), verify it, appraise it. */
export interface EvidenceVerifier {
  readonly kind: EvidenceKind;
  /** The trustworthiness claims this kind can affirm. */
  readonly claims: readonly TrustClaim[];
  /** Never throws for bad evidence: every problem is a failure in the appraisal. */
  verify(evidence: unknown, context: VerifyContext): Promise<EvidenceAppraisal>;
}

/**
 * The binding every kind of evidence carries: SHA-256(nonce ‖ RFC 7638 thumbprint bytes of the
 * runner key), the same value a TPM quote carries as its qualifying data.
 */
export function evidenceBinding(nonce: Uint8Array, runnerKeyThumbprint: string): Buffer {
  return createHash('sha256').update(nonce).update(Buffer.from(runnerKeyThumbprint, 'base64url')).digest();
}

/** The 64-byte report-data form of the binding (SEV-SNP REPORT_DATA, TDX REPORTDATA): zero-padded. */
export function reportData64(binding: Uint8Array): Buffer {
  return Buffer.concat([binding, Buffer.alloc(64 - binding.length)]);
}

/** Collects failures while a verifier runs, and builds the appraisal from them. */
export class AppraisalBuilder {
  readonly #kind: EvidenceKind;
  readonly #claims: readonly TrustClaim[];
  readonly failures: EvidenceFailure[] = [];
  readonly measurements: Record<string, string> = {};
  readonly facts: Record<string, unknown> = {};

  constructor(kind: EvidenceKind, claims: readonly TrustClaim[]) {
    this.#kind = kind;
    this.#claims = claims;
  }

  fail(check: string, claim: TrustClaim, message: string): void {
    this.failures.push({ check, claim, message: `${this.#kind}: ${message}` });
  }

  get failed(): boolean {
    return this.failures.length > 0;
  }

  done(): EvidenceAppraisal {
    const vector: Partial<Record<TrustClaim, number>> = {};
    for (const c of this.#claims)
      vector[c] = this.failures.some((f) => f.claim === c) ? TRUST_CONTRAINDICATED : TRUST_AFFIRMING;
    return {
      kind: this.#kind,
      status: this.failures.length === 0 ? 'affirming' : 'contraindicated',
      trustworthinessVector: vector,
      measurements: { ...this.measurements },
      claims: { ...this.facts },
      failures: [...this.failures],
    };
  }
}

/** Error thrown by the bounded parsers: names the field and the byte offset. */
export class EvidenceParseError extends Error {
  override readonly name = 'EvidenceParseError';
}

/** The message of any error, for a failure. */
export function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * The kind's reference values, parsed; when none are published or they do not parse, a
 * measurement failure is recorded and undefined returned: nothing is approved (fail closed).
 */
export function referenceFor<T>(
  out: AppraisalBuilder,
  schema: z.ZodType<T>,
  reference: unknown,
  label: string,
): T | undefined {
  if (reference === undefined) {
    out.fail(
      EVIDENCE_CHECKS.measurement,
      'executables',
      `no ${label} reference values are published: no measurement is approved`,
    );
    return undefined;
  }
  const parsed = schema.safeParse(reference);
  if (!parsed.success) {
    out.fail(
      EVIDENCE_CHECKS.measurement,
      'executables',
      `the ${label} reference values do not parse (${parsed.error.issues[0]?.message ?? 'invalid'})`,
    );
    return undefined;
  }
  return parsed.data;
}
