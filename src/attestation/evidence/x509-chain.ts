import { X509Certificate } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { Certificate, id_ce_keyUsage, KeyUsage, KeyUsageFlags } from '@peculiar/asn1-x509';
import { EvidenceParseError, messageOf } from './verifier.ts';

/** Longest chain accepted from a leaf to a root (leaf, intermediates, root). */
const MAX_DEPTH = 5;
/** Largest certificate accepted, in bytes. */
export const MAX_CERT_BYTES = 16 * 1024;

/** Why a chain was refused. */
export class ChainError extends Error {
  override readonly name = 'ChainError';
}

/**
 * Parse one DER certificate, refusing trailing bytes and oversized input.
 * @throws EvidenceParseError naming `field`
 */
export function parseDerCertificate(der: Uint8Array, field: string): X509Certificate {
  if (der.length === 0 || der.length > MAX_CERT_BYTES)
    throw new EvidenceParseError(`${field} is ${der.length} bytes, not a certificate of 1–${MAX_CERT_BYTES}`);
  let cert: X509Certificate;
  try {
    AsnConvert.parse(der, Certificate);
    cert = new X509Certificate(Buffer.from(der));
  } catch (e) {
    throw new EvidenceParseError(`${field} is not a DER X.509 certificate (${messageOf(e)})`);
  }
  if (cert.raw.length !== der.length) throw new EvidenceParseError(`${field} has bytes after its DER`);
  return cert;
}

/**
 * Parse concatenated PEM certificates (TDX's PCK chain), at most `max` of them.
 * @throws EvidenceParseError naming `field` and the certificate's position
 */
export function parsePemChain(text: string, field: string, max = MAX_DEPTH): X509Certificate[] {
  // Only base64 and line breaks inside, only line breaks (and NUL padding) between, canonical
  // base64: every byte of the chain either means something or is refused.
  const pem = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\r\n]+?)-----END CERTIFICATE-----/g;
  const blocks = [...text.matchAll(pem)];
  if (!/^[\r\n]*\0*$/.test(text.replace(pem, '')))
    throw new EvidenceParseError(`${field} holds text that is not a PEM certificate`);
  if (blocks.length === 0 || blocks.length > max)
    throw new EvidenceParseError(`${field} holds ${blocks.length} certificates, not 1–${max}`);
  return blocks.map((b, i) => {
    const b64 = (b[1] ?? '').replace(/[\r\n]+/g, '');
    const der = Buffer.from(b64, 'base64');
    if (der.toString('base64') !== b64)
      throw new EvidenceParseError(`${field} certificate ${i} is not canonical base64`);
    return parseDerCertificate(der, `${field} certificate ${i}`);
  });
}

function keyUsageOf(cert: X509Certificate): number | undefined {
  const parsed = AsnConvert.parse(cert.raw, Certificate);
  const ext = parsed.tbsCertificate.extensions?.find((e) => e.extnID === id_ce_keyUsage);
  if (ext === undefined) return undefined;
  return AsnConvert.parse(ext.extnValue.buffer, KeyUsage).toNumber();
}

const subjectOf = (c: X509Certificate) => c.subject.replace(/\n/g, ', ');

function within(c: X509Certificate, now: Date): boolean {
  return new Date(c.validFrom) <= now && now <= new Date(c.validTo);
}

function issued(child: X509Certificate, parent: X509Certificate): boolean {
  try {
    return child.checkIssued(parent) && child.verify(parent.publicKey);
  } catch {
    return false;
  }
}

/**
 * Verify that `leaf` chains through `intermediates` (untrusted, from the evidence) to one of
 * `roots` (trusted anchors). Every certificate must be within its validity at `now`; every
 * issuer must be a CA allowed to sign certificates; every signature must verify (RSA-PSS,
 * RSA PKCS#1 or ECDSA, as the certificate says). A root is trusted only when it is one of the
 * anchors, byte for byte: a self-signed root that the evidence carries proves nothing.
 * @returns the path from the leaf to the anchor
 * @throws ChainError naming the certificate that breaks the chain
 */
export function verifyChain(
  leaf: X509Certificate,
  intermediates: readonly X509Certificate[],
  roots: readonly X509Certificate[],
  now: Date,
  what: string,
): X509Certificate[] {
  if (roots.length === 0) throw new ChainError(`no trusted root is configured for ${what}`);
  if (!within(leaf, now))
    throw new ChainError(`the ${what} certificate '${subjectOf(leaf)}' is outside its validity`);
  const path = [leaf];
  let current = leaf;
  for (let depth = 0; depth < MAX_DEPTH; depth++) {
    const anchor = roots.find((r) => issued(current, r));
    if (anchor !== undefined) {
      const problem = caProblem(anchor, now);
      if (problem !== undefined) throw new ChainError(`the trusted root '${subjectOf(anchor)}' ${problem}`);
      if (!anchor.raw.equals(current.raw)) path.push(anchor);
      // A certificate presented but not on the path must be a trusted root itself (a bundle may
      // repeat the root); anything else is unexplained input and is refused.
      for (const c of intermediates)
        if (!path.includes(c) && !roots.some((r) => r.raw.equals(c.raw)))
          throw new ChainError(
            `the ${what} chain carries '${subjectOf(c)}', which is neither on the path nor a trusted root`,
          );
      return path;
    }
    const next = intermediates.find((c) => !path.includes(c) && issued(current, c));
    if (next === undefined)
      throw new ChainError(
        `the ${what} chain breaks at '${subjectOf(current)}': its issuer '${current.issuer.replace(/\n/g, ', ')}' is neither a trusted root nor a certificate presented with it`,
      );
    const problem = caProblem(next, now);
    if (problem !== undefined)
      throw new ChainError(`the ${what} intermediate '${subjectOf(next)}' ${problem}`);
    path.push(next);
    current = next;
  }
  throw new ChainError(`the ${what} chain is longer than ${MAX_DEPTH} certificates`);
}

function caProblem(c: X509Certificate, now: Date): string | undefined {
  if (!c.ca) return 'is not a CA certificate (basicConstraints cA)';
  if (!within(c, now)) return 'is outside its validity';
  let usage: number | undefined;
  try {
    usage = keyUsageOf(c);
  } catch {
    return 'has an unreadable key usage';
  }
  if (usage !== undefined && (usage & KeyUsageFlags.keyCertSign) === 0) return 'may not sign certificates';
  return undefined;
}
