/**
 * Signed certificate timestamps (RFC 6962 §3.2) embedded in Fulcio-style certificates: each
 * promises that a certificate transparency log published the precertificate. The signature
 * covers the certificate's TBS without the SCT list extension (exactly the bytes it has, less
 * that one extension) and the issuer's key hash.
 */
import { createPublicKey, verify as cryptoVerify, type KeyObject, type X509Certificate } from 'node:crypto';
import { GatehouseError } from '../common/errors.ts';
import {
  embeddedScts,
  issuerKeyHash,
  SCT_LIST_OID,
  type Sct,
  sctSignedData,
  tbsWithout,
} from '../signing/ct.ts';
import { isWithin, type TrustedLog } from '../signing/trust-root.ts';

function invalid(message: string): GatehouseError {
  return new GatehouseError('CERTIFICATE_INVALID', message);
}

function logKey(log: TrustedLog): KeyObject | undefined {
  try {
    const type = log.keyDetails.startsWith('PKCS1') ? 'pkcs1' : 'spki';
    return createPublicKey({ key: log.spkiDer, format: 'der', type });
  } catch {
    return undefined;
  }
}

function hashFor(key: KeyObject): string | null {
  if (key.asymmetricKeyType === 'ed25519') return null;
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (curve === 'secp384r1') return 'sha384';
  return 'sha256';
}

/** Why one SCT did not count, for the error message. */
function sctProblem(
  sct: Sct,
  ctlogs: readonly TrustedLog[],
  verifies: (key: KeyObject) => boolean,
): string | undefined {
  if (sct.version !== 0) return `version ${sct.version}`;
  const logs = ctlogs.filter((l) => l.logId.equals(sct.logId));
  if (logs.length === 0) return `log ${sct.logId.toString('hex').slice(0, 16)}… is not a trusted CT log`;
  const when = new Date(Number(sct.timestamp));
  const current = logs.filter((l) => isWithin(l.validFor, when));
  if (current.length === 0) return `its time ${when.toISOString()} is outside the CT log key's window`;
  for (const log of current) {
    const key = logKey(log);
    if (key !== undefined && verifies(key)) return undefined;
  }
  return 'its signature does not verify';
}

/**
 * Verify the SCTs of `leaf` (issued by `issuer`) against the trusted CT logs: at least
 * `threshold` distinct logs must have a verifying SCT, each with a key valid at the SCT's time.
 * @returns how many distinct logs verified
 * @throws GatehouseError CERTIFICATE_INVALID
 */
export function verifyScts(
  leaf: X509Certificate,
  issuer: X509Certificate,
  ctlogs: readonly TrustedLog[],
  threshold = 1,
): number {
  const scts = embeddedScts(leaf.raw);
  if (scts === undefined) throw invalid('the signing certificate carries no signed certificate timestamps');
  // The precertificate the log signed: the same TBS without the SCT list.
  const tbs = tbsWithout(leaf.raw, SCT_LIST_OID);
  const keyHash = issuerKeyHash(issuer.publicKey.export({ format: 'der', type: 'spki' }));
  // Count logs, not SCTs: copies of one log's SCT must not reach a threshold of several logs.
  const verifiedLogs = new Set<string>();
  const problems: string[] = [];
  for (const sct of scts) {
    const signed = sctSignedData({
      timestamp: sct.timestamp,
      type: 'precert',
      signed: tbs,
      issuerKeyHash: keyHash,
      extensions: sct.extensions,
    });
    const problem = sctProblem(sct, ctlogs, (key) => {
      try {
        return cryptoVerify(hashFor(key), signed, key, sct.signature);
      } catch {
        return false;
      }
    });
    if (problem === undefined) verifiedLogs.add(sct.logId.toString('hex'));
    else problems.push(problem);
  }
  if (verifiedLogs.size < threshold) {
    throw invalid(
      `${verifiedLogs.size} of ${scts.length} signed certificate timestamps verify with a trusted CT log; ${threshold} required${problems.length === 0 ? '' : ` (${problems.join('; ')})`}`,
    );
  }
  return verifiedLogs.size;
}
