/**
 * A bounded CBOR (RFC 8949) decoder for attestation documents: definite lengths only, no floats,
 * limited depth and item counts, every error naming the byte offset. Enough for COSE_Sign1 and
 * the AWS Nitro attestation document; nothing here is a general-purpose CBOR library.
 */
import { EvidenceParseError } from './verifier.ts';

/** A decoded CBOR value. Maps keep their keys as decoded (numbers or strings). */
export type CborValue =
  | number
  | bigint
  | string
  | boolean
  | null
  | undefined
  | Buffer
  | CborValue[]
  | Map<CborValue, CborValue>
  | { readonly tag: number; readonly value: CborValue };

const MAX_DEPTH = 8;
const MAX_ITEMS = 4096;

/**
 * Decode exactly one CBOR item filling `bytes`.
 * @throws EvidenceParseError naming `what` and the offset
 */
export function decodeCbor(bytes: Uint8Array, what: string): CborValue {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  let items = 0;
  const fail = (message: string, at = pos): never => {
    throw new EvidenceParseError(`${what}: ${message} at offset ${at}`);
  };
  const need = (n: number) => {
    if (pos + n > buf.length) fail(`truncated: ${n} bytes needed, ${buf.length - pos} remain`);
  };
  const arg = (info: number, start: number): number | bigint => {
    if (info < 24) return info;
    const size = info === 24 ? 1 : info === 25 ? 2 : info === 26 ? 4 : info === 27 ? 8 : 0;
    if (size === 0)
      return fail(
        info === 31 ? 'indefinite lengths are not accepted' : `reserved additional info ${info}`,
        start,
      );
    need(size);
    const v = size === 8 ? buf.readBigUInt64BE(pos) : buf.readUIntBE(pos, size);
    pos += size;
    return typeof v === 'bigint' && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const length = (v: number | bigint, start: number): number => {
    if (typeof v === 'bigint' || v > buf.length) return fail('a length beyond the input', start);
    return v;
  };
  const item = (depth: number): CborValue => {
    if (depth > MAX_DEPTH) fail(`nesting deeper than ${MAX_DEPTH}`);
    if (++items > MAX_ITEMS) fail(`more than ${MAX_ITEMS} items`);
    const start = pos;
    need(1);
    const head = buf.readUInt8(pos++);
    const major = head >> 5;
    const info = head & 31;
    switch (major) {
      case 0:
        return arg(info, start);
      case 1: {
        const v = arg(info, start);
        return typeof v === 'bigint' ? -1n - v : -1 - v;
      }
      case 2:
      case 3: {
        const n = length(arg(info, start), start);
        need(n);
        const b = Buffer.from(buf.subarray(pos, pos + n));
        pos += n;
        if (major === 2) return b;
        const s = b.toString('utf8');
        if (!Buffer.from(s, 'utf8').equals(b)) fail('a text string that is not UTF-8', start);
        return s;
      }
      case 4: {
        const n = length(arg(info, start), start);
        const out: CborValue[] = [];
        for (let i = 0; i < n; i++) out.push(item(depth + 1));
        return out;
      }
      case 5: {
        const n = length(arg(info, start), start);
        const out = new Map<CborValue, CborValue>();
        for (let i = 0; i < n; i++) {
          const at = pos;
          const k = item(depth + 1);
          if (typeof k !== 'string' && typeof k !== 'number')
            fail('a map key that is neither text nor an integer', at);
          if (out.has(k)) fail(`a repeated map key '${String(k)}'`, at);
          out.set(k, item(depth + 1));
        }
        return out;
      }
      case 6: {
        const tag = arg(info, start);
        if (typeof tag === 'bigint') return fail('a tag number beyond range', start);
        return { tag, value: item(depth + 1) };
      }
      default:
        if (info === 20) return false;
        if (info === 21) return true;
        if (info === 22) return null;
        if (info === 23) return undefined;
        return fail(`simple value or float ${info} is not accepted`, start);
    }
  };
  const value = item(0);
  if (pos !== buf.length) fail(`${buf.length - pos} bytes after the item`);
  return value;
}

function head(major: number, n: number): Buffer {
  if (n < 24) return Buffer.from([(major << 5) | n]);
  if (n < 0x100) return Buffer.from([(major << 5) | 24, n]);
  if (n < 0x10000) {
    const b = Buffer.alloc(3);
    b[0] = (major << 5) | 25;
    b.writeUInt16BE(n, 1);
    return b;
  }
  if (n < 0x1_0000_0000) {
    const b = Buffer.alloc(5);
    b[0] = (major << 5) | 26;
    b.writeUInt32BE(n, 1);
    return b;
  }
  const b = Buffer.alloc(9);
  b[0] = (major << 5) | 27;
  b.writeBigUInt64BE(BigInt(n), 1);
  return b;
}

/** Encode text, byte strings, non-negative integers, arrays and maps (for COSE Sig_structure and tests). */
export function encodeCbor(v: CborValue): Buffer {
  if (typeof v === 'string') {
    const b = Buffer.from(v, 'utf8');
    return Buffer.concat([head(3, b.length), b]);
  }
  if (Buffer.isBuffer(v)) return Buffer.concat([head(2, v.length), v]);
  if (typeof v === 'number') return v >= 0 ? head(0, v) : head(1, -1 - v);
  if (typeof v === 'bigint') {
    const b = Buffer.alloc(9);
    b[0] = (0 << 5) | 27;
    b.writeBigUInt64BE(v, 1);
    return b;
  }
  if (v === null) return Buffer.from([0xf6]);
  if (Array.isArray(v)) return Buffer.concat([head(4, v.length), ...v.map(encodeCbor)]);
  if (v instanceof Map)
    return Buffer.concat([head(5, v.size), ...[...v].flatMap(([k, x]) => [encodeCbor(k), encodeCbor(x)])]);
  if (typeof v === 'object' && v !== undefined && 'tag' in v)
    return Buffer.concat([head(6, v.tag), encodeCbor(v.value)]);
  throw new Error(`cannot encode ${String(v)}`);
}
