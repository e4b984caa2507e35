import { GatehouseError } from '../common/errors.ts';

/**
 * A strict reader of TPM 2.0 marshalled bytes (big-endian, TPM2B = u16 size ‖ bytes). Every read
 * is bounds-checked, and {@link TpmReader.end} refuses trailing bytes, so that one structure has
 * exactly one encoding and nothing can be smuggled after it.
 */
export class TpmReader {
  readonly #buf: Buffer;
  readonly #what: string;
  #pos = 0;

  constructor(bytes: Uint8Array, what: string) {
    this.#buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#what = what;
  }

  get offset(): number {
    return this.#pos;
  }

  /** A BAD_INPUT error naming the structure and offset. */
  fail(message: string): GatehouseError {
    return new GatehouseError('BAD_INPUT', `${this.#what}: ${message} at byte ${this.#pos}`);
  }

  #need(n: number): void {
    if (this.#pos + n > this.#buf.length) throw this.fail(`truncated (needs ${n} more bytes)`);
  }

  u8(): number {
    this.#need(1);
    return this.#buf.readUInt8(this.#pos++);
  }

  u16(): number {
    this.#need(2);
    const v = this.#buf.readUInt16BE(this.#pos);
    this.#pos += 2;
    return v;
  }

  u32(): number {
    this.#need(4);
    const v = this.#buf.readUInt32BE(this.#pos);
    this.#pos += 4;
    return v;
  }

  u64(): bigint {
    this.#need(8);
    const v = this.#buf.readBigUInt64BE(this.#pos);
    this.#pos += 8;
    return v;
  }

  bytes(n: number): Buffer {
    this.#need(n);
    const v = Buffer.from(this.#buf.subarray(this.#pos, this.#pos + n));
    this.#pos += n;
    return v;
  }

  /** A TPM2B: u16 size, then that many bytes; at most `max` bytes. */
  tpm2b(max: number, field: string): Buffer {
    const size = this.u16();
    if (size > max) throw this.fail(`${field} is ${size} bytes, more than ${max}`);
    return this.bytes(size);
  }

  /** Everything not yet read. */
  rest(): Buffer {
    return this.bytes(this.#buf.length - this.#pos);
  }

  /** Refuse trailing bytes. */
  end(): void {
    if (this.#pos !== this.#buf.length) {
      throw this.fail(`${this.#buf.length - this.#pos} trailing bytes after the structure`);
    }
  }
}

/** Builds TPM 2.0 marshalled bytes. */
export class TpmWriter {
  readonly #parts: Buffer[] = [];

  u8(v: number): this {
    const b = Buffer.alloc(1);
    b.writeUInt8(v);
    this.#parts.push(b);
    return this;
  }

  u16(v: number): this {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(v);
    this.#parts.push(b);
    return this;
  }

  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v);
    this.#parts.push(b);
    return this;
  }

  u64(v: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(v);
    this.#parts.push(b);
    return this;
  }

  bytes(v: Uint8Array): this {
    this.#parts.push(Buffer.from(v));
    return this;
  }

  tpm2b(v: Uint8Array): this {
    return this.u16(v.length).bytes(v);
  }

  done(): Buffer {
    return Buffer.concat(this.#parts);
  }
}
