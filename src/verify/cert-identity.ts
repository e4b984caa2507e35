/**
 * The identity of a signing certificate, read straight from its DER: the SAN (URI or e-mail) and
 * the Fulcio OIDC issuer extension. A walk over the extensions instead of a full X.509 object
 * model, because every verification reads them and the object model was most of its cost.
 */
import type { X509Certificate } from 'node:crypto';
import { GatehouseError } from '../common/errors.ts';
import { FULCIO_OIDS } from '../signing/ca.ts';
import { children, derOid, readElement } from '../signing/der.ts';

const SAN = derOid('2.5.29.17');
const ISSUER_V2 = derOid(FULCIO_OIDS.issuer);
const ISSUER_V1 = derOid(FULCIO_OIDS.issuerV1);

/** SAN names of the kinds a signing identity can be. */
export interface CertificateNames {
  /** URI SAN entries ([6]). */
  uris: string[];
  /** E-mail SAN entries ([1]). */
  emails: string[];
  /** The Fulcio issuer (v2 UTF8String, else the deprecated v1 raw value). */
  issuer: string | undefined;
}

function bad(message: string): GatehouseError {
  return new GatehouseError('CERTIFICATE_INVALID', message);
}

/**
 * Read the SAN names and the Fulcio issuer of a DER certificate.
 * @throws GatehouseError CERTIFICATE_INVALID when the DER is malformed
 */
export function readCertificateNames(der: Buffer): CertificateNames {
  try {
    const cert = readElement(der, 0, 'certificate');
    const [tbs] = children(cert.contents, 'certificate');
    if (tbs === undefined) throw bad('the certificate has no TBS');
    const extsTagged = children(tbs.contents, 'certificate').find((f) => f.tag === 0xa3);
    const uris: string[] = [];
    const emails: string[] = [];
    let v1: string | undefined;
    let v2: string | undefined;
    if (extsTagged !== undefined) {
      const [exts] = children(extsTagged.contents, 'extensions');
      for (const ext of exts === undefined ? [] : children(exts.contents, 'extensions')) {
        const parts = children(ext.contents, 'extension');
        const id = parts[0];
        const value = parts[parts.length - 1];
        if (id === undefined || value === undefined || value.tag !== 0x04)
          throw bad('a certificate extension is malformed');
        if (id.raw.equals(SAN)) {
          const seq = readElement(value.contents, 0, 'subject alternative name');
          for (const n of children(seq.contents, 'subject alternative name')) {
            if (n.tag === 0x86) uris.push(n.contents.toString('utf8'));
            else if (n.tag === 0x81) emails.push(n.contents.toString('utf8'));
          }
        } else if (id.raw.equals(ISSUER_V2)) {
          const s = readElement(value.contents, 0, 'issuer extension');
          if (s.tag !== 0x0c || s.raw.length !== value.contents.length)
            throw bad('the Fulcio issuer extension is not a UTF8String');
          v2 = s.contents.toString('utf8');
        } else if (id.raw.equals(ISSUER_V1)) {
          v1 = value.contents.toString('utf8');
        }
      }
    }
    return { uris, emails, issuer: v2 ?? v1 };
  } catch (e) {
    if (e instanceof GatehouseError && e.code === 'CERTIFICATE_INVALID') throw e;
    throw bad('the signing certificate is not valid DER');
  }
}

/** The SAN kinds a verifier takes as the signing identity, as its messages name them. */
export type IdentitySans = 'URI' | 'URI or e-mail';

/**
 * The identity of a signing certificate, its one SAN of the kinds `sans` names, and its Fulcio
 * issuer; each must be the expected one where `expected` names it (exact match).
 * @throws GatehouseError IDENTITY_MISMATCH, CERTIFICATE_INVALID (malformed DER)
 */
export function verifyCertificateIdentity(
  leaf: X509Certificate,
  sans: IdentitySans,
  expected: { identity?: string | undefined; issuer?: string | undefined },
): { identity: string; issuer: string | undefined } {
  const { uris, emails, issuer } = readCertificateNames(leaf.raw);
  const names = sans === 'URI' ? uris : [...uris, ...emails];
  const [identity, ...more] = names;
  if (identity === undefined || more.length > 0) {
    throw new GatehouseError(
      'IDENTITY_MISMATCH',
      `the signing certificate has ${names.length} ${sans} SANs; exactly one is required`,
    );
  }
  if (expected.identity !== undefined && identity !== expected.identity) {
    throw new GatehouseError(
      'IDENTITY_MISMATCH',
      `the certificate identity is '${identity}', expected '${expected.identity}'`,
    );
  }
  if (expected.issuer !== undefined && issuer !== expected.issuer) {
    throw new GatehouseError(
      'IDENTITY_MISMATCH',
      `the certificate issuer is '${issuer ?? '(none)'}', expected '${expected.issuer}'`,
    );
  }
  return { identity, issuer };
}
