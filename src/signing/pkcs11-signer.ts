/**
 * A signing key inside a PKCS#11 token (an HSM, a cloud KMS bridge, SoftHSM2 in tests). The private
 * key is generated in the token as sensitive and non-extractable; gatehouse only ever asks the
 * token to sign a SHA-256 digest (CKM_ECDSA) and reads the public point.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import type * as Pkcs11Module from 'pkcs11js';
import { GatehouseError } from '../common/errors.ts';
import { derElement } from './der.ts';
import type { Signer } from './signer.ts';

const require = createRequire(import.meta.url);
const pkcs11js = require('pkcs11js') as typeof Pkcs11Module;

/** DER of the prime256v1 OID: the CKA_EC_PARAMS of every key gatehouse makes. */
const P256_PARAMS = Buffer.from('06082a8648ce3d030107', 'hex');
/** SubjectPublicKeyInfo prefix for an uncompressed P-256 point. */
const P256_SPKI_PREFIX = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex');

export interface Pkcs11SignerOptions {
  /** Path of the PKCS#11 module. */
  module: string;
  /** Token label. */
  token: string;
  /** Key label. */
  label: string;
  /** User PIN (from the environment; never logged). */
  pin: string;
  /** Generate the key pair in the token when no key has the label. */
  create?: boolean;
}

interface Loaded {
  lib: Pkcs11Module.PKCS11;
  users: number;
}

// One initialised library per module path per process: C_Initialize may be called only once.
const loaded = new Map<string, Loaded>();

function hsmError(message: string, cause?: unknown): GatehouseError {
  // The cause is a Pkcs11Error naming a CKR_ code; never the PIN.
  return new GatehouseError('KEY_UNAVAILABLE', message, cause === undefined ? {} : { cause });
}

function load(module: string): Loaded {
  let l = loaded.get(module);
  if (l === undefined) {
    const lib = new pkcs11js.PKCS11();
    try {
      lib.load(module);
      lib.C_Initialize();
    } catch (e) {
      throw hsmError(`cannot load the PKCS#11 module ${module}`, e);
    }
    l = { lib, users: 0 };
    loaded.set(module, l);
  }
  l.users++;
  return l;
}

function release(module: string): void {
  const l = loaded.get(module);
  if (l === undefined) return;
  l.users--;
  if (l.users === 0) {
    loaded.delete(module);
    try {
      l.lib.C_Finalize();
      l.lib.close();
    } catch {
      // already finalised
    }
  }
}

function trimLabel(b: Buffer | string): string {
  return b.toString().replace(/[\s\0]+$/, '');
}

/** r‖s (as tokens return ECDSA signatures) to DER. */
function rawToDer(raw: Buffer): Uint8Array {
  const half = raw.length / 2;
  const int = (b: Buffer): Buffer => {
    let i = 0;
    while (i < b.length - 1 && b[i] === 0) i++;
    const v = b.subarray(i);
    return derElement(0x02, (v[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.of(0), v]) : v);
  };
  return derElement(0x30, Buffer.concat([int(raw.subarray(0, half)), int(raw.subarray(half))]));
}

/** An ECDSA P-256 key in a PKCS#11 token. */
export class Pkcs11Signer implements Signer {
  readonly algorithm = 'ecdsa-p256-sha256' as const;
  readonly label: string;
  readonly #module: string;
  readonly #lib: Pkcs11Module.PKCS11;
  readonly #session: Buffer;
  readonly #key: Buffer;
  readonly #spki: Buffer;
  #closed = false;

  private constructor(
    module: string,
    lib: Pkcs11Module.PKCS11,
    session: Buffer,
    key: Buffer,
    spki: Buffer,
    label: string,
  ) {
    this.#module = module;
    this.#lib = lib;
    this.#session = session;
    this.#key = key;
    this.#spki = spki;
    this.label = label;
  }

  /**
   * Open (or, with `create`, generate) the key `label` in token `token`.
   * @throws GatehouseError KEY_UNAVAILABLE when the module, token, PIN or key is not usable
   */
  static open(options: Pkcs11SignerOptions): Pkcs11Signer {
    const { lib } = load(options.module);
    let session: Buffer | undefined;
    try {
      const slot = lib
        .C_GetSlotList(true)
        .find((s) => trimLabel(lib.C_GetTokenInfo(s).label) === options.token);
      if (slot === undefined) throw hsmError(`no PKCS#11 token is labelled '${options.token}'`);
      session = lib.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
      try {
        lib.C_Login(session, pkcs11js.CKU_USER, options.pin);
      } catch (e) {
        // Another session of this process may have logged the token in already.
        if ((e as { code?: number }).code !== pkcs11js.CKR_USER_ALREADY_LOGGED_IN) {
          throw hsmError(`cannot log in to PKCS#11 token '${options.token}' (wrong PIN?)`, e);
        }
      }
      const find = (cls: number): Buffer | undefined => {
        lib.C_FindObjectsInit(session as Buffer, [
          { type: pkcs11js.CKA_CLASS, value: cls },
          { type: pkcs11js.CKA_LABEL, value: options.label },
        ]);
        const [h, ...more] = lib.C_FindObjects(session as Buffer, 2);
        lib.C_FindObjectsFinal(session as Buffer);
        if (more.length > 0) throw hsmError(`more than one PKCS#11 key is labelled '${options.label}'`);
        return h;
      };
      let priv = find(pkcs11js.CKO_PRIVATE_KEY);
      let pub = find(pkcs11js.CKO_PUBLIC_KEY);
      if (priv === undefined && options.create === true) {
        const id = createHash('sha256').update(options.label).digest().subarray(0, 16);
        const pair = lib.C_GenerateKeyPair(
          session,
          { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN },
          [
            { type: pkcs11js.CKA_TOKEN, value: true },
            { type: pkcs11js.CKA_VERIFY, value: true },
            { type: pkcs11js.CKA_EC_PARAMS, value: P256_PARAMS },
            { type: pkcs11js.CKA_LABEL, value: options.label },
            { type: pkcs11js.CKA_ID, value: id },
          ],
          [
            { type: pkcs11js.CKA_TOKEN, value: true },
            { type: pkcs11js.CKA_PRIVATE, value: true },
            { type: pkcs11js.CKA_SENSITIVE, value: true },
            { type: pkcs11js.CKA_EXTRACTABLE, value: false },
            { type: pkcs11js.CKA_SIGN, value: true },
            { type: pkcs11js.CKA_LABEL, value: options.label },
            { type: pkcs11js.CKA_ID, value: id },
          ],
        );
        priv = pair.privateKey;
        pub = pair.publicKey;
      }
      if (priv === undefined || pub === undefined) {
        throw hsmError(`no PKCS#11 key pair is labelled '${options.label}' in token '${options.token}'`);
      }
      const [params, point] = lib.C_GetAttributeValue(session, pub, [
        { type: pkcs11js.CKA_EC_PARAMS },
        { type: pkcs11js.CKA_EC_POINT },
      ]);
      if (!Buffer.isBuffer(params?.value) || !params.value.equals(P256_PARAMS)) {
        throw hsmError(`the PKCS#11 key '${options.label}' is not an ECDSA P-256 key`);
      }
      // CKA_EC_POINT is a DER OCTET STRING around the uncompressed point.
      const raw = point?.value;
      if (!Buffer.isBuffer(raw) || raw.length !== 67 || raw[0] !== 0x04 || raw[1] !== 65 || raw[2] !== 0x04) {
        throw hsmError(`the PKCS#11 key '${options.label}' has an unexpected public point`);
      }
      const spki = Buffer.concat([P256_SPKI_PREFIX, raw.subarray(2)]);
      return new Pkcs11Signer(options.module, lib, session, priv, spki, options.label);
    } catch (e) {
      if (session !== undefined) {
        try {
          lib.C_CloseSession(session);
        } catch {
          // best effort
        }
      }
      release(options.module);
      if (e instanceof GatehouseError) throw e;
      throw hsmError(`the PKCS#11 token refused to open key '${options.label}'`, e);
    }
  }

  publicKeySpki(): Uint8Array {
    return new Uint8Array(this.#spki);
  }

  publicKeyPem(): string {
    const b64 = this.#spki.toString('base64').replace(/.{64}/g, '$&\n');
    return `-----BEGIN PUBLIC KEY-----\n${b64.replace(/\n$/, '')}\n-----END PUBLIC KEY-----\n`;
  }

  async sign(data: Uint8Array): Promise<Uint8Array> {
    if (this.#closed) throw hsmError(`the PKCS#11 key '${this.label}' is closed`);
    const digest = createHash('sha256').update(data).digest();
    try {
      // C_SignInit + C_Sign run back to back on one session with no await between them, so
      // concurrent callers cannot interleave operations on it.
      this.#lib.C_SignInit(this.#session, { mechanism: pkcs11js.CKM_ECDSA }, this.#key);
      const raw = this.#lib.C_Sign(this.#session, digest, Buffer.alloc(64));
      return rawToDer(raw);
    } catch (e) {
      throw hsmError(`the PKCS#11 token failed to sign with '${this.label}'`, e);
    }
  }

  /** Close the session; the library is finalised when its last signer closes. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#lib.C_CloseSession(this.#session);
    } catch {
      // the token may be gone already
    }
    release(this.#module);
  }

  /** Nothing about the key or PIN in logs or JSON. */
  toJSON(): { algorithm: string; label: string } {
    return { algorithm: this.algorithm, label: this.label };
  }
}
