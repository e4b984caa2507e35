import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { GatehouseError } from '../common/errors.ts';
import { TpmReader, TpmWriter } from './marshal.ts';

/** TPM_ALG_ID values used here (TPM 2.0 Library Part 2, §6.3). */
export const TPM_ALG = {
  RSA: 0x0001,
  SHA1: 0x0004,
  AES: 0x0006,
  SHA256: 0x000b,
  SHA384: 0x000c,
  SHA512: 0x000d,
  NULL: 0x0010,
  RSASSA: 0x0014,
  RSAES: 0x0015,
  RSAPSS: 0x0016,
  OAEP: 0x0017,
  ECDSA: 0x0018,
  ECDH: 0x0019,
  ECDAA: 0x001a,
  ECSCHNORR: 0x001c,
  ECC: 0x0023,
  CFB: 0x0043,
} as const;

/** TPM_ECC_CURVE values. */
export const TPM_ECC = { NIST_P256: 0x0003, NIST_P384: 0x0004, NIST_P521: 0x0005 } as const;

/** TPM_GENERATED_VALUE: the magic every TPMS_ATTEST starts with ("\xffTCG"). */
export const TPM_GENERATED_VALUE = 0xff544347;
/** TPM_ST_ATTEST_QUOTE. */
export const TPM_ST_ATTEST_QUOTE = 0x8018;

/** TPMA_OBJECT bits (Part 2, §8.3). */
export const TPMA_OBJECT = {
  fixedTPM: 1 << 1,
  stClear: 1 << 2,
  fixedParent: 1 << 4,
  sensitiveDataOrigin: 1 << 5,
  userWithAuth: 1 << 6,
  adminWithPolicy: 1 << 7,
  noDA: 1 << 10,
  encryptedDuplication: 1 << 11,
  restricted: 1 << 16,
  decrypt: 1 << 17,
  sign: 1 << 18,
} as const;

/** Hash algorithms by TPM_ALG_ID: Node name and digest size. */
export const HASHES: Readonly<Record<number, { readonly name: string; readonly size: number }>> = {
  [TPM_ALG.SHA1]: { name: 'sha1', size: 20 },
  [TPM_ALG.SHA256]: { name: 'sha256', size: 32 },
  [TPM_ALG.SHA384]: { name: 'sha384', size: 48 },
  [TPM_ALG.SHA512]: { name: 'sha512', size: 64 },
};

const CURVES: Readonly<Record<number, { readonly jwk: string; readonly size: number }>> = {
  [TPM_ECC.NIST_P256]: { jwk: 'P-256', size: 32 },
  [TPM_ECC.NIST_P384]: { jwk: 'P-384', size: 48 },
  [TPM_ECC.NIST_P521]: { jwk: 'P-521', size: 66 },
};

/** A hash algorithm by id. @throws GatehouseError BAD_INPUT for an unknown one */
export function hashOf(alg: number, where: string): { name: string; size: number } {
  const h = HASHES[alg];
  if (h === undefined)
    throw new GatehouseError('BAD_INPUT', `${where}: unsupported hash algorithm 0x${alg.toString(16)}`);
  return h;
}

/** TPMT_SYM_DEF_OBJECT. */
export interface SymDefObject {
  readonly algorithm: number;
  readonly keyBits?: number;
  readonly mode?: number;
}

/** A parsed TPMT_PUBLIC (RSA or ECC keys only). */
export interface TpmtPublic {
  readonly type: typeof TPM_ALG.RSA | typeof TPM_ALG.ECC;
  readonly nameAlg: number;
  readonly objectAttributes: number;
  readonly authPolicy: Buffer;
  readonly symmetric: SymDefObject;
  /** The signing or encryption scheme; NULL when the key may use any. */
  readonly scheme: { readonly algorithm: number; readonly hashAlg?: number };
  /** RSA: key size in bits and exponent (0 = 65537). */
  readonly rsa?: { readonly keyBits: number; readonly exponent: number; readonly modulus: Buffer };
  /** ECC: curve and point. */
  readonly ecc?: { readonly curve: number; readonly kdf: number; readonly x: Buffer; readonly y: Buffer };
  /** The exact marshalled TPMT_PUBLIC: what the object's Name hashes. */
  readonly raw: Buffer;
}

function readSymDef(r: TpmReader): SymDefObject {
  const algorithm = r.u16();
  if (algorithm === TPM_ALG.NULL) return { algorithm };
  if (algorithm !== TPM_ALG.AES) throw r.fail(`unsupported symmetric algorithm 0x${algorithm.toString(16)}`);
  return { algorithm, keyBits: r.u16(), mode: r.u16() };
}

function readScheme(r: TpmReader): { algorithm: number; hashAlg?: number } {
  const algorithm = r.u16();
  if (algorithm === TPM_ALG.NULL) return { algorithm };
  // ECDAA carries a count as well; refuse it rather than misread the bytes after it.
  if (algorithm === TPM_ALG.ECDAA) throw r.fail('ECDAA schemes are not supported');
  return { algorithm, hashAlg: r.u16() };
}

function readTpmtPublic(r: TpmReader): Omit<TpmtPublic, 'raw'> {
  const type = r.u16();
  const nameAlg = r.u16();
  if (HASHES[nameAlg] === undefined) throw r.fail(`unsupported nameAlg 0x${nameAlg.toString(16)}`);
  const objectAttributes = r.u32();
  const authPolicy = r.tpm2b(64, 'authPolicy');
  if (type !== TPM_ALG.RSA && type !== TPM_ALG.ECC)
    throw r.fail(`unsupported object type 0x${type.toString(16)} (RSA or ECC keys only)`);
  // The RSA and the ECC parameters both start with the symmetric algorithm and the scheme.
  const symmetric = readSymDef(r);
  const scheme = readScheme(r);
  const common = { type, nameAlg, objectAttributes, authPolicy, symmetric, scheme };
  if (type === TPM_ALG.RSA) {
    const keyBits = r.u16();
    const exponent = r.u32();
    const modulus = r.tpm2b(512, 'RSA modulus');
    if (modulus.length * 8 !== keyBits) throw r.fail(`RSA modulus is not ${keyBits} bits`);
    return { ...common, rsa: { keyBits, exponent, modulus } };
  }
  const curve = r.u16();
  if (CURVES[curve] === undefined) throw r.fail(`unsupported ECC curve 0x${curve.toString(16)}`);
  const kdfAlg = r.u16();
  if (kdfAlg !== TPM_ALG.NULL) r.u16();
  const x = r.tpm2b(66, 'ECC x');
  const y = r.tpm2b(66, 'ECC y');
  return { ...common, ecc: { curve, kdf: kdfAlg, x, y } };
}

/**
 * Parse a TPM2B_PUBLIC (as `tpm2_createak -u` and `tpm2_readpublic -o` write it).
 * @throws GatehouseError BAD_INPUT when malformed, unsupported or followed by trailing bytes
 */
export function parseTpm2bPublic(bytes: Uint8Array, what = 'TPM2B_PUBLIC'): TpmtPublic {
  const outer = new TpmReader(bytes, what);
  const inner = outer.tpm2b(2048, 'publicArea');
  outer.end();
  return parseTpmtPublic(inner, what);
}

/** Parse a TPMT_PUBLIC. @throws GatehouseError BAD_INPUT */
export function parseTpmtPublic(bytes: Uint8Array, what = 'TPMT_PUBLIC'): TpmtPublic {
  const r = new TpmReader(bytes, what);
  const pub = readTpmtPublic(r);
  r.end();
  return { ...pub, raw: Buffer.from(bytes) };
}

/** Marshal a TPMT_PUBLIC (used to build EK templates from certificates). */
export function marshalTpmtPublic(p: Omit<TpmtPublic, 'raw'>): Buffer {
  const w = new TpmWriter().u16(p.type).u16(p.nameAlg).u32(p.objectAttributes).tpm2b(p.authPolicy);
  w.u16(p.symmetric.algorithm);
  if (p.symmetric.algorithm !== TPM_ALG.NULL) w.u16(p.symmetric.keyBits ?? 0).u16(p.symmetric.mode ?? 0);
  w.u16(p.scheme.algorithm);
  if (p.scheme.algorithm !== TPM_ALG.NULL) w.u16(p.scheme.hashAlg ?? 0);
  if (p.rsa !== undefined) w.u16(p.rsa.keyBits).u32(p.rsa.exponent).tpm2b(p.rsa.modulus);
  else if (p.ecc !== undefined) {
    w.u16(p.ecc.curve).u16(p.ecc.kdf);
    w.tpm2b(p.ecc.x).tpm2b(p.ecc.y);
  }
  return w.done();
}

/** The object's Name: nameAlg ‖ H_nameAlg(TPMT_PUBLIC). */
export function objectName(pub: TpmtPublic): Buffer {
  const h = hashOf(pub.nameAlg, 'nameAlg');
  const alg = Buffer.alloc(2);
  alg.writeUInt16BE(pub.nameAlg);
  return Buffer.concat([alg, createHash(h.name).update(pub.raw).digest()]);
}

/** TPM_RH_ENDORSEMENT: the endorsement hierarchy's handle, the qualified name of its primaries' parent. */
const TPM_RH_ENDORSEMENT = 0x4000000b;

/** PolicyA of the TCG EK Credential Profile: PolicySecret(TPM_RH_ENDORSEMENT), SHA-256. */
const EK_POLICY_A_SHA256 = Buffer.from(
  '837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa',
  'hex',
);

/**
 * The TPMT_PUBLIC of an RSA 2048 EK made from the TCG default template (EK Credential Profile,
 * template L-1: the one swtpm_setup and TPM vendors use), given its modulus; undefined for a key
 * that template cannot have made (another size or exponent, or not RSA).
 */
export function tcgRsaEkPublic(key: KeyObject): TpmtPublic | undefined {
  if (key.asymmetricKeyType !== 'rsa') return undefined;
  const jwk = key.export({ format: 'jwk' });
  if (jwk.e !== 'AQAB' || jwk.n === undefined) return undefined;
  const modulus = Buffer.from(jwk.n, 'base64url');
  if (modulus.length !== 256) return undefined;
  const pub: Omit<TpmtPublic, 'raw'> = {
    type: TPM_ALG.RSA,
    nameAlg: TPM_ALG.SHA256,
    objectAttributes:
      TPMA_OBJECT.fixedTPM |
      TPMA_OBJECT.fixedParent |
      TPMA_OBJECT.sensitiveDataOrigin |
      TPMA_OBJECT.adminWithPolicy |
      TPMA_OBJECT.restricted |
      TPMA_OBJECT.decrypt,
    authPolicy: EK_POLICY_A_SHA256,
    symmetric: { algorithm: TPM_ALG.AES, keyBits: 128, mode: TPM_ALG.CFB },
    scheme: { algorithm: TPM_ALG.NULL },
    rsa: { keyBits: 2048, exponent: 0, modulus },
  };
  return { ...pub, raw: marshalTpmtPublic(pub) };
}

/**
 * The qualified name of an object whose parent has the qualified name `parentQualifiedName`:
 * nameAlg ‖ H_nameAlg(parent QN ‖ Name) (TPM 2.0 Part 1, 16.6).
 */
export function qualifiedName(parentQualifiedName: Uint8Array, pub: TpmtPublic): Buffer {
  const h = hashOf(pub.nameAlg, 'nameAlg');
  const alg = Buffer.alloc(2);
  alg.writeUInt16BE(pub.nameAlg);
  return Buffer.concat([
    alg,
    createHash(h.name).update(parentQualifiedName).update(objectName(pub)).digest(),
  ]);
}

/**
 * The qualified name an AK created under the TCG default RSA EK (a primary of the endorsement
 * hierarchy) has, which its TPM puts in every quote's qualifiedSigner: derivable from the EK
 * certificate's key and the AK public area alone. Undefined when the EK is not of that template,
 * so that the AK's parentage, and with it the qualified name, cannot be derived.
 */
export function akQualifiedNameUnderEk(ekKey: KeyObject, ak: TpmtPublic): Buffer | undefined {
  const ek = tcgRsaEkPublic(ekKey);
  if (ek === undefined) return undefined;
  const hierarchy = Buffer.alloc(4);
  hierarchy.writeUInt32BE(TPM_RH_ENDORSEMENT);
  return qualifiedName(qualifiedName(hierarchy, ek), ak);
}

function leftPad(b: Buffer, size: number): Buffer {
  if (b.length > size) throw new GatehouseError('BAD_INPUT', 'an ECC coordinate is longer than its curve');
  return b.length === size ? b : Buffer.concat([Buffer.alloc(size - b.length), b]);
}

/** The public key of a TPMT_PUBLIC as a Node KeyObject. @throws GatehouseError BAD_INPUT */
export function publicKeyOf(pub: TpmtPublic): KeyObject {
  try {
    if (pub.rsa !== undefined) {
      const e = pub.rsa.exponent === 0 ? 65537 : pub.rsa.exponent;
      const eb = Buffer.alloc(4);
      eb.writeUInt32BE(e);
      let i = 0;
      while (i < 3 && eb[i] === 0) i++;
      return createPublicKey({
        key: {
          kty: 'RSA',
          n: pub.rsa.modulus.toString('base64url'),
          e: eb.subarray(i).toString('base64url'),
        },
        format: 'jwk',
      });
    }
    if (pub.ecc !== undefined) {
      const c = CURVES[pub.ecc.curve];
      if (c === undefined) throw new Error('curve');
      return createPublicKey({
        key: {
          kty: 'EC',
          crv: c.jwk,
          x: leftPad(pub.ecc.x, c.size).toString('base64url'),
          y: leftPad(pub.ecc.y, c.size).toString('base64url'),
        },
        format: 'jwk',
      });
    }
  } catch (e) {
    throw new GatehouseError('BAD_INPUT', 'the TPM public area does not hold a valid public key', {
      cause: e,
    });
  }
  throw new GatehouseError('BAD_INPUT', 'the TPM public area holds no key');
}

/** Selected PCR indices per hash bank (TPML_PCR_SELECTION). */
export type PcrSelection = ReadonlyArray<{ readonly hashAlg: number; readonly pcrs: readonly number[] }>;

function readPcrSelection(r: TpmReader): PcrSelection {
  const count = r.u32();
  if (count > 16) throw r.fail(`${count} PCR banks selected, more than 16`);
  const out: { hashAlg: number; pcrs: number[] }[] = [];
  for (let i = 0; i < count; i++) {
    const hashAlg = r.u16();
    const size = r.u8();
    if (size > 8) throw r.fail(`sizeofSelect ${size} is more than 8`);
    const bits = r.bytes(size);
    const pcrs: number[] = [];
    for (let b = 0; b < size * 8; b++) if (((bits[b >> 3] ?? 0) >> (b & 7)) & 1) pcrs.push(b);
    out.push({ hashAlg, pcrs });
  }
  return out;
}

/** Marshal a TPML_PCR_SELECTION with 3-byte selects (24 PCRs). */
export function marshalPcrSelection(sel: PcrSelection): Buffer {
  const w = new TpmWriter().u32(sel.length);
  for (const s of sel) {
    const bits = Buffer.alloc(3);
    for (const p of s.pcrs) bits[p >> 3] = (bits[p >> 3] ?? 0) | (1 << (p & 7));
    w.u16(s.hashAlg).u8(3).bytes(bits);
  }
  return w.done();
}

/** A parsed TPMS_ATTEST of type QUOTE. */
export interface TpmsQuote {
  readonly magic: number;
  readonly type: number;
  readonly qualifiedSigner: Buffer;
  readonly extraData: Buffer;
  readonly clock: bigint;
  readonly resetCount: number;
  readonly restartCount: number;
  readonly safe: boolean;
  readonly firmwareVersion: bigint;
  readonly pcrSelection: PcrSelection;
  readonly pcrDigest: Buffer;
}

/**
 * Parse a TPMS_ATTEST (as `tpm2_quote -m` writes it). The magic and the type are returned as
 * read so that the appraiser can report them as their own checks; anything but a QUOTE is refused
 * here because its body has another shape.
 * @throws GatehouseError BAD_INPUT for a truncated, non-quote or trailing-bytes structure
 */
export function parseAttest(bytes: Uint8Array): TpmsQuote {
  const r = new TpmReader(bytes, 'TPMS_ATTEST');
  const magic = r.u32();
  const type = r.u16();
  const qualifiedSigner = r.tpm2b(68, 'qualifiedSigner');
  const extraData = r.tpm2b(64, 'extraData');
  const clock = r.u64();
  const resetCount = r.u32();
  const restartCount = r.u32();
  const safeByte = r.u8();
  if (safeByte > 1) throw r.fail('clockInfo.safe is neither YES nor NO');
  const firmwareVersion = r.u64();
  const common = {
    magic,
    type,
    qualifiedSigner,
    extraData,
    clock,
    resetCount,
    restartCount,
    safe: safeByte === 1,
    firmwareVersion,
  };
  // Only a quote carries a PCR selection and digest; other attestation types leave them empty.
  if (type !== TPM_ST_ATTEST_QUOTE) return { ...common, pcrSelection: [], pcrDigest: Buffer.alloc(0) };
  const pcrSelection = readPcrSelection(r);
  const pcrDigest = r.tpm2b(64, 'pcrDigest');
  r.end();
  return { ...common, pcrSelection, pcrDigest };
}

/** TPM_ST_ATTEST_CERTIFY. */
export const TPM_ST_ATTEST_CERTIFY = 0x8017;

/**
 * Parse a TPMS_ATTEST of type CERTIFY strictly: TPM-made (magic), the certified object's Name and
 * qualified Name, the caller's extraData.
 * @throws GatehouseError BAD_INPUT for another type, a foreign magic, truncation or trailing bytes
 */
export function parseCertifyAttest(bytes: Uint8Array): {
  extraData: Buffer;
  name: Buffer;
  qualifiedName: Buffer;
} {
  const r = new TpmReader(bytes, 'TPMS_ATTEST (certify)');
  if (r.u32() !== TPM_GENERATED_VALUE) throw r.fail('not made by a TPM (magic is not TPM_GENERATED_VALUE)');
  if (r.u16() !== TPM_ST_ATTEST_CERTIFY) throw r.fail('not a TPM_ST_ATTEST_CERTIFY');
  r.tpm2b(68, 'qualifiedSigner');
  const extraData = r.tpm2b(64, 'extraData');
  r.u64();
  r.u32();
  r.u32();
  r.u8();
  r.u64();
  const name = r.tpm2b(68, 'name');
  const qualifiedName = r.tpm2b(68, 'qualifiedName');
  r.end();
  return { extraData, name, qualifiedName };
}

/** A parsed TPMT_SIGNATURE. */
export interface TpmtSignature {
  readonly sigAlg: number;
  readonly hashAlg: number;
  /** ECDSA: r and s. */
  readonly ecdsa?: { readonly r: Buffer; readonly s: Buffer };
  /** RSASSA / RSAPSS: the signature. */
  readonly rsa?: Buffer;
}

/**
 * Parse a TPMT_SIGNATURE (as `tpm2_quote -s` writes it in the default format).
 * @throws GatehouseError BAD_INPUT
 */
export function parseSignature(bytes: Uint8Array): TpmtSignature {
  const r = new TpmReader(bytes, 'TPMT_SIGNATURE');
  const sigAlg = r.u16();
  let out: TpmtSignature;
  if (sigAlg === TPM_ALG.ECDSA) {
    const hashAlg = r.u16();
    out = { sigAlg, hashAlg, ecdsa: { r: r.tpm2b(66, 'signatureR'), s: r.tpm2b(66, 'signatureS') } };
  } else if (sigAlg === TPM_ALG.RSASSA || sigAlg === TPM_ALG.RSAPSS) {
    const hashAlg = r.u16();
    out = { sigAlg, hashAlg, rsa: r.tpm2b(512, 'sig') };
  } else {
    throw r.fail(`unsupported signature algorithm 0x${sigAlg.toString(16)}`);
  }
  r.end();
  return out;
}
