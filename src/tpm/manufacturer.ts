/**
 * A TPM manufacturer for the host TPM stand-in: a CA chain (root → intermediate) that issues one
 * EK certificate in the TCG EK Credential Profile's shape and is then forgotten. The CA keys are
 * WebCrypto keys made non-extractable in this process's memory: they are never written anywhere
 * and cannot be exported, so once {@link manufactureEkChain} returns nobody can mint another EK
 * certificate under that root (as with a TPM vendor whose keys stay in its factory).
 */
import { createHash, type KeyObject } from 'node:crypto';
import '../signing/reflect-metadata-shim.ts';
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  AttributeTypeAndValue,
  AttributeValue,
  Certificate,
  GeneralName,
  Name,
  RelativeDistinguishedName,
  SubjectAlternativeName,
} from '@peculiar/asn1-x509';
import * as x509 from '@peculiar/x509';
import { TCG_OIDS } from './ek-certificate.ts';

x509.cryptoProvider.set(globalThis.crypto);

const EC = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const YEAR_MS = 365.25 * 24 * 3600 * 1000;
const SAN_OID = '2.5.29.17';

/** What an EK certificate says about its TPM (the SAN's directoryName, TCG EK profile §3.2.9). */
export interface TpmIdentity {
  /** "id:" and the TCG vendor id in hex (e.g. id:47484F55). */
  readonly manufacturer: string;
  readonly model: string;
  /** "id:" and the firmware version in hex. */
  readonly version: string;
}

function serial(): string {
  // Positive, 16 bytes, no leading zero byte.
  return `1${Buffer.from(globalThis.crypto.getRandomValues(new Uint8Array(15))).toString('hex')}`;
}

/** The critical subjectAltName of an EK certificate: one directoryName with the TPM's attributes. */
export function tpmSubjectAltName(tpm: TpmIdentity): x509.Extension {
  const attr = (type: string, v: string) =>
    new RelativeDistinguishedName([
      new AttributeTypeAndValue({ type, value: new AttributeValue({ utf8String: v }) }),
    ]);
  const san = new SubjectAlternativeName([
    new GeneralName({
      directoryName: new Name([
        attr(TCG_OIDS.tpmManufacturer, tpm.manufacturer),
        attr(TCG_OIDS.tpmModel, tpm.model),
        attr(TCG_OIDS.tpmVersion, tpm.version),
      ]),
    }),
  ]);
  return new x509.Extension(SAN_OID, true, AsnConvert.serialize(san));
}

/** The extensions of an EK certificate (TCG EK Credential Profile 2.x, §3.2). */
export async function ekCertificateExtensions(
  ek: KeyObject,
  tpm: TpmIdentity,
  authorityKeyId: string,
): Promise<x509.Extension[]> {
  return [
    new x509.BasicConstraintsExtension(false, undefined, true),
    // An RSA EK is a decryption key: keyEncipherment; an ECC EK: keyAgreement.
    new x509.KeyUsagesExtension(
      ek.asymmetricKeyType === 'rsa' ? x509.KeyUsageFlags.keyEncipherment : x509.KeyUsageFlags.keyAgreement,
      true,
    ),
    new x509.ExtendedKeyUsageExtension([TCG_OIDS.ekCertificate], false),
    new x509.AuthorityKeyIdentifierExtension(authorityKeyId, false),
    tpmSubjectAltName(tpm),
  ];
}

/** The manufactured chain: PEMs of the root and the intermediate, and the EK certificate's DER. */
export interface ManufacturedEkChain {
  readonly rootPem: string;
  readonly intermediatePem: string;
  readonly ekCertDer: Buffer;
  /** An empty CRL of the root over the intermediate, valid ten years (the only one it will sign). */
  readonly rootCrlPem: string;
}

/**
 * Make a manufacturer root (10 years, pathLen 1), an intermediate (pathLen 0) and the EK
 * certificate for `ek`; the two CA keys exist only inside this call.
 */
export async function manufactureEkChain(
  ek: KeyObject,
  tpm: TpmIdentity,
  manufacturer: string,
): Promise<ManufacturedEkChain> {
  const now = Date.now();
  const notBefore = new Date(now - 60_000);
  const root = await globalThis.crypto.subtle.generateKey(EC, false, ['sign', 'verify']);
  const inter = await globalThis.crypto.subtle.generateKey(EC, false, ['sign', 'verify']);
  const rootName = `CN=${manufacturer} EK Root CA, O=${manufacturer}`;
  const interName = `CN=${manufacturer} EK Intermediate CA, O=${manufacturer}`;
  const caUsage = new x509.KeyUsagesExtension(
    x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
    true,
  );
  const rootCert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: rootName,
    notBefore,
    notAfter: new Date(now + 25 * YEAR_MS),
    keys: root,
    signingAlgorithm: EC,
    extensions: [
      new x509.BasicConstraintsExtension(true, 1, true),
      caUsage,
      await x509.SubjectKeyIdentifierExtension.create(root.publicKey),
    ],
  });
  const interCert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: interName,
    issuer: rootCert.subject,
    notBefore,
    notAfter: new Date(now + 20 * YEAR_MS),
    publicKey: inter.publicKey,
    signingKey: root.privateKey,
    signingAlgorithm: EC,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      caUsage,
      await x509.SubjectKeyIdentifierExtension.create(inter.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(root.publicKey),
    ],
  });
  const interKeyId = createHash('sha1')
    .update(Buffer.from(await globalThis.crypto.subtle.exportKey('raw', inter.publicKey)))
    .digest('hex');
  const ekCert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    // The TCG profile leaves the subject empty; the TPM is named in the critical SAN.
    subject: '',
    issuer: interCert.subject,
    notBefore,
    notAfter: new Date(now + 20 * YEAR_MS),
    publicKey: ek.export({ format: 'der', type: 'spki' }),
    signingKey: inter.privateKey,
    signingAlgorithm: EC,
    extensions: await ekCertificateExtensions(ek, tpm, interKeyId),
  });
  const crl = await x509.X509CrlGenerator.create({
    issuer: rootCert.subject,
    thisUpdate: notBefore,
    nextUpdate: new Date(now + 10 * YEAR_MS),
    entries: [],
    signingKey: root.privateKey,
    signingAlgorithm: EC,
  });
  return {
    rootPem: rootCert.toString('pem'),
    intermediatePem: interCert.toString('pem'),
    ekCertDer: Buffer.from(ekCert.rawData),
    rootCrlPem: crl.toString('pem'),
  };
}

/** Replace a certificate's signature with one made over its TBSCertificate by `sign` (DER ECDSA). */
export async function resignCertificate(
  der: Uint8Array,
  sign: (tbs: Buffer) => Promise<Buffer>,
): Promise<Buffer> {
  const cert = AsnConvert.parse(der, Certificate);
  const tbs = Buffer.from(AsnConvert.serialize(cert.tbsCertificate));
  cert.signatureValue = new Uint8Array(await sign(tbs)).buffer;
  return Buffer.from(AsnConvert.serialize(cert));
}
