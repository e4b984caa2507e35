import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { GatehouseError } from '../common/errors.ts';
import {
  isEncryptedKeyFile,
  type KeyProtection,
  openPrivateKey,
  readKeptFile,
  sealPrivateKey,
} from './key-file.ts';
import type { Signer } from './signer.ts';

/** Check that a key is an EC P-256 key; `where` names it in the error. */
function assertP256(key: KeyObject, where: string): void {
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new GatehouseError('BAD_CONFIG', 'the key is not an ECDSA P-256 key', { where });
  }
}

/** Shared behaviour of the in-process signers: the key stays in a #private field. */
abstract class KeyObjectSigner implements Signer {
  readonly algorithm = 'ecdsa-p256-sha256' as const;
  readonly #privateKey: KeyObject;
  readonly #spki: Uint8Array;

  protected constructor(privateKey: KeyObject, spki?: Uint8Array) {
    this.#privateKey = privateKey;
    // One export: every approval makes a leaf key, and the PEM form is rarely wanted.
    this.#spki = new Uint8Array(spki ?? createPublicKey(privateKey).export({ format: 'der', type: 'spki' }));
  }

  publicKeySpki(): Uint8Array {
    return this.#spki.slice();
  }

  publicKeyPem(): string {
    const b64 = Buffer.from(this.#spki).toString('base64').replace(/.{64}/g, '$&\n');
    return `-----BEGIN PUBLIC KEY-----\n${b64.replace(/\n$/, '')}\n-----END PUBLIC KEY-----\n`;
  }

  async sign(data: Uint8Array): Promise<Uint8Array> {
    // Synchronous on purpose: node's callback form costs the event loop more per signature (its
    // job set-up) than the signature itself (measured in bench/signing.ts). DER is the default.
    return new Uint8Array(sign('sha256', data, this.#privateKey));
  }

  /** Nothing about the key in logs or JSON. */
  toJSON(): { algorithm: string } {
    return { algorithm: this.algorithm };
  }
}

/**
 * A P-256 key held in a file with mode 0600: sealed with the home's key-encryption key or a
 * passphrase (the default for homes; see key-file.ts), or plain PKCS#8 PEM when `protection` is
 * `none` (homes created before encryption, tests).
 */
export class FileKeySigner extends KeyObjectSigner {
  /** The file the key came from. */
  readonly path: string;

  private constructor(privateKey: KeyObject, path: string) {
    super(privateKey);
    this.path = path;
  }

  /**
   * Generate a new P-256 key and write it to `path` (mode 0600), refusing to overwrite.
   * @throws GatehouseError CONFLICT when the file exists, STORE_ERROR when it cannot be written
   */
  static async generate(
    path: string,
    protection: KeyProtection = { kind: 'none' },
    purpose = 'signing',
  ): Promise<FileKeySigner> {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pem =
      protection.kind === 'none'
        ? privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()
        : sealPrivateKey(privateKey, protection, purpose);
    try {
      // 'wx' fails when the file exists, so an existing key is never replaced.
      await writeFile(path, pem, { mode: 0o600, flag: 'wx' });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new GatehouseError('CONFLICT', 'a key file already exists; refusing to overwrite it', {
          where: path,
          cause: e,
        });
      }
      throw new GatehouseError('STORE_ERROR', 'cannot write the key file', { where: path, cause: e });
    }
    return new FileKeySigner(privateKey, path);
  }

  /**
   * Load a P-256 key from `path`: sealed (opened with `protection`) or, only when `protection` is
   * `none`, plain PKCS#8 PEM. A plain file where protection is expected is refused.
   * @throws GatehouseError NOT_FOUND when the file is missing, BAD_CONFIG when it is not a P-256 key
   *   or not protected as configured, KEY_UNAVAILABLE when the secret is missing or wrong
   */
  static async load(
    path: string,
    protection: KeyProtection = { kind: 'none' },
    purpose = 'signing',
  ): Promise<FileKeySigner> {
    const pem = await readKeptFile(path, 'key file');
    if (isEncryptedKeyFile(pem)) {
      const key = openPrivateKey(pem, protection, purpose, path);
      assertP256(key, path);
      return new FileKeySigner(key, path);
    }
    if (protection.kind !== 'none') {
      throw new GatehouseError(
        'BAD_CONFIG',
        'the key file is not encrypted, but the home requires encrypted keys',
        {
          where: path,
        },
      );
    }
    let key: KeyObject;
    try {
      key = createPrivateKey({ key: pem, format: 'pem' });
    } catch {
      // The cause may quote the file; keep only the fact that it did not parse.
      throw new GatehouseError('BAD_CONFIG', 'the key file is not a valid PEM private key', { where: path });
    }
    assertP256(key, path);
    return new FileKeySigner(key, path);
  }
}

/**
 * Read a private key file (sealed, or plain when `protection` is `none`) as a KeyObject, for
 * code that signs with node:crypto or jose directly (the attestation authority).
 * @throws GatehouseError as {@link FileKeySigner.load}
 */
export async function readPrivateKeyFile(
  path: string,
  protection: KeyProtection,
  purpose: string,
): Promise<KeyObject> {
  const text = await readKeptFile(path, 'key file');
  if (isEncryptedKeyFile(text)) return openPrivateKey(text, protection, purpose, path);
  if (protection.kind !== 'none') {
    throw new GatehouseError(
      'BAD_CONFIG',
      'the key file is not encrypted, but the home requires encrypted keys',
      {
        where: path,
      },
    );
  }
  try {
    return createPrivateKey({ key: text, format: 'pem' });
  } catch {
    throw new GatehouseError('BAD_CONFIG', 'the key file is not a valid PEM private key', { where: path });
  }
}

/** A P-256 key that lives only in memory, for per-job leaf keys and tests. */
export class EphemeralSigner extends KeyObjectSigner {
  private constructor(privateKey: KeyObject, spki: Uint8Array) {
    super(privateKey, spki);
  }

  /** A fresh random key. */
  static generate(): EphemeralSigner {
    // The public key comes encoded with the pair: every approval makes one, and a separate export
    // of the public half costs more than the generation.
    // (node returns each half encoded only when asked; its types want both or neither.)
    const { privateKey, publicKey } = generateKeyPairSync('ec', {
      namedCurve: 'P-256',
      publicKeyEncoding: { type: 'spki', format: 'der' },
    } as never) as unknown as { privateKey: KeyObject; publicKey: Buffer };
    return new EphemeralSigner(privateKey, publicKey);
  }
}
