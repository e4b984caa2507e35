/**
 * Revocation of platform certificates by the vendors' CRLs (AMD's KDS CRL of the ASK and VCEKs,
 * Intel's PCK CRLs, …), as files the security role places beside the roots: a certificate on a
 * verified path is refused when a CRL its issuer signed lists it, and a CRL past its nextUpdate
 * refuses the whole path, so that an old CRL cannot hide a new revocation.
 */
import '../../signing/reflect-metadata-shim.ts';
import type { X509Certificate as NodeX509 } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import type { TrustAnchors } from './verifier.ts';
import { ChainError, verifyChain } from './x509-chain.ts';

x509.cryptoProvider.set(globalThis.crypto);

/** Largest CRL accepted, in bytes. */
const MAX_CRL_BYTES = 4 * 1024 * 1024;

/** A parsed CRL, not yet verified (its issuer's signature is checked against the path). */
export type PlatformCrl = x509.X509Crl;

/**
 * Parse a CRL (DER or PEM).
 * @throws Error naming `where`
 */
export function parseCrl(bytes: Uint8Array, where: string): PlatformCrl {
  if (bytes.length === 0 || bytes.length > MAX_CRL_BYTES)
    throw new Error(`${where} is not a CRL of 1 byte to 4 MiB`);
  const text = Buffer.from(bytes).toString('latin1');
  try {
    return new x509.X509Crl(text.includes('-----BEGIN X509 CRL-----') ? text : Buffer.from(bytes));
  } catch (e) {
    throw new Error(`${where} is not a DER or PEM X.509 CRL`, { cause: e });
  }
}

const normalise = (serial: string) => serial.toLowerCase().replace(/^0+(?=.)/, '');

/**
 * Check every certificate of a verified path (leaf first, anchor last) against the CRLs signed
 * by its issuer on the path.
 * @throws ChainError naming the revoked certificate, or the CRL that is out of date
 */
export async function checkRevocation(
  path: readonly NodeX509[],
  crls: readonly PlatformCrl[],
  now: Date,
  what: string,
): Promise<void> {
  if (crls.length === 0) return;
  for (let i = 0; i + 1 < path.length; i++) {
    const cert = path[i];
    const issuer = path[i + 1];
    if (cert === undefined || issuer === undefined) continue;
    const issuerCert = new x509.X509Certificate(issuer.raw);
    for (const crl of crls) {
      // A CRL counts only when the certificate's own issuer signed it.
      if (new x509.Name(crl.issuer).toString() !== issuerCert.subject) continue;
      let signed = false;
      try {
        signed = await crl.verify({ publicKey: issuerCert });
      } catch {
        signed = false;
      }
      if (!signed) continue;
      if (crl.nextUpdate !== undefined && crl.nextUpdate < now)
        throw new ChainError(
          `the CRL of '${issuerCert.subject}' was due for renewal on ${crl.nextUpdate.toISOString()}: install a current one`,
        );
      const serial = normalise(cert.serialNumber);
      if (crl.entries.some((e) => normalise(e.serialNumber) === serial))
        throw new ChainError(
          `the ${what} chain's '${cert.subject.replace(/\n/g, ', ')}' (serial ${cert.serialNumber}) is revoked by its issuer's CRL`,
        );
    }
  }
}

/**
 * The path from `leaf` (through `intermediates`) to one of the anchors' roots, with no certificate
 * on it revoked by the anchors' CRLs: the chain check every platform verifier makes.
 * @throws ChainError naming `what` and the broken link
 */
export async function verifyUnrevokedChain(
  leaf: NodeX509,
  intermediates: readonly NodeX509[],
  anchors: TrustAnchors,
  now: Date,
  what: string,
): Promise<readonly NodeX509[]> {
  const path = verifyChain(leaf, intermediates, anchors.roots, now, what);
  await checkRevocation(path, anchors.crls ?? [], now, what);
  return path;
}
