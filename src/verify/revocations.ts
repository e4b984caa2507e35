/**
 * Revocations at deploy time: loading the list the control plane publishes, and refusing the
 * digests on it.
 */
import { describeError, GatehouseError } from '../common/errors.ts';
import {
  parseRevocations,
  type RevocationList,
  readRevocations,
  verifyRevocationList,
} from '../signing/revocation-list.ts';

/** At most this much of a revocation list is read from a URL. */
const MAX_REVOCATIONS_BYTES = 16 * 1024 * 1024;

/**
 * Load the revocation list from a local file or from the control plane
 * (`http(s)://HOST/v1/revocations`). A list from a URL must be signed by a log key of the trusted
 * root and fresh; a local file is the operator's own, and its signature, when it has one, is not
 * required to be fresh but must verify.
 * @throws GatehouseError BAD_INPUT (unreadable, malformed), UNREACHABLE (the URL cannot be fetched),
 *   VERIFICATION_FAILED (signature)
 */
export async function loadRevocations(
  source: string,
  options: { trustedRoot: unknown; optional?: boolean; now?: Date; maxAgeMs?: number; timeoutMs?: number },
): Promise<RevocationList> {
  if (!/^https?:\/\//.test(source)) {
    const list = await readRevocations(source, options.optional === true);
    if (list.signature !== undefined)
      verifyRevocationList(list, options.trustedRoot, {
        where: source,
        maxAgeMs: Number.MAX_SAFE_INTEGER,
        ...(options.now === undefined ? {} : { now: options.now }),
      });
    return list;
  }
  let text: string;
  try {
    const res = await fetch(source, {
      signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
      headers: { accept: 'application/json' },
      redirect: 'error',
    });
    if (res.status !== 200) {
      await res.body?.cancel();
      throw new Error(`HTTP ${res.status}`);
    }
    const bytes = new Uint8Array(await res.arrayBuffer());
    if (bytes.byteLength > MAX_REVOCATIONS_BYTES) throw new Error('the list is too large');
    text = new TextDecoder().decode(bytes);
  } catch (e) {
    throw new GatehouseError('UNREACHABLE', `cannot fetch the revocation list: ${describeError(e)}`, {
      where: source,
      cause: e,
    });
  }
  return verifyRevocationList(parseRevocations(text, source), options.trustedRoot, {
    where: source,
    ...(options.now === undefined ? {} : { now: options.now }),
    ...(options.maxAgeMs === undefined ? {} : { maxAgeMs: options.maxAgeMs }),
  });
}

/** One revoked digest of a list. */
export type Revocation = RevocationList['revoked'][number];

/** The error that refuses an artifact because of `entry`, at `where` when given. */
export function revokedError(entry: Revocation, where?: string): GatehouseError {
  return new GatehouseError(
    'ARTIFACT_REVOKED',
    `${entry.digest} was revoked on ${entry.revokedAt}: ${entry.reason}`,
    where === undefined ? {} : { where },
  );
}

/**
 * A check, for errors at `where`, that refuses a digest the list revokes (a manifest digest or a
 * file digest, `sha256:HEX`).
 * @throws GatehouseError ARTIFACT_REVOKED (from the check it returns)
 */
export function revocationCheck(list: RevocationList, where: string): (digest: string) => void {
  const revoked = new Map(list.revoked.map((r) => [r.digest, r]));
  return (digest) => {
    const r = revoked.get(digest);
    if (r !== undefined) throw revokedError(r, where);
  };
}
