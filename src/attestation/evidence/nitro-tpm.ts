/**
 * AWS NitroTPM attestation documents (Amazon EC2 User Guide, "NitroTPM attestation document";
 * the format of the AWS Nitro Enclaves attestation document with `nitrotpm_pcrs`): a COSE_Sign1
 * (ES384) over a CBOR map that the Nitro hypervisor signs with a certificate chaining through the
 * document's `cabundle` to the AWS Nitro root. The NitroTPM's PCRs are read from the document,
 * which the Nitro system fills from the instance's NitroTPM.
 */
import { verify, type X509Certificate } from 'node:crypto';
import { z } from 'zod';
import { base64Field, describeZod, sameBytes } from './bytes.ts';
import { type CborValue, decodeCbor, encodeCbor } from './cbor.ts';
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

/** Largest document accepted (the specification bounds the payload at 16 KiB). */
export const NITRO_MAX_DOCUMENT = 20 * 1024;
/** COSE algorithm ES384. */
const COSE_ES384 = -35;
const COSE_SIGN1_TAG = 18;
/** A document older than this is stale; one dated later than a minute ahead is refused. */
export const NITRO_MAX_AGE_MS = 10 * 60_000;

/** The fields of a NitroTPM attestation document. */
export interface NitroTpmDocument {
  readonly moduleId: string;
  readonly timestamp: number;
  readonly digest: string;
  readonly pcrs: ReadonlyMap<number, Buffer>;
  readonly certificate: Buffer;
  readonly cabundle: readonly Buffer[];
  readonly publicKey: Buffer | undefined;
  readonly userData: Buffer | undefined;
  readonly nonce: Buffer | undefined;
  /** The COSE Sig_structure the signature covers. */
  readonly toBeSigned: Buffer;
  /** r ‖ s, 48 bytes each. */
  readonly signature: Buffer;
}

const fail = (m: string): never => {
  throw new EvidenceParseError(`the NitroTPM document: ${m}`);
};
const bytesOf = (v: CborValue | undefined, field: string, min: number, max: number): Buffer => {
  if (!Buffer.isBuffer(v) || v.length < min || v.length > max)
    return fail(`${field} is not a byte string of ${min}–${max} bytes`);
  return v;
};
const optionalBytes = (v: CborValue | undefined, field: string): Buffer | undefined =>
  v === undefined || v === null ? undefined : bytesOf(v, field, 0, 1024);

/**
 * Parse a signed NitroTPM attestation document: COSE_Sign1 (tagged or not) with ES384 in its
 * protected header and the document as payload; the document must carry `nitrotpm_pcrs`.
 * @throws EvidenceParseError naming the field (and offset, for CBOR errors)
 */
export function parseNitroTpmDocument(bytes: Uint8Array): NitroTpmDocument {
  if (bytes.length > NITRO_MAX_DOCUMENT)
    fail(`${bytes.length} bytes is over ${NITRO_MAX_DOCUMENT} (oversized)`);
  let outer = decodeCbor(bytes, 'the COSE_Sign1');
  if (typeof outer === 'object' && outer !== null && 'tag' in outer) {
    if (outer.tag !== COSE_SIGN1_TAG) fail(`tag ${outer.tag} is not COSE_Sign1 (18)`);
    outer = outer.value;
  }
  if (!Array.isArray(outer) || outer.length !== 4) return fail('the COSE_Sign1 is not an array of 4');
  const [protectedBytes, , payload, signature] = outer;
  const prot = decodeCbor(bytesOf(protectedBytes, 'the protected header', 1, 64), 'the protected header');
  if (!(prot instanceof Map) || prot.get(1) !== COSE_ES384)
    fail('the protected header does not name ES384 (alg -35)');
  const body = bytesOf(payload, 'the payload', 1, NITRO_MAX_DOCUMENT);
  const doc = decodeCbor(body, 'the attestation document');
  if (!(doc instanceof Map)) return fail('the payload is not a map');
  const text = (k: string) => {
    const v = doc.get(k);
    if (typeof v !== 'string' || v.length === 0 || v.length > 256) return fail(`${k} is not text`);
    return v;
  };
  const ts = doc.get('timestamp');
  if (typeof ts !== 'number' || ts <= 0) fail('timestamp is not a positive integer');
  if (doc.has('pcrs') && !doc.has('nitrotpm_pcrs'))
    fail('it carries enclave pcrs, not nitrotpm_pcrs: it is a Nitro Enclaves document');
  const rawPcrs = doc.get('nitrotpm_pcrs');
  if (!(rawPcrs instanceof Map) || rawPcrs.size === 0 || rawPcrs.size > 32)
    return fail('nitrotpm_pcrs is not a map of 1–32 PCRs');
  const pcrs = new Map<number, Buffer>();
  for (const [k, v] of rawPcrs) {
    if (typeof k !== 'number' || !Number.isInteger(k) || k < 0 || k > 31)
      fail(`nitrotpm_pcrs has an index '${String(k)}' outside 0–31`);
    const value = bytesOf(v, `nitrotpm_pcrs[${String(k)}]`, 32, 64);
    if (![32, 48, 64].includes(value.length))
      fail(`nitrotpm_pcrs[${String(k)}] is ${value.length} bytes, not 32, 48 or 64`);
    pcrs.set(k as number, value);
  }
  const bundle = doc.get('cabundle');
  if (!Array.isArray(bundle) || bundle.length === 0 || bundle.length > 8)
    return fail('cabundle is not a list of 1–8 certificates');
  const sig = bytesOf(signature, 'the signature', 96, 96);
  const protectedHeader = protectedBytes as Buffer;
  return {
    moduleId: text('module_id'),
    timestamp: ts as number,
    digest: text('digest'),
    pcrs,
    certificate: bytesOf(doc.get('certificate'), 'certificate', 1, 1024 * 4),
    cabundle: bundle.map((c, i) => bytesOf(c, `cabundle[${i}]`, 1, 1024 * 4)),
    publicKey: optionalBytes(doc.get('public_key'), 'public_key'),
    userData: optionalBytes(doc.get('user_data'), 'user_data'),
    nonce: optionalBytes(doc.get('nonce'), 'nonce'),
    // RFC 9052 §4.4: Sig_structure = ["Signature1", body_protected, external_aad, payload].
    toBeSigned: encodeCbor(['Signature1', protectedHeader, Buffer.alloc(0), body]),
    signature: sig,
  };
}

const hexPcr = z.string().regex(/^[0-9a-f]{96}$/, 'must be 96 lowercase hex digits (SHA-384)');

/** NitroTPM reference values in the signed bundle (`platforms.nitro-tpm`): allowed values per PCR. */
export const nitroReferenceSchema = z.strictObject({
  pcrs: z
    .record(z.string().regex(/^(?:[0-9]|[12][0-9]|3[01])$/), z.array(hexPcr).min(1).max(256))
    .refine((r) => Object.keys(r).length > 0, 'must name at least one PCR'),
});

/** The evidence a runner presents: the document `nitro-tpm-attest` returns. */
export const nitroEvidenceSchema = z.strictObject({
  kind: z.literal('nitro-tpm'),
  document: base64Field(NITRO_MAX_DOCUMENT + 1),
});

const CLAIMS: readonly TrustClaim[] = ['hardware', 'instance-identity', 'configuration', 'executables'];

/** Verifies NitroTPM attestation documents against the AWS Nitro root and the signed reference values. */
export class NitroTpmVerifier implements EvidenceVerifier {
  readonly kind = 'nitro-tpm' as const;
  readonly claims = CLAIMS;

  async verify(evidence: unknown, ctx: VerifyContext): Promise<EvidenceAppraisal> {
    const out = new AppraisalBuilder(this.kind, CLAIMS);
    const parsed = nitroEvidenceSchema.safeParse(evidence);
    if (!parsed.success) {
      out.fail(C.malformed, 'hardware', describeZod(parsed.error));
      return out.done();
    }
    let doc: NitroTpmDocument;
    let leaf: X509Certificate;
    let bundle: X509Certificate[];
    try {
      doc = parseNitroTpmDocument(parsed.data.document);
      leaf = parseDerCertificate(doc.certificate, 'certificate');
      bundle = doc.cabundle.map((c, i) => parseDerCertificate(c, `cabundle[${i}]`));
    } catch (e) {
      out.fail(C.malformed, 'hardware', messageOf(e));
      return out.done();
    }
    for (const [i, v] of doc.pcrs) out.measurements[`pcr${i}`] = v.toString('hex');
    out.facts.module_id = doc.moduleId;
    out.facts.timestamp = new Date(doc.timestamp).toISOString();

    // cabundle[0] is the root; only a configured AWS root is trusted, whatever the bundle says.
    try {
      await verifyUnrevokedChain(leaf, bundle, ctx.anchors, ctx.now, 'Nitro signing');
    } catch (e) {
      out.fail(C.chainUntrusted, 'hardware', messageOf(e));
    }
    let ok = false;
    try {
      ok =
        leaf.publicKey.asymmetricKeyDetails?.namedCurve === 'secp384r1' &&
        verify('sha384', doc.toBeSigned, { key: leaf.publicKey, dsaEncoding: 'ieee-p1363' }, doc.signature);
    } catch {
      ok = false;
    }
    if (!ok)
      out.fail(
        C.signature,
        'hardware',
        'the COSE_Sign1 signature does not verify with the document certificate (ES384)',
      );
    if (doc.digest !== 'SHA384')
      out.fail(C.malformed, 'configuration', `digest is '${doc.digest}', not SHA384`);
    const age = ctx.now.getTime() - doc.timestamp;
    if (age > NITRO_MAX_AGE_MS || age < -60_000)
      out.fail(
        C.freshness,
        'instance-identity',
        `the document was made at ${out.facts.timestamp}, not within ${NITRO_MAX_AGE_MS / 60_000} minutes of now`,
      );
    if (doc.nonce === undefined || !sameBytes(doc.nonce, ctx.binding))
      out.fail(C.binding, 'instance-identity', 'nonce is not SHA-256(nonce ‖ runner key thumbprint)');

    const ref = referenceFor(out, nitroReferenceSchema, ctx.reference, 'NitroTPM');
    if (ref === undefined) return out.done();
    for (const [i, allowed] of Object.entries(ref.pcrs)) {
      const got = out.measurements[`pcr${i}`];
      if (got === undefined) out.fail(C.measurement, 'executables', `PCR ${i} is not in the document`);
      else if (!allowed.includes(got))
        out.fail(C.measurement, 'executables', `PCR ${i} ${got} is not a reference value`);
    }
    return out.done();
  }
}
