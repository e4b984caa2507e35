/**
 * A minimal DER reader: walks tag-length-value elements and hands out their exact bytes. Used
 * where a signature covers encoded bytes that a schema parser would re-encode (CMS signed
 * attributes, a certificate's TBS), so verification sees exactly what was signed.
 */
import { GatehouseError } from '../common/errors.ts';

/** One DER element: its tag byte, the whole encoding and the contents. */
export interface DerElement {
  tag: number;
  /** Tag, length and contents. */
  raw: Buffer;
  contents: Buffer;
}

function malformed(what: string): GatehouseError {
  return new GatehouseError('BAD_INPUT', `${what} is not valid DER`);
}

/**
 * Read one element at `offset` of `buf`; `what` names the input in errors.
 * @throws GatehouseError BAD_INPUT when the bytes are not a DER element
 */
export function readElement(buf: Buffer, offset: number, what: string): DerElement {
  const tag = buf[offset];
  let len = buf[offset + 1];
  if (tag === undefined || len === undefined) throw malformed(what);
  // Multi-byte tags never occur in the structures read here.
  if ((tag & 0x1f) === 0x1f) throw malformed(what);
  let head = 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw malformed(what);
    len = 0;
    for (let k = 0; k < n; k++) {
      const b = buf[offset + 2 + k];
      if (b === undefined) throw malformed(what);
      len = len * 256 + b;
    }
    head += n;
  }
  const end = offset + head + len;
  if (end > buf.length) throw malformed(what);
  return { tag, raw: buf.subarray(offset, end), contents: buf.subarray(offset + head, end) };
}

/**
 * The child elements of a constructed element's contents.
 * @throws GatehouseError BAD_INPUT
 */
export function children(contents: Buffer, what: string): DerElement[] {
  const out: DerElement[] = [];
  let off = 0;
  while (off < contents.length) {
    const e = readElement(contents, off, what);
    out.push(e);
    off += e.raw.length;
  }
  return out;
}

/** Encode a DER length. */
export function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.of(n);
  const bytes: number[] = [];
  for (let x = n; x > 0; x = Math.floor(x / 256)) bytes.unshift(x % 256);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** Encode one element from its tag and contents. */
export function derElement(tag: number, contents: Uint8Array): Buffer {
  return Buffer.concat([Buffer.of(tag), derLength(contents.length), contents]);
}

const oidCache = new Map<string, Buffer>();

/** DER of an OBJECT IDENTIFIER in dotted form, memoised: callers use the same few on every call. */
export function derOid(dotted: string): Buffer {
  const cached = oidCache.get(dotted);
  if (cached !== undefined) return cached;
  // Arcs in BigInt: an arc (or the first two arcs combined) may exceed 7 bits many times over.
  const [a = 0n, b = 0n, ...rest] = dotted.split('.').map((x) => BigInt(x));
  const bytes: number[] = [];
  for (const arc of [a * 40n + b, ...rest]) {
    const group: number[] = [Number(arc & 0x7fn)];
    for (let x = arc >> 7n; x > 0n; x >>= 7n) group.unshift(Number((x & 0x7fn) | 0x80n));
    bytes.push(...group);
  }
  const der = derElement(0x06, Buffer.from(bytes));
  oidCache.set(dotted, der);
  return der;
}
