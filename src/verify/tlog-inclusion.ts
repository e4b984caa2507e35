import { GatehouseError } from '../common/errors.ts';
import { leafHash, rootFromInclusionProof } from '../tlog/merkle.ts';

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
    throw new GatehouseError(
      'LOG_PROOF_INVALID',
      `the inclusion proof of tlog entry ${i} does not lead to the checkpoint root`,
    );
  }
}
