import { createHash, type X509Certificate } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { GatehouseError } from '../../common/errors.ts';
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

/** What {@link addPlatformAnchor} stored. */
export interface StoredAnchor {
  readonly kind: EvidenceKind;
  readonly name: string;
  readonly what: string;
  readonly added: boolean;
}

/**
 * Trust a root (PEM or DER CA certificate) or install a CRL for a kind, under a name derived from
 * its digest; for `azure`, install the provider (`{ issuer, jwks }`). Nothing is written when the
 * file is not what the kind takes.
 * @throws GatehouseError BAD_INPUT naming the file
 */
export async function addPlatformAnchor(
  root: string,
  kind: EvidenceKind,
  file: string,
): Promise<StoredAnchor> {
  const bytes = await readFile(file);
  const dir = join(platformRootsDir(root), kind);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (kind === 'azure') {
    let provider: z.infer<typeof providerSchema>;
    try {
      provider = providerSchema.parse(JSON.parse(bytes.toString('utf8')));
    } catch (e) {
      throw new GatehouseError(
        'BAD_INPUT',
        'not an Azure Attestation provider: { "issuer": URL, "jwks": { "keys": [RSA keys with kid] } }',
        {
          where: file,
          cause: e,
        },
      );
    }
    const target = join(dir, 'provider.json');
    await writeFile(target, `${JSON.stringify(provider, null, 2)}\n`, { mode: 0o644 });
    return { kind, name: 'provider.json', what: provider.issuer, added: true };
  }
  // Named by the digest of the DER, so that the same certificate as PEM or DER is one file.
  const nameOf = (der: Uint8Array, ext: string) =>
    `${createHash('sha256').update(der).digest('hex').slice(0, 16)}.${ext}`;
  const text = bytes.toString('latin1');
  const asCrl = () => {
    try {
      const crl = parseCrl(bytes, file);
      const der = Buffer.from(crl.rawData);
      return { name: nameOf(der, 'crl'), what: `CRL of ${crl.issuer}`, content: der };
    } catch (e) {
      throw new GatehouseError('BAD_INPUT', 'not a DER or PEM X.509 CRL', { where: file, cause: e });
    }
  };
  const asCa = () => {
    const cert = parseTrustedCa(bytes, file);
    return {
      name: nameOf(cert.raw, 'pem'),
      what: cert.subject.replace(/\n/g, ', '),
      content: cert.toString(),
    };
  };
  let stored: { name: string; what: string; content: string | Buffer };
  if (text.includes('-----BEGIN X509 CRL-----')) stored = asCrl();
  else if (text.includes('-----BEGIN CERTIFICATE-----')) stored = asCa();
  else {
    // DER: a certificate, else a CRL; neither is an error naming the file.
    try {
      stored = asCa();
    } catch {
      try {
        stored = asCrl();
      } catch (e) {
        throw new GatehouseError('BAD_INPUT', 'neither a CA certificate nor a CRL', {
          where: file,
          cause: e,
        });
      }
    }
  }
  const { name, what, content } = stored;
  const target = join(dir, name);
  if (existsSync(target)) return { kind, name, what, added: false };
  await writeFile(target, content, { mode: 0o644, flag: 'wx' });
  return { kind, name, what, added: true };
}
