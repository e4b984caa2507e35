/**
 * Google Cloud Shielded VM vTPM quotes: the vTPM's attestation key is certified by Google (the
 * AK certificate GCE provisions in the vTPM's NV index 0x01C10000 (RSA) or 0x01C10002 (ECC)),
 * chaining to Google's EK/AK root; the certificate names the instance (GCE instance-identity
 * extension 1.3.6.1.4.1.11129.2.1.21: zone, project, instance, and whether it is a production
 * instance). The quote itself is checked by the same TPM quote verifier as every other quote.
 */
import type { X509Certificate } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { Certificate } from '@peculiar/asn1-x509';
import { z } from 'zod';
import { isGatehouseError } from '../../common/errors.ts';
import { akAttributeProblem, appraiseQuote, QUOTE_CHECKS } from '../../tpm/quote.ts';
import { parseTpm2bPublic, publicKeyOf, type TpmtPublic } from '../../tpm/structures.ts';
import { base64Field, describeZod } from './bytes.ts';
import { verifyUnrevokedChain } from './revocation.ts';
import {
  AppraisalBuilder,
  EVIDENCE_CHECKS as C,
  type EvidenceAppraisal,
  EvidenceParseError,
  type EvidenceVerifier,
  messageOf,
  referenceFor,
  type TrustClaim,
  type VerifyContext,
} from './verifier.ts';
import { parseDerCertificate } from './x509-chain.ts';

/** The GCE instance-identity extension of EK and AK certificates. */
export const GCE_INSTANCE_OID = '1.3.6.1.4.1.11129.2.1.21';

/** What the instance-identity extension names. */
export interface GceInstance {
  readonly zone: string;
  readonly projectNumber: string;
  readonly projectId: string;
  readonly instanceId: string;
  readonly instanceName: string;
  readonly securityVersion: string | undefined;
  readonly isProduction: boolean;
}

/** A DER TLV: tag byte, content bounds. */
interface Tlv {
  readonly tag: number;
  readonly start: number;
  readonly end: number;
}

function tlv(buf: Buffer, pos: number, end: number, field: string): Tlv {
  const bad = (m: string): never => {
    throw new EvidenceParseError(`the GCE instance-identity extension: ${field} ${m} at offset ${pos}`);
  };
  if (pos + 2 > end) bad('is truncated');
  const tag = buf[pos] ?? 0;
  let len = buf[pos + 1] ?? 0;
  let start = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n < 1 || n > 3 || start + n > end) bad('has a bad length');
    len = buf.readUIntBE(start, n);
    start += n;
  }
  if (start + len > end) bad('runs past its container');
  return { tag, start, end: start + len };
}

/**
 * Parse the instance-identity extension: SEQUENCE { zone UTF8String, projectNumber INTEGER,
 * projectId UTF8String, instanceId INTEGER, instanceName UTF8String, securityProperties
 * [0] EXPLICIT SEQUENCE { [0] EXPLICIT INTEGER securityVersion, [1] EXPLICIT BOOLEAN
 * isProduction } OPTIONAL }.
 * @throws EvidenceParseError naming the field and offset
 */
export function parseGceInstance(der: Buffer): GceInstance {
  const outer = tlv(der, 0, der.length, 'the SEQUENCE');
  if (outer.tag !== 0x30 || outer.end !== der.length)
    throw new EvidenceParseError('the GCE instance-identity extension is not one SEQUENCE');
  let pos = outer.start;
  const next = (tag: number, field: string): Buffer => {
    const t = tlv(der, pos, outer.end, field);
    if (t.tag !== tag)
      throw new EvidenceParseError(
        `the GCE instance-identity extension: ${field} has tag 0x${t.tag.toString(16)} at offset ${pos}`,
      );
    pos = t.end;
    return der.subarray(t.start, t.end);
  };
  const uint = (b: Buffer, field: string): string => {
    if (b.length === 0 || b.length > 9 || ((b[0] ?? 0) & 0x80) !== 0)
      throw new EvidenceParseError(
        `the GCE instance-identity extension: ${field} is not a non-negative INTEGER`,
      );
    return BigInt(`0x${b.toString('hex')}`).toString();
  };
  const zone = next(0x0c, 'zone').toString('utf8');
  const projectNumber = uint(next(0x02, 'projectNumber'), 'projectNumber');
  const projectId = next(0x0c, 'projectId').toString('utf8');
  const instanceId = uint(next(0x02, 'instanceId'), 'instanceId');
  const instanceName = next(0x0c, 'instanceName').toString('utf8');
  let securityVersion: string | undefined;
  let isProduction = false;
  if (pos < outer.end) {
    let props = tlv(der, pos, outer.end, 'securityProperties');
    if (props.tag === 0xa0) props = tlv(der, props.start, props.end, 'securityProperties');
    if (props.tag !== 0x30)
      throw new EvidenceParseError(
        'the GCE instance-identity extension: securityProperties is not a SEQUENCE',
      );
    let p = props.start;
    while (p < props.end) {
      const field = tlv(der, p, props.end, 'a security property');
      const inner = tlv(der, field.start, field.end, 'a security property value');
      const value = der.subarray(inner.start, inner.end);
      if (field.tag === 0xa0 && inner.tag === 0x02) securityVersion = uint(value, 'securityVersion');
      else if (field.tag === 0xa1 && inner.tag === 0x01 && value.length === 1)
        isProduction = value[0] === 0xff;
      p = field.end;
    }
    pos = tlv(der, pos, outer.end, 'securityProperties').end;
  }
  if (pos !== outer.end)
    throw new EvidenceParseError(
      `the GCE instance-identity extension has bytes after its fields at offset ${pos}`,
    );
  return { zone, projectNumber, projectId, instanceId, instanceName, securityVersion, isProduction };
}

function instanceOf(cert: X509Certificate): GceInstance | undefined {
  const parsed = AsnConvert.parse(cert.raw, Certificate);
  const ext = parsed.tbsCertificate.extensions?.find((e) => e.extnID === GCE_INSTANCE_OID);
  return ext === undefined ? undefined : parseGceInstance(Buffer.from(ext.extnValue.buffer));
}

const hex64 = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits (SHA-256)');

/** GCP reference values in the signed bundle (`platforms.gcp-vtpm`). */
export const gcpReferenceSchema = z.strictObject({
  /** Allowed SHA-256 PCR values per PCR; every PCR named is required in the quote. */
  pcrs: z
    .record(z.string().regex(/^(?:[0-9]|1[0-9]|2[0-3])$/), z.array(hex64).min(1).max(256))
    .refine((r) => Object.keys(r).length > 0, 'must name at least one PCR'),
  /** Project ids a runner may run in; any when absent. */
  projects: z.array(z.string().min(1)).min(1).optional(),
  /** Zones a runner may run in; any when absent. */
  zones: z.array(z.string().min(1)).min(1).optional(),
});

/** The evidence a runner presents: the AK certificate and its chain, the AK, a quote. */
export const gcpEvidenceSchema = z.strictObject({
  kind: z.literal('gcp-vtpm'),
  ak_cert: base64Field(8 * 1024),
  chain: z
    .array(base64Field(8 * 1024))
    .max(3)
    .default([]),
  ak_public: base64Field(2048),
  quote: base64Field(4096),
  signature: base64Field(1024),
  pcrs: z.strictObject({
    sha256: z
      .record(z.string().regex(/^(?:[0-9]|1[0-9]|2[0-3])$/), hex64)
      .refine((r) => Object.keys(r).length > 0, 'must report at least one PCR'),
  }),
});

const CLAIMS: readonly TrustClaim[] = ['hardware', 'instance-identity', 'configuration', 'executables'];

/** How a quote check code maps to the evidence checks and the claim it contraindicates. */
const QUOTE_MAP: Record<string, [string, TrustClaim]> = {
  [QUOTE_CHECKS.malformed]: [C.malformed, 'hardware'],
  [QUOTE_CHECKS.magic]: [C.signature, 'hardware'],
  [QUOTE_CHECKS.type]: [C.signature, 'hardware'],
  [QUOTE_CHECKS.signature]: [C.signature, 'hardware'],
  [QUOTE_CHECKS.hashAlgorithm]: [C.signature, 'hardware'],
  [QUOTE_CHECKS.qualifyingData]: [C.binding, 'instance-identity'],
  [QUOTE_CHECKS.pcrSelection]: [C.measurement, 'configuration'],
  [QUOTE_CHECKS.pcrDigest]: [C.measurement, 'configuration'],
};

/** Verifies GCP Shielded VM vTPM quotes against Google's EK/AK root and the signed reference values. */
export class GcpVtpmVerifier implements EvidenceVerifier {
  readonly kind = 'gcp-vtpm' as const;
  readonly claims = CLAIMS;

  async verify(evidence: unknown, ctx: VerifyContext): Promise<EvidenceAppraisal> {
    const out = new AppraisalBuilder(this.kind, CLAIMS);
    const parsed = gcpEvidenceSchema.safeParse(evidence);
    if (!parsed.success) {
      out.fail(C.malformed, 'hardware', describeZod(parsed.error));
      return out.done();
    }
    const ev = parsed.data;
    let akCert: X509Certificate;
    let chain: X509Certificate[];
    let ak: TpmtPublic;
    let instance: GceInstance | undefined;
    try {
      akCert = parseDerCertificate(ev.ak_cert, 'ak_cert');
      chain = ev.chain.map((c, i) => parseDerCertificate(c, `chain[${i}]`));
      ak = parseTpm2bPublic(ev.ak_public, 'ak_public');
      instance = instanceOf(akCert);
    } catch (e) {
      out.fail(C.malformed, 'hardware', isGatehouseError(e) ? e.message : messageOf(e));
      return out.done();
    }
    for (const [i, v] of Object.entries(ev.pcrs.sha256)) out.measurements[`pcr${i}`] = v;

    // The AK certificate is Google's word that this key lives in this instance's vTPM: it must
    // chain to the trusted root and certify exactly the AK that signed the quote.
    try {
      await verifyUnrevokedChain(akCert, chain, ctx.anchors, ctx.now, 'AK');
    } catch (e) {
      out.fail(C.chainUntrusted, 'hardware', messageOf(e));
    }
    let sameKey = false;
    try {
      const spki = (k: ReturnType<typeof publicKeyOf>) => k.export({ format: 'der', type: 'spki' });
      sameKey = spki(publicKeyOf(ak)).equals(spki(akCert.publicKey));
    } catch {
      sameKey = false;
    }
    if (!sameKey)
      out.fail(C.chainUntrusted, 'hardware', 'the AK certificate certifies another key than ak_public');
    const problem = akAttributeProblem(ak);
    if (problem !== undefined) out.fail(C.chainUntrusted, 'hardware', problem);

    if (instance === undefined)
      out.fail(C.identity, 'instance-identity', 'the AK certificate carries no GCE instance identity');
    else {
      out.facts.instance = { ...instance };
      if (!instance.isProduction)
        out.fail(C.identity, 'instance-identity', 'the AK certificate does not mark a production instance');
    }

    const reported = new Map(
      Object.entries(ev.pcrs.sha256).map(([k, v]) => [Number(k), Buffer.from(v, 'hex')]),
    );
    const appraisal = appraiseQuote(ev.quote, ev.signature, {
      ak,
      qualifyingData: ctx.binding,
      pcrs: [...reported.keys()].sort((a, b) => a - b),
      reported,
    });
    for (const f of appraisal.failures) {
      const [check, claim] = QUOTE_MAP[f.check] ?? [C.signature, 'hardware'];
      out.fail(check, claim, `${f.message} (${f.check})`);
    }

    const ref = referenceFor(out, gcpReferenceSchema, ctx.reference, 'GCP vTPM');
    if (ref === undefined) return out.done();
    for (const [i, allowed] of Object.entries(ref.pcrs)) {
      const got = ev.pcrs.sha256[i];
      if (got === undefined) out.fail(C.measurement, 'executables', `PCR ${i} is not quoted`);
      else if (!allowed.includes(got))
        out.fail(C.measurement, 'executables', `PCR ${i} ${got} is not a reference value`);
    }
    if (instance !== undefined && ref.projects !== undefined && !ref.projects.includes(instance.projectId))
      out.fail(
        C.identity,
        'instance-identity',
        `the instance runs in project '${instance.projectId}', which the reference values do not name`,
      );
    if (instance !== undefined && ref.zones !== undefined && !ref.zones.includes(instance.zone))
      out.fail(
        C.identity,
        'instance-identity',
        `the instance runs in zone '${instance.zone}', which the reference values do not name`,
      );
    return out.done();
  }
}
