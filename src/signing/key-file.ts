/**
 * Key files encrypted at rest. A key file holds the PKCS#8 DER private key sealed with AES-256-GCM
 * under a key derived from either the home's key-encryption key (a 32-byte random file, HKDF-SHA256)
 * or an operator's passphrase (scrypt). The header (format, KDF and its parameters, purpose) is
 * the GCM additional data, so it cannot be altered without the tag failing.
 *
 * ```
 * -----BEGIN GATEHOUSE ENCRYPTED PRIVATE KEY-----
 * base64 of {"format":"gatehouse-key/1","purpose":…,"kdf":{…},"cipher":"aes-256-gcm",
 *            "nonce":…,"ciphertext":…,"tag":…}
 * -----END GATEHOUSE ENCRYPTED PRIVATE KEY-----
 * ```
 */
import {
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  hkdfSync,
  type KeyObject,
  randomBytes,
  scryptSync,
} from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { canonicalJson } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import { base64String } from './strict-base64.ts';

/** How a key file is protected. */
export type KeyProtection =
  /** Plain PKCS#8 PEM: only for homes created before encryption, or explicitly configured. */
  | { kind: 'none' }
  /** The home's key-encryption key: 32 random bytes from a file with mode 0600. */
  | { kind: 'kek'; kek: Uint8Array }
  /** A passphrase an operator supplies (from an environment variable), never stored. */
  | { kind: 'passphrase'; passphrase: string };

const BEGIN = '-----BEGIN GATEHOUSE ENCRYPTED PRIVATE KEY-----';
const END = '-----END GATEHOUSE ENCRYPTED PRIVATE KEY-----';
const FORMAT = 'gatehouse-key/1';
/** scrypt cost: N = 2^15, r = 8, p = 1 (32 MiB, roughly 100 ms here): an offline guess costs the same. */
const SCRYPT = { N: 32768, r: 8, p: 1 } as const;

const kdfSchema = z.discriminatedUnion('name', [
  z.strictObject({ name: z.literal('hkdf-sha256'), salt: base64String }),
  z.strictObject({
    name: z.literal('scrypt'),
    salt: base64String,
    N: z.number().int().min(16384).max(1048576),
    r: z.number().int().min(8).max(32),
    p: z.number().int().min(1).max(16),
  }),
]);

const fileSchema = z.strictObject({
  format: z.literal(FORMAT),
  purpose: z.string().max(200),
  kdf: kdfSchema,
  cipher: z.literal('aes-256-gcm'),
  nonce: base64String,
  ciphertext: base64String,
  tag: base64String,
});

type KdfParams = z.infer<typeof kdfSchema>;

function locked(message: string, where: string | undefined): GatehouseError {
  return new GatehouseError('KEY_UNAVAILABLE', message, where === undefined ? {} : { where });
}

function deriveKey(kdf: KdfParams, protection: KeyProtection, where: string | undefined): Buffer {
  const salt = Buffer.from(kdf.salt, 'base64');
  switch (kdf.name) {
    case 'hkdf-sha256':
      if (protection.kind !== 'kek')
        throw locked('the key file is sealed with the home key-encryption key, which was not given', where);
      return Buffer.from(hkdfSync('sha256', protection.kek, salt, 'gatehouse key file', 32));
    case 'scrypt':
      if (protection.kind !== 'passphrase')
        throw locked('the key file is sealed with a passphrase, which was not given', where);
      return scryptSync(protection.passphrase, salt, 32, {
        N: kdf.N,
        r: kdf.r,
        p: kdf.p,
        maxmem: 256 * kdf.N * kdf.r,
      });
  }
}

/** True when `text` is an encrypted gatehouse key file. */
export function isEncryptedKeyFile(text: string): boolean {
  return text.trimStart().startsWith(BEGIN);
}

/**
 * Seal a private key. `purpose` (e.g. `log`) is bound into the file so a file cannot be swapped
 * for another purpose's unnoticed.
 * @throws GatehouseError BAD_CONFIG for protection 'none' or an empty passphrase
 */
export function sealPrivateKey(key: KeyObject, protection: KeyProtection, purpose: string): string {
  const der = key.export({ format: 'der', type: 'pkcs8' });
  if (protection.kind === 'none')
    throw new GatehouseError('BAD_CONFIG', 'sealing a key needs a key-encryption key or a passphrase');
  if (protection.kind === 'passphrase' && protection.passphrase.length < 12) {
    throw new GatehouseError('BAD_CONFIG', 'the key passphrase must be at least 12 characters');
  }
  const salt = randomBytes(16).toString('base64');
  const kdf: KdfParams =
    protection.kind === 'kek' ? { name: 'hkdf-sha256', salt } : { name: 'scrypt', salt, ...SCRYPT };
  const header = { format: FORMAT, purpose, kdf, cipher: 'aes-256-gcm' as const };
  const aek = deriveKey(kdf, protection, undefined);
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', aek, nonce);
  cipher.setAAD(Buffer.from(canonicalJson(header), 'utf8'));
  const ciphertext = Buffer.concat([cipher.update(der), cipher.final()]);
  aek.fill(0);
  der.fill(0);
  const body = {
    ...header,
    nonce: nonce.toString('base64'),
    ciphertext: ciphertext.toString('base64'),
    tag: cipher.getAuthTag().toString('base64'),
  };
  const b64 = Buffer.from(JSON.stringify(body), 'utf8').toString('base64').replace(/.{64}/g, '$&\n');
  return `${BEGIN}\n${b64.replace(/\n$/, '')}\n${END}\n`;
}

/**
 * Open a sealed key file. `where` names the file in errors; `purpose` must match the sealed one.
 * @throws GatehouseError KEY_UNAVAILABLE when the secret is missing or wrong, BAD_CONFIG when the
 *   file is malformed
 */
export function openPrivateKey(
  text: string,
  protection: KeyProtection,
  purpose: string,
  where?: string,
): KeyObject {
  const opts = where === undefined ? {} : { where };
  const trimmed = text.trim();
  if (!trimmed.startsWith(BEGIN) || !trimmed.endsWith(END)) {
    throw new GatehouseError('BAD_CONFIG', 'the key file is not a gatehouse encrypted key', opts);
  }
  let parsed: z.infer<typeof fileSchema>;
  try {
    const json = Buffer.from(trimmed.slice(BEGIN.length, -END.length).replace(/\s+/g, ''), 'base64').toString(
      'utf8',
    );
    parsed = fileSchema.parse(JSON.parse(json));
  } catch {
    throw new GatehouseError('BAD_CONFIG', 'the encrypted key file is malformed', opts);
  }
  if (parsed.purpose !== purpose) {
    throw new GatehouseError(
      'BAD_CONFIG',
      `the key file is sealed for '${parsed.purpose}', not '${purpose}'`,
      opts,
    );
  }
  const header = { format: parsed.format, purpose: parsed.purpose, kdf: parsed.kdf, cipher: parsed.cipher };
  const aek = deriveKey(parsed.kdf, protection, where);
  let der: Buffer;
  try {
    const decipher = createDecipheriv('aes-256-gcm', aek, Buffer.from(parsed.nonce, 'base64'));
    decipher.setAAD(Buffer.from(canonicalJson(header), 'utf8'));
    decipher.setAuthTag(Buffer.from(parsed.tag, 'base64'));
    der = Buffer.concat([decipher.update(Buffer.from(parsed.ciphertext, 'base64')), decipher.final()]);
  } catch {
    // Wrong secret and tampered file look the same to GCM; say both.
    throw locked(
      'the key file does not open: wrong passphrase or key-encryption key, or the file was altered',
      where,
    );
  } finally {
    aek.fill(0);
  }
  try {
    return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  } catch {
    throw new GatehouseError('BAD_CONFIG', 'the encrypted key file holds no valid private key', opts);
  } finally {
    der.fill(0);
  }
}

/**
 * Read a key or certificate file the home keeps.
 * @throws GatehouseError NOT_FOUND when it is not there, STORE_ERROR when it cannot be read
 */
export async function readKeptFile(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'NOT_FOUND' : 'STORE_ERROR';
    throw new GatehouseError(code, `cannot read the ${what}`, { where: path, cause: e });
  }
}
