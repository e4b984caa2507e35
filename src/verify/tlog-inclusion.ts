/**
 * Checks of a bundle's transparency log entry that both verifiers make the same way: the entry's
 * inclusion proof, the checkpoint the proof's root is signed in, the payload its signed entry
 * timestamp covers, and the framing of its body.
 */
import { GatehouseError } from '../common/errors.ts';
import type { TrustedLog } from '../signing/trust-root.ts';
import { verifyCheckpoint } from '../tlog/checkpoint.ts';
import { leafHash, rootFromInclusionProof } from '../tlog/merkle.ts';
import { setPayload } from '../tlog/transparency-log.ts';

function invalid(message: string, cause?: unknown): never {
  throw new GatehouseError('LOG_PROOF_INVALID', message, cause === undefined ? {} : { cause });
}

/**
 * Check that a bundle's tlog entry `i` is in the tree its inclusion proof names: the proof from the
 * entry's canonicalized body must lead to the proof's root (checked against a checkpoint or SET
 * by the caller).
 * @throws GatehouseError LOG_PROOF_INVALID
 */
export function checkInclusionProof(
  canonicalizedBody: Uint8Array,
  proof: { logIndex: number; treeSize: number; hashes: readonly Uint8Array[]; rootHash: Uint8Array },
  i: number,
): void {
  const computed = rootFromInclusionProof(
    leafHash(canonicalizedBody),
    proof.logIndex,
    proof.treeSize,
    proof.hashes,
  );
  if (!Buffer.from(computed).equals(proof.rootHash)) {
    invalid(`the inclusion proof of tlog entry ${i} does not lead to the checkpoint root`);
  }
}

/** The checkpoint key name a log signs with: its base URL without scheme or trailing slash (as Rekor does). */
function checkpointKeyName(baseUrl: string): string {
  return baseUrl.replace(/^[a-z]+:\/\//i, '').replace(/\/+$/, '');
}

/**
 * Check that the checkpoint `note` of tlog entry `i` is signed by the trusted log and is for the
 * proof's tree size and root. `key` is the log's key (by default its SPKI, with the default key
 * hint).
 * @throws GatehouseError CHECKPOINT_INVALID
 */
export function checkProofCheckpoint(
  note: string,
  proof: { treeSize: number; rootHash: Uint8Array },
  log: TrustedLog,
  i: number,
  key: { spkiDer: Uint8Array; keyHint?: Uint8Array } = { spkiDer: log.spkiDer },
): void {
  const checkpoint = verifyCheckpoint(note, { name: checkpointKeyName(log.baseUrl), ...key });
  if (checkpoint.treeSize !== proof.treeSize || !Buffer.from(checkpoint.rootHash).equals(proof.rootHash)) {
    throw new GatehouseError(
      'CHECKPOINT_INVALID',
      `the checkpoint of tlog entry ${i} is not for the proof's tree size and root`,
    );
  }
}

/** What the signed entry timestamp (inclusion promise) of an entry integrated at `integratedTime` signs. */
export function inclusionPromisePayload(
  entry: { canonicalizedBody: Uint8Array; logId: Buffer; logIndex: number },
  integratedTime: number,
): Buffer {
  return setPayload({
    body: entry.canonicalizedBody,
    integratedTime,
    logId: entry.logId.toString('hex'),
    logIndex: entry.logIndex,
  });
}

/**
 * The JSON body of tlog entry `i`, which must be of the kind and version the entry declares.
 * @throws GatehouseError LOG_PROOF_INVALID
 */
export function parseEntryBody(
  entry: { canonicalizedBody: Buffer; kind: string; version: string },
  i: number,
): unknown {
  let body: unknown;
  try {
    body = JSON.parse(entry.canonicalizedBody.toString('utf8'));
  } catch (e) {
    invalid(`the body of tlog entry ${i} is not JSON`, e);
  }
  const b = body as { kind?: unknown; apiVersion?: unknown } | null;
  if (b?.kind !== entry.kind || b?.apiVersion !== entry.version) {
    invalid(`the body of tlog entry ${i} is not of the declared kind ${entry.kind} ${entry.version}`);
  }
  return body;
}
