/**
 * RFC 3161 timestamps in a bundle, as both verifiers check them: each over the signature it
 * stamps, against the trusted timestamp authorities. A verified time is independent of the log.
 */
import { GatehouseError } from '../common/errors.ts';
import { verifyTimestamp } from '../signing/rfc3161.ts';
import type { TrustedCa } from '../signing/trust-root.ts';

/**
 * The time timestamp `i` (DER) vouches for over `signature`.
 * @throws GatehouseError the timestamp's own code (TIMESTAMP_INVALID), its message naming `i`
 */
export function verifiedTimestampTime(
  der: Uint8Array,
  signature: Uint8Array,
  authorities: readonly TrustedCa[],
  i: number,
): Date {
  try {
    return verifyTimestamp(der, signature, authorities).genTime;
  } catch (e) {
    if (e instanceof GatehouseError)
      throw new GatehouseError(e.code, `timestamp ${i}: ${e.message}`, { cause: e });
    throw e;
  }
}
