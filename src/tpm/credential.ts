import {
  constants,
  createCipheriv,
  createECDH,
  createHash,
  createHmac,
  type KeyObject,
  publicEncrypt,
  randomBytes,
} from 'node:crypto';
import { GatehouseError } from '../common/errors.ts';
import { TpmReader, TpmWriter } from './marshal.ts';

/**
 * The counter-mode loop both TPM KDFs share: `block(i)` for i = 1, 2, … (i as 32-bit big-endian),
 * concatenated until there are `bits`, cut to whole bytes.
 */
function counterKdf(bits: number, block: (counter: Buffer) => Buffer): Buffer {
  const out: Buffer[] = [];
  let have = 0;
  for (let i = 1; have * 8 < bits; i++) {
    const counter = Buffer.alloc(4);
    counter.writeUInt32BE(i);
    const b = block(counter);
    out.push(b);
    have += b.length;
  }
  return Buffer.concat(out).subarray(0, Math.ceil(bits / 8));
}

/** A label with its terminating 0x00, as both KDFs take it. */
function labelBytes(label: string): Buffer {
  return Buffer.concat([Buffer.from(label, 'ascii'), Buffer.alloc(1)]);
}

/**
 * KDFa (TPM 2.0 Part 1, §11.4.10.2): SP 800-108 counter mode with HMAC. Each block is
 * HMAC(key, i ‖ label ‖ 0x00 ‖ contextU ‖ contextV ‖ bits), i and bits as 32-bit big-endian.
 */
export function kdfa(
  hash: string,
  key: Uint8Array,
  label: string,
  contextU: Uint8Array,
  contextV: Uint8Array,
  bits: number,
): Buffer {
  const bitsBuf = Buffer.alloc(4);
  bitsBuf.writeUInt32BE(bits);
  const labelBuf = labelBytes(label);
  return counterKdf(bits, (counter) =>
    createHmac(hash, key)
      .update(counter)
      .update(labelBuf)
      .update(contextU)
      .update(contextV)
      .update(bitsBuf)
      .digest(),
  );
}

/**
 * KDFe (TPM 2.0 Part 1, §11.4.10.3): SP 800-56A concatenation KDF. Each block is
 * H(i ‖ Z ‖ label ‖ 0x00 ‖ partyUInfo ‖ partyVInfo).
 */
export function kdfe(
  hash: string,
  z: Uint8Array,
  label: string,
  partyU: Uint8Array,
  partyV: Uint8Array,
  bits: number,
): Buffer {
  const labelBuf = labelBytes(label);
  return counterKdf(bits, (counter) =>
    createHash(hash).update(counter).update(z).update(labelBuf).update(partyU).update(partyV).digest(),
  );
}

/** The tpm2-tools credential file header: magic 0xBADCC0DE, version 1. */
const CREDENTIAL_MAGIC = 0xbadcc0de;
const CREDENTIAL_VERSION = 1;

/**
 * The EK parameters MakeCredential depends on, from the TCG EK Credential Profile's default
 * templates: RSA 2048 (L-1) and ECC NIST P-256 (L-2) use SHA-256 and AES-128-CFB; ECC NIST
 * P-384 (H-2) uses SHA-384 and AES-256-CFB.
 */
export interface EkParameters {
  readonly hash: 'sha256' | 'sha384';
  readonly symmetricBits: 128 | 256;
}

/** EK template parameters for an EK public key. @throws GatehouseError BAD_INPUT */
export function ekParametersOf(ek: KeyObject): EkParameters {
  const d = ek.asymmetricKeyDetails;
  if (ek.asymmetricKeyType === 'rsa' && d?.modulusLength === 2048)
    return { hash: 'sha256', symmetricBits: 128 };
  if (ek.asymmetricKeyType === 'ec' && d?.namedCurve === 'prime256v1')
    return { hash: 'sha256', symmetricBits: 128 };
  if (ek.asymmetricKeyType === 'ec' && d?.namedCurve === 'secp384r1')
    return { hash: 'sha384', symmetricBits: 256 };
  throw new GatehouseError('BAD_INPUT', 'the EK is neither RSA 2048 nor ECC NIST P-256/P-384');
}

function seedFor(ek: KeyObject, p: EkParameters): { seed: Buffer; encryptedSecret: Buffer } {
  const digestBits = p.hash === 'sha256' ? 256 : 384;
  if (ek.asymmetricKeyType === 'rsa') {
    // Part 1 §24.4 / Annex B.10.3: a random seed, RSA-OAEP encrypted to the EK with label "IDENTITY".
    const seed = randomBytes(digestBits / 8);
    const encryptedSecret = publicEncrypt(
      {
        key: ek,
        padding: constants.RSA_PKCS1_OAEP_PADDING,
        oaepHash: p.hash,
        oaepLabel: Buffer.from('IDENTITY\0', 'ascii'),
      },
      seed,
    );
    return { seed, encryptedSecret };
  }
  // Annex C.6.4: one-pass ECDH with an ephemeral key; seed = KDFe(Z, "IDENTITY", Qe.x, Qs.x).
  const jwk = ek.export({ format: 'jwk' });
  const curve = jwk.crv === 'P-256' ? 'prime256v1' : 'secp384r1';
  const size = curve === 'prime256v1' ? 32 : 48;
  const ekX = Buffer.from(jwk.x ?? '', 'base64url');
  const ekY = Buffer.from(jwk.y ?? '', 'base64url');
  const eph = createECDH(curve);
  const ephPub = eph.generateKeys();
  const z = eph.computeSecret(Buffer.concat([Buffer.from([4]), ekX, ekY]));
  const ephX = ephPub.subarray(1, 1 + size);
  const ephY = ephPub.subarray(1 + size);
  const seed = kdfe(p.hash, z, 'IDENTITY', ephX, ekX, digestBits);
  return { seed, encryptedSecret: new TpmWriter().tpm2b(ephX).tpm2b(ephY).done() };
}

/**
 * TPM2_MakeCredential done outside the TPM (Part 1 §24): protect `credential` so that only the
 * TPM holding the EK can recover it, and only for the object named `akName`. Returns the blob in
 * the tpm2-tools file format (`tpm2_activatecredential -i` reads it): the 0xBADCC0DE header,
 * TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET.
 * @throws GatehouseError BAD_INPUT for an unsupported EK or a credential over the digest size
 */
export function makeCredential(ek: KeyObject, akName: Uint8Array, credential: Uint8Array): Buffer {
  const p = ekParametersOf(ek);
  const digestBytes = p.hash === 'sha256' ? 32 : 48;
  if (credential.length === 0 || credential.length > digestBytes) {
    throw new GatehouseError('BAD_INPUT', `a credential must be 1 to ${digestBytes} bytes`);
  }
  const { seed, encryptedSecret } = seedFor(ek, p);
  const symKey = kdfa(p.hash, seed, 'STORAGE', akName, new Uint8Array(0), p.symmetricBits);
  const cipher = createCipheriv(
    p.symmetricBits === 128 ? 'aes-128-cfb' : 'aes-256-cfb',
    symKey,
    Buffer.alloc(16),
  );
  // The encrypted part is the marshalled TPM2B_DIGEST of the credential.
  const encIdentity = Buffer.concat([
    cipher.update(new TpmWriter().tpm2b(credential).done()),
    cipher.final(),
  ]);
  const hmacKey = kdfa(p.hash, seed, 'INTEGRITY', new Uint8Array(0), new Uint8Array(0), digestBytes * 8);
  const outerHmac = createHmac(p.hash, hmacKey).update(encIdentity).update(akName).digest();
  const idObject = Buffer.concat([new TpmWriter().tpm2b(outerHmac).done(), encIdentity]);
  return new TpmWriter()
    .u32(CREDENTIAL_MAGIC)
    .u32(CREDENTIAL_VERSION)
    .tpm2b(idObject)
    .tpm2b(encryptedSecret)
    .done();
}

/**
 * Split a tpm2-tools credential file into its TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET
 * contents, strictly.
 * @throws GatehouseError BAD_INPUT
 */
export function parseCredentialBlob(bytes: Uint8Array): { idObject: Buffer; encryptedSecret: Buffer } {
  const r = new TpmReader(bytes, 'credential blob');
  if (r.u32() !== CREDENTIAL_MAGIC) throw r.fail('not a tpm2-tools credential file (magic)');
  if (r.u32() !== CREDENTIAL_VERSION) throw r.fail('unsupported credential file version');
  const idObject = r.tpm2b(2 + 64 + 2 + 64, 'TPM2B_ID_OBJECT');
  const encryptedSecret = r.tpm2b(512, 'TPM2B_ENCRYPTED_SECRET');
  r.end();
  return { idObject, encryptedSecret };
}
