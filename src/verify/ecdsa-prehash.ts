/**
 * ECDSA verification over a digest the verifier did not compute itself (`verify-bundle
 * sha256:<hex>`): node:crypto always hashes its input, so the curve arithmetic is done here with
 * BigInt (P-256 and P-384). Only public data is involved, so constant time does not matter.
 */
import type { KeyObject } from 'node:crypto';
import { children, readElement } from '../signing/der.ts';

interface Curve {
  p: bigint;
  n: bigint;
  a: bigint;
  gx: bigint;
  gy: bigint;
}

const CURVES: Record<string, Curve> = {
  'P-256': {
    p: 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn,
    n: 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n,
    a: -3n,
    gx: 0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296n,
    gy: 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5n,
  },
  'P-384': {
    p: 0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffffn,
    n: 0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973n,
    a: -3n,
    gx: 0xaa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a385502f25dbf55296c3a545e3872760ab7n,
    gy: 0x3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c00a60b1ce1d7e819d7a431d7c90ea0e5fn,
  },
};

const mod = (a: bigint, m: bigint): bigint => ((a % m) + m) % m;

function inv(a: bigint, m: bigint): bigint {
  let [r0, r1] = [mod(a, m), m];
  let [s0, s1] = [1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  return mod(s0, m);
}

type Point = [bigint, bigint, bigint]; // Jacobian X, Y, Z; Z = 0 is infinity

function double(c: Curve, [x, y, z]: Point): Point {
  if (z === 0n || y === 0n) return [0n, 1n, 0n];
  const { p } = c;
  const yy = mod(y * y, p);
  const s = mod(4n * x * yy, p);
  const zz = mod(z * z, p);
  const m = mod(3n * x * x + c.a * zz * zz, p);
  const x3 = mod(m * m - 2n * s, p);
  const y3 = mod(m * (s - x3) - 8n * yy * yy, p);
  return [x3, y3, mod(2n * y * z, p)];
}

function add(c: Curve, a: Point, b: Point): Point {
  if (a[2] === 0n) return b;
  if (b[2] === 0n) return a;
  const { p } = c;
  const z1z1 = mod(a[2] * a[2], p);
  const z2z2 = mod(b[2] * b[2], p);
  const u1 = mod(a[0] * z2z2, p);
  const u2 = mod(b[0] * z1z1, p);
  const s1 = mod(a[1] * b[2] * z2z2, p);
  const s2 = mod(b[1] * a[2] * z1z1, p);
  if (u1 === u2) return s1 === s2 ? double(c, a) : [0n, 1n, 0n];
  const h = mod(u2 - u1, p);
  const r = mod(s2 - s1, p);
  const hh = mod(h * h, p);
  const hhh = mod(h * hh, p);
  const x3 = mod(r * r - hhh - 2n * u1 * hh, p);
  const y3 = mod(r * (u1 * hh - x3) - s1 * hhh, p);
  return [x3, y3, mod(h * a[2] * b[2], p)];
}

function multiply(c: Curve, k: bigint, pt: Point): Point {
  let acc: Point = [0n, 1n, 0n];
  for (let i = BigInt(k.toString(2).length - 1); i >= 0n; i--) {
    acc = double(c, acc);
    if ((k >> i) & 1n) acc = add(c, acc, pt);
  }
  return acc;
}

const big = (b: Buffer): bigint => (b.length === 0 ? 0n : BigInt(`0x${b.toString('hex')}`));

/** True when `signature` (DER) is a valid ECDSA signature by `key` over `digest`. */
export function verifyPrehashedEcdsa(key: KeyObject, digest: Uint8Array, signature: Uint8Array): boolean {
  if (key.asymmetricKeyType !== 'ec') return false;
  const jwk = key.export({ format: 'jwk' });
  const c = jwk.crv === undefined ? undefined : CURVES[jwk.crv];
  if (c === undefined || jwk.x === undefined || jwk.y === undefined) return false;
  let r: bigint;
  let s: bigint;
  try {
    const seq = readElement(Buffer.from(signature), 0, 'ECDSA signature');
    const [re, se, ...more] = children(seq.contents, 'ECDSA signature');
    if (seq.tag !== 0x30 || re?.tag !== 0x02 || se?.tag !== 0x02 || more.length > 0) return false;
    if (seq.raw.length !== signature.length) return false;
    r = big(re.contents);
    s = big(se.contents);
  } catch {
    return false;
  }
  if (r <= 0n || r >= c.n || s <= 0n || s >= c.n) return false;
  const nBits = c.n.toString(2).length;
  let e = big(Buffer.from(digest));
  if (digest.length * 8 > nBits) e >>= BigInt(digest.length * 8 - nBits);
  const w = inv(s, c.n);
  const q: Point = [big(Buffer.from(jwk.x, 'base64url')), big(Buffer.from(jwk.y, 'base64url')), 1n];
  const sum = add(c, multiply(c, mod(e * w, c.n), [c.gx, c.gy, 1n]), multiply(c, mod(r * w, c.n), q));
  if (sum[2] === 0n) return false;
  const zinv = inv(sum[2], c.p);
  const x = mod(sum[0] * zinv * zinv, c.p);
  return mod(x, c.n) === r;
}
