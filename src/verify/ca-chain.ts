/**
 * Chaining a certificate to a trusted CA. The CA's own chain (each certificate a CA, issued and
 * signed by the next, ending in a self-signed root) does not change between verifications, so it
 * is parsed and checked once per trusted-root entry; what depends on the leaf and on time is
 * checked every time. Both verifiers check a signing certificate with {@link verifySigningCertificate}.
 */
import { X509Certificate } from 'node:crypto';
import { GatehouseError } from '../common/errors.ts';
import { isWithin, type TrustedCa } from '../signing/trust-root.ts';

const CODE_SIGNING = '1.3.6.1.5.5.7.3.3';

const checked = new WeakMap<TrustedCa, X509Certificate[] | string>();

/** The parsed chain of a trusted CA, or why it is unusable. */
function caChain(ca: TrustedCa): X509Certificate[] | string {
  const hit = checked.get(ca);
  if (hit !== undefined) return hit;
  let result: X509Certificate[] | string;
  try {
    const chain = ca.certChain.map((d) => new X509Certificate(d));
    result = chain;
    for (const [k, cert] of chain.entries()) {
      const parent = chain[k + 1] ?? cert;
      if (!cert.ca) result = `certificate ${k} is not a CA`;
      else if (!cert.checkIssued(parent) || !cert.verify(parent.publicKey)) {
        result =
          parent === cert
            ? 'the chain does not end in a self-signed root'
            : `certificate ${k} is not issued by the next`;
      }
      if (typeof result === 'string') break;
    }
    if (chain.length === 0) result = 'the chain is empty';
  } catch {
    result = 'a CA certificate does not parse';
  }
  checked.set(ca, result);
  return result;
}

/**
 * Why `leaf` does not chain to `ca` with every certificate valid at every one of `times`, or
 * undefined when it does. Returns the leaf's issuer through `issuerOut`.
 */
export function chainProblem(
  leaf: X509Certificate,
  ca: TrustedCa,
  times: readonly Date[],
): { problem: string } | { issuer: X509Certificate } {
  const chain = caChain(ca);
  if (typeof chain === 'string') return { problem: chain };
  const [issuer] = chain;
  if (issuer === undefined) return { problem: 'the chain is empty' };
  if (!leaf.checkIssued(issuer) || !leaf.verify(issuer.publicKey))
    return { problem: 'not issued by certificate 0' };
  for (const [k, cert] of chain.entries()) {
    for (const t of times) {
      if (t < cert.validFromDate || t > cert.validToDate)
        return { problem: `certificate ${k} is not valid at that time` };
    }
  }
  return { issuer };
}

/**
 * What the times a certificate is checked at are, as the messages name them: the log's integrated
 * time (gatehouse bundles, where each time is checked on its own) or the verified times (any
 * Sigstore bundle, all at once).
 */
export type CertificateTimes = 'integrated' | 'verified';

const WORDING = {
  integrated: { time: 'the integrated time', outsideCa: 'is not valid at that time' },
  verified: { time: 'the verified time', outsideCa: 'is not trusted at that time' },
} as const;

function invalid(message: string): never {
  throw new GatehouseError('CERTIFICATE_INVALID', message);
}

function validAt(cert: X509Certificate, when: Date): boolean {
  return cert.validFromDate <= when && when <= cert.validToDate;
}

/**
 * Check a signing certificate: a code-signing leaf, not a CA, valid at every one of `times`, that
 * chains to one trusted CA whose window holds them all. Returns the leaf's issuer certificate.
 * @throws GatehouseError CERTIFICATE_INVALID
 */
export function verifySigningCertificate(
  leaf: X509Certificate,
  cas: readonly TrustedCa[],
  times: readonly Date[],
  timesAre: CertificateTimes,
): X509Certificate {
  const wording = WORDING[timesAre];
  if (leaf.ca) invalid('the signing certificate is a CA certificate');
  if (!(leaf.keyUsage ?? []).includes(CODE_SIGNING)) {
    invalid('the signing certificate lacks the codeSigning extended key usage');
  }
  for (const t of times) {
    if (!validAt(leaf, t)) {
      invalid(
        `the signing certificate was not valid at ${wording.time} ${t.toISOString()} (valid ${leaf.validFromDate.toISOString()} to ${leaf.validToDate.toISOString()})`,
      );
    }
  }
  const problems: string[] = [];
  for (const [n, ca] of cas.entries()) {
    if (!times.every((t) => isWithin(ca.validFor, t))) {
      problems.push(`CA ${n} ${wording.outsideCa}`);
      continue;
    }
    const r = chainProblem(leaf, ca, times);
    if ('issuer' in r) return r.issuer;
    problems.push(`CA ${n}: ${r.problem}`);
  }
  invalid(`the signing certificate does not chain to a trusted CA (${problems.join('; ') || 'no CA'})`);
}
