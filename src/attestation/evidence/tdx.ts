/**
 * Intel TDX quotes, version 4 (Intel TDX DCAP Quote Generation Library and Quote Verification
 * Library: Quote Format): a 48-byte header and the 584-byte TD quote body (MRTD, RTMR0–3,
 * REPORTDATA, …) signed with ECDSA P-256 by the attestation key; the attestation key is bound
 * by the Quoting Enclave's report, which the PCK certificate signs; the PCK chains through the
 * Platform/Processor CA to Intel's SGX Root CA.
 */
import { createHash, createPublicKey, type KeyObject, verify, type X509Certificate } from 'node:crypto';
import { z } from 'zod';
import { base64Field, describeZod, FieldReader, sameBytes } from './bytes.ts';
import { verifyUnrevokedChain } from './revocation.ts';
import {
  AppraisalBuilder,
  EVIDENCE_CHECKS as C,
  type EvidenceAppraisal,
  type EvidenceVerifier,
  messageOf,
  referenceFor,
  reportData64,
  type TrustClaim,
  type VerifyContext,
} from './verifier.ts';
import { parsePemChain } from './x509-chain.ts';

export const TDX_HEADER_SIZE = 0x30;
export const TDX_BODY_SIZE = 0x248;
/** The quote signature covers the header and the body: bytes 0x0–0x277. */
export const TDX_SIGNED_SIZE = TDX_HEADER_SIZE + TDX_BODY_SIZE;
/** Largest quote accepted (the PCK chain as PEM is a few KiB). */
export const TDX_MAX_QUOTE = 32 * 1024;
export const TDX_TEE_TYPE = 0x81;
/** QE_VENDOR_ID of Intel's Quoting Enclave. */
export const INTEL_QE_VENDOR_ID = '939a7233f79c4ca9940a0db3957f0607';
/** TD_ATTRIBUTES bit 0: DEBUG. */
export const TD_ATTRIBUTES_DEBUG = 1n;
const SGX_REPORT_SIZE = 0x180;
const CERT_DATA_QE_REPORT = 6;
const CERT_DATA_PCK_CHAIN = 5;

/** The fields of a TDX v4 quote this verifier reads. */
export interface TdxQuote {
  readonly version: number;
  readonly attestationKeyType: number;
  readonly teeType: number;
  readonly qeVendorId: Buffer;
  readonly teeTcbSvn: Buffer;
  readonly mrSeam: Buffer;
  readonly tdAttributes: bigint;
  readonly xfam: bigint;
  readonly mrTd: Buffer;
  readonly mrConfigId: Buffer;
  readonly mrOwner: Buffer;
  readonly mrOwnerConfig: Buffer;
  readonly rtmrs: readonly [Buffer, Buffer, Buffer, Buffer];
  readonly reportData: Buffer;
  readonly signed: Buffer;
  /** r ‖ s over {@link signed}, big-endian. */
  readonly signature: Buffer;
  /** The attestation key, x ‖ y. */
  readonly attestationKey: Buffer;
  /** The Quoting Enclave's SGX report (384 bytes), its signature by the PCK key, its auth data. */
  readonly qeReport: Buffer;
  readonly qeReportSignature: Buffer;
  readonly qeAuthData: Buffer;
  readonly pckChainPem: string;
}

/**
 * Parse a TDX v4 quote, bounded: every length is checked against what remains, and nothing may
 * follow the signature data.
 * @throws Error naming the field and offset
 */
export function parseTdxQuote(bytes: Uint8Array): TdxQuote {
  if (bytes.length > TDX_MAX_QUOTE)
    throw new Error(`the TDX quote is ${bytes.length} bytes, over ${TDX_MAX_QUOTE} (oversized)`);
  const r = new FieldReader(bytes, 'the TDX quote');
  const version = r.u16le(0, 'version');
  if (version !== 4) throw new Error(`the TDX quote version at offset 0x0 is ${version}, not 4`);
  const attestationKeyType = r.u16le(2, 'att_key_type');
  if (attestationKeyType !== 2)
    throw new Error(`the TDX quote att_key_type at offset 0x2 is ${attestationKeyType}, not 2 (ECDSA P-256)`);
  const teeType = r.u32le(4, 'tee_type');
  if (teeType !== TDX_TEE_TYPE)
    throw new Error(`the TDX quote tee_type at offset 0x4 is 0x${teeType.toString(16)}, not 0x81 (TDX)`);
  const b = TDX_HEADER_SIZE;
  const sigLen = r.u32le(TDX_SIGNED_SIZE, 'signature data length');
  const sigStart = TDX_SIGNED_SIZE + 4;
  if (sigStart + sigLen !== bytes.length)
    throw new Error(
      `the TDX quote signature data length at offset 0x278 is ${sigLen}, but ${bytes.length - sigStart} bytes follow (${sigStart + sigLen > bytes.length ? 'truncated' : 'trailing bytes'})`,
    );
  const s = r.sub(sigStart, sigLen, 'signature data');
  const certType = s.u16le(128, 'certification data type');
  if (certType !== CERT_DATA_QE_REPORT)
    throw new Error(
      `the TDX quote certification data type at offset 0x${(sigStart + 128).toString(16)} is ${certType}, not 6 (QE report)`,
    );
  const certSize = s.u32le(130, 'certification data size');
  if (134 + certSize !== sigLen)
    throw new Error(`the TDX quote certification data size ${certSize} does not fill the signature data`);
  const q = s.sub(134, certSize, 'QE report certification data');
  const authSize = q.u16le(SGX_REPORT_SIZE + 64, 'QE authentication data size');
  const inner = SGX_REPORT_SIZE + 64 + 2 + authSize;
  const pckType = q.u16le(inner, 'PCK certification data type');
  if (pckType !== CERT_DATA_PCK_CHAIN)
    throw new Error(`the TDX quote PCK certification data type is ${pckType}, not 5 (PCK chain)`);
  const pckSize = q.u32le(inner + 2, 'PCK certification data size');
  if (inner + 6 + pckSize !== certSize)
    throw new Error(
      `the TDX quote PCK certification data size ${pckSize} does not fill the QE certification data`,
    );
  return {
    version,
    attestationKeyType,
    teeType,
    qeVendorId: r.bytes(12, 16, 'qe_vendor_id'),
    teeTcbSvn: r.bytes(b, 16, 'TEE_TCB_SVN'),
    mrSeam: r.bytes(b + 0x10, 48, 'MRSEAM'),
    tdAttributes: r.u64le(b + 0x78, 'TD_ATTRIBUTES'),
    xfam: r.u64le(b + 0x80, 'XFAM'),
    mrTd: r.bytes(b + 0x88, 48, 'MRTD'),
    mrConfigId: r.bytes(b + 0xb8, 48, 'MRCONFIGID'),
    mrOwner: r.bytes(b + 0xe8, 48, 'MROWNER'),
    mrOwnerConfig: r.bytes(b + 0x118, 48, 'MROWNERCONFIG'),
    rtmrs: [
      r.bytes(b + 0x148, 48, 'RTMR0'),
      r.bytes(b + 0x178, 48, 'RTMR1'),
      r.bytes(b + 0x1a8, 48, 'RTMR2'),
      r.bytes(b + 0x1d8, 48, 'RTMR3'),
    ],
    reportData: r.bytes(b + 0x208, 64, 'REPORTDATA'),
    signed: r.bytes(0, TDX_SIGNED_SIZE, 'signed part'),
    signature: s.bytes(0, 64, 'quote signature'),
    attestationKey: s.bytes(64, 64, 'attestation key'),
    qeReport: q.bytes(0, SGX_REPORT_SIZE, 'QE report'),
    qeReportSignature: q.bytes(SGX_REPORT_SIZE, 64, 'QE report signature'),
    qeAuthData: q.bytes(SGX_REPORT_SIZE + 66, authSize, 'QE authentication data'),
    pckChainPem: q.bytes(inner + 6, pckSize, 'PCK certificate chain').toString('latin1'),
  };
}

/** The SGX REPORT body fields of the Quoting Enclave that matter here. */
export function qeReportFields(report: Buffer): {
  mrSigner: Buffer;
  isvProdId: number;
  isvSvn: number;
  reportData: Buffer;
} {
  const r = new FieldReader(report, 'the QE report');
  return {
    mrSigner: r.bytes(0x80, 32, 'MRSIGNER'),
    isvProdId: r.u16le(0x100, 'ISVPRODID'),
    isvSvn: r.u16le(0x102, 'ISVSVN'),
    reportData: r.bytes(0x140, 64, 'REPORTDATA'),
  };
}

function p256Key(point: Buffer): KeyObject {
  return createPublicKey({
    key: {
      kty: 'EC',
      crv: 'P-256',
      x: point.subarray(0, 32).toString('base64url'),
      y: point.subarray(32).toString('base64url'),
    },
    format: 'jwk',
  });
}

function p256Verify(key: KeyObject, data: Buffer, sig: Buffer): boolean {
  try {
    return verify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, sig);
  } catch {
    return false;
  }
}

const hex96 = z.string().regex(/^[0-9a-f]{96}$/, 'must be 96 lowercase hex digits');
const hexList = z.array(hex96).min(1).max(256);

/** TDX reference values in the signed bundle (`platforms.tdx`). */
export const tdxReferenceSchema = z.strictObject({
  /** Allowed MRTDs (the TD's initial image, SHA-384 hex). */
  mrtd: hexList,
  /** Allowed values per RTMR (0–3); an RTMR not listed is not appraised. */
  rtmr: z.partialRecord(z.enum(['0', '1', '2', '3']), hexList).optional(),
  mrconfigid: hexList.optional(),
  /** Allowed TDX modules (MRSEAM). */
  mrseam: hexList.optional(),
  /** The lowest TEE_TCB_SVN accepted, byte by byte (32 hex digits). */
  minTeeTcbSvn: z
    .string()
    .regex(/^[0-9a-f]{32}$/)
    .optional(),
  /** The Quoting Enclave expected: its MRSIGNER, ISVPRODID and lowest ISVSVN. */
  qe: z
    .strictObject({
      mrsigner: z.string().regex(/^[0-9a-f]{64}$/),
      isvprodid: z.number().int().min(0).max(65535),
      minIsvsvn: z.number().int().min(0).max(65535),
    })
    .optional(),
});

/** The evidence a runner presents: the quote as the Quote Generation Library returns it. */
export const tdxEvidenceSchema = z.strictObject({
  kind: z.literal('tdx'),
  quote: base64Field(TDX_MAX_QUOTE + 1),
});

const CLAIMS: readonly TrustClaim[] = [
  'hardware',
  'instance-identity',
  'configuration',
  'executables',
  'runtime-opaque',
];

/** Verifies TDX v4 quotes against Intel's SGX Root CA and the signed reference values. */
export class TdxVerifier implements EvidenceVerifier {
  readonly kind = 'tdx' as const;
  readonly claims = CLAIMS;

  async verify(evidence: unknown, ctx: VerifyContext): Promise<EvidenceAppraisal> {
    const out = new AppraisalBuilder(this.kind, CLAIMS);
    const parsed = tdxEvidenceSchema.safeParse(evidence);
    if (!parsed.success) {
      out.fail(C.malformed, 'hardware', describeZod(parsed.error));
      return out.done();
    }
    let quote: TdxQuote;
    let chain: X509Certificate[];
    let qe: ReturnType<typeof qeReportFields>;
    try {
      quote = parseTdxQuote(parsed.data.quote);
      chain = parsePemChain(quote.pckChainPem, 'the PCK certificate chain');
      qe = qeReportFields(quote.qeReport);
    } catch (e) {
      out.fail(C.malformed, 'hardware', messageOf(e));
      return out.done();
    }
    const m = out.measurements;
    m.mrtd = quote.mrTd.toString('hex');
    quote.rtmrs.forEach((v, i) => {
      m[`rtmr${i}`] = v.toString('hex');
    });
    m.mrseam = quote.mrSeam.toString('hex');
    m.mrconfigid = quote.mrConfigId.toString('hex');
    out.facts.tee_tcb_svn = quote.teeTcbSvn.toString('hex');
    out.facts.qe_svn = qe.isvSvn;

    if (quote.qeVendorId.toString('hex') !== INTEL_QE_VENDOR_ID)
      out.fail(
        C.chainUntrusted,
        'hardware',
        `QE_VENDOR_ID at offset 0xC is ${quote.qeVendorId.toString('hex')}, not Intel's`,
      );
    // PCK ← Platform/Processor CA ← Intel SGX Root CA: the root must be an anchor.
    const [pck, ...intermediates] = chain;
    let pckKey: KeyObject | undefined;
    if (pck !== undefined) {
      try {
        await verifyUnrevokedChain(pck, intermediates, ctx.anchors, ctx.now, 'PCK');
        if (pck.publicKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
          throw new Error('the PCK key is not EC P-256');
        pckKey = pck.publicKey;
      } catch (e) {
        out.fail(C.chainUntrusted, 'hardware', messageOf(e));
      }
    }
    // The PCK key signs the QE's report; the QE report binds the attestation key; the attestation
    // key signs the quote. Each link is checked, so no key can be substituted in between.
    if (pckKey !== undefined && !p256Verify(pckKey, quote.qeReport, quote.qeReportSignature))
      out.fail(C.signature, 'hardware', 'the QE report signature does not verify with the PCK certificate');
    const akHash = createHash('sha256').update(quote.attestationKey).update(quote.qeAuthData).digest();
    if (!sameBytes(qe.reportData, Buffer.concat([akHash, Buffer.alloc(32)])))
      out.fail(
        C.signature,
        'hardware',
        'the QE report does not bind the attestation key (REPORTDATA ≠ SHA-256(key ‖ QE auth data))',
      );
    let ak: KeyObject | undefined;
    try {
      ak = p256Key(quote.attestationKey);
    } catch {
      out.fail(C.malformed, 'hardware', 'the attestation key is not a P-256 point');
    }
    if (ak !== undefined && !p256Verify(ak, quote.signed, quote.signature))
      out.fail(C.signature, 'hardware', 'the quote signature does not verify with the attestation key');

    if (!sameBytes(quote.reportData, reportData64(ctx.binding)))
      out.fail(
        C.binding,
        'instance-identity',
        'REPORTDATA at offset 0x238 is not SHA-256(nonce ‖ runner key thumbprint), zero-padded',
      );
    if ((quote.tdAttributes & TD_ATTRIBUTES_DEBUG) !== 0n)
      out.fail(C.debug, 'runtime-opaque', 'the TD is debuggable (TD_ATTRIBUTES bit 0 at offset 0xA8)');

    const ref = referenceFor(out, tdxReferenceSchema, ctx.reference, 'TDX');
    if (ref === undefined) return out.done();
    const r = ref;
    if (!r.mrtd.includes(m.mrtd))
      out.fail(C.measurement, 'executables', `MRTD ${m.mrtd} is not a reference value`);
    for (const [i, allowed] of Object.entries(r.rtmr ?? {}))
      if (!allowed.includes(m[`rtmr${i}`] ?? ''))
        out.fail(C.measurement, 'executables', `RTMR${i} ${m[`rtmr${i}`]} is not a reference value`);
    if (r.mrconfigid !== undefined && !r.mrconfigid.includes(m.mrconfigid))
      out.fail(C.measurement, 'configuration', `MRCONFIGID ${m.mrconfigid} is not a reference value`);
    if (r.mrseam !== undefined && !r.mrseam.includes(m.mrseam))
      out.fail(C.tcb, 'hardware', `MRSEAM ${m.mrseam} is not an approved TDX module`);
    if (r.minTeeTcbSvn !== undefined) {
      const min = Buffer.from(r.minTeeTcbSvn, 'hex');
      const low = [...min].findIndex((v, i) => (quote.teeTcbSvn[i] ?? 0) < v);
      if (low >= 0)
        out.fail(C.tcb, 'hardware', `TEE_TCB_SVN byte ${low} is below the minimum ${r.minTeeTcbSvn}`);
    }
    if (r.qe !== undefined) {
      if (qe.mrSigner.toString('hex') !== r.qe.mrsigner || qe.isvProdId !== r.qe.isvprodid)
        out.fail(C.identity, 'hardware', 'the Quoting Enclave is not the expected one (MRSIGNER, ISVPRODID)');
      if (qe.isvSvn < r.qe.minIsvsvn)
        out.fail(C.tcb, 'hardware', `the Quoting Enclave ISVSVN ${qe.isvSvn} is below ${r.qe.minIsvsvn}`);
    }
    return out.done();
  }
}
