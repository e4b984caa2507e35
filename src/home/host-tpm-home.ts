/**
 * A home's side of host attestation: the manufacturer CAs it trusts for host EKs (the PEM files
 * of `trusted-ek-cas/`, their CRLs `*.crl.pem`, and `revoked.txt`, SHA-256 fingerprints of EK CAs
 * the security role revoked), the enrollment of its own runner host with the host TPM, and the
 * re-quotes that keep the host's standing.
 */
import { createHash, type X509Certificate } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { appendFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { HostAttestation, type HostEkTrust } from '../attestation/host-attestation.ts';
import type { HostRegistry } from '../attestation/hosts.ts';
import type { VtpmHostChain } from '../attestation/tpm-verifier.ts';
import { attestationPaths } from '../attestation/trust-store.ts';
import { GatehouseError } from '../common/errors.ts';
import type { Store } from '../store/store.ts';
import { type EkCaCrl, parseEkCaCrl, parseTrustedCa } from '../tpm/ek-certificate.ts';
import type { HostTpm } from '../tpm/host-tpm.ts';
import type { HostTpmVtpmCa, VtpmEkCertIssuer } from '../tpm/host-vtpm-ca.ts';
import { HostTpmStateSealer, type VtpmStateSealer } from '../tpm/state-sealer.ts';
import type { Config } from './config.ts';

/** The file of the home's legacy platform CA: never an anchor for host EKs. */
const LEGACY_PLATFORM_CA = 'platform-ca.pem';

/** The trust a home places in TPM manufacturers, read afresh on each use. */
export function hostEkTrustOf(root: string): HostEkTrust {
  const dir = attestationPaths(root).trustedEkCas;
  const names = () => {
    try {
      return readdirSync(dir).sort();
    } catch {
      return [] as string[];
    }
  };
  return {
    anchors: () => {
      const out: X509Certificate[] = [];
      for (const n of names()) {
        if (!n.endsWith('.pem') || n.endsWith('.crl.pem') || n === LEGACY_PLATFORM_CA) continue;
        try {
          out.push(parseTrustedCa(readFileSync(join(dir, n)), join(dir, n)));
        } catch {
          // Fail closed: a file that is not a CA certificate trusts nothing.
        }
      }
      return out;
    },
    crls: () => {
      const out: EkCaCrl[] = [];
      for (const n of names()) {
        if (!n.endsWith('.crl.pem')) continue;
        // An unreadable CRL is a parse error at enrollment, not a silently skipped revocation.
        out.push(parseEkCaCrl(readFileSync(join(dir, n), 'utf8'), join(dir, n)));
      }
      return out;
    },
    revokedCas: () => {
      const file = join(dir, 'revoked.txt');
      if (!existsSync(file)) return new Set();
      return new Set(
        readFileSync(file, 'utf8')
          .split('\n')
          .map((l) => l.trim().toLowerCase())
          .filter((l) => /^[0-9a-f]{64}$/.test(l)),
      );
    },
  };
}

/** Trust a manufacturer root (and its CRLs) for host EKs; returns whether it was new. */
export async function trustManufacturerRoot(
  root: string,
  pem: string,
  crls: readonly string[],
): Promise<boolean> {
  const dir = attestationPaths(root).trustedEkCas;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const cert = parseTrustedCa(Buffer.from(pem), 'the host TPM manufacturer root');
  const fp = createHash('sha256').update(cert.raw).digest('hex').slice(0, 16);
  const target = join(dir, `${fp}.pem`);
  for (const c of crls) parseEkCaCrl(c, 'the host TPM manufacturer CRL');
  for (const [i, c] of crls.entries()) await writeFile(join(dir, `${fp}-${i}.crl.pem`), c, { mode: 0o644 });
  if (existsSync(target)) return false;
  await writeFile(target, cert.toString(), { mode: 0o644, flag: 'wx' });
  return true;
}

/**
 * Revoke an EK CA for host EK paths: `what` is a CA certificate file (PEM or DER) or the SHA-256
 * fingerprint of one (hex, colons allowed); it is added to `trusted-ek-cas/revoked.txt`.
 * @throws GatehouseError BAD_INPUT naming what is wrong
 */
export async function revokeEkCa(
  root: string,
  what: string,
): Promise<{ fingerprint: string; added: boolean }> {
  let fingerprint = what.replace(/:/g, '').toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(fingerprint)) {
    let bytes: Buffer;
    try {
      bytes = readFileSync(what);
    } catch (cause) {
      throw new GatehouseError('BAD_INPUT', 'neither a SHA-256 fingerprint nor a readable certificate file', {
        where: what,
        cause,
      });
    }
    fingerprint = createHash('sha256').update(parseTrustedCa(bytes, what).raw).digest('hex');
  }
  const dir = attestationPaths(root).trustedEkCas;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, 'revoked.txt');
  const current = existsSync(file) ? readFileSync(file, 'utf8') : '';
  if (current.split('\n').some((l) => l.trim().toLowerCase() === fingerprint))
    return { fingerprint, added: false };
  await appendFile(file, `${fingerprint}\n`, { mode: 0o644 });
  return { fingerprint, added: true };
}

/**
 * Open this machine's host TPM, manufacturing the stand-in first when there is no hardware TPM
 * and none was made yet (what scripts/setup does once per machine).
 */
export async function openHostTpm(): Promise<HostTpm> {
  // Loaded when a TPM is used (enrollment, a due quote, pool fill), not by every command.
  const { HostTpm, hostTpmLocation, manufactureHostTpmStandIn } = await import('../tpm/host-tpm.ts');
  const loc = hostTpmLocation();
  if (loc.kind === 'stand-in') await manufactureHostTpmStandIn(loc.dir);
  return HostTpm.open(loc);
}

/** The host attestation service of a home, as its config says. */
export function hostAttestationOf(root: string, config: Config, store: Store): HostAttestation {
  const q = config.attestation?.hostQuote;
  return new HostAttestation({
    store: store.attestation,
    trust: hostEkTrustOf(root),
    ...(q?.intervalSeconds === undefined ? {} : { intervalSeconds: q.intervalSeconds }),
    ...(q?.maxAgeSeconds === undefined ? {} : { maxAgeSeconds: q.maxAgeSeconds }),
  });
}

/** The vTPM issuers and host standings the authority checks vTPM EK certificates against. */
export function hostChainOf(hosts: HostRegistry, attestation: HostAttestation): VtpmHostChain {
  // The issuers (key id → host, public key) are remembered for a few seconds: listing verifies
  // every host's enrollment, which grows with the fleet. That is safe because they only name the
  // host; whether its vTPMs may attest is its standing, read from its latest enrollment every time
  // (a revocation or a quarantine takes effect at once).
  let cached: { at: number; issuers: ReturnType<typeof HostAttestation.issuersOf> } | undefined;
  return {
    issuers: async (fresh = false) => {
      if (fresh || cached === undefined || Date.now() - cached.at > ISSUERS_TTL_MS)
        cached = { at: Date.now(), issuers: HostAttestation.issuersOf(await hosts.list()) };
      return cached.issuers;
    },
    standing: async (name) => attestation.standing(await hosts.get(name), name),
  };
}

/** How long the list of vTPM issuers is remembered. */
const ISSUERS_TTL_MS = 10_000;

/** The vTPM EK certificate issuer of this machine: its host TPM's key, opened on first use. */
export function hostVtpmIssuer(): VtpmEkCertIssuer {
  let ca: Promise<HostTpmVtpmCa> | undefined;
  return {
    issue: async (ek) => {
      ca ??= Promise.all([openHostTpm(), import('../tpm/host-vtpm-ca.ts')]).then(([tpm, m]) =>
        m.HostTpmVtpmCa.open(tpm),
      );
      try {
        return await (await ca).issue(ek);
      } catch (e) {
        ca = undefined;
        throw e;
      }
    },
  };
}

/**
 * The vTPM state sealer of this machine: pooled states' keys sealed to its host TPM's storage
 * key, the TPM opened on first use.
 */
export function hostVtpmStateSealer(): VtpmStateSealer {
  let sealer: Promise<HostTpmStateSealer> | undefined;
  const use = async <T>(f: (s: HostTpmStateSealer) => Promise<T>): Promise<T> => {
    sealer ??= openHostTpm().then((tpm) => new HostTpmStateSealer(tpm));
    try {
      return await f(await sealer);
    } catch (e) {
      sealer = undefined;
      throw e;
    }
  };
  return { seal: (key) => use((s) => s.seal(key)), unseal: (blob) => use((s) => s.unseal(blob)) };
}
