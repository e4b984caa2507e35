/**
 * RFC 3161 time-stamping: the gatehouse timestamp authority (TSA) that countersigns a signature
 * with the time it saw it, and the verification of such timestamps (ours and any other TSA listed
 * in a trusted root). Bundles carry the DER `TimeStampResp` in
 * `timestampVerificationData.rfc3161Timestamps`, over the bytes of the signature they stamp, so
 * a short-lived certificate can be checked at a time vouched for by someone other than the signer.
 */
import './reflect-metadata-shim.ts';
import { createHash, verify as cryptoVerify, randomBytes, X509Certificate } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ContentInfo, SignedData, type SignerInfo } from '@peculiar/asn1-cms';
import { AsnConvert } from '@peculiar/asn1-schema';
import { PKIStatus, TimeStampResp, TSTInfo } from '@peculiar/asn1-tsp';
import * as x509 from '@peculiar/x509';
import { GatehouseError } from '../common/errors.ts';
import { issueCertificate, keyIdentifier, randomSerial } from './ca.ts';
import { children, derElement, derOid, readElement } from './der.ts';
import { FileKeySigner } from './file-key-signer.ts';
import type { KeyProtection } from './key-file.ts';
import type { Signer } from './signer.ts';
import { isWithin, type TrustedCa } from './trust-root.ts';

const OID = {
  signedData: '1.2.840.113549.1.7.2',
  tstInfo: '1.2.840.113549.1.9.16.1.4',
  contentType: '1.2.840.113549.1.9.3',
  messageDigest: '1.2.840.113549.1.9.4',
  signingCertificateV2: '1.2.840.113549.1.9.16.2.47',
  ecdsaSha256: '1.2.840.10045.4.3.2',
  sha256: '2.16.840.1.101.3.4.2.1',
  sha384: '2.16.840.1.101.3.4.2.2',
  sha512: '2.16.840.1.101.3.4.2.3',
  timeStamping: '1.3.6.1.5.5.7.3.8',
} as const;

/**
 * The TSA policy gatehouse timestamps are issued under: a UUID-derived OID (ITU-T X.667), since
 * gatehouse has no enterprise arc of its own.
 */
export const GATEHOUSE_TSA_POLICY = '2.25.190186406519004624370186342187290553938';

const HASHES: Record<string, string> = {
  [OID.sha256]: 'sha256',
  [OID.sha384]: 'sha384',
  [OID.sha512]: 'sha512',
};

function invalid(message: string, cause?: unknown): GatehouseError {
  return new GatehouseError('TIMESTAMP_INVALID', message, cause === undefined ? {} : { cause });
}

/** A timestamp that passed {@link verifyTimestamp}. */
export interface VerifiedTimestamp {
  /** The time the TSA vouches for. */
  genTime: Date;
  /** The TSA's signing certificate (DER). */
  tsaCertificate: Buffer;
}

interface ParsedToken {
  tstInfo: TSTInfo;
  tstInfoDer: Buffer;
  signerInfo: SignerInfo;
  /** The signed attributes re-tagged as the SET OF that was signed. */
  signedAttrsDer: Buffer;
}

/** Accept a DER TimeStampResp (what bundles carry) or a bare TimeStampToken (ContentInfo). */
function parseToken(der: Buffer): ParsedToken {
  let token: ContentInfo;
  try {
    const resp = AsnConvert.parse(der, TimeStampResp);
    if (resp.status.status !== PKIStatus.granted && resp.status.status !== PKIStatus.grantedWithMods) {
      throw invalid(`the timestamp response has status ${resp.status.status}, not granted`);
    }
    if (resp.timeStampToken === undefined) throw invalid('the timestamp response carries no token');
    token = resp.timeStampToken;
  } catch (e) {
    if (e instanceof GatehouseError) throw e;
    try {
      token = AsnConvert.parse(der, ContentInfo);
    } catch (e2) {
      throw invalid('the timestamp is neither a TimeStampResp nor a TimeStampToken', e2);
    }
  }
  if (token.contentType !== OID.signedData) throw invalid('the timestamp token is not CMS SignedData');
  let signed: SignedData;
  try {
    signed = AsnConvert.parse(token.content, SignedData);
  } catch (e) {
    throw invalid('the timestamp SignedData does not parse', e);
  }
  if (signed.encapContentInfo.eContentType !== OID.tstInfo) {
    throw invalid('the timestamp token does not encapsulate a TSTInfo');
  }
  const content = signed.encapContentInfo.eContent?.single;
  if (content === undefined) throw invalid('the timestamp token has no TSTInfo content');
  const tstInfoDer = Buffer.from(content.buffer);
  let tstInfo: TSTInfo;
  try {
    tstInfo = AsnConvert.parse(tstInfoDer, TSTInfo);
  } catch (e) {
    throw invalid('the TSTInfo does not parse', e);
  }
  if (signed.signerInfos.length !== 1) {
    throw invalid(`the timestamp token has ${signed.signerInfos.length} signers; exactly one is required`);
  }
  const signerInfo = signed.signerInfos[0] as SignerInfo;
  // The signature covers the DER of the signed attributes as a SET OF: take their exact bytes
  // from the token rather than trusting a re-encoding.
  let signedAttrsDer: Buffer;
  try {
    const sd = readElement(Buffer.from(token.content), 0, 'the timestamp SignedData');
    const sdParts = children(sd.contents, 'the timestamp SignedData');
    const infos = sdParts[sdParts.length - 1];
    const first = infos === undefined ? undefined : children(infos.contents, 'the timestamp signer infos')[0];
    const attrs = first === undefined ? undefined : children(first.contents, 'the timestamp signer info')[3];
    if (attrs === undefined || attrs.tag !== 0xa0)
      throw invalid('the timestamp signer has no signed attributes');
    signedAttrsDer = Buffer.concat([Buffer.of(0x31), attrs.raw.subarray(1)]);
  } catch (e) {
    if (e instanceof GatehouseError && e.code === 'TIMESTAMP_INVALID') throw e;
    throw invalid('the timestamp signer info is malformed', e);
  }
  return { tstInfo, tstInfoDer, signerInfo, signedAttrsDer };
}

function attribute(info: SignerInfo, oid: string): ArrayBuffer {
  const attrs = (info.signedAttrs ?? []).filter((a) => a.attrType === oid);
  const [only] = attrs;
  if (attrs.length !== 1 || only === undefined || only.attrValues.length !== 1) {
    throw invalid(`the timestamp signer must carry exactly one ${oid} attribute`);
  }
  return only.attrValues[0] as ArrayBuffer;
}

function chainValidAt(chain: X509Certificate[], when: Date): string | undefined {
  for (const [k, cert] of chain.entries()) {
    if (when < cert.validFromDate || when > cert.validToDate)
      return `certificate ${k} is not valid at that time`;
    const parent = chain[k + 1] ?? cert;
    if (!cert.checkIssued(parent) || !cert.verify(parent.publicKey))
      return `certificate ${k} is not issued by the next`;
  }
  return undefined;
}

/**
 * Verify an RFC 3161 timestamp over `data` (the signature bytes it stamps) against the trusted
 * timestamp authorities; returns the vouched-for time.
 * @throws GatehouseError TIMESTAMP_INVALID naming the first problem
 */
export function verifyTimestamp(
  der: Uint8Array,
  data: Uint8Array,
  authorities: readonly TrustedCa[],
): VerifiedTimestamp {
  const { tstInfo, tstInfoDer, signerInfo, signedAttrsDer } = parseToken(Buffer.from(der));
  const imprintHash = HASHES[tstInfo.messageImprint.hashAlgorithm.algorithm];
  if (imprintHash === undefined) throw invalid('the timestamp message imprint uses an unsupported hash');
  const imprint = Buffer.from(tstInfo.messageImprint.hashedMessage.buffer);
  if (!createHash(imprintHash).update(data).digest().equals(imprint)) {
    throw invalid('the timestamp is for different data than the signature it accompanies');
  }
  const digestHash = HASHES[signerInfo.digestAlgorithm.algorithm];
  if (digestHash === undefined) throw invalid('the timestamp signer uses an unsupported digest');
  if (!Buffer.from(attribute(signerInfo, OID.contentType)).equals(derOid(OID.tstInfo))) {
    throw invalid('the timestamp content-type attribute is not id-ct-TSTInfo');
  }
  const digest = readElement(Buffer.from(attribute(signerInfo, OID.messageDigest)), 0, 'message digest');
  if (digest.tag !== 0x04 || !createHash(digestHash).update(tstInfoDer).digest().equals(digest.contents)) {
    throw invalid('the timestamp signature does not cover its TSTInfo');
  }
  const when = tstInfo.genTime;
  const signature = Buffer.from(signerInfo.signature.buffer);
  const problems: string[] = [];
  for (const [n, tsa] of authorities.entries()) {
    let chain: X509Certificate[];
    try {
      chain = tsa.certChain.map((c) => new X509Certificate(c));
    } catch {
      problems.push(`TSA ${n}: a certificate does not parse`);
      continue;
    }
    const leaf = chain[0];
    if (leaf === undefined) continue;
    let ok = false;
    try {
      ok = cryptoVerify(digestHash, signedAttrsDer, leaf.publicKey, signature);
    } catch {
      ok = false;
    }
    if (!ok) {
      problems.push(`TSA ${n}: signature does not verify`);
      continue;
    }
    // The window in the trusted root is a closed interval.
    if (!isWithin(tsa.validFor, when)) {
      problems.push(`TSA ${n}: ${when.toISOString()} is outside its trusted window`);
      continue;
    }
    if (!(leaf.keyUsage ?? []).includes(OID.timeStamping)) {
      problems.push(`TSA ${n}: its certificate lacks the timeStamping extended key usage`);
      continue;
    }
    const problem = chainValidAt(chain, when);
    if (problem !== undefined) {
      problems.push(`TSA ${n}: ${problem}`);
      continue;
    }
    return { genTime: when, tsaCertificate: leaf.raw };
  }
  throw invalid(
    `the timestamp is not from a trusted timestamp authority (${problems.join('; ') || 'none listed'})`,
  );
}

/** Options of the gatehouse TSA. */
export interface TimestampAuthorityOptions {
  /** The TSA key (ECDSA P-256); an HSM key works through the Signer interface. */
  signer: Signer;
  /** The TSA's certificate (PEM), issued with EKU timeStamping (critical). */
  certificatePem: string;
  /** Clock, for tests. */
  now?: () => Date;
}

/** The gatehouse timestamp authority: issues RFC 3161 TimeStampResp tokens over signatures. */
export class TimestampAuthority {
  readonly #signer: Signer;
  readonly #now: () => Date;
  /** The parts of every token that do not change: encoded once. */
  readonly #certificates: Buffer;
  readonly #sid: Buffer;
  readonly #essAttribute: Buffer;

  constructor(options: TimestampAuthorityOptions) {
    this.#signer = options.signer;
    this.#now = options.now ?? (() => new Date());
    const certDer = new X509Certificate(options.certificatePem).raw;
    const tbs = children(readElement(certDer, 0, 'TSA certificate').contents, 'TSA certificate')[0];
    const fields = tbs === undefined ? [] : children(tbs.contents, 'TSA certificate');
    const off = fields[0]?.tag === 0xa0 ? 1 : 0;
    const serial = fields[off];
    const issuer = fields[off + 2];
    if (serial === undefined || issuer === undefined) {
      throw new GatehouseError('BAD_CONFIG', 'the TSA certificate is malformed');
    }
    this.#certificates = derElement(0xa0, certDer);
    this.#sid = derElement(0x30, Buffer.concat([issuer.raw, serial.raw]));
    // SigningCertificateV2 { certs SEQUENCE OF ESSCertIDv2 { certHash } } (SHA-256, the default, omitted):
    // binds the token to our certificate so a look-alike cannot be substituted.
    const certHash = createHash('sha256').update(certDer).digest();
    this.#essAttribute = attr(
      OID.signingCertificateV2,
      derElement(0x30, derElement(0x30, derElement(0x30, derElement(0x04, certHash)))),
    );
  }

  /** Time-stamp `data` (the bytes of a signature); returns the DER TimeStampResp. */
  async timestamp(data: Uint8Array): Promise<Uint8Array> {
    const serial = randomBytes(16);
    serial[0] = ((serial[0] ?? 0) & 0x7f) | 0x01;
    const tstInfo = derElement(
      0x30,
      Buffer.concat([
        derElement(0x02, Buffer.of(1)),
        derOid(GATEHOUSE_TSA_POLICY),
        derElement(
          0x30,
          Buffer.concat([
            derElement(0x30, derOid(OID.sha256)),
            derElement(0x04, createHash('sha256').update(data).digest()),
          ]),
        ),
        derElement(0x02, serial),
        generalizedTime(this.#now()),
      ]),
    );
    // DER orders a SET OF by the encodings of its elements.
    const attrs = [
      attr(OID.contentType, derOid(OID.tstInfo)),
      attr(OID.messageDigest, derElement(0x04, createHash('sha256').update(tstInfo).digest())),
      this.#essAttribute,
    ].sort(Buffer.compare);
    const attrsBody = Buffer.concat(attrs);
    const signature = await this.#signer.sign(derElement(0x31, attrsBody));
    const signerInfo = derElement(
      0x30,
      Buffer.concat([
        derElement(0x02, Buffer.of(1)),
        this.#sid,
        derElement(0x30, derOid(OID.sha256)),
        derElement(0xa0, attrsBody),
        derElement(0x30, derOid(OID.ecdsaSha256)),
        derElement(0x04, signature),
      ]),
    );
    const signedData = derElement(
      0x30,
      Buffer.concat([
        derElement(0x02, Buffer.of(3)),
        derElement(0x31, derElement(0x30, derOid(OID.sha256))),
        derElement(0x30, Buffer.concat([derOid(OID.tstInfo), derElement(0xa0, derElement(0x04, tstInfo))])),
        this.#certificates,
        derElement(0x31, signerInfo),
      ]),
    );
    const token = derElement(0x30, Buffer.concat([derOid(OID.signedData), derElement(0xa0, signedData)]));
    const status = derElement(0x30, derElement(0x02, Buffer.of(0)));
    return new Uint8Array(derElement(0x30, Buffer.concat([status, token])));
  }
}

function attr(oid: string, value: Buffer): Buffer {
  return derElement(0x30, Buffer.concat([derOid(oid), derElement(0x31, value)]));
}

/** GeneralizedTime in whole seconds, as most TSAs issue it. */
function generalizedTime(d: Date): Buffer {
  const iso = d.toISOString();
  const text = `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`;
  return derElement(0x18, Buffer.from(text, 'ascii'));
}

const TSA_FILES = {
  rootCert: 'root.crt.pem',
  rootKey: 'root.key.pem',
  cert: 'tsa.crt.pem',
  key: 'tsa.key.pem',
} as const;

/**
 * Create the gatehouse TSA in `dir`: its own self-signed root (so its trust is separate from the
 * code-signing CA) and a signing certificate with the critical timeStamping EKU.
 * @throws GatehouseError CONFLICT when a file exists
 */
export async function createTimestampAuthority(
  dir: string,
  options: { name: string; protection: KeyProtection; now?: Date; signer?: Signer },
): Promise<void> {
  const now = options.now ?? new Date();
  const rootKey = await FileKeySigner.generate(join(dir, TSA_FILES.rootKey), options.protection, 'tsa-root');
  const key =
    options.signer ?? (await FileKeySigner.generate(join(dir, TSA_FILES.key), options.protection, 'tsa'));
  const rootName: x509.JsonName = [{ O: [options.name] }, { CN: [`${options.name} TSA root`] }];
  const rootKid = keyIdentifier(rootKey.publicKeySpki());
  const root = await issueCertificate(rootKey, {
    serialNumber: randomSerial(),
    subject: rootName,
    issuer: rootName,
    notBefore: now,
    notAfter: new Date(now.getTime() + 10 * 365.25 * 86_400_000),
    publicKey: rootKey.publicKeySpki(),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      new x509.SubjectKeyIdentifierExtension(rootKid),
    ],
  });
  const cert = await issueCertificate(rootKey, {
    serialNumber: randomSerial(),
    subject: [{ O: [options.name] }, { CN: [`${options.name} TSA`] }],
    issuer: root.subjectName,
    notBefore: now,
    notAfter: new Date(now.getTime() + 5 * 365.25 * 86_400_000),
    publicKey: key.publicKeySpki(),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([OID.timeStamping], true),
      new x509.SubjectKeyIdentifierExtension(keyIdentifier(key.publicKeySpki())),
      new x509.AuthorityKeyIdentifierExtension(rootKid),
    ],
  });
  await writeFile(join(dir, TSA_FILES.rootCert), root.toString('pem'), { flag: 'wx', mode: 0o644 });
  await writeFile(join(dir, TSA_FILES.cert), cert.toString('pem'), { flag: 'wx', mode: 0o644 });
}

/** The TSA of a home, loaded: its authority and the chain to publish in the trusted root. */
export async function loadTimestampAuthority(
  dir: string,
  protection: KeyProtection,
  signer?: Signer,
): Promise<{ authority: TimestampAuthority; chainPem: string[]; validFrom: Date }> {
  const read = async (f: string): Promise<string> => {
    try {
      return await readFile(join(dir, f), 'utf8');
    } catch (e) {
      throw new GatehouseError(
        'HOME_NOT_INITIALIZED',
        'the timestamp authority is missing: run `gatehouse init`',
        {
          where: join(dir, f),
          cause: e,
        },
      );
    }
  };
  const certificatePem = await read(TSA_FILES.cert);
  const rootPem = await read(TSA_FILES.rootCert);
  const key = signer ?? (await FileKeySigner.load(join(dir, TSA_FILES.key), protection, 'tsa'));
  const cert = new X509Certificate(certificatePem);
  if (!cert.publicKey.export({ format: 'der', type: 'spki' }).equals(Buffer.from(key.publicKeySpki()))) {
    throw new GatehouseError('BAD_CONFIG', 'the TSA key does not match the TSA certificate', { where: dir });
  }
  return {
    authority: new TimestampAuthority({ signer: key, certificatePem }),
    chainPem: [certificatePem, rootPem],
    validFrom: new X509Certificate(rootPem).validFromDate,
  };
}
