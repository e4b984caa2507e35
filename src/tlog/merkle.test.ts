import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { isGatehouseError } from '../common/errors.ts';
import {
  completedNodes,
  consistencyProof,
  EMPTY_ROOT,
  inclusionProof,
  interiorNodeCount,
  leafHash,
  mergedSubtrees,
  nodeHash,
  rootHash,
  verifyConsistency,
  verifyInclusion,
} from './merkle.ts';

const leaves = (n: number): Uint8Array[] =>
  Array.from({ length: n }, (_, i) => leafHash(Buffer.from(`entry ${i}`)));
const isProofError = (e: unknown): boolean => isGatehouseError(e, 'LOG_PROOF_INVALID');
const flip = (h: Uint8Array): Uint8Array => {
  const c = Uint8Array.from(h);
  c[0] = (c[0] ?? 0) ^ 1;
  return c;
};
const sizes = [
  1,
  2,
  3,
  4,
  5,
  7,
  8,
  9,
  16,
  17,
  31,
  32,
  33,
  ...Array.from({ length: 12 }, () => 1 + Math.floor(Math.random() * 200)),
];

describe('Merkle tree hashing', () => {
  it('matches the RFC 6962 definitions for small trees', () => {
    const [a, b, c] = leaves(3) as [Uint8Array, Uint8Array, Uint8Array];
    assert.deepEqual(rootHash([]), EMPTY_ROOT);
    assert.deepEqual(rootHash([a]), a);
    assert.deepEqual(rootHash([a, b]), nodeHash(a, b));
    assert.deepEqual(rootHash([a, b, c]), nodeHash(nodeHash(a, b), c));
  });

  it('hashes leaves with the 0x00 prefix (known vector: empty leaf)', () => {
    assert.equal(
      Buffer.from(leafHash(new Uint8Array())).toString('hex'),
      '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
    );
  });
});

describe('inclusion proofs', () => {
  it('verify for every leaf of random trees up to 200 leaves', () => {
    for (const n of sizes) {
      const l = leaves(n);
      const root = rootHash(l);
      for (let i = 0; i < n; i++) verifyInclusion(l[i] as Uint8Array, i, n, inclusionProof(l, i), root);
    }
  });

  it('reject a tampered leaf, proof hash, index, size, root or proof length', () => {
    for (const n of sizes.filter((x) => x > 1)) {
      const l = leaves(n);
      const root = rootHash(l);
      const i = Math.floor(Math.random() * n);
      const leaf = l[i] as Uint8Array;
      const proof = inclusionProof(l, i);
      const j = Math.floor(Math.random() * proof.length);
      const tampered = proof.map((h, k) => (k === j ? flip(h) : h));
      const cases: [string, () => void][] = [
        ['leaf', () => verifyInclusion(flip(leaf), i, n, proof, root)],
        ['proof hash', () => verifyInclusion(leaf, i, n, tampered, root)],
        ['index', () => verifyInclusion(leaf, (i + 1) % n, n, proof, root)],
        ['size (a deeper tree)', () => verifyInclusion(leaf, i, n * 4, proof, root)],
        ['root', () => verifyInclusion(leaf, i, n, proof, flip(root))],
        ['short proof', () => verifyInclusion(leaf, i, n, proof.slice(1), root)],
        ['long proof', () => verifyInclusion(leaf, i, n, [...proof, randomBytes(32)], root)],
        ['index out of range', () => verifyInclusion(leaf, n, n, proof, root)],
      ];
      for (const [what, run] of cases) assert.throws(run, isProofError, `tree ${n}, leaf ${i}: ${what}`);
    }
  });
});

describe('consistency proofs', () => {
  it('verify between every m <= n of random trees', () => {
    for (const n of sizes) {
      const l = leaves(n);
      for (let m = 1; m <= n; m++) {
        verifyConsistency(m, n, consistencyProof(l, m), rootHash(l.slice(0, m)), rootHash(l));
      }
    }
  });

  it('fail against a wrong root, a tampered hash or a wrong size', () => {
    for (const n of sizes.filter((x) => x > 2)) {
      const l = leaves(n);
      const m = 1 + Math.floor(Math.random() * (n - 1));
      const proof = consistencyProof(l, m);
      const r1 = rootHash(l.slice(0, m));
      const r2 = rootHash(l);
      const forked = rootHash([...l.slice(0, m), ...leaves(n).map(flip).slice(m)]);
      const cases: [string, () => void][] = [
        ['wrong second root', () => verifyConsistency(m, n, proof, r1, flip(r2))],
        ['forked second tree', () => verifyConsistency(m, n, proof, r1, forked)],
        ['wrong first root', () => verifyConsistency(m, n, proof, flip(r1), r2)],
        [
          'tampered hash',
          () =>
            verifyConsistency(
              m,
              n,
              proof.map((h, k) => (k === 0 ? flip(h) : h)),
              r1,
              r2,
            ),
        ],
        ['wrong second size (a deeper tree)', () => verifyConsistency(m, n * 4, proof, r1, r2)],
        ['empty proof', () => verifyConsistency(m, n, [], r1, r2)],
        ['first > second', () => verifyConsistency(n, m, proof, r2, r1)],
      ];
      for (const [what, run] of cases) assert.throws(run, isProofError, `m=${m} n=${n}: ${what}`);
    }
  });
});

describe('stored tree nodes', () => {
  const subtree = (all: readonly Uint8Array[], level: number, index: number): Uint8Array =>
    rootHash(all.slice(index * 2 ** level, (index + 1) * 2 ** level));

  it('computes the nodes an append completes, each the MTH of its leaves', () => {
    const all = leaves(70);
    for (const [start, count] of [
      [0, 70],
      [0, 1],
      [3, 1],
      [7, 9],
      [16, 16],
      [21, 30],
      [63, 7],
    ] as const) {
      const siblings = mergedSubtrees(start, count).map((r) => subtree(all, r.level, r.index));
      const nodes = completedNodes(start, siblings, all.slice(start, start + count));
      assert.equal(nodes.length, interiorNodeCount(start + count) - interiorNodeCount(start));
      for (const n of nodes) {
        assert.ok(n.level >= 1);
        assert.deepEqual(n.hash, subtree(all, n.level, n.index), `${start}+${count}: ${n.level}/${n.index}`);
      }
    }
  });

  it('needs as siblings only the subtrees the append merges, and refuses others', () => {
    assert.deepEqual(mergedSubtrees(3, 1), [
      { level: 1, index: 0 },
      { level: 0, index: 2 },
    ]);
    assert.deepEqual(mergedSubtrees(4, 1), []);
    assert.deepEqual(interiorNodeCount(13), 10);
    assert.throws(
      () => completedNodes(3, [], leaves(1)),
      (e) => isGatehouseError(e, 'INTERNAL'),
    );
  });
});
