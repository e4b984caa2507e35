// RFC 6962 / RFC 9162 Merkle tree proofs, verified in the browser with WebCrypto SHA-256.
// Leaves are hashed as SHA-256(0x00 || entry), interior nodes as SHA-256(0x01 || left || right).

const subtle = globalThis.crypto.subtle;

/** SHA-256 of the concatenated byte arrays. */
export async function sha256(...parts) {
  const n = parts.reduce((s, p) => s + p.length, 0);
  const buf = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    buf.set(p, o);
    o += p.length;
  }
  return new Uint8Array(await subtle.digest('SHA-256', buf));
}

const LEAF = new Uint8Array([0]);
const NODE = new Uint8Array([1]);

/** The leaf hash of a log entry. */
export function leafHash(entry) {
  return sha256(LEAF, entry);
}

function nodeHash(left, right) {
  return sha256(NODE, left, right);
}

/** Whether two byte arrays are equal. */
export function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

// Tree sizes and indices exceed 32 bits in a long-lived log: halve with arithmetic, not >>.
const odd = (x) => x % 2 === 1;
const half = (x) => Math.floor(x / 2);

function powerOfTwo(x) {
  let n = x;
  while (n > 1 && n % 2 === 0) n /= 2;
  return n === 1;
}

function whole(x, what) {
  if (!Number.isSafeInteger(x) || x < 0) throw new Error(`${what} is not a whole number`);
}

/**
 * The root an inclusion proof leads to (RFC 9162 section 2.1.3.2).
 * @throws Error when the proof has the wrong length for the index and size
 */
export async function rootFromInclusionProof(index, treeSize, leaf, proof) {
  whole(index, 'index');
  whole(treeSize, 'tree size');
  if (index >= treeSize) throw new Error(`index ${index} is outside a tree of ${treeSize}`);
  let fn = index;
  let sn = treeSize - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) throw new Error('the inclusion proof is too long');
    if (odd(fn) || fn === sn) {
      r = await nodeHash(p, r);
      if (!odd(fn)) {
        while (!odd(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0) throw new Error('the inclusion proof is too short');
  return r;
}

/**
 * Verify that `leaf` is at `index` of the tree of `treeSize` with root `root`.
 * @throws Error naming what does not match
 */
export async function verifyInclusion(index, treeSize, leaf, proof, root) {
  const computed = await rootFromInclusionProof(index, treeSize, leaf, proof);
  if (!equalBytes(computed, root)) throw new Error('the inclusion proof leads to another root');
}

/**
 * Verify that the tree of `second` leaves with root `secondRoot` extends the tree of `first`
 * leaves with root `firstRoot` (RFC 9162 section 2.1.4.2).
 * @throws Error naming what does not match
 */
export async function verifyConsistency(first, second, firstRoot, secondRoot, proof) {
  whole(first, 'first size');
  whole(second, 'second size');
  if (first > second) throw new Error('the first tree is larger than the second');
  if (first === second) {
    if (proof.length !== 0) throw new Error('a proof between equal sizes must be empty');
    if (!equalBytes(firstRoot, secondRoot)) throw new Error('two roots of one size differ');
    return;
  }
  if (first === 0) {
    if (proof.length !== 0) throw new Error('a proof from the empty tree must be empty');
    return;
  }
  if (proof.length === 0) throw new Error('the consistency proof is empty');
  let path = proof;
  // A first tree that is a complete subtree is its own first node.
  if (powerOfTwo(first)) path = [firstRoot, ...proof];
  let fn = first - 1;
  let sn = second - 1;
  while (odd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  let fr = path[0];
  let sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0) throw new Error('the consistency proof is too long');
    if (odd(fn) || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      if (!odd(fn)) {
        while (!odd(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0) throw new Error('the consistency proof is too short');
  if (!equalBytes(fr, firstRoot)) throw new Error('the consistency proof does not lead to the first root');
  if (!equalBytes(sr, secondRoot)) throw new Error('the consistency proof does not lead to the second root');
}

/** Bytes from hex. @throws Error for anything but even-length hex */
export function fromHex(hex) {
  if (!/^(?:[0-9a-f]{2})*$/.test(hex)) throw new Error('not hex');
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Hex of bytes. */
export function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Bytes from standard base64. */
export function fromBase64(b64) {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** Standard base64 of bytes. */
export function toBase64(bytes) {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}
