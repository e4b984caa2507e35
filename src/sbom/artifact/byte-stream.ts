import type { FileHandle } from 'node:fs/promises';
import { GatehouseError } from '../../common/errors.ts';

/** The size of one read from disk and the most a stream buffers ahead of its reader. */
export const CHUNK = 256 * 1024;

/** Where bytes come from: the next chunk (at most `max` bytes), or undefined at the end. */
export interface PullSource {
  pull(max: number): Promise<Buffer | undefined>;
  /** Skip `n` bytes without producing them, if the source can (a file seeks); returns how many. */
  skip?(n: number): Promise<number>;
  /** Stop the source early and wait until it has let go of whatever it reads from. */
  close?(): Promise<void>;
}

/** A BAD_INPUT for bytes that end before their format says they should. */
export function truncated(what: string, where: string): GatehouseError {
  return new GatehouseError('BAD_INPUT', `${what} is truncated (the data ends early): ${where}`);
}

/**
 * A pull reader over a source of chunks: peek, read exact counts, stream the rest, or hand out a
 * bounded view for one entry. It buffers at most what one call asks for plus one chunk, never the
 * whole input. An error from the source is kept: every later call throws it again, so that a
 * failure deep inside a nested entry cannot be mistaken for a clean end by an outer reader.
 */
export class ByteStream {
  #source: PullSource;
  #parts: Buffer[] = [];
  #buffered = 0;
  #remaining: number;
  #ended = false;
  #error: unknown;
  /** Bytes consumed from the start of this stream. */
  position = 0;

  /** @param limit the most bytes the stream yields (Infinity when the source's end decides) */
  constructor(source: PullSource, limit = Number.POSITIVE_INFINITY) {
    this.#source = source;
    this.#remaining = limit;
  }

  /** A stream over an async iterable of chunks. */
  static from(chunks: AsyncIterable<Buffer>): ByteStream {
    const it = chunks[Symbol.asyncIterator]();
    return new ByteStream({
      async pull() {
        const r = await it.next();
        return r.done === true ? undefined : r.value;
      },
      async close() {
        await it.return?.(undefined);
      },
    });
  }

  async #fill(n: number): Promise<void> {
    if (this.#error !== undefined) throw this.#error;
    while (this.#buffered < n && !this.#ended) {
      const want = this.#remaining - this.#buffered;
      if (want <= 0) {
        this.#ended = true;
        break;
      }
      let chunk: Buffer | undefined;
      try {
        chunk = await this.#source.pull(Math.min(want, Math.max(CHUNK, n - this.#buffered)));
      } catch (e) {
        this.#error = e;
        throw e;
      }
      if (chunk === undefined) {
        this.#ended = true;
        break;
      }
      if (chunk.length === 0) continue;
      if (chunk.length > want) chunk = chunk.subarray(0, want);
      this.#parts.push(chunk);
      this.#buffered += chunk.length;
    }
  }

  #take(n: number): Buffer {
    const k = Math.min(n, this.#buffered);
    let out: Buffer;
    const first = this.#parts[0];
    if (first !== undefined && first.length >= k) {
      out = first.subarray(0, k);
      if (first.length === k) this.#parts.shift();
      else this.#parts[0] = first.subarray(k);
    } else {
      out = Buffer.allocUnsafe(k);
      let off = 0;
      while (off < k) {
        const p = this.#parts[0] as Buffer;
        const m = Math.min(p.length, k - off);
        p.copy(out, off, 0, m);
        off += m;
        if (m === p.length) this.#parts.shift();
        else this.#parts[0] = p.subarray(m);
      }
    }
    this.#buffered -= k;
    this.#remaining -= k;
    this.position += k;
    return out;
  }

  /** Up to `n` bytes from the current position, without consuming them (fewer at the end). */
  async peek(n: number): Promise<Buffer> {
    await this.#fill(n);
    if (this.#buffered === 0) return Buffer.alloc(0);
    const first = this.#parts[0] as Buffer;
    if (first.length >= n) return first.subarray(0, n);
    // Join what is buffered into one part, so that the next peek or read needs no copy.
    const all = Buffer.concat(this.#parts, this.#buffered);
    this.#parts = [all];
    return all.subarray(0, n);
  }

  /** Up to `n` bytes (fewer only at the end). */
  async read(n: number): Promise<Buffer> {
    await this.#fill(n);
    return this.#take(n);
  }

  /**
   * Exactly `n` bytes.
   * @throws GatehouseError BAD_INPUT when the stream ends first
   */
  async readExactly(n: number, what: string, where: string): Promise<Buffer> {
    const b = await this.read(n);
    if (b.length < n) throw truncated(what, where);
    return b;
  }

  /** The next chunk (at most `max` bytes), or undefined at the end. */
  async next(max = CHUNK): Promise<Buffer | undefined> {
    if (this.#buffered === 0) await this.#fill(1);
    if (this.#buffered === 0) return undefined;
    const first = this.#parts[0] as Buffer;
    return this.#take(Math.min(max, first.length));
  }

  /** Every remaining chunk. */
  async *chunks(max = CHUNK): AsyncGenerator<Buffer> {
    for (let c = await this.next(max); c !== undefined; c = await this.next(max)) yield c;
  }

  /** Skip up to `n` bytes, seeking where the source can; returns how many were skipped. */
  async skip(n: number): Promise<number> {
    if (this.#error !== undefined) throw this.#error;
    let left = Math.min(n, this.#remaining);
    const fromBuffer = Math.min(left, this.#buffered);
    this.#take(fromBuffer);
    left -= fromBuffer;
    let done = fromBuffer;
    if (left > 0 && this.#source.skip !== undefined && !this.#ended) {
      const k = await this.#source.skip(left).catch((e: unknown) => {
        this.#error = e;
        throw e;
      });
      this.#remaining -= k;
      this.position += k;
      done += k;
      left -= k;
    }
    while (left > 0) {
      const c = await this.next(Math.min(left, CHUNK));
      if (c === undefined) break;
      left -= c.length;
      done += c.length;
    }
    return done;
  }

  /**
   * Stop reading: the source is closed (a decoder stops and lets go of the outer stream). A stream
   * must be closed, or read to its end, before the stream it reads from is read again.
   */
  async close(): Promise<void> {
    this.#ended = true;
    this.#parts = [];
    this.#buffered = 0;
    await this.#source.close?.();
  }

  /** Skip to the end; returns how many bytes were skipped. */
  async skipRest(): Promise<number> {
    return this.skip(Number.POSITIVE_INFINITY);
  }

  /**
   * A view of the next `n` bytes: reading it advances this stream. The caller skips what the view
   * left unread (`await view.skipRest()`) before reading on.
   */
  view(n: number): ByteStream {
    return new ByteStream(
      {
        pull: (max) => this.next(max),
        skip: (k) => this.skip(k),
      },
      n,
    );
  }
}

/**
 * A byte range of an open file: the whole file, or one stored entry of an archive on disk, read
 * at any offset. Reads are counted through `onRead` (the budget).
 */
export class FileRange {
  readonly handle: FileHandle;
  readonly start: number;
  readonly size: number;
  readonly onRead: (n: number) => void;

  constructor(handle: FileHandle, start: number, size: number, onRead: (n: number) => void) {
    this.handle = handle;
    this.start = start;
    this.size = size;
    this.onRead = onRead;
  }

  /** A sub-range, `offset` bytes from this one's start. */
  sub(offset: number, size: number): FileRange {
    if (offset < 0 || size < 0 || offset + size > this.size)
      throw new GatehouseError('BAD_INPUT', `range ${offset}+${size} lies outside ${this.size} bytes`);
    return new FileRange(this.handle, this.start + offset, size, this.onRead);
  }

  /** Up to `length` bytes at `offset` (fewer at the end of the range). */
  async read(offset: number, length: number): Promise<Buffer> {
    const n = Math.max(0, Math.min(length, this.size - offset));
    const buf = Buffer.allocUnsafe(n);
    let got = 0;
    while (got < n) {
      const { bytesRead } = await this.handle.read(buf, got, n - got, this.start + offset + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    this.onRead(got);
    return got === n ? buf : buf.subarray(0, got);
  }

  /** A stream over `length` bytes from `offset` (to the end by default); skipping seeks. */
  stream(offset = 0, length = this.size - offset): ByteStream {
    let pos = offset;
    const end = Math.min(this.size, offset + length);
    return new ByteStream(
      {
        pull: async (max) => {
          if (pos >= end) return undefined;
          const b = await this.read(pos, Math.min(max, CHUNK, end - pos));
          if (b.length === 0) return undefined;
          pos += b.length;
          return b;
        },
        skip: async (k) => {
          const m = Math.min(k, end - pos);
          pos += m;
          return m;
        },
      },
      end - offset,
    );
  }
}
