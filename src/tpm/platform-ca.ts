import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import '../signing/reflect-metadata-shim.ts';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(globalThis.crypto);

/**
 * The platform CA of a home: it issues the EK certificates of the vTPMs the home manufactures,
 * as a TPM vendor's CA does for hardware TPMs. Its files are the ones `swtpm_localca` reads.
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
 * Create the platform CA (EC P-256, self-signed, 10 years) unless it exists.
 * @returns true when it was created
 */
export async function ensurePlatformCa(dir: string, name = 'gatehouse vTPM platform CA'): Promise<boolean> {
  const p = platformCaPaths(dir);
  if (existsSync(p.cert)) return false;
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
  const pem = `-----BEGIN PRIVATE KEY-----\n${pkcs8
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .replace(/\n$/, '')}\n-----END PRIVATE KEY-----\n`;
  await writeFile(p.key, pem, { mode: 0o600, flag: 'wx' });
  await writeFile(p.serial, '1\n', { mode: 0o600 });
  await writeFile(p.cert, `${cert.toString('pem')}\n`, { mode: 0o644 });
  return true;
}

/** The platform CA certificate (PEM). */
export function readPlatformCaCert(dir: string): Promise<string> {
  return readFile(platformCaPaths(dir).cert, 'utf8');
}
