/**
 * Certificate transparency structures (RFC 6962 §3, with the Static CT API's `leaf_index` SCT
 * extension, https://c2sp.org/static-ct-api): signed certificate timestamps, the SCT list that
 * Fulcio-style certificates embed, the precertificate poison, and the exact bytes an SCT signs.
 * Shared by the CA (which embeds SCTs), the CT log (which signs them) and verifiers.
 */
import { createHash } from 'node:crypto';
import { GatehouseError } from '../common/errors.ts';
import { children, derElement, derOid, readElement } from './der.ts';

/** X.509 extension holding the TLS-encoded SignedCertificateTimestampList (RFC 6962 §3.3). */
export const SCT_LIST_OID = '1.3.6.1.4.1.11129.2.4.2';
/** The critical extension that makes a certificate a precertificate (RFC 6962 §3.1); value NULL. */
export const PRECERT_POISON_OID = '1.3.6.1.4.1.11129.2.4.3';
/** EKU of a precertificate signing certificate (RFC 6962 §3.1); refused by gatehouse's log. */
export const PRECERT_SIGNING_EKU = '1.3.6.1.4.1.11129.2.4.4';
/** The DER value of the poison extension: ASN.1 NULL. */
export const POISON_VALUE = Buffer.of(0x05, 0x00);

/**
 * A certificate transparency log the CA submits precertificates to before it issues (RFC 6962
 * §4.2 `add-pre-chain`), in process or over HTTP.
 */
export interface PrecertificateLog {
  /**
   * Log a precertificate: `chain` is the precertificate, then its issuer up to the root (DER).
   * Returns the serialized SCT (RFC 6962 §3.2), which the final certificate embeds.
   */
  addPreChain(chain: readonly Buffer[]): Promise<Buffer>;
}

/** TLS HashAlgorithm sha256 and SignatureAlgorithm ecdsa (RFC 5246 §7.4.1.4.1). */
const HASH_SHA256 = 4;
const SIG_ECDSA = 3;

/** The log entry kinds of RFC 6962 §3.1. */
export type CtEntryType = 'x509' | 'precert';

/** One SCT, decoded. */
export interface Sct {
  version: number;
  /** SHA-256 of the log's DER SubjectPublicKeyInfo. */
  logId: Buffer;
  /** Milliseconds since the epoch. */
  timestamp: bigint;
  /** The raw CtExtensions bytes (signed as they are). */
  extensions: Buffer;
  hashAlgorithm: number;
  signatureAlgorithm: number;
  signature: Buffer;
}

function invalid(message: string): GatehouseError {
  return new GatehouseError('CERTIFICATE_INVALID', message);
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function u24(n: number): Buffer {
  return Buffer.from([(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]);
}

function u64(n: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(n);
  return b;
}

/** `opaque<0..2^16-1>`. */
function vec16(b: Uint8Array): Buffer {
  if (b.length > 0xffff) throw new GatehouseError('BAD_INPUT', 'a TLS vector is longer than 65535 bytes');
  return Buffer.concat([u16(b.length), b]);
}

/** `opaque<1..2^24-1>`. */
function vec24(b: Uint8Array): Buffer {
  if (b.length === 0 || b.length > 0xffffff)
    throw new GatehouseError('BAD_INPUT', 'a TLS vector is empty or longer than 2^24-1 bytes');
  return Buffer.concat([u24(b.length), b]);
}

/** The Static CT API CtExtensions with one `leaf_index` (type 0, 40-bit big-endian). */
export function leafIndexExtension(index: number): Buffer {
  if (!Number.isSafeInteger(index) || index < 0 || index >= 2 ** 40)
    throw new GatehouseError('BAD_INPUT', `leaf index ${index} does not fit in 40 bits`);
  const data = Buffer.alloc(5);
  data.writeUIntBE(index, 0, 5);
  // type leaf_index (0), extension_data<0..2^16-1>: 8 bytes in all
  return Buffer.concat([Buffer.of(0), vec16(data)]);
}

/**
 * The leaf index a CtExtensions field carries, or undefined when it has none.
 * @throws GatehouseError CERTIFICATE_INVALID for malformed or duplicated extensions
 */
export function leafIndexOf(extensions: Uint8Array): number | undefined {
  const b = Buffer.from(extensions);
  let off = 0;
  let found: number | undefined;
  const seen = new Set<number>();
  while (off < b.length) {
    if (off + 3 > b.length) throw invalid('the SCT extensions are truncated');
    const type = b[off] ?? 0;
    const len = b.readUInt16BE(off + 1);
    const data = b.subarray(off + 3, off + 3 + len);
    if (data.length !== len) throw invalid('the SCT extensions are truncated');
    if (seen.has(type)) throw invalid(`the SCT extensions repeat extension type ${type}`);
    seen.add(type);
    if (type === 0) {
      if (len !== 5) throw invalid('the SCT leaf_index extension is not 5 bytes');
      found = data.readUIntBE(0, 5);
    }
    off += 3 + len;
  }
  return found;
}

/** SHA-256 of the issuer's DER SubjectPublicKeyInfo, as a precertificate entry names its issuer. */
export function issuerKeyHash(issuerSpkiDer: Uint8Array): Buffer {
  return createHash('sha256').update(issuerSpkiDer).digest();
}

/**
 * The RFC 6962 TimestampedEntry: what an SCT signs (after version and signature type) and what
 * the Merkle leaf holds (after version and leaf type).
 */
export function timestampedEntry(entry: {
  timestamp: bigint;
  type: CtEntryType;
  /** x509: the certificate DER; precert: the TBSCertificate DER without the poison. */
  signed: Uint8Array;
  /** precert only. */
  issuerKeyHash?: Uint8Array;
  extensions: Uint8Array;
}): Buffer {
  const body =
    entry.type === 'x509'
      ? Buffer.concat([u16(0), vec24(entry.signed)])
      : Buffer.concat([u16(1), Buffer.from(entry.issuerKeyHash ?? []), vec24(entry.signed)]);
  if (entry.type === 'precert' && entry.issuerKeyHash?.length !== 32)
    throw new GatehouseError('BAD_INPUT', 'a precertificate entry needs a 32-byte issuer key hash');
  return Buffer.concat([u64(entry.timestamp), body, vec16(entry.extensions)]);
}

/** The bytes an SCT's signature covers (RFC 6962 §3.2): v1, certificate_timestamp, the entry. */
export function sctSignedData(entry: Parameters<typeof timestampedEntry>[0]): Buffer {
  return Buffer.concat([Buffer.of(0, 0), timestampedEntry(entry)]);
}

/** The RFC 6962 MerkleTreeLeaf (v1, timestamped_entry) whose leaf hash the tree holds. */
export function merkleTreeLeaf(entry: Parameters<typeof timestampedEntry>[0]): Buffer {
  return Buffer.concat([Buffer.of(0, 0), timestampedEntry(entry)]);
}

/** The TLS `digitally-signed` encoding of an ECDSA P-256 / SHA-256 DER signature. */
export function digitallySigned(signature: Uint8Array): Buffer {
  return Buffer.concat([Buffer.of(HASH_SHA256, SIG_ECDSA), vec16(signature)]);
}

/** Serialize one SCT (RFC 6962 §3.2). */
export function encodeSct(sct: Omit<Sct, 'version' | 'hashAlgorithm' | 'signatureAlgorithm'>): Buffer {
  if (sct.logId.length !== 32) throw new GatehouseError('BAD_INPUT', 'an SCT log ID is 32 bytes');
  return Buffer.concat([
    Buffer.of(0),
    sct.logId,
    u64(sct.timestamp),
    vec16(sct.extensions),
    digitallySigned(sct.signature),
  ]);
}

/** The TLS SignedCertificateTimestampList of serialized SCTs (RFC 6962 §3.3). */
export function encodeSctList(scts: readonly Uint8Array[]): Buffer {
  if (scts.length === 0) throw new GatehouseError('BAD_INPUT', 'an SCT list needs at least one SCT');
  return vec16(Buffer.concat(scts.map((s) => vec16(s))));
}

/** The DER value of the SCT list extension: an OCTET STRING around the TLS list. */
export function sctListExtensionValue(scts: readonly Uint8Array[]): Buffer {
  return derElement(0x04, encodeSctList(scts));
}

/**
 * Parse one serialized SCT.
 * @throws GatehouseError CERTIFICATE_INVALID
 */
export function parseSct(sct: Buffer): Sct {
  if (sct.length < 47) throw invalid('an SCT is truncated');
  const extLen = sct.readUInt16BE(41);
  const extEnd = 43 + extLen;
  if (extEnd + 4 > sct.length) throw invalid('an SCT is truncated');
  const sigLen = sct.readUInt16BE(extEnd + 2);
  if (extEnd + 4 + sigLen !== sct.length) throw invalid('an SCT signature length is inconsistent');
  return {
    version: sct[0] ?? -1,
    logId: sct.subarray(1, 33),
    timestamp: sct.readBigUInt64BE(33),
    extensions: sct.subarray(43, extEnd),
    hashAlgorithm: sct[extEnd] ?? -1,
    signatureAlgorithm: sct[extEnd + 1] ?? -1,
    signature: sct.subarray(extEnd + 4),
  };
}

/**
 * Parse the TLS-encoded SignedCertificateTimestampList.
 * @throws GatehouseError CERTIFICATE_INVALID
 */
export function parseSctList(list: Buffer): Sct[] {
  if (list.length < 2) throw invalid('the SCT list is truncated');
  const total = list.readUInt16BE(0);
  if (total + 2 !== list.length) throw invalid('the SCT list length is inconsistent');
  const out: Sct[] = [];
  let off = 2;
  while (off < list.length) {
    if (off + 2 > list.length) throw invalid('the SCT list is truncated');
    const len = list.readUInt16BE(off);
    const sct = list.subarray(off + 2, off + 2 + len);
    if (sct.length !== len) throw invalid('an SCT is truncated');
    off += 2 + len;
    out.push(parseSct(sct));
  }
  return out;
}

/** The parts of a certificate's DER a CT log and a verifier work on, exactly as encoded. */
export interface CertificateParts {
  /** The TBSCertificate, as signed. */
  tbs: Buffer;
  /** Each extension element with its OID and criticality, in order. */
  extensions: { oid: string; critical: boolean; value: Buffer; raw: Buffer }[];
}

function oidText(contents: Buffer): string {
  const arcs: number[] = [];
  let v = 0;
  for (const b of contents) {
    v = v * 128 + (b & 0x7f);
    if ((b & 0x80) === 0) {
      arcs.push(v);
      v = 0;
    }
  }
  const [first = 0, ...rest] = arcs;
  const a = first < 80 ? Math.floor(first / 40) : 2;
  return [a, first - a * 40, ...rest].join('.');
}

/** The TBS fields and the index of the [3] extensions wrapper among them. */
function tbsFields(certDer: Buffer): { tbs: Buffer; fields: ReturnType<typeof children>; extIndex: number } {
  const cert = readElement(certDer, 0, 'certificate');
  if (cert.tag !== 0x30 || cert.raw.length !== certDer.length) throw invalid('the certificate is not DER');
  const [tbs] = children(cert.contents, 'certificate');
  if (tbs === undefined || tbs.tag !== 0x30) throw invalid('the certificate has no TBSCertificate');
  const fields = children(tbs.contents, 'certificate TBS');
  return { tbs: tbs.raw, fields, extIndex: fields.findIndex((f) => f.tag === 0xa3) };
}

/**
 * The TBS of a certificate and its extensions, read from the exact DER bytes.
 * @throws GatehouseError CERTIFICATE_INVALID, BAD_INPUT
 */
export function certificateParts(certDer: Buffer): CertificateParts {
  const { tbs, fields, extIndex } = tbsFields(certDer);
  const wrapper = fields[extIndex];
  if (wrapper === undefined) return { tbs, extensions: [] };
  const [list] = children(wrapper.contents, 'certificate extensions');
  if (list === undefined || list.tag !== 0x30) throw invalid('the certificate extensions are malformed');
  const extensions = children(list.contents, 'certificate extensions').map((e) => {
    const parts = children(e.contents, 'certificate extension');
    const [id, second, third] = parts;
    if (id === undefined || id.tag !== 0x06) throw invalid('a certificate extension has no OID');
    const critical = second?.tag === 0x01 && second.contents[0] === 0xff;
    const value = second?.tag === 0x04 ? second : third;
    if (value === undefined || value.tag !== 0x04) throw invalid('a certificate extension has no value');
    return { oid: oidText(id.contents), critical, value: value.contents, raw: e.raw };
  });
  return { tbs, extensions };
}

/**
 * The TBS of `certDer` with the one extension `oid` removed, re-encoded byte for byte otherwise:
 * the precertificate TBS an SCT signs is the certificate's TBS without the poison (for a
 * precertificate) or without the SCT list (for the final certificate). A schema round trip could
 * change bytes the signature covers, so only the lengths around the removed element change.
 * @throws GatehouseError CERTIFICATE_INVALID when the extension is absent or present twice
 */
export function tbsWithout(certDer: Buffer, oid: string): Buffer {
  const { fields, extIndex } = tbsFields(certDer);
  const wrapper = fields[extIndex];
  if (wrapper === undefined) throw invalid(`the certificate has no extension ${oid}`);
  const [list] = children(wrapper.contents, 'certificate extensions');
  if (list === undefined) throw invalid('the certificate extensions are malformed');
  const exts = children(list.contents, 'certificate extensions');
  const target = derOid(oid);
  const keep = exts.filter((e) => !e.contents.subarray(0, target.length).equals(target));
  if (exts.length - keep.length !== 1)
    throw invalid(`the certificate carries extension ${oid} ${exts.length - keep.length} times, not once`);
  const rebuilt = fields.map((f, i) =>
    i === extIndex ? derElement(0xa3, derElement(0x30, Buffer.concat(keep.map((e) => e.raw)))) : f.raw,
  );
  return derElement(0x30, Buffer.concat(rebuilt));
}

/** The serialized SCTs embedded in a certificate, or undefined when it has no SCT list extension. */
export function embeddedScts(certDer: Buffer): Sct[] | undefined {
  const ext = certificateParts(certDer).extensions.filter((e) => e.oid === SCT_LIST_OID);
  if (ext.length === 0) return undefined;
  if (ext.length > 1) throw invalid('the certificate carries more than one SCT list');
  const inner = readElement(ext[0]?.value ?? Buffer.alloc(0), 0, 'the SCT list extension');
  if (inner.tag !== 0x04) throw invalid('the SCT list extension is not an OCTET STRING');
  return parseSctList(inner.contents);
}
