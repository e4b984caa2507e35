import { createHash, verify as cryptoVerify, type KeyObject, X509Certificate } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  AuthorityKeyIdentifier,
  BasicConstraints,
  Certificate,
  CertificateList,
  KeyUsage,
  SubjectAlternativeName,
  SubjectPublicKeyInfo,
} from '@peculiar/asn1-x509';
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
 * Verify an EK certificate against CAs trusted directly: it must be issued and signed by one of
 * them, both within their validity at `now`, carry the TCG EK-certificate purpose (required) and
 * the key usage of its key type, and have no unknown critical extension. The critical SAN of the TCG profile (TPM manufacturer, model,
 * version as a directoryName) is read, not refused.
 * @throws EkCertificateError (BAD_INPUT) with reason `malformed` or `untrusted`
 */
export function verifyEkCertificate(
  der: Uint8Array,
  trusted: readonly X509Certificate[],
  now: Date,
): VerifiedEkCertificate {
  const { cert, tpm } = checkEkLeaf(der, now);
  const within = (c: X509Certificate) => new Date(c.validFrom) <= now && now <= new Date(c.validTo);
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

/** The leaf checks every EK certificate gets: DER, not a CA, EK purpose, key usage, validity. */
function checkEkLeaf(
  der: Uint8Array,
  now: Date,
): { cert: X509Certificate; tpm: VerifiedEkCertificate['tpm'] } {
  let cert: X509Certificate;
  let tpm: VerifiedEkCertificate['tpm'];
  let usage: number | undefined;
  try {
    if (derLength(der) !== der.length)
      throw new EkCertificateError('malformed', 'the EK certificate has trailing bytes after its DER');
    cert = new X509Certificate(der);
    tpm = tpmInfo(der);
    usage = keyUsageBits(der);
  } catch (e) {
    if (e instanceof EkCertificateError) throw e;
    throw new EkCertificateError('malformed', 'the EK certificate is not a DER X.509 certificate', e);
  }
  if (cert.ca) throw new EkCertificateError('malformed', 'the EK certificate is a CA certificate');
  // The purpose is required: a certificate without extendedKeyUsage is not an EK certificate.
  if (!(cert.keyUsage ?? []).includes(TCG_OIDS.ekCertificate))
    throw new EkCertificateError(
      'malformed',
      'the certificate is not for an EK (no tcg-kp-EKCertificate purpose)',
    );
  const want = cert.publicKey.asymmetricKeyType === 'rsa' ? KU.keyEncipherment : KU.keyAgreement;
  if (usage === undefined || (usage & want) === 0)
    throw new EkCertificateError(
      'malformed',
      `the EK certificate's key usage lacks ${want === KU.keyEncipherment ? 'keyEncipherment' : 'keyAgreement'}`,
    );
  if (!(new Date(cert.validFrom) <= now && now <= new Date(cert.validTo)))
    throw new EkCertificateError('untrusted', 'the EK certificate is outside its validity period');
  return { cert, tpm };
}

/** keyUsage bits (digitalSignature = 0x80 of the first byte … as a number, bit 0 = digitalSignature). */
const KU = {
  digitalSignature: 1 << 0,
  keyEncipherment: 1 << 2,
  keyAgreement: 1 << 4,
  keyCertSign: 1 << 5,
  cRLSign: 1 << 6,
};

/** The keyUsage extension's bits (bit n = KeyUsage n of RFC 5280), or undefined when absent. */
function keyUsageBits(der: Uint8Array): number | undefined {
  const cert = AsnConvert.parse(der, Certificate);
  const ext = (cert.tbsCertificate.extensions ?? []).find((e) => e.extnID === '2.5.29.15');
  if (ext === undefined) return undefined;
  const bits = AsnConvert.parse(ext.extnValue.buffer, KeyUsage);
  return bits.toNumber();
}

/** basicConstraints of a CA certificate: pathLenConstraint, when set. */
function pathLenOf(der: Uint8Array): number | undefined {
  const cert = AsnConvert.parse(der, Certificate);
  const ext = (cert.tbsCertificate.extensions ?? []).find((e) => e.extnID === '2.5.29.19');
  if (ext === undefined) return undefined;
  return AsnConvert.parse(ext.extnValue.buffer, BasicConstraints).pathLenConstraint;
}

/** A certificate revocation list of an EK CA, parsed: who issued it, when, and what it revokes. */
export interface EkCaCrl {
  readonly der: Buffer;
  /** The issuer's Name, DER. */
  readonly issuer: Buffer;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date | undefined;
  readonly revokedSerials: ReadonlySet<string>;
  /** The signed TBSCertList and its signature, checked against the issuer's key. */
  readonly tbs: Buffer;
  readonly signature: Buffer;
  readonly algorithm: string;
}

/** Parse a PEM or DER CRL. @throws GatehouseError BAD_INPUT */
export function parseEkCaCrl(bytes: Uint8Array | string, where: string): EkCaCrl {
  try {
    const text = typeof bytes === 'string' ? bytes : Buffer.from(bytes).toString('latin1');
    const pem = /-----BEGIN (?:X509 )?CRL-----([A-Za-z0-9+/=\s]+)-----END (?:X509 )?CRL-----/.exec(text);
    const der =
      pem !== null
        ? Buffer.from((pem[1] ?? '').replace(/\s+/g, ''), 'base64')
        : Buffer.from(bytes as Uint8Array);
    const list = AsnConvert.parse(der, CertificateList);
    const tbs = Buffer.from(AsnConvert.serialize(list.tbsCertList));
    const alg = list.signatureAlgorithm.algorithm;
    const algorithm =
      alg === '1.2.840.10045.4.3.2'
        ? 'sha256'
        : alg === '1.2.840.10045.4.3.3'
          ? 'sha384'
          : alg === '1.2.840.113549.1.1.11'
            ? 'sha256'
            : '';
    if (algorithm === '') throw new Error(`unsupported CRL signature algorithm ${alg}`);
    const time = (t: { utcTime?: Date; generalTime?: Date } | undefined) => t?.utcTime ?? t?.generalTime;
    return {
      der,
      issuer: Buffer.from(AsnConvert.serialize(list.tbsCertList.issuer)),
      thisUpdate: time(list.tbsCertList.thisUpdate) as Date,
      nextUpdate: time(list.tbsCertList.nextUpdate),
      revokedSerials: new Set(
        (list.tbsCertList.revokedCertificates ?? []).map((r) =>
          Buffer.from(r.userCertificate).toString('hex').replace(/^0+/, '').toUpperCase(),
        ),
      ),
      tbs,
      signature: Buffer.from(list.signature),
      algorithm,
    };
  } catch (e) {
    throw new GatehouseError('BAD_INPUT', 'not a PEM or DER X.509 CRL', { where, cause: e });
  }
}

function serialKey(hex: string): string {
  return hex.replace(/^0+/, '').toUpperCase();
}

/** What {@link verifyEkCertificatePath} checks an EK certificate against. */
export interface EkPathTrust {
  /** Trusted manufacturer roots (and any CA trusted on its own). */
  readonly anchors: readonly X509Certificate[];
  /** Untrusted intermediates the TPM's owner presents. */
  readonly intermediates: readonly X509Certificate[];
  /** CRLs of EK CAs: a certificate on the path listed by its issuer's CRL is refused. */
  readonly crls: readonly EkCaCrl[];
  /** SHA-256 fingerprints (hex) of EK CA certificates the security role revoked. */
  readonly revokedCas: ReadonlySet<string>;
  readonly now: Date;
}

/** A verified host EK certificate and the path it was verified along, leaf first. */
export interface VerifiedEkPath extends VerifiedEkCertificate {
  /** Subjects from the EK's issuer up to the anchor. */
  readonly path: readonly string[];
}

/**
 * Verify a (hardware or stand-in) TPM's EK certificate along a full path to a trusted
 * manufacturer CA: the leaf as an EK certificate (EK purpose required, keyUsage for its key type,
 * no unknown critical extension); every CA above it a CA by basicConstraints with keyCertSign,
 * its pathLenConstraint respected, within its validity, not revoked by the security role, not
 * listed by its issuer's CRL (a CRL of a CA on the path must verify and be current); up to five
 * levels, ending at an anchor.
 * @throws EkCertificateError (BAD_INPUT), reason `malformed` or `untrusted`
 */
export function verifyEkCertificatePath(der: Uint8Array, trust: EkPathTrust): VerifiedEkPath {
  const { cert: leaf, tpm } = checkEkLeaf(der, trust.now);
  const untrusted = (m: string) => new EkCertificateError('untrusted', m);
  const fp = (c: X509Certificate) => createHash('sha256').update(c.raw).digest('hex');
  const subject = (c: X509Certificate) => c.subject.replace(/\n/g, ', ');
  const checkCrl = (c: X509Certificate, issuer: X509Certificate) => {
    for (const crl of trust.crls) {
      const subjectDer = Buffer.from(
        AsnConvert.serialize(AsnConvert.parse(issuer.raw, Certificate).tbsCertificate.subject),
      );
      if (!crl.issuer.equals(subjectDer)) continue;
      if (!verifyWith(crl, issuer))
        throw untrusted(`a CRL claiming to be from '${subject(issuer)}' does not verify`);
      if (crl.thisUpdate > trust.now || (crl.nextUpdate !== undefined && crl.nextUpdate < trust.now))
        throw untrusted(`the CRL of '${subject(issuer)}' is not current`);
      if (crl.revokedSerials.has(serialKey(c.serialNumber)))
        throw untrusted(`'${c === leaf ? 'the EK certificate' : subject(c)}' is revoked by its issuer's CRL`);
    }
  };
  const path: string[] = [];
  let current = leaf;
  for (let depth = 0; depth < 5; depth++) {
    const candidates = [
      ...trust.anchors.map((c) => ({ c, anchor: true })),
      ...trust.intermediates.map((c) => ({ c, anchor: false })),
    ];
    const found = candidates.find(({ c }) => c.ca && current.checkIssued(c) && current.verify(c.publicKey));
    if (found === undefined)
      throw untrusted(
        depth === 0
          ? `the EK certificate's issuer '${current.issuer.replace(/\n/g, ', ')}' is not a trusted EK CA and no presented intermediate chains to one`
          : `'${subject(current)}' was not issued by a trusted EK CA`,
      );
    const ca = found.c;
    if (trust.revokedCas.has(fp(ca))) throw untrusted(`the EK CA '${subject(ca)}' is revoked`);
    if (!(new Date(ca.validFrom) <= trust.now && trust.now <= new Date(ca.validTo)))
      throw untrusted(`the EK CA '${subject(ca)}' is outside its validity period`);
    const usage = keyUsageBits(ca.raw);
    if (usage === undefined || (usage & KU.keyCertSign) === 0)
      throw untrusted(`the EK CA '${subject(ca)}' may not sign certificates (keyUsage keyCertSign)`);
    const pathLen = pathLenOf(ca.raw);
    if (pathLen !== undefined && depth > pathLen)
      throw untrusted(`the EK CA '${subject(ca)}' allows ${pathLen} CAs below it, the path has ${depth}`);
    checkCrl(current, ca);
    path.push(subject(ca));
    if (found.anchor)
      return {
        publicKey: leaf.publicKey,
        tpm,
        issuer: path[0] ?? subject(ca),
        serialNumber: leaf.serialNumber,
        path,
      };
    current = ca;
  }
  throw untrusted('the EK certificate path is longer than five certificates');
}

function verifyWith(crl: EkCaCrl, issuer: X509Certificate): boolean {
  try {
    const key = issuer.publicKey;
    return cryptoVerify(crl.algorithm, crl.tbs, key, crl.signature);
  } catch {
    return false;
  }
}

/** A key that issues vTPM EK certificates: a runner host's TPM-resident vTPM CA key. */
export interface VtpmEkIssuer {
  /** The enrolled host it belongs to. */
  readonly host: string;
  /** SHA-1 of the public key's bits (the EK certificates' authorityKeyIdentifier), hex. */
  readonly keyId: string;
  readonly publicKey: KeyObject;
}

/** The authorityKeyIdentifier's keyIdentifier of a certificate (hex), when present. */
export function authorityKeyIdOf(der: Uint8Array): string | undefined {
  const cert = AsnConvert.parse(der, Certificate);
  const ext = (cert.tbsCertificate.extensions ?? []).find((e) => e.extnID === '2.5.29.35');
  if (ext === undefined) return undefined;
  const aki = AsnConvert.parse(ext.extnValue.buffer, AuthorityKeyIdentifier);
  return aki.keyIdentifier === undefined ? undefined : Buffer.from(aki.keyIdentifier.buffer).toString('hex');
}

/** SHA-1 of an EC or RSA public key's subjectPublicKey bits: its key identifier (RFC 5280 §4.2.1.2). */
export function keyIdentifierOf(key: KeyObject): string {
  const spki = AsnConvert.parse(key.export({ format: 'der', type: 'spki' }), SubjectPublicKeyInfo);
  return createHash('sha1').update(Buffer.from(spki.subjectPublicKey)).digest('hex');
}

/**
 * Verify a per-job vTPM's EK certificate against the vTPM CA keys of enrolled runner hosts: the
 * leaf checks of every EK certificate, then the issuer named by its authorityKeyIdentifier must
 * be one of `issuers` and its signature must verify with that key.
 * @throws EkCertificateError (BAD_INPUT), reason `malformed` or `untrusted`
 */
export function verifyVtpmEkCertificate(
  der: Uint8Array,
  issuers: readonly VtpmEkIssuer[],
  now: Date,
): VerifiedEkCertificate & { readonly host: string } {
  const { cert, tpm } = checkEkLeaf(der, now);
  const aki = authorityKeyIdOf(der);
  const issuer = aki === undefined ? undefined : issuers.find((i) => i.keyId === aki);
  if (issuer === undefined || !cert.verify(issuer.publicKey))
    throw new EkCertificateError(
      'untrusted',
      `the EK certificate (issuer '${cert.issuer.replace(/\n/g, ', ')}') was not issued by the TPM-resident vTPM CA key of an enrolled runner host`,
    );
  return {
    publicKey: cert.publicKey,
    tpm,
    issuer: cert.issuer.replace(/\n/g, ', '),
    serialNumber: cert.serialNumber,
    host: issuer.host,
  };
}
