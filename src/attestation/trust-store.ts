import { createHash, type X509Certificate } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseTrustedCa } from '../tpm/ek-certificate.ts';
import { ensurePlatformCa, platformCaPaths } from '../tpm/platform-ca.ts';

/** Where a home keeps its attestation trust: the platform CA, trusted EK CAs, the vTPM pool. */
export interface AttestationPaths {
  /** The home's platform CA, which issues its vTPMs' EK certificates. */
  readonly platformCa: string;
  /** Trusted EK CA certificates, one PEM file each. */
  readonly trustedEkCas: string;
  /** Pre-manufactured vTPM states. */
  readonly vtpmPool: string;
}

export function attestationPaths(root: string): AttestationPaths {
  return {
    platformCa: join(root, 'keys', 'platform-ca'),
    trustedEkCas: join(root, 'trusted-ek-cas'),
    vtpmPool: join(root, 'vtpm-pool'),
  };
}

/**
 * Create the platform CA and trust it for EK certificates, unless present (idempotent).
 * @returns the names of what it created
 */
export async function initAttestationHome(root: string): Promise<string[]> {
  const p = attestationPaths(root);
  const created: string[] = [];
  if (await ensurePlatformCa(p.platformCa)) created.push('keys/platform-ca');
  await mkdir(p.trustedEkCas, { recursive: true, mode: 0o700 });
  const target = join(p.trustedEkCas, 'platform-ca.pem');
  if (!existsSync(target)) {
    await copyFile(platformCaPaths(p.platformCa).cert, target);
    created.push('trusted-ek-cas/platform-ca.pem');
  }
  return created;
}

/**
 * Add a CA certificate (PEM or DER) to the trusted EK CAs, under a name derived from its
 * fingerprint. Nothing is written when the file is not a CA certificate.
 * @throws GatehouseError BAD_INPUT naming the file
 * @returns the stored file name
 */
export async function addTrustedEkCa(
  root: string,
  file: string,
): Promise<{ name: string; subject: string; added: boolean }> {
  const bytes = await readFile(file);
  const cert = parseTrustedCa(bytes, file);
  const dir = attestationPaths(root).trustedEkCas;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const name = `${createHash('sha256').update(cert.raw).digest('hex').slice(0, 16)}.pem`;
  const target = join(dir, name);
  if (existsSync(target)) return { name, subject: cert.subject.replace(/\n/g, ', '), added: false };
  await writeFile(target, cert.toString(), { mode: 0o644, flag: 'wx' });
  return { name, subject: cert.subject.replace(/\n/g, ', '), added: true };
}

/**
 * A loader of the trusted EK CAs in a home, read afresh on each call so that `trust-ca add`
 * takes effect in a running server. An unreadable file is skipped (it trusts nothing).
 */
export function trustedEkCasLoader(root: string): () => readonly X509Certificate[] {
  const dir = attestationPaths(root).trustedEkCas;
  return () => {
    const out: X509Certificate[] = [];
    let names: string[] = [];
    try {
      names = readdirSync(dir)
        .filter((n) => n.endsWith('.pem'))
        .sort();
    } catch {
      return out;
    }
    for (const n of names) {
      try {
        out.push(parseTrustedCa(readFileSync(join(dir, n)), join(dir, n)));
      } catch {
        // Fail closed: a file that is not a CA certificate trusts nothing.
      }
    }
    return out;
  };
}
