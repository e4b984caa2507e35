/**
 * Direct DER encoding of the internal CA's leaf certificates. Every approval issues one, so the
 * generic certificate builder (a schema serialiser over a WebCrypto facade) was the slowest step
 * of signing; a leaf has a fixed shape, encoded here in a few dozen lines and signed through the
 * same {@link Signer}. Tests compare the result field by field with what X.509 parsers read.
 */
import { createHash } from 'node:crypto';
import { GatehouseError } from '../common/errors.ts';
import { children, derElement, derOid, readElement } from './der.ts';
import type { Signer } from './signer.ts';

const SEQ = 0x30;

function seq(...parts: Uint8Array[]): Buffer {
  return derElement(SEQ, Buffer.concat(parts));
}

/** UTCTime before 2050, GeneralizedTime after (RFC 5280 §4.1.2.5), whole seconds. */
function time(d: Date): Buffer {
  const iso = d.toISOString();
  const digits = `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`;
  return d.getUTCFullYear() < 2050
    ? derElement(0x17, Buffer.from(digits.slice(2), 'ascii'))
    : derElement(0x18, Buffer.from(digits, 'ascii'));
}

function extension(id: string, critical: boolean, value: Uint8Array): Buffer {
  return seq(derOid(id), ...(critical ? [Buffer.of(0x01, 0x01, 0xff)] : []), derElement(0x04, value));
}

const ECDSA_SHA256 = seq(derOid('1.2.840.10045.4.3.2'));
const P256_SPKI_PREFIX = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex');

/** What a leaf says; the extensions after SAN are (OID, DER value) pairs, in order. */
export interface LeafTemplate {
  serialHex: string;
  /** DER Name of the issuing CA (its certificate's subject). */
  issuerName: Buffer;
  notBefore: Date;
  notAfter: Date;
  spkiDer: Uint8Array;
  subjectKeyId: Buffer;
  authorityKeyId: Buffer;
  identityUri: string;
  /** Non-critical unless `critical` (the precertificate poison is critical). */
  extraExtensions: { oid: string; value: Uint8Array; critical?: boolean }[];
}

/** The DER subject Name of a certificate. */
export function subjectNameOf(certDer: Buffer): Buffer {
  const cert = readElement(certDer, 0, 'certificate');
  const [tbs] = children(cert.contents, 'certificate');
  if (tbs === undefined) throw new GatehouseError('BAD_INPUT', 'the certificate has no TBS');
  const fields = children(tbs.contents, 'certificate TBS');
  // [0] version, serial, signature algorithm, issuer, validity, subject
  const offset = fields[0]?.tag === 0xa0 ? 1 : 0;
  const subject = fields[offset + 4];
  if (subject === undefined) throw new GatehouseError('BAD_INPUT', 'the certificate has no subject');
  return subject.raw;
}

/** SHA-1 of the subjectPublicKey bits (RFC 5280 key identifier method 1). */
export function keyIdOf(spkiDer: Uint8Array): Buffer {
  const spki = readElement(Buffer.from(spkiDer), 0, 'public key');
  const [, bits] = children(spki.contents, 'public key');
  if (bits === undefined || bits.tag !== 0x03)
    throw new GatehouseError('BAD_INPUT', 'the public key is malformed');
  // SHA-1 names a key here; it is an identifier, not a security function.
  return createHash('sha1').update(bits.contents.subarray(1)).digest();
}

/**
 * Encode and sign a leaf certificate; returns its DER.
 * @throws GatehouseError BAD_INPUT for a key that is not P-256
 */
export async function issueLeafDer(t: LeafTemplate, signer: Signer): Promise<Buffer> {
  // An uncompressed P-256 SPKI is one fixed prefix and a 65-byte point; anything else is refused
  // without the cost of a key parse on every approval.
  const spki = Buffer.from(t.spkiDer);
  if (
    spki.length !== P256_SPKI_PREFIX.length + 65 ||
    !spki.subarray(0, P256_SPKI_PREFIX.length).equals(P256_SPKI_PREFIX)
  ) {
    throw new GatehouseError('BAD_INPUT', 'the public key is not an ECDSA P-256 key');
  }
  // DER INTEGER: minimal (no redundant leading zero byte), positive.
  let serial = Buffer.from(t.serialHex, 'hex');
  while (serial.length > 1 && serial[0] === 0 && ((serial[1] ?? 0) & 0x80) === 0) serial = serial.subarray(1);
  const extensions = [
    // keyUsage: digitalSignature only
    extension('2.5.29.15', true, Buffer.of(0x03, 0x02, 0x07, 0x80)),
    // extKeyUsage: codeSigning
    extension('2.5.29.37', false, seq(derOid('1.3.6.1.5.5.7.3.3'))),
    extension('2.5.29.14', false, derElement(0x04, t.subjectKeyId)),
    extension('2.5.29.35', false, seq(derElement(0x80, t.authorityKeyId))),
    // subjectAltName: one URI (GeneralName [6] IA5String), critical because the subject is empty
    extension('2.5.29.17', true, seq(derElement(0x86, Buffer.from(t.identityUri, 'ascii')))),
    ...t.extraExtensions.map((e) => extension(e.oid, e.critical === true, e.value)),
  ];
  const tbs = seq(
    derElement(0xa0, derElement(0x02, Buffer.of(0x02))),
    derElement(0x02, (serial[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.of(0), serial]) : serial),
    ECDSA_SHA256,
    t.issuerName,
    seq(time(t.notBefore), time(t.notAfter)),
    seq(),
    Buffer.from(t.spkiDer),
    derElement(0xa3, seq(...extensions)),
  );
  const signature = await signer.sign(tbs);
  return seq(tbs, ECDSA_SHA256, derElement(0x03, Buffer.concat([Buffer.of(0), signature])));
}
