/**
 * RFC 6962 / RFC 9162 Merkle tree hashing: leaf and node hashes, the tree head (MTH), inclusion
 * proofs (PATH) and consistency proofs (PROOF), with the verification algorithms of RFC 9162
 * §2.1.3.2 and §2.1.4.2, and the interior nodes an append completes. Pure functions over leaf
 * hashes; the log decides where the leaves and nodes live.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { GatehouseError } from '../common/errors.ts';

const LEAF_PREFIX = Uint8Array.of(0x00);
const NODE_PREFIX = Uint8Array.of(0x01);

/** SHA-256(0x00 ‖ body): the hash of one log entry. */
export function leafHash(body: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(LEAF_PREFIX).update(body).digest());
}

/** SHA-256(0x01 ‖ left ‖ right): the hash of an interior node. */
export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(NODE_PREFIX).update(left).update(right).digest());
}

/** The root of the empty tree: SHA-256 of the empty string. */
export const EMPTY_ROOT: Uint8Array = new Uint8Array(createHash('sha256').digest());

/** Largest power of two strictly smaller than n (n ≥ 2). */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** MTH(D[n]): the root hash of a tree whose leaves have the given leaf hashes. */
export function rootHash(leaves: readonly Uint8Array[]): Uint8Array {
  return mth(leaves, 0, leaves.length);
}

function mth(leaves: readonly Uint8Array[], start: number, end: number): Uint8Array {
  const n = end - start;
  if (n === 0) return EMPTY_ROOT;
  if (n === 1) return leafAt(leaves, start);
  const k = splitPoint(n);
  return nodeHash(mth(leaves, start, start + k), mth(leaves, start + k, end));
}

function leafAt(leaves: readonly Uint8Array[], i: number): Uint8Array {
  const h = leaves[i];
  if (h === undefined) throw new GatehouseError('INTERNAL', `leaf ${i} is missing`);
  return h;
}

function checkIndex(what: string, value: number, min: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new GatehouseError('BAD_INPUT', `${what} ${value} is outside [${min}, ${max}]`);
  }
}

/**
 * PATH(m, D[n]): the audit path of leaf `index` in the tree made of `leaves`, leaf to root.
 * @throws GatehouseError BAD_INPUT when the index is not in the tree
 */
export function inclusionProof(leaves: readonly Uint8Array[], index: number): Uint8Array[] {
  checkIndex('leaf index', index, 0, leaves.length - 1);
  const path: Uint8Array[] = [];
  const walk = (m: number, start: number, end: number): void => {
    const n = end - start;
    if (n <= 1) return;
    const k = splitPoint(n);
    if (m < k) {
      walk(m, start, start + k);
      path.push(mth(leaves, start + k, end));
    } else {
      walk(m - k, start + k, end);
      path.push(mth(leaves, start, start + k));
    }
  };
  walk(index, 0, leaves.length);
  return path;
}

/**
 * PROOF(m, D[n]): the consistency proof between the tree of the first `first` leaves and the
 * tree of all `leaves`.
 * @throws GatehouseError BAD_INPUT unless 1 ≤ first ≤ leaves.length
 */
export function consistencyProof(leaves: readonly Uint8Array[], first: number): Uint8Array[] {
  checkIndex('first tree size', first, 1, leaves.length);
  const proof: Uint8Array[] = [];
  const sub = (m: number, start: number, end: number, complete: boolean): void => {
    const n = end - start;
    if (m === n) {
      if (!complete) proof.push(mth(leaves, start, end));
      return;
    }
    const k = splitPoint(n);
    if (m <= k) {
      sub(m, start, start + k, complete);
      proof.push(mth(leaves, start + k, end));
    } else {
      sub(m - k, start + k, end, false);
      proof.push(mth(leaves, start, start + k));
    }
  };
  sub(first, 0, leaves.length, true);
  return proof;
}

function isPowerOfTwo(n: number): boolean {
  let x = n;
  while (x > 1 && x % 2 === 0) x /= 2;
  return x === 1;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

function proofError(message: string): GatehouseError {
  return new GatehouseError('LOG_PROOF_INVALID', message);
}

/**
 * The root an inclusion proof leads to (RFC 9162 §2.1.3.2), for comparison with a trusted root.
 * @throws GatehouseError LOG_PROOF_INVALID when the proof cannot belong to a tree of that size
 */
export function rootFromInclusionProof(
  leaf: Uint8Array,
  index: number,
  treeSize: number,
  proof: readonly Uint8Array[],
): Uint8Array {
  if (!Number.isSafeInteger(treeSize) || treeSize < 1) throw proofError(`tree size ${treeSize} is invalid`);
  if (!Number.isSafeInteger(index) || index < 0 || index >= treeSize) {
    throw proofError(`leaf index ${index} is not in a tree of size ${treeSize}`);
  }
  let fn = index;
  let sn = treeSize - 1;
  let r = leaf;
  for (const p of proof) {
    if (p.length !== 32) throw proofError('a proof hash is not 32 bytes');
    if (sn === 0) throw proofError('the inclusion proof is longer than the tree is deep');
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw proofError('the inclusion proof is shorter than the tree is deep');
  return r;
}

/**
 * Check that `leaf` is at `index` in the tree of `treeSize` leaves whose root is `root`.
 * @throws GatehouseError LOG_PROOF_INVALID
 */
export function verifyInclusion(
  leaf: Uint8Array,
  index: number,
  treeSize: number,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): void {
  const computed = rootFromInclusionProof(leaf, index, treeSize, proof);
  if (!equalBytes(computed, root)) {
    throw proofError(
      `the inclusion proof for leaf ${index} does not lead to the root of tree size ${treeSize}`,
    );
  }
}

/**
 * Check that the tree of size `first` with root `firstRoot` is a prefix of the tree of size
 * `second` with root `secondRoot` (RFC 9162 §2.1.4.2).
 * @throws GatehouseError LOG_PROOF_INVALID
 */
export function verifyConsistency(
  first: number,
  second: number,
  proof: readonly Uint8Array[],
  firstRoot: Uint8Array,
  secondRoot: Uint8Array,
): void {
  if (!Number.isSafeInteger(first) || !Number.isSafeInteger(second) || first < 1 || first > second) {
    throw proofError(`tree sizes ${first} and ${second} cannot be proved consistent`);
  }
  for (const p of proof) if (p.length !== 32) throw proofError('a proof hash is not 32 bytes');
  if (first === second) {
    if (proof.length !== 0) throw proofError('a proof between equal tree sizes must be empty');
    if (!equalBytes(firstRoot, secondRoot)) throw proofError('the roots of equal tree sizes differ');
    return;
  }
  if (proof.length === 0) throw proofError('the consistency proof is empty');
  // When the first tree is a complete subtree its root is the proof's implicit first node.
  const nodes = isPowerOfTwo(first) ? [firstRoot, ...proof] : [...proof];
  let fn = first - 1;
  let sn = second - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  const [seed, ...rest] = nodes;
  if (seed === undefined) throw proofError('the consistency proof is empty');
  let fr = seed;
  let sr = seed;
  for (const c of rest) {
    if (sn === 0) throw proofError('the consistency proof is longer than expected');
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw proofError('the consistency proof is shorter than expected');
  if (!equalBytes(fr, firstRoot))
    throw proofError(`the consistency proof does not match the root of size ${first}`);
  if (!equalBytes(sr, secondRoot))
    throw proofError(`the consistency proof does not match the root of size ${second}`);
}

/** A perfect subtree: the 2^level leaves starting at index·2^level. */
export interface SubtreeRef {
  level: number;
  index: number;
}

/**
 * The perfect subtrees that make up the leaf range [start, end), largest first. The ranges that
 * RFC 6962 proofs need always start at a multiple of their largest power of two, so every part
 * is a stored node.
 * @throws GatehouseError INTERNAL for a range that is not aligned that way
 */
export function subtreesOf(start: number, end: number): SubtreeRef[] {
  const out: SubtreeRef[] = [];
  let s = start;
  while (s < end) {
    let size = 1;
    while (size * 2 <= end - s) size *= 2;
    if (s % size !== 0) throw new GatehouseError('INTERNAL', `leaf range [${start}, ${end}) is not aligned`);
    out.push({ level: Math.log2(size), index: s / size });
    s += size;
  }
  return out;
}

/** MTH of a range from the hashes of its perfect subtrees (largest first): a right fold. */
export function foldSubtrees(hashes: readonly Uint8Array[]): Uint8Array {
  const last = hashes[hashes.length - 1];
  if (last === undefined) return EMPTY_ROOT;
  let h = last;
  for (let i = hashes.length - 2; i >= 0; i--) h = nodeHash(hashes[i] as Uint8Array, h);
  return h;
}

/** A perfect subtree with its hash: what the store keeps for each complete one. */
export interface SubtreeHash extends SubtreeRef {
  hash: Uint8Array;
}

/** Number of interior nodes (complete perfect subtrees above the leaves) of a tree of n leaves. */
export function interiorNodeCount(n: number): number {
  let count = n;
  for (let x = n; x > 0; x = Math.floor(x / 2)) count -= x % 2;
  return count;
}

/**
 * The perfect subtrees of the tree of `start` leaves that appending `count` more merges into
 * larger ones: the left siblings {@link completedNodes} needs, smallest last (a suffix of
 * `subtreesOf(0, start)`; for one leaf, one subtree on average).
 */
export function mergedSubtrees(start: number, count: number): SubtreeRef[] {
  const kept = new Set(subtreesOf(0, start + count).map((r) => `${r.level}/${r.index}`));
  return subtreesOf(0, start).filter((r) => !kept.has(`${r.level}/${r.index}`));
}

/**
 * The interior nodes that appending `leaves` (leaf hashes) at index `start` completes, bottom up
 * for each leaf in turn. `siblings` are the hashes of `mergedSubtrees(start, leaves.length)`, in
 * that order.
 * @throws GatehouseError INTERNAL when the siblings do not match
 */
export function completedNodes(
  start: number,
  siblings: readonly Uint8Array[],
  leaves: readonly Uint8Array[],
): SubtreeHash[] {
  const refs = mergedSubtrees(start, leaves.length);
  if (siblings.length !== refs.length) {
    throw new GatehouseError('INTERNAL', `${siblings.length} sibling hashes for ${refs.length} subtrees`);
  }
  // The right edge of the tree, largest subtree first: a new leaf merges with its equal-sized neighbours.
  const edge: SubtreeHash[] = refs.map((r, i) => ({ ...r, hash: siblings[i] as Uint8Array }));
  const out: SubtreeHash[] = [];
  leaves.forEach((hash, k) => {
    let top: SubtreeHash = { level: 0, index: start + k, hash };
    for (let left = edge.at(-1); left !== undefined && left.level === top.level; left = edge.at(-1)) {
      edge.pop();
      top = { level: top.level + 1, index: left.index / 2, hash: nodeHash(left.hash, top.hash) };
      out.push(top);
    }
    edge.push(top);
  });
  return out;
}

/** The leaf ranges whose MTHs make up PATH(index, D[size]), leaf to root. */
export function inclusionRanges(index: number, size: number): [number, number][] {
  checkIndex('leaf index', index, 0, size - 1);
  const out: [number, number][] = [];
  const walk = (m: number, start: number, end: number): void => {
    const n = end - start;
    if (n <= 1) return;
    const k = splitPoint(n);
    if (m < k) {
      walk(m, start, start + k);
      out.push([start + k, end]);
    } else {
      walk(m - k, start + k, end);
      out.push([start, start + k]);
    }
  };
  walk(index, 0, size);
  return out;
}

/** The leaf ranges whose MTHs make up PROOF(first, D[size]). */
export function consistencyRanges(first: number, size: number): [number, number][] {
  checkIndex('first tree size', first, 1, size);
  const out: [number, number][] = [];
  const sub = (m: number, start: number, end: number, complete: boolean): void => {
    const n = end - start;
    if (m === n) {
      if (!complete) out.push([start, end]);
      return;
    }
    const k = splitPoint(n);
    if (m <= k) {
      sub(m, start, start + k, complete);
      out.push([start + k, end]);
    } else {
      sub(m - k, start + k, end, false);
      out.push([start, start + k]);
    }
  };
  sub(first, 0, size, true);
  return out;
}
