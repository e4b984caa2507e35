import { createPrivateKey } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import '../signing/reflect-metadata-shim.ts';
import * as x509 from '@peculiar/x509';
import { GatehouseError } from '../common/errors.ts';
import {
  isEncryptedKeyFile,
  type KeyProtection,
  openPrivateKey,
  sealPrivateKey,
} from '../signing/key-file.ts';

x509.cryptoProvider.set(globalThis.crypto);

/** The purpose bound into the platform CA's sealed key file. */
export const PLATFORM_CA_KEY_PURPOSE = 'platform-ca';

/**
 * The platform CA of a home: it issues the EK certificates of the vTPMs the home manufactures,
 * as a TPM vendor's CA does for hardware TPMs. Its files are the ones `swtpm_localca` reads,
 * except that the key is sealed like the home's other keys: manufacturing hands `swtpm_localca` a
 * short-lived decrypted copy ({@link withPlatformCaKeyForTool}).
 */
export interface PlatformCaPaths {
  readonly dir: string;
  readonly key: string;
  readonly cert: string;
  readonly serial: string;
}

export function platformCaPaths(dir: string): PlatformCaPaths {
  return {
    dir,
    key: join(dir, 'signkey.pem'),
    cert: join(dir, 'issuercert.pem'),
    serial: join(dir, 'certserial'),
  };
}

/**
 * Create the platform CA (EC P-256, self-signed, 10 years) unless it exists. Its key is sealed
 * with `protection` (plain PKCS#8 only for `none`: homes from before encryption, tests). An
 * existing plain key is sealed in place when `protection` asks for sealing.
 * @returns true when it was created
 */
export async function ensurePlatformCa(
  dir: string,
  name = 'gatehouse vTPM platform CA',
  protection: KeyProtection = { kind: 'none' },
): Promise<boolean> {
  const p = platformCaPaths(dir);
  if (existsSync(p.cert)) {
    await sealPlainPlatformCaKey(dir, protection);
    return false;
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = await globalThis.crypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const now = new Date();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Buffer.from(globalThis.crypto.getRandomValues(new Uint8Array(16)))
      .toString('hex')
      .replace(/^[89a-f]/, '1'),
    name: `CN=${name}`,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + 10 * 365.25 * 24 * 3600 * 1000),
    keys,
    signingAlgorithm: alg,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = Buffer.from(await globalThis.crypto.subtle.exportKey('pkcs8', keys.privateKey));
  const key = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
  pkcs8.fill(0);
  const pem =
    protection.kind === 'none'
      ? key.export({ format: 'pem', type: 'pkcs8' }).toString()
      : sealPrivateKey(key, protection, PLATFORM_CA_KEY_PURPOSE);
  await writeFile(p.key, pem, { mode: 0o600, flag: 'wx' });
  await writeFile(p.serial, '1\n', { mode: 0o600 });
  await writeFile(p.cert, `${cert.toString('pem')}\n`, { mode: 0o644 });
  return true;
}

/** The platform CA certificate (PEM). */
export function readPlatformCaCert(dir: string): Promise<string> {
  return readFile(platformCaPaths(dir).cert, 'utf8');
}

/**
 * Seal a platform CA key that is still plain PKCS#8 (a home created before the CA key was
 * sealed), in place: written beside it (mode 0600) and renamed over it, so there is never a
 * moment without a usable key file.
 * @returns true when it sealed the key
 */
export async function sealPlainPlatformCaKey(dir: string, protection: KeyProtection): Promise<boolean> {
  if (protection.kind === 'none') return false;
  const p = platformCaPaths(dir);
  const text = await readFile(p.key, 'utf8').catch(() => undefined);
  if (text === undefined || isEncryptedKeyFile(text)) return false;
  let key: ReturnType<typeof createPrivateKey>;
  try {
    key = createPrivateKey({ key: text, format: 'pem' });
  } catch {
    throw new GatehouseError('BAD_CONFIG', 'the platform CA key is not a valid PEM private key', {
      where: p.key,
    });
  }
  const tmp = `${p.key}.sealing`;
  await rm(tmp, { force: true });
  await writeFile(tmp, sealPrivateKey(key, protection, PLATFORM_CA_KEY_PURPOSE), { mode: 0o600, flag: 'wx' });
  await rename(tmp, p.key);
  return true;
}

/**
 * Run `use` with a path to the platform CA key as plain PKCS#8 PEM, for `swtpm_localca`, which
 * reads the key file itself. A sealed key is opened with `protection` and written to a fresh
 * private directory (mode 0700, in memory under /dev/shm where there is one), which is deleted as
 * soon as `use` returns or throws. A plain key (homes from before sealing) is used where it lies,
 * and only when `protection` is `none`.
 * @throws GatehouseError KEY_UNAVAILABLE when the secret is missing or wrong, BAD_CONFIG for a
 *   plain key where sealing is configured, or a malformed file
 */
export async function withPlatformCaKeyForTool<T>(
  dir: string,
  protection: KeyProtection,
  use: (keyPath: string) => Promise<T>,
): Promise<T> {
  const p = platformCaPaths(dir);
  let text: string;
  try {
    text = await readFile(p.key, 'utf8');
  } catch (e) {
    throw new GatehouseError('BAD_CONFIG', 'the platform CA key is missing: run `gatehouse init`', {
      where: p.key,
      cause: e,
    });
  }
  if (!isEncryptedKeyFile(text)) {
    if (protection.kind !== 'none') {
      throw new GatehouseError(
        'BAD_CONFIG',
        'the platform CA key is not encrypted, but the home requires encrypted keys: run `gatehouse init` to seal it',
        { where: p.key },
      );
    }
    return use(p.key);
  }
  const key = openPrivateKey(text, protection, PLATFORM_CA_KEY_PURPOSE, p.key);
  // Memory-backed where possible, so the plain copy never reaches a disk; mkdtemp makes it 0700.
  const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  const privateDir = await mkdtemp(join(base, 'gh-platform-ca-')).catch(() =>
    mkdtemp(join(tmpdir(), 'gh-platform-ca-')),
  );
  try {
    const copy = join(privateDir, 'signkey.pem');
    await writeFile(copy, key.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600, flag: 'wx' });
    return await use(copy);
  } finally {
    await rm(privateDir, { recursive: true, force: true });
  }
}
