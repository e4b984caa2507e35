/**
 * Signed certificate timestamps (RFC 6962 §3.2) embedded in Fulcio-style certificates: each
 * promises that a certificate transparency log will publish the precertificate. The signature
 * covers the certificate's TBS without the SCT list extension, and the issuer's key hash.
 */
import {
  createHash,
  createPublicKey,
  verify as cryptoVerify,
  type KeyObject,
  type X509Certificate,
} from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { Certificate } from '@peculiar/asn1-x509';
import { GatehouseError } from '../common/errors.ts';
import { readElement } from '../signing/der.ts';
import { isWithin, type TrustedLog } from '../signing/trust-root.ts';

const SCT_LIST_OID = '1.3.6.1.4.1.11129.2.4.2';

/** One SCT as it appears in the list. */
export interface Sct {
  version: number;
  logId: Buffer;
  /** Milliseconds since the epoch. */
  timestamp: bigint;
  extensions: Buffer;
  hashAlgorithm: number;
  signatureAlgorithm: number;
  signature: Buffer;
}

function invalid(message: string): GatehouseError {
  return new GatehouseError('CERTIFICATE_INVALID', message);
}

/** Parse the TLS-encoded SignedCertificateTimestampList. */
export function parseSctList(list: Buffer): Sct[] {
  const total = list.readUInt16BE(0);
  if (total + 2 !== list.length) throw invalid('the SCT list length is inconsistent');
  const out: Sct[] = [];
  let off = 2;
  while (off < list.length) {
    if (off + 2 > list.length) throw invalid('the SCT list is truncated');
    const len = list.readUInt16BE(off);
    const sct = list.subarray(off + 2, off + 2 + len);
    if (sct.length !== len || len < 47) throw invalid('an SCT is truncated');
    off += 2 + len;
    const extLen = sct.readUInt16BE(41);
    const extEnd = 43 + extLen;
    if (extEnd + 4 > sct.length) throw invalid('an SCT is truncated');
    const sigLen = sct.readUInt16BE(extEnd + 2);
    if (extEnd + 4 + sigLen !== sct.length) throw invalid('an SCT signature length is inconsistent');
    out.push({
      version: sct[0] ?? -1,
      logId: sct.subarray(1, 33),
      timestamp: sct.readBigUInt64BE(33),
      extensions: sct.subarray(43, extEnd),
      hashAlgorithm: sct[extEnd] ?? -1,
      signatureAlgorithm: sct[extEnd + 1] ?? -1,
      signature: sct.subarray(extEnd + 4),
    });
  }
  return out;
}

function u24(n: number): Buffer {
  return Buffer.from([(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]);
}

function logKey(log: TrustedLog): KeyObject | undefined {
  try {
    const type = log.keyDetails.startsWith('PKCS1') ? 'pkcs1' : 'spki';
    return createPublicKey({ key: log.spkiDer, format: 'der', type });
  } catch {
    return undefined;
  }
}

/**
 * Verify the SCTs of `leaf` (issued by `issuer`) against the trusted CT logs: at least
 * `threshold` must verify with a trusted log key valid at the SCT's time.
 * @throws GatehouseError CERTIFICATE_INVALID
 */
export function verifyScts(
  leaf: X509Certificate,
  issuer: X509Certificate,
  ctlogs: readonly TrustedLog[],
  threshold = 1,
): number {
  const cert = AsnConvert.parse(leaf.raw, Certificate);
  const extensions = cert.tbsCertificate.extensions ?? [];
  const sctExt = extensions.find((e) => e.extnID === SCT_LIST_OID);
  if (sctExt === undefined) throw invalid('the signing certificate carries no signed certificate timestamps');
  const inner = readElement(Buffer.from(sctExt.extnValue.buffer), 0, 'the SCT list extension');
  if (inner.tag !== 0x04) throw invalid('the SCT list extension is not an OCTET STRING');
  const scts = parseSctList(inner.contents);
  // The precertificate the log signed: the same TBS without the SCT list.
  cert.tbsCertificate.extensions = extensions.filter((e) => e.extnID !== SCT_LIST_OID) as never;
  const tbs = Buffer.from(AsnConvert.serialize(cert.tbsCertificate));
  const issuerKeyHash = createHash('sha256')
    .update(issuer.publicKey.export({ format: 'der', type: 'spki' }))
    .digest();
  let verified = 0;
  for (const sct of scts) {
    if (sct.version !== 0) continue;
    const log = ctlogs.find((l) => l.logId.equals(sct.logId));
    if (log === undefined) continue;
    if (!isWithin(log.validFor, new Date(Number(sct.timestamp)))) continue;
    const key = logKey(log);
    if (key === undefined) continue;
    const ts = Buffer.alloc(8);
    ts.writeBigUInt64BE(sct.timestamp);
    const extLen = Buffer.alloc(2);
    extLen.writeUInt16BE(sct.extensions.length);
    const signed = Buffer.concat([
      Buffer.of(0, 0), // version v1, signature type certificate_timestamp
      ts,
      Buffer.of(0, 1), // entry type precert_entry
      issuerKeyHash,
      u24(tbs.length),
      tbs,
      extLen,
      sct.extensions,
    ]);
    let ok = false;
    try {
      ok = cryptoVerify('sha256', signed, key, sct.signature);
    } catch {
      ok = false;
    }
    if (ok) verified++;
  }
  if (verified < threshold) {
    throw invalid(
      `${verified} of ${scts.length} signed certificate timestamps verify with a trusted CT log; ${threshold} required`,
    );
  }
  return verified;
}
