import { timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { EvidenceParseError } from './verifier.ts';

/**
 * A bounded view over a fixed-layout binary structure: every read names its field and offset,
 * and a read past the end is an error naming both, never a silent short read.
 */
export class FieldReader {
  readonly #buf: Buffer;
  readonly #what: string;
  readonly #base: number;

  constructor(buf: Uint8Array, what: string, base = 0) {
    this.#buf = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    this.#what = what;
    this.#base = base;
  }

  get length(): number {
    return this.#buf.length;
  }

  #check(offset: number, size: number, field: string): void {
    if (offset < 0 || offset + size > this.#buf.length)
      throw new EvidenceParseError(
        `${this.#what} is truncated: ${field} at offset 0x${(this.#base + offset).toString(16)} needs ${size} bytes, ${Math.max(0, this.#buf.length - offset)} remain`,
      );
  }

  bytes(offset: number, size: number, field: string): Buffer {
    this.#check(offset, size, field);
    return Buffer.from(this.#buf.subarray(offset, offset + size));
  }

  u8(offset: number, field: string): number {
    this.#check(offset, 1, field);
    return this.#buf.readUInt8(offset);
  }

  u16le(offset: number, field: string): number {
    this.#check(offset, 2, field);
    return this.#buf.readUInt16LE(offset);
  }

  u32le(offset: number, field: string): number {
    this.#check(offset, 4, field);
    return this.#buf.readUInt32LE(offset);
  }

  u64le(offset: number, field: string): bigint {
    this.#check(offset, 8, field);
    return this.#buf.readBigUInt64LE(offset);
  }

  /** Where this view starts in the outer structure, for error offsets of nested views. */
  sub(offset: number, size: number, field: string): FieldReader {
    return new FieldReader(this.bytes(offset, size, field), `${this.#what} ${field}`, this.#base + offset);
  }
}

/** Constant-time equality of two byte strings of any length. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Canonical base64 of at most `maxBytes` decoded bytes. */
export function base64Field(maxBytes: number) {
  return z
    .string()
    .min(1)
    .max(Math.ceil(maxBytes / 3) * 4)
    .refine((s) => /^[A-Za-z0-9+/]*={0,2}$/.test(s) && Buffer.from(s, 'base64').toString('base64') === s, {
      message: 'must be canonical base64',
    })
    .transform((s) => Buffer.from(s, 'base64'));
}

/** The issues of a failed parse of an evidence object, one line. */
export function describeZod(e: z.ZodError): string {
  return e.issues
    .slice(0, 3)
    .map((i) => `${i.path.length > 0 ? i.path.join('.') : 'evidence'}: ${i.message}`)
    .join('; ');
}
