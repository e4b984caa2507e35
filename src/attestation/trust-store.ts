import { createHash, type X509Certificate } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { canonicalJson } from '../common/encoding.ts';
import { GatehouseError } from '../common/errors.ts';
import type { KeyProtection } from '../signing/key-file.ts';
import type { TrustedKey } from '../signing/security-act.ts';
import { parseTrustedCa } from '../tpm/ek-certificate.ts';
import { platformCaPaths, sealPlainPlatformCaKey } from '../tpm/platform-ca.ts';
import { verifySecurityPayload } from './reference-values.ts';

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
export async function initAttestationHome(
  root: string,
  protection: KeyProtection = { kind: 'none' },
): Promise<string[]> {
  const p = attestationPaths(root);
  const created: string[] = [];
  // No platform CA is made any more: vTPM EK certificates are issued by the host TPM's key. An
  // older home's plain platform CA key is still sealed, so that no plain key lies in a home.
  if (existsSync(platformCaPaths(p.platformCa).key)) await sealPlainPlatformCaKey(p.platformCa, protection);
  await mkdir(p.trustedEkCas, { recursive: true, mode: 0o700 });
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
  return storeTrustedEkCa(root, parseTrustedCa(await readFile(file), file));
}

/** DSSE payload type of the security role's act of trusting an EK CA. */
export const EK_CA_PAYLOAD_TYPE = 'application/vnd.gatehouse.ek-ca.v1+json';

/** What the security role signs to trust an EK CA: the SHA-256 of the certificate's DER. */
export function ekCaTrustPayload(der: Uint8Array): string {
  return canonicalJson({ certificate_sha256: createHash('sha256').update(der).digest('hex') });
}

/**
 * Trust an EK CA on the security role's signature (POST /v1/attestation/trusted-cas). The
 * signature is checked before the certificate is parsed or anything is written.
 * @param certificate base64 DER or PEM of the CA certificate
 * @throws GatehouseError SIGNATURE_INVALID, BAD_INPUT naming what is wrong, CONFLICT (already trusted:
 *   a replayed act)
 */
export async function trustEkCaSigned(
  root: string,
  body: { certificate: string; signature: string; keyId: string },
  trusted: readonly TrustedKey[],
): Promise<{ name: string; subject: string; added: boolean }> {
  const pem = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE-----/.exec(
    body.certificate,
  );
  const b64 = (pem?.[1] ?? body.certificate).replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64))
    throw new GatehouseError('BAD_INPUT', 'certificate must be a PEM certificate or base64 DER');
  const der = Buffer.from(b64, 'base64');
  verifySecurityPayload(EK_CA_PAYLOAD_TYPE, ekCaTrustPayload(der), body, trusted);
  const stored = await storeTrustedEkCa(root, parseTrustedCa(der, 'the submitted EK CA certificate'));
  // The act is single-use: the same signature posted again is refused and changes nothing.
  if (!stored.added)
    throw new GatehouseError('CONFLICT', `the EK CA ${stored.subject} is already trusted (${stored.name})`);
  return stored;
}

async function storeTrustedEkCa(
  root: string,
  cert: X509Certificate,
): Promise<{ name: string; subject: string; added: boolean }> {
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
