import { type KeyObject, X509Certificate } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { Certificate, SubjectAlternativeName } from '@peculiar/asn1-x509';
import { GatehouseError } from '../common/errors.ts';

/** TCG OIDs of EK certificates (TCG EK Credential Profile). */
export const TCG_OIDS = {
  tpmManufacturer: '2.23.133.2.1',
  tpmModel: '2.23.133.2.2',
  tpmVersion: '2.23.133.2.3',
  ekCertificate: '2.23.133.8.1',
} as const;

/** Extensions an EK certificate may mark critical; any other critical extension is refused. */
const KNOWN_CRITICAL = new Set([
  '2.5.29.17', // subjectAltName (critical when the subject is empty, as the TCG profile says)
  '2.5.29.19', // basicConstraints
  '2.5.29.15', // keyUsage
  '2.5.29.37', // extKeyUsage
  '2.5.29.32', // certificatePolicies
  '2.5.29.9', // subjectDirectoryAttributes
]);

/** A verified EK certificate: the EK public key and the TPM it names. */
export interface VerifiedEkCertificate {
  readonly publicKey: KeyObject;
  readonly tpm: { readonly manufacturer?: string; readonly model?: string; readonly version?: string };
  /** Subject of the CA that issued it. */
  readonly issuer: string;
  readonly serialNumber: string;
}

/** Why an EK certificate was refused: `malformed` (not an EK certificate) or `untrusted` (chain). */
export class EkCertificateError extends GatehouseError<'BAD_INPUT'> {
  readonly reason: 'malformed' | 'untrusted';
  constructor(reason: 'malformed' | 'untrusted', message: string, cause?: unknown) {
    super('BAD_INPUT', message, cause === undefined ? {} : { cause });
    this.reason = reason;
  }
}

function tpmInfo(der: Uint8Array): VerifiedEkCertificate['tpm'] {
  const cert = AsnConvert.parse(der, Certificate);
  const out: { manufacturer?: string; model?: string; version?: string } = {};
  for (const ext of cert.tbsCertificate.extensions ?? []) {
    if (ext.critical && !KNOWN_CRITICAL.has(ext.extnID)) {
      throw new EkCertificateError(
        'malformed',
        `the EK certificate has an unknown critical extension ${ext.extnID}`,
      );
    }
    if (ext.extnID !== '2.5.29.17') continue;
    const san = AsnConvert.parse(ext.extnValue.buffer, SubjectAlternativeName);
    for (const name of san) {
      for (const rdn of name.directoryName ?? []) {
        for (const atv of rdn) {
          const v = atv.value.toString();
          if (atv.type === TCG_OIDS.tpmManufacturer) out.manufacturer = v;
          else if (atv.type === TCG_OIDS.tpmModel) out.model = v;
          else if (atv.type === TCG_OIDS.tpmVersion) out.version = v;
        }
      }
    }
  }
  return out;
}

/**
 * Verify an EK certificate against the trusted platform / TPM-vendor CAs: it must be issued and
 * signed by one of them, both within their validity at `now`, carry the TCG EK-certificate purpose, and have no
 * unknown critical extension. The critical SAN of the TCG profile (TPM manufacturer, model,
 * version as a directoryName) is read, not refused.
 * @throws EkCertificateError (BAD_INPUT) with reason `malformed` or `untrusted`
 */
export function verifyEkCertificate(
  der: Uint8Array,
  trusted: readonly X509Certificate[],
  now: Date,
): VerifiedEkCertificate {
  let cert: X509Certificate;
  let tpm: VerifiedEkCertificate['tpm'];
  try {
    if (derLength(der) !== der.length)
      throw new EkCertificateError('malformed', 'the EK certificate has trailing bytes after its DER');
    cert = new X509Certificate(der);
    tpm = tpmInfo(der);
  } catch (e) {
    if (e instanceof EkCertificateError) throw e;
    throw new EkCertificateError('malformed', 'the EK certificate is not a DER X.509 certificate', e);
  }
  if (cert.ca) throw new EkCertificateError('malformed', 'the EK certificate is a CA certificate');
  const eku = cert.keyUsage;
  if (eku !== undefined && !eku.includes(TCG_OIDS.ekCertificate)) {
    throw new EkCertificateError(
      'malformed',
      'the certificate is not for an EK (no tcg-kp-EKCertificate purpose)',
    );
  }
  const within = (c: X509Certificate) => new Date(c.validFrom) <= now && now <= new Date(c.validTo);
  if (!within(cert))
    throw new EkCertificateError('untrusted', 'the EK certificate is outside its validity period');
  // Every certificate in the trusted set is an anchor (a vendor's intermediate may be trusted on
  // its own): the EK certificate must be issued (names, key ids) and signed by one that is a CA
  // and valid now.
  const issuer = trusted.find((ca) => ca.ca && cert.checkIssued(ca) && cert.verify(ca.publicKey));
  if (issuer !== undefined) {
    if (!within(issuer)) {
      throw new EkCertificateError(
        'untrusted',
        `the EK certificate's CA '${issuer.subject.replace(/\n/g, ', ')}' is outside its validity period`,
      );
    }
    return {
      publicKey: cert.publicKey,
      tpm,
      issuer: issuer.subject.replace(/\n/g, ', '),
      serialNumber: cert.serialNumber,
    };
  }
  throw new EkCertificateError(
    'untrusted',
    `the EK certificate's issuer '${cert.issuer.replace(/\n/g, ', ')}' is not a trusted EK CA`,
  );
}

/**
 * Parse a PEM or DER CA certificate for the trusted EK CA set.
 * @throws GatehouseError BAD_INPUT when it is not a CA certificate
 */
export function parseTrustedCa(bytes: Uint8Array, where: string): X509Certificate {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(Buffer.from(bytes));
  } catch (e) {
    throw new GatehouseError('BAD_INPUT', 'not a PEM or DER X.509 certificate', { where, cause: e });
  }
  if (!cert.ca)
    throw new GatehouseError('BAD_INPUT', 'the certificate is not a CA certificate (basicConstraints cA)', {
      where,
    });
  return cert;
}

/** Length of the outer DER element (tag, length, content), or -1 when it cannot be read. */
export function derLength(der: Uint8Array): number {
  if (der.length < 2 || der[0] !== 0x30) return -1;
  const first = der[1] ?? 0;
  if ((first & 0x80) === 0) return 2 + first;
  const n = first & 0x7f;
  if (n < 1 || n > 3 || der.length < 2 + n) return -1;
  let len = 0;
  for (let i = 0; i < n; i++) len = len * 256 + (der[2 + i] ?? 0);
  return 2 + n + len;
}
