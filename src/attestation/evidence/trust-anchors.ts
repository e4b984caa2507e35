import type { X509Certificate } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { parseTrustedCa } from '../../tpm/ek-certificate.ts';
import { type PlatformCrl, parseCrl } from './revocation.ts';
import type { EvidenceKind, TrustAnchors } from './verifier.ts';

/** Where a home keeps the roots of cloud and TEE evidence: one folder per kind. */
export function platformRootsDir(root: string): string {
  return join(root, 'trusted-platform-roots');
}

const providerSchema = z.strictObject({
  /** The attestation provider's URL, the `iss` of its tokens. */
  issuer: z.url(),
  /** Its signing keys, as its `/certs` endpoint publishes them. */
  jwks: z.strictObject({
    keys: z.array(z.looseObject({ kty: z.literal('RSA'), kid: z.string().min(1) })).min(1),
  }),
});

/**
 * A loader of a home's platform trust anchors, read afresh on every appraisal so that adding or
 * removing a root takes effect in a running server: `trusted-platform-roots/<kind>/*.pem` (AMD
 * ARKs for `sev-snp`, Intel's SGX Root CA for `tdx`, the AWS Nitro root for `nitro-tpm`, Google's
 * EK/AK root for `gcp-vtpm`), their vendors' CRLs as `*.crl` (DER or PEM), and
 * `trusted-platform-roots/azure/provider.json` (`{ issuer, jwks }`).
 * A file that does not parse trusts nothing.
 */
export function platformAnchorsLoader(root: string): (kind: EvidenceKind) => TrustAnchors {
  const base = platformRootsDir(root);
  return (kind) => {
    const dir = join(base, kind);
    if (kind === 'azure') {
      try {
        const p = providerSchema.parse(JSON.parse(readFileSync(join(dir, 'provider.json'), 'utf8')));
        return { roots: [], issuer: p.issuer, jwks: { keys: p.jwks.keys.map((k) => ({ ...k })) } };
      } catch {
        return { roots: [] };
      }
    }
    const roots: X509Certificate[] = [];
    const crls: PlatformCrl[] = [];
    let names: string[] = [];
    try {
      names = readdirSync(dir).sort();
    } catch {
      return { roots };
    }
    for (const n of names) {
      try {
        if (n.endsWith('.pem')) roots.push(parseTrustedCa(readFileSync(join(dir, n)), join(dir, n)));
        else if (n.endsWith('.crl')) crls.push(parseCrl(readFileSync(join(dir, n)), join(dir, n)));
      } catch {
        // Fail closed: a file that is not a CA certificate trusts nothing (an unreadable CRL
        // revokes nothing, but the chain still needs a trusted root).
      }
    }
    return { roots, crls };
  };
}
