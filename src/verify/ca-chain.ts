/**
 * Chaining a certificate to a trusted CA. The CA's own chain (each certificate a CA, issued and
 * signed by the next, ending in a self-signed root) does not change between verifications, so it
 * is parsed and checked once per trusted-root entry; what depends on the leaf and on time is
 * checked every time.
 */
import { X509Certificate } from 'node:crypto';
import type { TrustedCa } from '../signing/trust-root.ts';

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
