/**
 * AMD SEV-SNP attestation reports (SEV Secure Nested Paging Firmware ABI Specification,
 * ATTESTATION_REPORT structure, report versions 2, 3 and 5): the report is 0x4A0 bytes, signed
 * with ECDSA P-384 / SHA-384 over bytes 0x0–0x29F by the chip's VCEK, whose certificate chains
 * VCEK ← ASK ← ARK (RSA-PSS, SHA-384) to AMD's root for the product line.
 */
import { verify, type X509Certificate } from 'node:crypto';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { Certificate } from '@peculiar/asn1-x509';
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
import { parseDerCertificate } from './x509-chain.ts';

/** Size of ATTESTATION_REPORT in bytes. */
export const SNP_REPORT_SIZE = 0x4a0;
/** The signature covers bytes 0x0 up to (not including) this offset. */
export const SNP_SIGNED_SIZE = 0x2a0;
const SUPPORTED_VERSIONS = [2, 3, 5];
/** GUEST POLICY bit 19: DEBUG. */
export const SNP_POLICY_DEBUG = 1n << 19n;
/** GUEST POLICY bit 18: MIGRATE_MA (a migration agent may be associated). */
export const SNP_POLICY_MIGRATE_MA = 1n << 18n;

/** AMD's VCEK extension OIDs (the KDS VCEK certificate specification). */
export const VCEK_OIDS = {
  blSpl: '1.3.6.1.4.1.3704.1.3.1',
  teeSpl: '1.3.6.1.4.1.3704.1.3.2',
  snpSpl: '1.3.6.1.4.1.3704.1.3.3',
  ucodeSpl: '1.3.6.1.4.1.3704.1.3.8',
  fmcSpl: '1.3.6.1.4.1.3704.1.3.9',
  hwId: '1.3.6.1.4.1.3704.1.4',
  productName: '1.3.6.1.4.1.3704.1.2',
  /** The cloud provider a VLEK was issued to. */
  cspId: '1.3.6.1.4.1.3704.1.5',
} as const;

/** The security patch levels of a TCB_VERSION. */
export interface SnpTcb {
  readonly bootloader: number;
  readonly tee: number;
  readonly snp: number;
  readonly microcode: number;
  readonly fmc?: number;
}

/** The fields of an ATTESTATION_REPORT this verifier reads. */
export interface SnpReport {
  readonly version: number;
  readonly guestSvn: number;
  readonly policy: bigint;
  readonly vmpl: number;
  readonly signatureAlgo: number;
  readonly currentTcb: SnpTcb;
  readonly signerInfo: { readonly signingKey: number; readonly maskChipKey: boolean };
  readonly reportData: Buffer;
  readonly measurement: Buffer;
  readonly hostData: Buffer;
  readonly idKeyDigest: Buffer;
  readonly reportId: Buffer;
  readonly reportedTcb: SnpTcb;
  readonly cpuidFamily: number | undefined;
  readonly chipId: Buffer;
  readonly launchTcb: SnpTcb;
  /** Bytes 0x0–0x29F, what the signature covers. */
  readonly signed: Buffer;
  /** r ‖ s, 48 bytes each, big-endian (the report holds them little-endian in 72-byte fields). */
  readonly signature: Buffer;
}

/** Decode a TCB_VERSION: Milan/Genoa layout, or Turin's (CPUID family 0x1A) with an FMC level. */
export function decodeTcb(raw: bigint, family: number | undefined): SnpTcb {
  const b = (i: number) => Number((raw >> BigInt(8 * i)) & 0xffn);
  if (family === 0x1a) return { fmc: b(0), bootloader: b(1), tee: b(2), snp: b(3), microcode: b(7) };
  return { bootloader: b(0), tee: b(1), snp: b(6), microcode: b(7) };
}

/** Encode a TCB_VERSION (the inverse of {@link decodeTcb}). */
export function encodeTcb(t: SnpTcb, family?: number): bigint {
  const bytes =
    family === 0x1a
      ? [t.fmc ?? 0, t.bootloader, t.tee, t.snp, 0, 0, 0, t.microcode]
      : [t.bootloader, t.tee, 0, 0, 0, 0, t.snp, t.microcode];
  return bytes.reduce((acc, v, i) => acc | (BigInt(v) << BigInt(8 * i)), 0n);
}

function leToBe48(le: Buffer, field: string): Buffer {
  // The 72-byte little-endian field holds a 384-bit value: its top 24 bytes must be zero.
  if (le.subarray(48).some((x) => x !== 0))
    throw new Error(`${field} of the report signature is wider than 384 bits`);
  return Buffer.from(le.subarray(0, 48)).reverse();
}

/**
 * Parse an ATTESTATION_REPORT: exactly 0x4A0 bytes, version 2, 3 or 5, reserved signer bits zero.
 * @throws Error naming the field and offset that is wrong
 */
export function parseSnpReport(bytes: Uint8Array): SnpReport {
  if (bytes.length !== SNP_REPORT_SIZE)
    throw new Error(
      `the SEV-SNP report is ${bytes.length} bytes, not ${SNP_REPORT_SIZE} (${bytes.length < SNP_REPORT_SIZE ? 'truncated' : 'oversized'})`,
    );
  const r = new FieldReader(bytes, 'the SEV-SNP report');
  const version = r.u32le(0x0, 'VERSION');
  if (!SUPPORTED_VERSIONS.includes(version))
    throw new Error(`the SEV-SNP report VERSION at offset 0x0 is ${version}, not 2, 3 or 5`);
  const info = r.u32le(0x48, 'signer info');
  if ((info & ~0x1f) !== 0)
    throw new Error('the SEV-SNP report has reserved signer-info bits set at offset 0x48');
  const family = version >= 3 ? r.u8(0x188, 'CPUID_FAM_ID') : undefined;
  const sig = r.bytes(SNP_SIGNED_SIZE, 0x90, 'SIGNATURE');
  // The rest of the 512-byte signature field is reserved and not signed: it must be zero.
  if (
    r.bytes(SNP_SIGNED_SIZE + 0x90, SNP_REPORT_SIZE - SNP_SIGNED_SIZE - 0x90, 'reserved').some((b) => b !== 0)
  )
    throw new Error('the SEV-SNP report has non-zero reserved bytes after the signature (offset 0x330)');
  return {
    version,
    guestSvn: r.u32le(0x4, 'GUEST_SVN'),
    policy: r.u64le(0x8, 'POLICY'),
    vmpl: r.u32le(0x30, 'VMPL'),
    signatureAlgo: r.u32le(0x34, 'SIGNATURE_ALGO'),
    currentTcb: decodeTcb(r.u64le(0x38, 'CURRENT_TCB'), family),
    signerInfo: { signingKey: (info >> 2) & 7, maskChipKey: (info & 2) !== 0 },
    reportData: r.bytes(0x50, 64, 'REPORT_DATA'),
    measurement: r.bytes(0x90, 48, 'MEASUREMENT'),
    hostData: r.bytes(0xc0, 32, 'HOST_DATA'),
    idKeyDigest: r.bytes(0xe0, 48, 'ID_KEY_DIGEST'),
    reportId: r.bytes(0x140, 32, 'REPORT_ID'),
    reportedTcb: decodeTcb(r.u64le(0x180, 'REPORTED_TCB'), family),
    cpuidFamily: family,
    chipId: r.bytes(0x1a0, 64, 'CHIP_ID'),
    launchTcb: decodeTcb(r.u64le(0x1f0, 'LAUNCH_TCB'), family),
    signed: r.bytes(0, SNP_SIGNED_SIZE, 'signed part'),
    signature: Buffer.concat([
      leToBe48(sig.subarray(0, 72), 'R at offset 0x2A0'),
      leToBe48(sig.subarray(72, 144), 'S at offset 0x2E8'),
    ]),
  };
}

/** The TCB and chip id a VCEK certificate was issued for (its AMD extensions). */
export interface VcekFacts {
  readonly tcb: Partial<SnpTcb>;
  readonly hwId: Buffer | undefined;
  readonly productName: string | undefined;
  /** A VLEK's cloud service provider. */
  readonly cspId: string | undefined;
}

/** Read a VCEK certificate's AMD extensions: SPLs as INTEGERs, the hwID as 64 raw (or wrapped) bytes. */
export function vcekFacts(cert: X509Certificate): VcekFacts {
  const parsed = AsnConvert.parse(cert.raw, Certificate);
  const ext = new Map(
    (parsed.tbsCertificate.extensions ?? []).map((e) => [e.extnID, Buffer.from(e.extnValue.buffer)]),
  );
  const int = (oid: string): number | undefined => {
    const v = ext.get(oid);
    if (v === undefined) return undefined;
    // A DER INTEGER of one or two content bytes (0–255, with a leading zero above 127).
    if (v[0] !== 0x02 || v[1] === undefined || v[1] < 1 || v[1] > 2 || v.length !== 2 + v[1])
      throw new Error(`the VCEK extension ${oid} is not a small INTEGER`);
    const n = v.readUIntBE(2, v[1]);
    if (n > 255) throw new Error(`the VCEK extension ${oid} is out of range`);
    return n;
  };
  let hwId = ext.get(VCEK_OIDS.hwId);
  if (hwId !== undefined && hwId.length !== 64)
    hwId = Buffer.from(AsnConvert.parse(hwId, OctetString).buffer);
  if (hwId !== undefined && hwId.length !== 64) throw new Error('the VCEK hwID extension is not 64 bytes');
  const name = ext.get(VCEK_OIDS.productName);
  const csp = ext.get(VCEK_OIDS.cspId);
  const tcb: { bootloader?: number; tee?: number; snp?: number; microcode?: number; fmc?: number } = {};
  const set = (k: keyof SnpTcb, oid: string) => {
    const v = int(oid);
    if (v !== undefined) tcb[k] = v;
  };
  set('bootloader', VCEK_OIDS.blSpl);
  set('tee', VCEK_OIDS.teeSpl);
  set('snp', VCEK_OIDS.snpSpl);
  set('microcode', VCEK_OIDS.ucodeSpl);
  set('fmc', VCEK_OIDS.fmcSpl);
  return {
    tcb,
    hwId,
    // IA5String (tag 0x16) with a short length.
    productName: name?.[0] === 0x16 ? name.subarray(2).toString('ascii') : undefined,
    cspId: csp?.[0] === 0x16 ? csp.subarray(2).toString('ascii') : undefined,
  };
}

const hex96 = z.string().regex(/^[0-9a-f]{96}$/, 'must be 96 lowercase hex digits');
const spl = z.number().int().min(0).max(255);

/** SEV-SNP reference values in the signed bundle (`platforms.sev-snp`). */
export const snpReferenceSchema = z.strictObject({
  /** Allowed launch MEASUREMENTs (SHA-384 hex). */
  measurements: z.array(hex96).min(1).max(256),
  /** The lowest REPORTED_TCB accepted, level by level. */
  minTcb: z
    .strictObject({ bootloader: spl, tee: spl, snp: spl, microcode: spl, fmc: spl.optional() })
    .optional(),
  /** Accept a guest policy that lets a migration agent be associated (default: refuse). */
  allowMigrationAgent: z.boolean().optional(),
  /** The VMPLs a report may come from (default: 0 only). */
  vmpls: z.array(z.number().int().min(0).max(3)).min(1).optional(),
  /**
   * Cloud providers whose VLEK may sign reports (the VLEK's CSP id, e.g. the provider's name); a
   * VLEK-signed report names the provider, not the chip. Absent: VCEK only.
   */
  vlekCspIds: z.array(z.string().min(1).max(64)).min(1).optional(),
});
export type SnpReference = z.infer<typeof snpReferenceSchema>;

/** The evidence a runner presents: the report and the VCEK with its ASK (the ARK is an anchor). */
export const snpEvidenceSchema = z.strictObject({
  kind: z.literal('sev-snp'),
  report: base64Field(SNP_REPORT_SIZE * 2),
  vcek: base64Field(16 * 1024),
  /** The ASK, and optionally the ARK again (ignored unless it is a trusted anchor). */
  chain: z
    .array(base64Field(16 * 1024))
    .min(1)
    .max(3),
});

const CLAIMS: readonly TrustClaim[] = [
  'hardware',
  'instance-identity',
  'configuration',
  'executables',
  'runtime-opaque',
];

const TCB_LEVELS = ['bootloader', 'tee', 'snp', 'microcode', 'fmc'] as const;

/** Verifies SEV-SNP attestation reports against AMD's ARK anchors and the signed reference values. */
export class SevSnpVerifier implements EvidenceVerifier {
  readonly kind = 'sev-snp' as const;
  readonly claims = CLAIMS;

  async verify(evidence: unknown, ctx: VerifyContext): Promise<EvidenceAppraisal> {
    const out = new AppraisalBuilder(this.kind, CLAIMS);
    const parsed = snpEvidenceSchema.safeParse(evidence);
    if (!parsed.success) {
      out.fail(C.malformed, 'hardware', describeZod(parsed.error));
      return out.done();
    }
    let report: SnpReport;
    let vcek: X509Certificate;
    let chain: X509Certificate[];
    try {
      report = parseSnpReport(parsed.data.report);
      vcek = parseDerCertificate(parsed.data.vcek, 'vcek');
      chain = parsed.data.chain.map((c, i) => parseDerCertificate(c, `chain[${i}]`));
    } catch (e) {
      out.fail(C.malformed, 'hardware', messageOf(e));
      return out.done();
    }
    out.measurements.measurement = report.measurement.toString('hex');
    out.facts.report_version = report.version;
    out.facts.chip_id = report.chipId.toString('hex');
    out.facts.reported_tcb = { ...report.reportedTcb };
    out.facts.vmpl = report.vmpl;
    out.facts.guest_svn = report.guestSvn;
    out.facts.host_data = report.hostData.toString('hex');

    // Who signed: a VCEK (a chip-unique key AMD certifies), or a VLEK (a key AMD certifies for a
    // cloud provider, chaining VLEK ← ASVK ← ARK) when the reference values name the provider.
    if (report.signatureAlgo !== 1)
      out.fail(
        C.signature,
        'hardware',
        `SIGNATURE_ALGO at offset 0x34 is ${report.signatureAlgo}, not 1 (ECDSA P-384 with SHA-384)`,
      );
    const vlek = report.signerInfo.signingKey === 1;
    const allowedCsps = snpReferenceSchema.safeParse(ctx.reference).data?.vlekCspIds;
    if (report.signerInfo.signingKey > 1)
      out.fail(
        C.chainUntrusted,
        'hardware',
        `the report is signed by signing key ${report.signerInfo.signingKey} (SIGNING_KEY at 0x48), not a VCEK (0) or VLEK (1)`,
      );
    let chainOk = false;
    try {
      await verifyUnrevokedChain(vcek, chain, ctx.anchors, ctx.now, 'VCEK');
      chainOk = true;
    } catch (e) {
      out.fail(C.chainUntrusted, 'hardware', messageOf(e));
    }
    if (
      vcek.publicKey.asymmetricKeyType !== 'ec' ||
      vcek.publicKey.asymmetricKeyDetails?.namedCurve !== 'secp384r1'
    )
      out.fail(C.chainUntrusted, 'hardware', 'the VCEK is not an EC P-384 key');
    else if (report.signatureAlgo === 1) {
      let ok = false;
      try {
        ok = verify(
          'sha384',
          report.signed,
          { key: vcek.publicKey, dsaEncoding: 'ieee-p1363' },
          report.signature,
        );
      } catch {
        ok = false;
      }
      if (!ok) out.fail(C.signature, 'hardware', 'the report signature does not verify with the VCEK');
    }

    // The VCEK is issued for one chip at one TCB: the report must name both.
    if (chainOk) {
      try {
        const facts = vcekFacts(vcek);
        if (facts.productName !== undefined) out.facts.product = facts.productName;
        for (const level of TCB_LEVELS) {
          const want = facts.tcb[level];
          const got = report.reportedTcb[level];
          if (want !== undefined && got !== want)
            out.fail(
              C.tcb,
              'hardware',
              `REPORTED_TCB ${level} is ${got ?? 'absent'} but the VCEK was issued for ${want}`,
            );
        }
        if (facts.tcb.snp === undefined || facts.tcb.microcode === undefined)
          out.fail(C.tcb, 'hardware', 'the VCEK does not name the TCB it was issued for');
        if (vlek) {
          // A VLEK is the provider's, not the chip's: it must say whose, and be allowed.
          if (facts.cspId !== undefined) out.facts.csp_id = facts.cspId;
          if (facts.hwId !== undefined || facts.cspId === undefined)
            out.fail(
              C.chainUntrusted,
              'hardware',
              'SIGNING_KEY says VLEK but the certificate is not a VLEK (no CSP id)',
            );
          else if (allowedCsps === undefined || !allowedCsps.includes(facts.cspId))
            out.fail(
              C.identity,
              'instance-identity',
              `the VLEK of provider '${facts.cspId}' is not one the reference values allow`,
            );
        } else if (
          !report.signerInfo.maskChipKey &&
          (facts.hwId === undefined || !sameBytes(facts.hwId, report.chipId))
        )
          out.fail(C.identity, 'instance-identity', 'CHIP_ID does not match the hwID of the VCEK');
      } catch (e) {
        out.fail(C.chainUntrusted, 'hardware', messageOf(e));
      }
    }
    if (report.signerInfo.maskChipKey && !vlek)
      out.fail(
        C.identity,
        'instance-identity',
        'the host masked CHIP_ID (MASK_CHIP_KEY): the report names no chip',
      );

    // Freshness and the runner key: REPORT_DATA is the binding, zero-padded to 64 bytes.
    if (!sameBytes(report.reportData, reportData64(ctx.binding)))
      out.fail(
        C.binding,
        'instance-identity',
        'REPORT_DATA at offset 0x50 is not SHA-256(nonce ‖ runner key thumbprint), zero-padded',
      );
    // A debuggable guest's memory is readable by the host: no confidentiality, no integrity.
    if ((report.policy & SNP_POLICY_DEBUG) !== 0n)
      out.fail(C.debug, 'runtime-opaque', 'the guest policy allows debugging (POLICY bit 19 at offset 0x8)');

    const ref = referenceFor(out, snpReferenceSchema, ctx.reference, 'SEV-SNP');
    if (ref === undefined) return out.done();
    if (!ref.measurements.includes(out.measurements.measurement))
      out.fail(
        C.measurement,
        'executables',
        `MEASUREMENT ${out.measurements.measurement} is not a reference value`,
      );
    if ((report.policy & SNP_POLICY_MIGRATE_MA) !== 0n && ref.allowMigrationAgent !== true)
      out.fail(
        C.debug,
        'configuration',
        'the guest policy allows a migration agent (POLICY bit 18), which the reference values do not',
      );
    const vmpls = ref.vmpls ?? [0];
    if (!vmpls.includes(report.vmpl))
      out.fail(
        C.measurement,
        'configuration',
        `the report comes from VMPL ${report.vmpl}, not one of ${vmpls.join(', ')}`,
      );
    const min = ref.minTcb;
    if (min !== undefined)
      for (const level of TCB_LEVELS) {
        const want = min[level];
        const got = report.reportedTcb[level];
        if (want !== undefined && (got ?? -1) < want)
          out.fail(
            C.tcb,
            'hardware',
            `REPORTED_TCB ${level} ${got ?? 'absent'} is below the minimum ${want}`,
          );
      }
    return out.done();
  }
}
