import { constants, createHash, timingSafeEqual, verify } from 'node:crypto';
import { isGatehouseError } from '../common/errors.ts';
import {
  HASHES,
  parseAttest,
  parseSignature,
  publicKeyOf,
  TPM_ALG,
  TPM_GENERATED_VALUE,
  TPM_ST_ATTEST_QUOTE,
  TPMA_OBJECT,
  type TpmsQuote,
  type TpmtPublic,
  type TpmtSignature,
} from './structures.ts';

/** One failed check: a stable code and a message naming what was wrong. */
export interface CheckFailure {
  readonly check: string;
  readonly message: string;
}

/** Quote-related check codes (documented in docs/attestation.md). */
export const QUOTE_CHECKS = {
  malformed: 'QUOTE_MALFORMED',
  magic: 'QUOTE_MAGIC',
  type: 'QUOTE_TYPE',
  hashAlgorithm: 'QUOTE_HASH_ALGORITHM',
  qualifyingData: 'QUOTE_QUALIFYING_DATA',
  qualifiedSigner: 'QUOTE_QUALIFIED_SIGNER',
  pcrSelection: 'QUOTE_PCR_SELECTION',
  pcrDigest: 'QUOTE_PCR_DIGEST',
  signature: 'QUOTE_SIGNATURE',
} as const;

/** The attributes an attestation key must have: a restricted signing key born in its TPM. */
const AK_REQUIRED =
  TPMA_OBJECT.restricted |
  TPMA_OBJECT.sign |
  TPMA_OBJECT.fixedTPM |
  TPMA_OBJECT.fixedParent |
  TPMA_OBJECT.sensitiveDataOrigin;

/**
 * Why a public area is not an acceptable attestation key, or undefined when it is: restricted,
 * signing and not decrypting, fixedTPM, fixedParent, sensitiveDataOrigin, with a SHA-256 name.
 */
export function akAttributeProblem(ak: TpmtPublic): string | undefined {
  const missing = Object.entries(TPMA_OBJECT)
    .filter(([, bit]) => (AK_REQUIRED & bit) !== 0 && (ak.objectAttributes & bit) === 0)
    .map(([n]) => n);
  if (missing.length > 0)
    return `the AK is not a restricted signing key born in its TPM (missing ${missing.join(', ')})`;
  if ((ak.objectAttributes & TPMA_OBJECT.decrypt) !== 0) return 'the AK is also a decryption key';
  if (ak.nameAlg !== TPM_ALG.SHA256) return 'the AK name algorithm is not SHA-256';
  return undefined;
}

/** What a quote is verified against. */
export interface QuoteExpectations {
  readonly ak: TpmtPublic;
  /** The exact extraData the quote must carry. */
  readonly qualifyingData: Uint8Array;
  /** SHA-256 bank PCR indices the quote must select, exactly. */
  readonly pcrs: readonly number[];
  /** Reported SHA-256 PCR values by index; the digest is recomputed from them. */
  readonly reported: ReadonlyMap<number, Buffer>;
  /**
   * The AK's qualified name, where it is derivable (an AK under a TCG-template EK, see
   * akQualifiedNameUnderEk): the quote's qualifiedSigner must be exactly this. Absent: not compared.
   */
  readonly qualifiedSigner?: Uint8Array | undefined;
}

/** The result of {@link appraiseQuote}: every failed check, and the quote when it parsed. */
export interface QuoteAppraisal {
  readonly failures: CheckFailure[];
  readonly quote?: TpmsQuote;
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

function checkSignature(sig: TpmtSignature, ak: TpmtPublic, message: Uint8Array): boolean {
  const hash = HASHES[sig.hashAlg];
  if (hash === undefined) return false;
  const key = publicKeyOf(ak);
  if (sig.ecdsa !== undefined && ak.ecc !== undefined && sig.sigAlg === TPM_ALG.ECDSA) {
    const size =
      key.asymmetricKeyDetails?.namedCurve === 'secp384r1'
        ? 48
        : key.asymmetricKeyDetails?.namedCurve === 'secp521r1'
          ? 66
          : 32;
    if (sig.ecdsa.r.length > size || sig.ecdsa.s.length > size) return false;
    const pad = (b: Buffer) => Buffer.concat([Buffer.alloc(size - b.length), b]);
    return verify(
      hash.name,
      message,
      { key, dsaEncoding: 'ieee-p1363' },
      Buffer.concat([pad(sig.ecdsa.r), pad(sig.ecdsa.s)]),
    );
  }
  if (sig.rsa !== undefined && ak.rsa !== undefined) {
    if (sig.sigAlg === TPM_ALG.RSASSA)
      return verify(hash.name, message, { key, padding: constants.RSA_PKCS1_PADDING }, sig.rsa);
    if (sig.sigAlg === TPM_ALG.RSAPSS) {
      return verify(
        hash.name,
        message,
        { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO },
        sig.rsa,
      );
    }
  }
  return false;
}

/** Whether a TPMT_SIGNATURE (bytes) over `message` verifies with the key `signer`. */
export function verifyTpmSignature(signature: Uint8Array, signer: TpmtPublic, message: Uint8Array): boolean {
  try {
    return checkSignature(parseSignature(signature), signer, message);
  } catch {
    return false;
  }
}

/**
 * Verify a TPM quote (TPMS_ATTEST + TPMT_SIGNATURE) made by `ak`: the TPM magic and QUOTE type,
 * the signer's qualified name (when expected), SHA-256 only (no SHA-1 bank, no SHA-1 signature), the qualifying data,
 * exactly the required PCR selection, the PCR digest recomputed from the reported values, and
 * the signature. Returns every failed check rather than stopping at the first, so that a refusal
 * explains itself; a structure that does not parse stops the checks that need it.
 */
export function appraiseQuote(
  attestBytes: Uint8Array,
  signatureBytes: Uint8Array,
  exp: QuoteExpectations,
): QuoteAppraisal {
  const failures: CheckFailure[] = [];
  const fail = (check: string, message: string) => failures.push({ check, message });
  let quote: TpmsQuote;
  try {
    quote = parseAttest(attestBytes);
  } catch (e) {
    fail(QUOTE_CHECKS.malformed, isGatehouseError(e) ? e.message : 'the quote does not parse');
    return { failures };
  }
  if (quote.magic !== TPM_GENERATED_VALUE)
    fail(QUOTE_CHECKS.magic, 'the quote does not carry the TPM_GENERATED magic: the TPM did not make it');
  if (quote.type !== TPM_ST_ATTEST_QUOTE) {
    fail(QUOTE_CHECKS.type, `the attestation structure is of type 0x${quote.type.toString(16)}, not a quote`);
    return { failures, quote };
  }
  // qualifiedSigner is the AK's qualified name, which depends on its whole parent chain: where
  // that chain is known (the AK under the TCG EK), the TPM must have named exactly that AK.
  if (exp.qualifiedSigner !== undefined && !equal(quote.qualifiedSigner, exp.qualifiedSigner)) {
    fail(
      QUOTE_CHECKS.qualifiedSigner,
      "the quote's qualifiedSigner is not the qualified name of the AK under the certified EK",
    );
  }
  if (!equal(quote.extraData, exp.qualifyingData)) {
    fail(
      QUOTE_CHECKS.qualifyingData,
      'the quote does not carry SHA-256(nonce ‖ runner key thumbprint) as its qualifying data',
    );
  }
  const banks = quote.pcrSelection.filter((s) => s.pcrs.length > 0);
  const weak = banks.filter((s) => s.hashAlg !== TPM_ALG.SHA256);
  if (weak.length > 0) {
    const names = weak.map((s) => HASHES[s.hashAlg]?.name ?? `0x${s.hashAlg.toString(16)}`);
    fail(QUOTE_CHECKS.hashAlgorithm, `the quote covers a PCR bank other than SHA-256 (${names.join(', ')})`);
  }
  const sha256 = banks.filter((s) => s.hashAlg === TPM_ALG.SHA256);
  const selected = sha256.flatMap((s) => s.pcrs);
  const required = [...exp.pcrs].sort((a, b) => a - b);
  if (sha256.length !== 1 || selected.join(',') !== required.join(',')) {
    fail(
      QUOTE_CHECKS.pcrSelection,
      `the quote selects SHA-256 PCRs [${selected.join(', ')}], not exactly [${required.join(', ')}]`,
    );
  } else {
    // The digest covers the selected PCRs in ascending order, hashed with the signing hash.
    const h = createHash('sha256');
    let complete = true;
    for (const i of selected) {
      const v = exp.reported.get(i);
      if (v === undefined) complete = false;
      else h.update(v);
    }
    if (!complete || !equal(h.digest(), quote.pcrDigest)) {
      fail(QUOTE_CHECKS.pcrDigest, 'the reported PCR values do not hash to the quoted PCR digest');
    }
  }
  let sig: TpmtSignature | undefined;
  try {
    sig = parseSignature(signatureBytes);
  } catch (e) {
    fail(QUOTE_CHECKS.signature, isGatehouseError(e) ? e.message : 'the signature does not parse');
  }
  if (sig !== undefined) {
    if (sig.hashAlg !== TPM_ALG.SHA256) {
      fail(
        QUOTE_CHECKS.hashAlgorithm,
        `the quote is signed with ${HASHES[sig.hashAlg]?.name ?? 'an unknown hash'}, not SHA-256`,
      );
    } else {
      let ok = false;
      try {
        ok = checkSignature(sig, exp.ak, attestBytes);
      } catch {
        ok = false;
      }
      if (!ok) fail(QUOTE_CHECKS.signature, 'the quote signature does not verify with the AK');
    }
  }
  return { failures, quote };
}
